using System.Buffers;

namespace Sluice.Providers.Upstream;

/// <summary>
/// An upstream response being streamed, and what happens to its connection afterwards.
/// </summary>
/// <remarks>
/// The handler never drains abandoned responses (<see cref="System.Net.Http.SocketsHttpHandler.ResponseDrainTimeout"/>
/// is zero), so a stream that ends early — client gone, time-out, error — closes its connection at once and the
/// upstream stops generating. A stream that reached its natural end marker is different: the upstream is about to
/// close the body, and reading that last bit lets the connection (and its TLS session) go back to the pool instead
/// of being torn down. That read happens after the consumer has its last event, in the background, bounded in
/// time and bytes; normally it completes at once.
/// </remarks>
internal sealed class UpstreamResponse : IDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(2);
    private const int MaxDrainBytes = 64 * 1024;
    private const int DrainBufferBytes = 512;

    private bool _complete;
    private bool _disposed;

    public UpstreamResponse(HttpResponseMessage response, Stream body)
    {
        Response = response;
        Body = body;
    }

    public HttpResponseMessage Response { get; }

    public Stream Body { get; }

    /// <summary>The stream reached its natural end marker: keep the connection if the body ends promptly.</summary>
    public void MarkComplete() => _complete = true;

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (!_complete)
        {
            Close();
            return;
        }

        // Pooled: nearly every call ends here with the body already over, and the read below finishes at once.
        var buffer = ArrayPool<byte>.Shared.Rent(DrainBufferBytes);
        ValueTask<int> read;
        try
        {
            read = Body.ReadAsync(buffer);
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException or ObjectDisposedException or InvalidOperationException)
        {
            Close();
            ArrayPool<byte>.Shared.Return(buffer);
            return;
        }

        if (read is { IsCompletedSuccessfully: true, Result: 0 })
        {
            // The usual case: the body had already ended and the connection is back in the pool.
            Close();
            ArrayPool<byte>.Shared.Return(buffer);
            return;
        }

        _ = DrainAsync(read.AsTask(), buffer);
    }

    private async Task DrainAsync(Task<int> pending, byte[] buffer)
    {
        // The buffer goes back to the pool only once no read can still write into it (not after a timed-out read).
        var settled = true;
        try
        {
            var drained = 0;
            while (true)
            {
                int read;
                try
                {
                    read = await pending.WaitAsync(DrainTimeout).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // Closing below fails the pending read; observe that so it is not reported as unobserved.
                    settled = false;
                    _ = pending.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
                    return;
                }

                drained += read;
                if (read == 0 || drained > MaxDrainBytes)
                {
                    return;
                }

                pending = Body.ReadAsync(buffer).AsTask();
            }
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException or ObjectDisposedException or OperationCanceledException)
        {
            // The upstream closed the connection instead of ending the body: nothing to keep.
        }
        finally
        {
            Close();
            if (settled)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    private void Close()
    {
        Body.Dispose();
        Response.Dispose();
    }
}
