namespace Sluice.Gateway.Relay;

/// <summary>
/// When the relay sends what it has written. Time to first token is what users feel, so the first frame and the first
/// token go out at once, whatever else is ready; later frames that arrived together are sent together — when the
/// backend has nothing more ready (see <see cref="StreamRelay"/>, step 2), or when too much is waiting.
/// </summary>
internal struct FlushPolicy(long maxPendingBytes)
{
    private bool _sentFirstFrame;
    private bool _sentFirstToken;

    /// <summary>After a write: whether to flush now.</summary>
    /// <param name="wroteFrame">Whether the write made at least one frame.</param>
    /// <param name="hasFirstToken">Whether the answer has produced its first token by now.</param>
    /// <param name="pendingBytes">Bytes written and not yet sent.</param>
    public bool AfterWrite(bool wroteFrame, bool hasFirstToken, long pendingBytes)
    {
        var flush = false;
        if (wroteFrame && !_sentFirstFrame)
        {
            _sentFirstFrame = true;
            flush = true;
        }

        if (hasFirstToken && !_sentFirstToken)
        {
            _sentFirstToken = true;
            flush = true;
        }

        return flush || pendingBytes >= maxPendingBytes;
    }

    /// <summary>Before waiting for the backend: whether to flush (anything at all is pending).</summary>
    public static bool BeforeWait(bool started, long pendingBytes) => started && pendingBytes > 0;
}
