using Sluice.Protocol;
using Sluice.Providers.Timing;

namespace Sluice.Providers.Upstream;

/// <summary>
/// The time limits of one upstream request: first token, idle (the upstream silent while the gateway waits for its next
/// bytes), total. Cancels <see cref="Token"/> when one is exceeded, and turns that into a 504 naming the limit and its
/// config key.
/// </summary>
/// <remarks>
/// The idle limit counts only while a read of the upstream's body is pending (<see cref="ReadStarting"/> to
/// <see cref="ReadEnded"/>): time the gateway spends passing bytes it already has on to a slow client is not the
/// upstream's silence. So the reading loop reads the clock once per read, not per event. The limits are watched
/// by the shared <see cref="DeadlineSweep"/> (no timer of its own: creating, changing and disposing one per call took
/// the timer queue's lock three times and allocated three objects). The first deadline given to the sweep is the
/// nearest limit, or the idle limit counted from the start if that is nearer — so when the answer starts nothing needs
/// rescheduling: at that wake-up the entry answers its real next deadline.
/// </remarks>
internal sealed class UpstreamCall : SweepEntry, IDisposable
{
    private const int NotFired = 0;
    private const int FirstTokenFired = 1;
    private const int IdleFired = 2;
    private const int TotalFired = 3;

    private readonly UpstreamTransport _transport;
    private readonly CancellationToken _client;
    private readonly CancellationTokenSource _cts;
    private readonly DeadlineSweep? _sweep;
    private readonly TimeProvider _time;
    private readonly long _startTimestamp;
    private readonly long _firstTokenTicks;
    private readonly long _idleTicks;
    private readonly long _totalTicks;
    // When the pending read of the body began; 0 while none is pending.
    private long _readingSince;
    private long _answerStartTimestamp;
    private volatile bool _answerStarted;
    private int _fired;

    public UpstreamCall(UpstreamTransport transport, CancellationToken clientCancellation)
    {
        _transport = transport;
        _client = clientCancellation;
        _cts = CancellationTokenSource.CreateLinkedTokenSource(clientCancellation);
        var sweep = transport.Sweep;
        _time = sweep.Time;
        _startTimestamp = _time.GetTimestamp();
        var options = transport.Options;
        _firstTokenTicks = Ticks(options.FirstTokenTimeoutMs);
        _idleTicks = Ticks(options.IdleTimeoutMs);
        _totalTicks = Ticks(options.TotalTimeoutMs);
        if (_firstTokenTicks > 0 || _idleTicks > 0 || _totalTicks > 0)
        {
            _sweep = sweep;
            sweep.Schedule(this, Evaluate(_startTimestamp, out _));
        }
    }

    /// <summary>Cancelled when the client leaves or a time limit is exceeded.</summary>
    public CancellationToken Token => _cts.Token;

    /// <summary>True when <see cref="Token"/> was cancelled by a time limit, not by the client.</summary>
    public bool TimedOut => Volatile.Read(ref _fired) != NotFired && !_client.IsCancellationRequested;

    /// <summary>The first answer event is about to be yielded: from now on the idle limit applies.</summary>
    public void MarkAnswerStarted()
    {
        if (!_answerStarted)
        {
            Volatile.Write(ref _answerStartTimestamp, _time.GetTimestamp());
            _answerStarted = true;
        }
    }

    /// <summary>A read of the upstream's body is about to wait for bytes: from now on its silence counts.</summary>
    public void ReadStarting() => Volatile.Write(ref _readingSince, Math.Max(1, _time.GetTimestamp()));

    /// <summary>The read has returned (bytes, the end, or a failure): silence stops counting until the next read.</summary>
    public void ReadEnded() => Volatile.Write(ref _readingSince, 0);

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
        _sweep?.Cancel(this);
        _cts.Dispose();
    }

    /// <inheritdoc />
    protected internal override long OnDue(long now)
    {
        if (_cts.IsCancellationRequested)
        {
            return long.MaxValue;
        }

        var due = Evaluate(now, out var kind);
        if (kind == NotFired)
        {
            return due;
        }

        Volatile.Write(ref _fired, kind);
        try
        {
            // Callbacks on the thread pool: the sweep's tick serves every call in the process.
            _ = _cts.CancelAsync();
        }
        catch (ObjectDisposedException)
        {
            // The request ended while its deadline passed.
        }

        return long.MaxValue;
    }

    /// <summary>The limit that has passed at <paramref name="now"/> (in <paramref name="kind"/>), or the next time to look.</summary>
    private long Evaluate(long now, out int kind)
    {
        var nearest = long.MaxValue;
        kind = NotFired;
        Consider(_totalTicks, _startTimestamp, TotalFired, ref nearest, ref kind);
        var wake = long.MaxValue;
        var readingSince = Volatile.Read(ref _readingSince);
        if (_answerStarted && readingSince != 0)
        {
            // A read that began before the answer did (the first event's) counts from the answer's start.
            Consider(_idleTicks, Math.Max(readingSince, Volatile.Read(ref _answerStartTimestamp)), IdleFired, ref nearest, ref kind);
        }
        else
        {
            if (!_answerStarted)
            {
                Consider(_firstTokenTicks, _startTimestamp, FirstTokenFired, ref nearest, ref kind);
            }

            // Not a deadline yet: a wake-up no later than the idle limit would fall due if a read (or the answer)
            // started now; one that starts later falls due later, so this wake-up is never late, at worst early.
            var ignored = NotFired;
            Consider(_idleTicks, now, IdleFired, ref wake, ref ignored);
        }

        if (kind != NotFired && now >= nearest)
        {
            return long.MaxValue;
        }

        kind = NotFired;
        return Math.Min(nearest, wake);
    }

    private long Ticks(int limitMs) => limitMs <= 0 ? 0 : limitMs * _time.TimestampFrequency / 1000;

    private static void Consider(long limitTicks, long from, int kind, ref long nearest, ref int nearestKind)
    {
        if (limitTicks <= 0)
        {
            return;
        }

        var deadline = from + limitTicks;
        if (deadline < nearest)
        {
            nearest = deadline;
            nearestKind = kind;
        }
    }
}
