using System.Security.Cryptography;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Tenancy;
using Sluice.Storage;

namespace Sluice.Gateway.Cluster;

/// <summary>
/// This gateway instance among the others sharing its store. On a shared store (<see cref="IClusterStore"/>,
/// PostgreSQL) it registers the instance with the URL the others reach it at, keeps a heartbeat, ends every stream id
/// with the instance id (so any instance can forward a resume or cancel to the owner), and listens for change
/// notifications to drop cached keys, teams and model-group misses within moments of a change anywhere. On a store
/// of its own (SQLite) it does nothing: stream ids and the hot path are as they were.
/// </summary>
internal sealed partial class ClusterNode(
    TenancyRuntime runtime, TenantDirectory directory, ModelGroupRegistry groups, GatewayOptions options, ILogger<ClusterNode> logger)
    : IHostedService, IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private Task _listening = Task.CompletedTask;
    private Task _heartbeat = Task.CompletedTask;
    private volatile bool _joined;

    /// <summary>This instance's id: 8 hex digits, new at every start.</summary>
    public string InstanceId { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));

    /// <summary>What ends this instance's stream ids: <c>_</c> and the instance id in a cluster, empty otherwise.</summary>
    public string StreamIdSuffix { get; private set; } = string.Empty;

    /// <summary>The shared store's cluster role, or null when this instance is alone.</summary>
    public IClusterStore? Store { get; private set; }

    /// <summary>Where the other instances reach this one (set once it listens), or null.</summary>
    public Uri? InternalUrl { get; private set; }

    /// <summary>How often the heartbeat is written; an instance silent for <see cref="StaleAfter"/> is taken for dead.</summary>
    public static TimeSpan HeartbeatInterval { get; } = TimeSpan.FromSeconds(2);

    /// <summary>An instance whose heartbeat is older than this stopped without saying so (killed, crashed, cut off).</summary>
    public static TimeSpan StaleAfter { get; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The instance that owns <paramref name="streamId"/> (<c>strm_&lt;32 hex&gt;_&lt;instance&gt;</c>), or null for an
    /// id without one (a single instance's, or not a stream id).
    /// </summary>
    public static string? OwnerOf(string streamId)
    {
        ArgumentNullException.ThrowIfNull(streamId);
        const int Prefix = 5 + 32;
        return streamId.Length == Prefix + 9 && streamId.StartsWith("strm_", StringComparison.Ordinal) && streamId[Prefix] == '_'
            ? streamId[(Prefix + 1)..]
            : null;
    }

    /// <summary>True when <paramref name="instanceId"/> is another instance of this cluster (a request for it is forwarded).</summary>
    public bool IsOther(string? instanceId) => Store is not null && instanceId is not null && !string.Equals(instanceId, InstanceId, StringComparison.Ordinal);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (runtime.Store is not IClusterStore store)
        {
            return Task.CompletedTask;
        }

        Store = store;
        StreamIdSuffix = "_" + InstanceId;
        _listening = ListenAsync(store, _stop.Token);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Registers this instance, listening at <paramref name="boundAddress"/>, in the shared directory (no-op when alone).
    /// <c>Cluster:InternalUrl</c> wins; otherwise the bound address, with the machine's host name when it listens on
    /// every interface.
    /// </summary>
    public async Task JoinAsync(Uri boundAddress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(boundAddress);
        if (Store is not { } store)
        {
            return;
        }

        InternalUrl = InternalUrlFor(options, boundAddress);
        await store.RegisterInstanceAsync(InstanceId, InternalUrl, cancellationToken);
        _joined = true;
        _heartbeat = HeartbeatAsync(store, _stop.Token);
        LogJoined(logger, InstanceId, InternalUrl);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // The hosted services stop after the drain, so the running streams were served (and forwarded to) until now.
        await _stop.CancelAsync();
        await Task.WhenAll(_listening, _heartbeat).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_joined && Store is { } store)
        {
            _joined = false;
            try
            {
                await store.RemoveInstanceAsync(InstanceId, cancellationToken);
            }
#pragma warning disable CA1031 // The row goes stale by itself; the stop goes on.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogLeaveFailed(logger, ex.Message);
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        _stop.Dispose();
        return ValueTask.CompletedTask;
    }

    internal static Uri InternalUrlFor(GatewayOptions options, Uri boundAddress)
    {
        if (!string.IsNullOrWhiteSpace(options.Cluster.InternalUrl))
        {
            return new Uri(options.Cluster.InternalUrl.TrimEnd('/') + "/");
        }

        var host = options.Host is "*" or "+" or "0.0.0.0" or "::" or "[::]" ? System.Net.Dns.GetHostName() : boundAddress.Host;
        return new UriBuilder(boundAddress) { Host = host }.Uri;
    }

    /// <summary>Drops what a change made stale, here and now.</summary>
    internal void Apply(StoreChange change)
    {
        switch (change.Kind)
        {
            case "key":
                directory.ForgetKey(change.Id);
                break;
            case "team":
                directory.ForgetTeam(change.Id);
                break;
            case "key-created":
                directory.ForgetUnknownKeys();
                break;
            case "group":
                groups.ForgetMiss(change.Id);
                break;
        }
    }

    private async Task ListenAsync(IClusterStore store, CancellationToken cancellationToken)
    {
        var delay = TimeSpan.FromMilliseconds(200);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await store.ListenAsync(Apply, () =>
                {
                    // Whatever changed while nobody listened was not heard: start from the database again.
                    directory.ForgetAll();
                    groups.ForgetMisses();
                    delay = TimeSpan.FromMilliseconds(200);
                }, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // The listener must come back whatever broke it; until then the cache time bounds staleness.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogListenFailed(logger, ex.GetType().Name, ex.Message, options.Tenancy.KeyCacheSeconds, delay.TotalSeconds);
            }

            try
            {
                await Task.Delay(delay, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
        }
    }

    private async Task HeartbeatAsync(IClusterStore store, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(HeartbeatInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                try
                {
                    if (!await store.HeartbeatAsync(InstanceId, cancellationToken))
                    {
                        await store.RegisterInstanceAsync(InstanceId, InternalUrl!, cancellationToken);
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogHeartbeatFailed(logger, ex.GetType().Name, ex.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster: instance {InstanceId} registered at {InternalUrl} (other instances forward resumes and cancels of its streams there)")]
    private static partial void LogJoined(ILogger logger, string instanceId, Uri internalUrl);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: change notifications lost ({Type}: {Message}); cached keys and teams fall back to Tenancy:KeyCacheSeconds ({Seconds} s) until they are back. Retrying in {Delay} s; check the database connection.")]
    private static partial void LogListenFailed(ILogger logger, string type, string message, double seconds, double delay);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: heartbeat failed ({Type}: {Message}); after 10 s other instances take this one for stopped and refuse to forward to it. Check the database connection.")]
    private static partial void LogHeartbeatFailed(ILogger logger, string type, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: could not remove this instance from the directory ({Message}); it goes stale by itself.")]
    private static partial void LogLeaveFailed(ILogger logger, string message);
}
