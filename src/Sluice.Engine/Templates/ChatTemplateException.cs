namespace Sluice.Engine.Templates;

/// <summary>
/// A chat template could not be parsed or rendered: a syntax error, a Jinja construct this engine does not support (the
/// message names it), a runtime error, or the template's own <c>raise_exception(…)</c>.
/// </summary>
public sealed class ChatTemplateException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ChatTemplateException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public ChatTemplateException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and a cause.</summary>
    public ChatTemplateException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal ChatTemplateException(string message, bool raisedByTemplate, int? line = null)
        : base(message)
    {
        RaisedByTemplate = raisedByTemplate;
        Line = line;
    }

    /// <summary>The template itself called <c>raise_exception</c> (e.g. roles that do not alternate): the input is at fault.</summary>
    public bool RaisedByTemplate { get; }

    /// <summary>The template line the error happened on, when known.</summary>
    public int? Line { get; }

    internal ChatTemplateException WithLine(int line) =>
        new(Message.Contains("(line ", StringComparison.Ordinal) ? Message : $"{Message} (line {line})", RaisedByTemplate, line);
}
