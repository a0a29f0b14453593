using System.Text.RegularExpressions;

namespace Sluice.Cli.Tests;

/// <summary>
/// A real <c>sluice serve</c> process on 127.0.0.1 and a free port (<c>--port 0</c>), its address read from the
/// start-up line. Disposal stops it (SIGINT, then kill).
/// </summary>
internal sealed partial class ServeProcess : IAsyncDisposable
{
    private ServeProcess(CliProcess process, Uri address)
    {
        Process = process;
        Address = address;
    }

    public CliProcess Process { get; }

    /// <summary>e.g. <c>http://127.0.0.1:40123/</c>.</summary>
    public Uri Address { get; }

    /// <summary>The address without the trailing slash, as <c>--url</c> takes it.</summary>
    public string Url => Address.GetLeftPart(UriPartial.Authority);

    /// <summary>Everything the server logged so far (stdout and stderr).</summary>
    public string Log => Process.Stdout + Process.Stderr;

    public static async Task<ServeProcess> StartAsync(
        IEnumerable<string> extraArgs,
        IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null,
        string? executable = null)
    {
        var process = CliProcess.Start(
            ["serve", "--host", "127.0.0.1", "--port", "0", .. extraArgs],
            defaultSigInt: true,
            environment: environment,
            workingDirectory: workingDirectory,
            executable: executable);
        try
        {
            await process.WaitForOutputAsync((stdout, _) => Listening().IsMatch(stdout), TimeSpan.FromSeconds(60));
            return new ServeProcess(process, new Uri(Listening().Match(process.Stdout).Groups[1].Value));
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!Process.HasExited)
        {
            try
            {
                await Process.InterruptAsync();
                await Process.WaitForExitAsync(TimeSpan.FromSeconds(15));
            }
            catch (TimeoutException)
            {
                // Killed below.
            }
        }

        await Process.DisposeAsync();
    }

    [GeneratedRegex(@"listening on (http://127\.0\.0\.1:\d+/)")]
    private static partial Regex Listening();
}
