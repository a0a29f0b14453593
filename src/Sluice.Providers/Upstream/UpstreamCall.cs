using System.Diagnostics;
using Sluice.Protocol;

namespace Sluice.Providers.Upstream;

/// <summary>
/// The time limits of one upstream request: first token, idle between upstream events, total. Cancels
/// <see cref="Token"/> when one is exceeded, and turns that into a 504 naming the limit and its config key.
/// </summary>
/// <remarks>
/// Per upstream event the reading loop only stores a timestamp (<see cref="OnUpstreamEvent"/>); the single
/// timer checks it when it fires and re-arms itself for the remaining time, so the hot path never touches
/// the timer queue. The first arming also counts the idle limit from the start, so when the answer starts the timer
/// is usually due before the idle deadline already and needs no change (one timer-queue operation fewer per call);
/// firing early only re-arms.
/// </remarks>
internal sealed class UpstreamCall : IDisposable
{
    private const int NotFired = 0;
    private const int FirstTokenFired = 1;
    private const int IdleFired = 2;
    private const int TotalFired = 3;

    private readonly UpstreamTransport _transport;
    private readonly CancellationToken _client;
    private readonly CancellationTokenSource _cts;
    private readonly Timer? _timer;
    private readonly long _startTimestamp;
    private long _lastEventTimestamp;
    private long _dueTimestamp = long.MaxValue;
    private volatile bool _answerStarted;
    private int _fired;

    public UpstreamCall(UpstreamTransport transport, CancellationToken clientCancellation)
    {
        _transport = transport;
        _client = clientCancellation;
        _cts = CancellationTokenSource.CreateLinkedTokenSource(clientCancellation);
        _startTimestamp = Stopwatch.GetTimestamp();
        _lastEventTimestamp = _startTimestamp;
        var options = transport.Options;
        if (options.FirstTokenTimeoutMs > 0 || options.IdleTimeoutMs > 0 || options.TotalTimeoutMs > 0)
        {
            _timer = new Timer(static state => ((UpstreamCall)state!).OnTimer(), this, Timeout.Infinite, Timeout.Infinite);
            Rearm(Stopwatch.GetTimestamp());
        }
    }

    /// <summary>Cancelled when the client leaves or a time limit is exceeded.</summary>
    public CancellationToken Token => _cts.Token;

    /// <summary>True when <see cref="Token"/> was cancelled by a time limit, not by the client.</summary>
    public bool TimedOut => Volatile.Read(ref _fired) != NotFired && !_client.IsCancellationRequested;

    /// <summary>The first answer event is about to be yielded: from now on the idle limit applies.</summary>
    public void MarkAnswerStarted()
    {
        if (_answerStarted)
        {
            return;
        }

        var now = Stopwatch.GetTimestamp();
        Volatile.Write(ref _lastEventTimestamp, now);
        _answerStarted = true;
        var idle = _transport.Options.IdleTimeoutMs;
        if (idle > 0 && Volatile.Read(ref _dueTimestamp) > now + (idle * Stopwatch.Frequency / 1000))
        {
            // The timer would fire after the idle deadline: bring it forward.
            Rearm(now);
        }
    }

    /// <summary>An upstream event arrived (resets the idle limit once the answer has started).</summary>
    public void OnUpstreamEvent() => Volatile.Write(ref _lastEventTimestamp, Stopwatch.GetTimestamp());

    /// <summary>The 504 for the limit that was exceeded.</summary>
    public ChatException TimeoutError()
    {
        var options = _transport.Options;
        var (limit, key, what) = Volatile.Read(ref _fired) switch
        {
            FirstTokenFired => (options.FirstTokenTimeoutMs, nameof(ModelOptions.FirstTokenTimeoutMs), "sent no answer within"),
            IdleFired => (options.IdleTimeoutMs, nameof(ModelOptions.IdleTimeoutMs), "went silent mid-answer for more than"),
            _ => (options.TotalTimeoutMs, nameof(ModelOptions.TotalTimeoutMs), "did not finish within"),
        };
        return new ChatException(504, new ErrorInfo(
            $"The {_transport.Describe()} {what} {limit} ms ({key} of model \"{options.Name}\"). "
            + $"Retry, use another model, or raise {key} in that model's configuration if the upstream is just slow.",
            ErrorTypes.Timeout, null, "upstream_timeout"));
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _cts.Dispose();
    }

    private void OnTimer()
    {
        try
        {
            Rearm(Stopwatch.GetTimestamp());
        }
        catch (ObjectDisposedException)
        {
            // The request ended while the timer fired.
        }
    }

    /// <summary>Cancels if a deadline has passed; otherwise schedules the timer for the nearest one.</summary>
    private void Rearm(long now)
    {
        if (_timer is null || _cts.IsCancellationRequested)
        {
            return;
        }

        var options = _transport.Options;
        var nearest = long.MaxValue;
        var kind = NotFired;
        Consider(options.TotalTimeoutMs, _startTimestamp, TotalFired, ref nearest, ref kind);
        var wake = long.MaxValue;
        if (_answerStarted)
        {
            Consider(options.IdleTimeoutMs, Volatile.Read(ref _lastEventTimestamp), IdleFired, ref nearest, ref kind);
        }
        else
        {
            Consider(options.FirstTokenTimeoutMs, _startTimestamp, FirstTokenFired, ref nearest, ref kind);

            // Not a deadline yet: a wake-up no later than the idle limit would fall due if the answer started now.
            var ignored = NotFired;
            Consider(options.IdleTimeoutMs, now, IdleFired, ref wake, ref ignored);
        }

        if (kind == NotFired && wake == long.MaxValue)
        {
            Volatile.Write(ref _dueTimestamp, long.MaxValue);
            _timer.Change(Timeout.Infinite, Timeout.Infinite);
            return;
        }

        if (kind != NotFired && now >= nearest)
        {
            Volatile.Write(ref _fired, kind);
            _cts.Cancel();
            return;
        }

        var due = Math.Min(nearest, wake);
        Volatile.Write(ref _dueTimestamp, due);
        var dueMs = (long)Math.Ceiling(Stopwatch.GetElapsedTime(now, due).TotalMilliseconds);
        _timer.Change(Math.Max(1, dueMs), Timeout.Infinite);
    }

    private static void Consider(int limitMs, long from, int kind, ref long nearest, ref int nearestKind)
    {
        if (limitMs <= 0)
        {
            return;
        }

        var deadline = from + (limitMs * Stopwatch.Frequency / 1000);
        if (deadline < nearest)
        {
            nearest = deadline;
            nearestKind = kind;
        }
    }
}
