namespace Sluice.Testing;

/// <summary>Locates the shared recorded-stream fixtures (<c>../shared/fixtures</c> beside the repository).</summary>
public static class Fixtures
{
    /// <summary>The repository root (the folder holding Sluice.slnx).</summary>
    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>The recorded streams folder; fails loudly when it is missing, never skips.</summary>
    public static string Directory
    {
        get
        {
            var path = Environment.GetEnvironmentVariable("SLUICE_FIXTURES")
                ?? Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "fixtures"));
            if (!System.IO.Directory.Exists(path))
            {
                throw new DirectoryNotFoundException(
                    $"Recorded fixtures not found at {path}. Clone the repository next to ../shared, or set SLUICE_FIXTURES.");
            }

            return path;
        }
    }

    /// <summary>Full path of a fixture, e.g. <c>openai/text-a.sse</c>.</summary>
    public static string PathOf(string relative) => Path.Combine(Directory, relative);

    /// <summary>The fixture's bytes, unchanged.</summary>
    public static byte[] Read(string relative) => File.ReadAllBytes(PathOf(relative));

    private static string FindRepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Sluice.slnx")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Cannot find Sluice.slnx above " + AppContext.BaseDirectory);
    }
}
