using System.Runtime.InteropServices;

namespace Sluice.Cli.Commands.Chat;

/// <summary>
/// Ctrl+C (SIGINT) for <c>sluice chat</c>: the first press while a stream runs cancels that stream (its HTTP
/// request is aborted and partial stats are shown); a press while nothing streams — at the interactive prompt,
/// or a second press while a cancelled stream winds down — exits the process with code 130.
/// </summary>
internal sealed class InterruptHandler : IDisposable
{
    private readonly PosixSignalRegistration _registration;
    private readonly TextWriter _error;
    private CancellationTokenSource? _current;

    public InterruptHandler(TextWriter error)
    {
        _error = error;
        _registration = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
    }

    /// <summary>Starts a stream that the next Ctrl+C cancels. Pass the source back to <see cref="EndStream"/>.</summary>
    public CancellationTokenSource BeginStream()
    {
        var source = new CancellationTokenSource();
        Volatile.Write(ref _current, source);
        return source;
    }

    /// <summary>Ends a stream started with <see cref="BeginStream"/> and disposes its source.</summary>
    public void EndStream(CancellationTokenSource source)
    {
        Interlocked.CompareExchange(ref _current, null, source);
        source.Dispose();
    }

    public void Dispose() => _registration.Dispose();

    private void OnSignal(PosixSignalContext context)
    {
        // We decide what Ctrl+C means; the runtime must not terminate the process by itself.
        context.Cancel = true;
        var current = Volatile.Read(ref _current);
        if (current is not null)
        {
            try
            {
                if (!current.IsCancellationRequested)
                {
                    current.Cancel();
                    return;
                }
            }
            catch (ObjectDisposedException)
            {
                // The stream ended just now: treat the press as one at the prompt.
            }
        }

        try
        {
            _error.WriteLine();
            _error.Flush();
        }
        catch (IOException)
        {
            // stderr may be gone (closed pipe); exiting matters more.
        }

        Environment.Exit(ExitCodes.Cancelled);
    }
}
