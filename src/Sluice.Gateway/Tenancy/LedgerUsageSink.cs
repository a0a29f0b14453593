using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Storage;

namespace Sluice.Gateway.Tenancy;

/// <summary>
/// The persistent usage ledger behind the <see cref="IUsageSink"/> hook: every call billed to a team becomes one
/// <see cref="UsageEntry"/>. <see cref="Record"/> only enqueues (it runs after the response's last byte, so it
/// never delays a token); a background writer drains the queue and inserts in batches.
/// </summary>
/// <remarks>
/// Nothing is dropped — this is billing data. The queue is bounded (<see cref="TenancyOptions.UsageQueueCapacity"/>);
/// when it is full the record waits for room on its own task (one per finishing request, so memory stays bounded
/// by the number of requests in flight) and the condition is logged. Failed inserts are retried with backoff.
/// Disposing (gateway shutdown, after the server stopped accepting requests) writes everything still queued.
/// After each batch the completion tokens are added to the tokens-per-minute windows of limited keys and teams.
/// </remarks>
internal sealed partial class LedgerUsageSink : IUsageSink, IAsyncDisposable
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);

    private readonly TenancyRuntime _runtime;
    private readonly TenantDirectory _directory;
    private readonly ILogger<LedgerUsageSink> _logger;
    private readonly Channel<UsageEntry> _queue;
    private readonly int _batchSize;
    private readonly TimeSpan _flushDelay;
    private readonly ConcurrentDictionary<Task, byte> _waiting = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _writer;
    private long _lastFullWarning;
    private long _written;
    private long _batches;
    private long _waitedForRoom;
    private int _disposed;

    public LedgerUsageSink(TenancyRuntime runtime, TenantDirectory directory, GatewayOptions options, ILogger<LedgerUsageSink> logger)
    {
        _runtime = runtime;
        _directory = directory;
        _logger = logger;
        _batchSize = options.Tenancy.UsageBatchSize;
        _flushDelay = TimeSpan.FromMilliseconds(options.Tenancy.UsageFlushDelayMs);
        _queue = Channel.CreateBounded<UsageEntry>(new BoundedChannelOptions(options.Tenancy.UsageQueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
        });
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>Usage records written to the store so far.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Transactions the writer has committed (each holds one batch of records).</summary>
    public long BatchesWritten => Interlocked.Read(ref _batches);

    /// <summary>Records that found the queue full and waited for room (never dropped).</summary>
    public long WaitedForRoom => Interlocked.Read(ref _waitedForRoom);

    /// <summary>Usage records waiting to be written.</summary>
    public int Queued => _queue.Reader.Count + _waiting.Count + Volatile.Read(ref _inFlight);

    /// <inheritdoc />
    public void Record(UsageRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (record.TeamId is null)
        {
            return; // Open mode or the master key: nobody to bill.
        }

        var entry = new UsageEntry
        {
            TeamId = record.TeamId,
            KeyId = record.KeyId,
            JobId = record.JobId,
            RequestId = record.RequestId,
            Model = record.Model.Length == 0 ? "(default)" : record.Model,
            PromptTokens = record.PromptTokens,
            CompletionTokens = record.CompletionTokens,
            TimeToFirstToken = record.TimeToFirstToken,
            Duration = record.Duration,
            Status = record.Status switch
            {
                UsageStatus.Completed => CallStatus.Completed,
                UsageStatus.Failed => CallStatus.Failed,
                _ => CallStatus.Abandoned,
            },
            CreatedAt = _runtime.Time.GetUtcNow(),
        };

        if (_queue.Writer.TryWrite(entry))
        {
            return;
        }

        // Full: wait for room instead of dropping a billing record.
        Interlocked.Increment(ref _waitedForRoom);
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref _lastFullWarning);
        if (now - last > 10_000 && Interlocked.CompareExchange(ref _lastFullWarning, now, last) == last)
        {
            LogQueueFull(_logger, _queue.Reader.Count);
        }

        var waiting = WaitForRoomAsync(entry);
        if (!waiting.IsCompleted)
        {
            _waiting.TryAdd(waiting, 0);
            waiting.ContinueWith(t => _waiting.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Requests have finished by now; records still waiting for room go in before the queue closes.
        await Task.WhenAll(_waiting.Keys).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _queue.Writer.TryComplete();
        using (var patience = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            await _writer.WaitAsync(patience.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        // Still running after 30 s means the store is unreachable: stop retrying.
        await _stopping.CancelAsync();
        await _writer.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stopping.Dispose();
    }

    private async Task WaitForRoomAsync(UsageEntry entry)
    {
        try
        {
            await _queue.Writer.WriteAsync(entry, CancellationToken.None);
        }
        catch (ChannelClosedException)
        {
            LogLost(_logger, 1, entry.TeamId);
        }
    }

    private int _inFlight;

    private async Task WriteLoopAsync()
    {
        var batch = new List<UsageEntry>(_batchSize);
        while (await _queue.Reader.WaitToReadAsync(CancellationToken.None))
        {
            // One transaction per request is most of the ledger's cost under load: let a batch gather first (records
            // stay counted as queued meanwhile). Shutdown does not wait: the queue is complete by then.
            if (_flushDelay > TimeSpan.Zero && _queue.Reader.Count < _batchSize && !_queue.Reader.Completion.IsCompleted)
            {
                await Task.Delay(_flushDelay, CancellationToken.None);
            }

            // Counted as queued until written: "nothing queued" then means "everything is in the database".
            Interlocked.Increment(ref _inFlight);
            while (batch.Count < _batchSize && _queue.Reader.TryRead(out var entry))
            {
                batch.Add(entry);
            }

            try
            {
                await WriteBatchAsync(batch);
            }
            finally
            {
                batch.Clear();
                Interlocked.Decrement(ref _inFlight);
            }
        }
    }

    private async Task WriteBatchAsync(List<UsageEntry> batch)
    {
        IUsageStore store = _runtime.Store;
        var delay = TimeSpan.FromMilliseconds(100);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await store.AppendUsageBatchAsync(batch, CancellationToken.None);
                Interlocked.Add(ref _written, batch.Count);
                Interlocked.Increment(ref _batches);
                break;
            }
            catch (StoreNotFoundException)
            {
                // A record names a team that does not exist: write the others one by one, report the odd one.
                await WriteOneByOneAsync(store, batch);
                break;
            }
#pragma warning disable CA1031 // The writer must survive database hiccups; every failure is logged and retried.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                if (_stopping.IsCancellationRequested)
                {
                    LogLost(_logger, batch.Count, batch[0].TeamId);
                    return;
                }

                LogWriteFailed(_logger, ex, batch.Count, attempt, delay.TotalMilliseconds);
                await Task.Delay(delay, _stopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5_000));
            }
        }

        await CountCompletionTokensAsync(_runtime.Store, batch);
    }

    private async Task WriteOneByOneAsync(IUsageStore store, List<UsageEntry> batch)
    {
        foreach (var entry in batch)
        {
            try
            {
                await store.AppendUsageAsync(entry, CancellationToken.None);
                Interlocked.Increment(ref _written);
            }
#pragma warning disable CA1031 // One bad record must not stop the ledger.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogRecordRejected(_logger, ex, entry.TeamId, entry.RequestId);
            }
        }
    }

    /// <summary>Adds completion tokens to the tokens-per-minute windows of limited keys and teams (prompt tokens were counted at admission).</summary>
    private async Task CountCompletionTokensAsync(IRateLimitStore store, List<UsageEntry> batch)
    {
        var totals = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var entry in batch)
        {
            if (entry.CompletionTokens <= 0)
            {
                continue;
            }

            if (entry.KeyId is { } keyId && _directory.PeekKey(keyId)?.Limits.TokensPerMinute is not null)
            {
                totals["key:" + keyId + ":tpm"] = totals.GetValueOrDefault("key:" + keyId + ":tpm") + entry.CompletionTokens;
            }

            if (_directory.PeekTeam(entry.TeamId)?.Limits.TokensPerMinute is not null)
            {
                totals["team:" + entry.TeamId + ":tpm"] = totals.GetValueOrDefault("team:" + entry.TeamId + ":tpm") + entry.CompletionTokens;
            }
        }

        foreach (var (scope, tokens) in totals)
        {
            try
            {
                // Already spent: counted whatever the limit, so the next prompts see the window's true use.
                await store.TryConsumeAsync(scope, Window, tokens, long.MaxValue, CancellationToken.None);
            }
#pragma warning disable CA1031 // Limit bookkeeping must not stop the ledger.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogTokenCountFailed(_logger, ex, scope);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage queue is full ({Count} records waiting for the database); finishing requests now wait for room. Check the store's health, or raise Tenancy:UsageQueueCapacity.")]
    private static partial void LogQueueFull(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Writing {Count} usage records failed (attempt {Attempt}); retrying in {DelayMs:F0} ms")]
    private static partial void LogWriteFailed(ILogger logger, Exception ex, int count, int attempt, double delayMs);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Count} usage records (team {TeamId}, …) could not be written before shutdown and are lost")]
    private static partial void LogLost(ILogger logger, int count, string teamId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Usage record for team {TeamId} (request {RequestId}) was rejected by the store")]
    private static partial void LogRecordRejected(ILogger logger, Exception ex, string teamId, string? requestId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Counting completion tokens for {Scope} failed")]
    private static partial void LogTokenCountFailed(ILogger logger, Exception ex, string scope);
}
