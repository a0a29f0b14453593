using System.Net.Sockets;

namespace Sluice.Client.Internal;

/// <summary>
/// The time limits of one call and the translation of low-level failures into <see cref="SluiceException"/>s.
/// One timer (<see cref="Token"/>) is armed for the first token when each attempt is sent and re-armed for the idle
/// limit on every event once tokens flow; a second one bounds the whole call.
/// </summary>
internal sealed class RequestWatch : IDisposable
{
    private readonly SluiceClientOptions _options;
    private readonly CancellationToken _caller;
    private readonly TimeSpan _totalLimit;
    private readonly string _totalName;
    private readonly CancellationTokenSource _total;
    private readonly CancellationTokenSource _scope;
    private readonly CancellationTokenSource _watchdog;
    private bool _tokenSeen;

    public RequestWatch(SluiceClientOptions options, CancellationToken caller, bool streaming = true)
    {
        _options = options;
        _caller = caller;
        _totalLimit = streaming ? options.TotalTimeout : Min(options.TotalTimeout, options.RequestTimeout);
        _totalName = streaming || _totalLimit == options.TotalTimeout ? nameof(SluiceClientOptions.TotalTimeout) : nameof(SluiceClientOptions.RequestTimeout);
        _total = new CancellationTokenSource(_totalLimit);
        _scope = CancellationTokenSource.CreateLinkedTokenSource(caller, _total.Token);
        _watchdog = CancellationTokenSource.CreateLinkedTokenSource(_scope.Token);
    }

    /// <summary>Cancelled by the caller, the total limit, or the phase timer.</summary>
    public CancellationToken Token => _watchdog.Token;

    /// <summary>Cancelled by the caller or the total limit only (for waits between attempts).</summary>
    public CancellationToken ScopeToken => _scope.Token;

    /// <summary>True once the answer has started (a token arrived).</summary>
    public bool TokenSeen => _tokenSeen;

    /// <summary>Arms the first-token limit for a request about to be sent.</summary>
    public void BeginAttempt()
    {
        if (!_watchdog.IsCancellationRequested)
        {
            _watchdog.CancelAfter(_tokenSeen ? _options.IdleTimeout : _options.FirstTokenTimeout);
        }
    }

    /// <summary>Stops the phase timer while waiting between attempts.</summary>
    public void Pause()
    {
        if (!_watchdog.IsCancellationRequested)
        {
            _watchdog.CancelAfter(Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Any event (a keep-alive comment too) proves the stream alive once tokens flow.</summary>
    public void EventArrived()
    {
        if (_tokenSeen)
        {
            Rearm();
        }
    }

    /// <summary>A token (text, refusal or tool-call fragment) arrived.</summary>
    public void TokenArrived()
    {
        _tokenSeen = true;
        Rearm();
    }

    /// <summary>Awaits <paramref name="task"/>, translating its failure.</summary>
    public async Task<T> RunAsync<T>(Task<T> task, Uri url, bool streaming)
    {
        try
        {
            return await task.ConfigureAwait(false);
        }
        catch (Exception ex) when (Translate(ex, url, streaming) is { } translated)
        {
            throw translated;
        }
    }

    /// <summary>
    /// The exception to throw instead of <paramref name="ex"/>; null to let it through unchanged. A caller's
    /// cancellation stays an <see cref="OperationCanceledException"/>. With <paramref name="streaming"/>, a broken
    /// connection becomes <see cref="StreamDropException"/> (the transport decides whether to resume).
    /// </summary>
    public Exception? Translate(Exception ex, Uri url, bool streaming)
    {
        if (ex is SluiceException or StreamDropException)
        {
            return null;
        }

        if (_caller.IsCancellationRequested)
        {
            return ex is OperationCanceledException ? null : new OperationCanceledException("The request was cancelled.", ex, _caller);
        }

        if (_total.IsCancellationRequested)
        {
            return new SluiceTimeoutException(
                $"The call took longer than {SluiceClientOptions.Describe(_totalLimit)} ({_totalName}); any answer received is incomplete. Ask for less (e.g. lower MaxOutputTokens), or raise {_totalName}.",
                SluiceTimeoutKind.Total,
                inner: ex);
        }

        if (_watchdog.IsCancellationRequested)
        {
            return _tokenSeen
                ? new SluiceTimeoutException(
                    $"The stream went silent for {SluiceClientOptions.Describe(_options.IdleTimeout)} (IdleTimeout); the answer is incomplete. Retry, or raise IdleTimeout.",
                    SluiceTimeoutKind.Idle,
                    inner: ex)
                : new SluiceTimeoutException(
                    $"No token arrived within {SluiceClientOptions.Describe(_options.FirstTokenTimeout)} (FirstTokenTimeout). The model may be busy: retry, or raise FirstTokenTimeout.",
                    SluiceTimeoutKind.FirstToken,
                    inner: ex);
        }

        if (ex is OperationCanceledException || (ex is HttpRequestException && ex.InnerException is TimeoutException))
        {
            // Nobody of ours cancelled: the handler's connect timeout did.
            return new SluiceTimeoutException(
                $"Connecting to {url.Authority} took longer than {SluiceClientOptions.Describe(_options.ConnectTimeout)} (ConnectTimeout). Check the address and that the server is reachable.",
                SluiceTimeoutKind.Connect,
                inner: ex);
        }

        if (streaming && ex is IOException or HttpRequestException)
        {
            return new StreamDropException(ex);
        }

        return ex switch
        {
            HttpRequestException http => DescribeConnectFailure(http, url),
            IOException => new SluiceConnectionException(
                $"The connection to {url.Authority} broke while reading the answer ({ex.Message}). Retry the request.", inner: ex),
            _ => null,
        };
    }

    public void Dispose()
    {
        _watchdog.Dispose();
        _scope.Dispose();
        _total.Dispose();
    }

    private void Rearm()
    {
        if (!_watchdog.IsCancellationRequested)
        {
            _watchdog.CancelAfter(_options.IdleTimeout);
        }
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) =>
        a == Timeout.InfiniteTimeSpan ? b : b == Timeout.InfiniteTimeSpan ? a : a < b ? a : b;

    private static SluiceException DescribeConnectFailure(HttpRequestException ex, Uri url)
    {
        var authority = url.Authority;
        var socket = ex.InnerException as SocketException;
        var message = ex.HttpRequestError switch
        {
            _ when socket?.SocketErrorCode == SocketError.ConnectionRefused =>
                $"Cannot connect to {authority}: connection refused. Is the server running? (Sluice: 'sluice serve'.) Check SluiceClientOptions.Endpoint.",
            HttpRequestError.NameResolutionError =>
                $"Cannot resolve the host '{url.Host}'. Check SluiceClientOptions.Endpoint.",
            HttpRequestError.SecureConnectionError =>
                $"The TLS handshake with {authority} failed ({ex.Message}). Check http:// versus https:// in SluiceClientOptions.Endpoint.",
            HttpRequestError.ResponseEnded =>
                $"{authority} closed the connection without answering. Check that the endpoint is a Sluice or OpenAI-compatible server.",
            _ => $"Cannot reach {authority} ({ex.Message}). Check SluiceClientOptions.Endpoint and that the server is running.",
        };
        return new SluiceConnectionException(message, inner: ex);
    }
}

/// <summary>The connection broke while reading a stream (internal: resumed, or raised as <see cref="SluiceStreamException"/>).</summary>
internal sealed class StreamDropException(Exception? inner) : Exception("The stream's connection broke.", inner);
