namespace Sluice.Engine.Models;

/// <summary>A GGUF file could be read but is not a model the engine can run: the message names the file and why.</summary>
public sealed class ModelLoadException : Exception
{
    /// <summary>Creates the exception; the message is prefixed with the path.</summary>
    public ModelLoadException(string path, string problem)
        : base($"{path}: {problem}")
    {
        FilePath = path;
        Problem = problem;
    }

    /// <summary>Creates the exception with an inner exception.</summary>
    public ModelLoadException(string path, string problem, Exception innerException)
        : base($"{path}: {problem}", innerException)
    {
        FilePath = path;
        Problem = problem;
    }

    /// <summary>The model file.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong, without the path.</summary>
    public string Problem { get; }
}
