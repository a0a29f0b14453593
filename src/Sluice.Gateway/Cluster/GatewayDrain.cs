using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Protocol;

namespace Sluice.Gateway.Cluster;

/// <summary>
/// The graceful stop of one gateway instance. When the host starts stopping (SIGTERM, Ctrl+C) the instance is
/// <em>draining</em>: <c>/health/ready</c> answers 503 so a load balancer sends new work elsewhere, new calls are
/// refused with a retryable 503, and the answers already running get <see cref="StreamingOptions.ShutdownGraceSeconds"/>
/// to finish. Those still running then end with an error frame that says the gateway is shutting down (not that the
/// client left), their usage recorded like any other answer's.
/// </summary>
/// <remarks>
/// The wait runs in <see cref="IHostedLifecycleService.StoppingAsync"/>, which the host calls before any hosted
/// service's <c>StopAsync</c> — Kestrel's included — so the instance keeps answering (readiness, resumes, the running
/// streams) during the grace. The relay counts the answers it runs (<see cref="Enter"/>/<see cref="Exit"/>: two
/// interlocked operations per call) and links their generation to <see cref="Deadline"/>.
/// </remarks>
internal sealed partial class GatewayDrain : IHostedLifecycleService, IDisposable
{
    private readonly TimeSpan _grace;
    private readonly ILogger<GatewayDrain> _logger;
    private readonly CancellationTokenSource _deadline = new();
    private readonly TaskCompletionSource _idle = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly IHostApplicationLifetime? _lifetime;
    private CancellationTokenRegistration _stopping;
    private ITimer? _timer;
    private int _inFlight;
    private int _draining;
    private int _atDrainStart;
    private int _stopped;

    public GatewayDrain(GatewayOptions options, ILogger<GatewayDrain> logger, IHostApplicationLifetime? lifetime = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _grace = TimeSpan.FromSeconds(Math.Max(0, options.Streaming.ShutdownGraceSeconds));
        _logger = logger;
        _lifetime = lifetime;
    }

    /// <summary>The error a running answer ends with when the grace has passed.</summary>
    public static ErrorInfo ShuttingDown { get; } = new(
        "The gateway instance serving this answer is shutting down and its grace period for running answers has passed; the answer is incomplete. " +
        "Send the request again: the load balancer sends it to another instance.",
        ErrorTypes.Server, null, "gateway_shutting_down");

    /// <summary>The refusal of a new call on a draining instance (503, retry at once).</summary>
    public static ChatException Refusal() => new(
        503,
        new ErrorInfo(
            "This gateway instance is shutting down and takes no new requests. Send the request again: the load balancer sends it to another instance.",
            ErrorTypes.Server, null, "gateway_shutting_down"),
        TimeSpan.FromSeconds(1));

    /// <summary>True from the moment the instance starts stopping: refuse new calls, report not ready.</summary>
    public bool IsDraining => Volatile.Read(ref _draining) != 0;

    /// <summary>Cancelled when the grace has passed: every running answer stops, failing with <see cref="ShuttingDown"/>.</summary>
    public CancellationToken Deadline => _deadline.Token;

    /// <summary>Answers running now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>The grace period given to running answers.</summary>
    public TimeSpan Grace => _grace;

    /// <summary>An answer starts (the relay).</summary>
    public void Enter() => Interlocked.Increment(ref _inFlight);

    /// <summary>An answer has ended and its usage is reported (the relay).</summary>
    public void Exit()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && IsDraining)
        {
            _idle.TrySetResult();
        }
    }

    /// <summary>Starts draining (idempotent); with <paramref name="immediately"/> running answers end now.</summary>
    public void Begin(bool immediately = false)
    {
        if (Interlocked.Exchange(ref _draining, 1) == 0)
        {
            _atDrainStart = InFlight;
            LogDraining(_logger, _atDrainStart, immediately ? 0 : _grace.TotalSeconds);
            if (InFlight == 0)
            {
                _idle.TrySetResult();
            }

            if (!immediately)
            {
                _timer = TimeProvider.System.CreateTimer(static s => ((GatewayDrain)s!).EndGrace(), this, _grace, Timeout.InfiniteTimeSpan);
            }
        }

        if (immediately)
        {
            EndGrace();
        }
    }

    Task IHostedLifecycleService.StartingAsync(CancellationToken cancellationToken)
    {
        // SIGTERM reaches the application lifetime before the host's stop sequence: draining starts right then.
        if (_lifetime is not null)
        {
            _stopping = _lifetime.ApplicationStopping.Register(static s => ((GatewayDrain)s!).Begin(), this);
        }

        return Task.CompletedTask;
    }

    Task IHostedService.StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    Task IHostedLifecycleService.StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    async Task IHostedLifecycleService.StoppingAsync(CancellationToken cancellationToken)
    {
        // Once per process: `sluice serve` stops the host on SIGTERM, then disposes the gateway, which stops it again;
        // a second pass would log a second "drained" line claiming answers were cut at the deadline.
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }

        Begin();
        var ended = false;
        try
        {
            // The host's shutdown timeout bounds the whole wait (it is set above the grace).
            await _idle.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            ended = true;
        }

        var endedAtDeadline = _deadline.IsCancellationRequested;
        if (ended || endedAtDeadline)
        {
            // The answers cut at the deadline are finishing their error frames and usage records.
            EndGrace();
            try
            {
                await _idle.Task.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
            }
            catch (TimeoutException)
            {
                // Kestrel's own stop aborts whatever is left.
            }
        }

        LogDrained(_logger, _atDrainStart, endedAtDeadline || ended, InFlight);
    }

    Task IHostedService.StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    Task IHostedLifecycleService.StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        _stopping.Dispose();
        _timer?.Dispose();
        _deadline.Dispose();
    }

    private void EndGrace()
    {
        try
        {
            if (!_deadline.IsCancellationRequested && InFlight > 0)
            {
                LogGraceOver(_logger, InFlight);
            }

            _deadline.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Stopped already.
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Shutting down: draining ({InFlight} answer(s) running get {GraceSeconds} s to finish; new requests get 503 gateway_shutting_down, /health/ready answers 503)")]
    private static partial void LogDraining(ILogger logger, int inFlight, double graceSeconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Shutdown grace over: ending {InFlight} running answer(s) with a gateway_shutting_down error frame (usage recorded)")]
    private static partial void LogGraceOver(ILogger logger, int inFlight);

    [LoggerMessage(Level = LogLevel.Information, Message = "Shutdown: drained ({Running} answer(s) were running; cut at the deadline: {Cut}; still running: {Left})")]
    private static partial void LogDrained(ILogger logger, int running, bool cut, int left);
}
