using System.Globalization;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Storage;

namespace Sluice.Gateway.Tenancy;

/// <summary>
/// Decides whether a model call billed to a team may run: model access (403), credits (403
/// <c>insufficient_credits</c>) and the key's and team's limits (429 with <c>Retry-After</c> and
/// <c>x-ratelimit-*</c> headers).
/// </summary>
/// <remarks>
/// Access and credits are checked against the cached key and team (<see cref="TenantDirectory"/>): no database
/// read. Limits are counted in the shared store, so they hold across every gateway process on one database:
/// <list type="bullet">
/// <item>Requests per minute: one atomic counter per key (and per team) per one-minute window aligned to the
/// clock. Within a window at most the limit is admitted across all processes (no drift); as with any fixed
/// window, a burst at the end of one window and the start of the next can admit up to twice the limit within
/// 60 seconds. A request refused by the team limit still counts against its key's window (never the reverse
/// over-admission).</item>
/// <item>Tokens per minute: the prompt's tokens are counted before the call and refused when they do not fit;
/// the completion's tokens are added after the call by the usage writer. A call admitted near the limit can
/// therefore overshoot it by its own completion (and concurrent calls by theirs), and completions finishing
/// after a window boundary count in the next window.</item>
/// <item>Concurrent streams: leases in the store, renewed while a call runs; a process that dies holds its
/// slots until they lapse (<see cref="TenancyOptions.StreamLeaseSeconds"/>).</item>
/// </list>
/// These checks cost one store round trip per configured limit; calls without limits cost none.
/// </remarks>
internal sealed partial class CallAdmission(TenancyRuntime runtime, TenantDirectory directory, GatewayOptions options, ILogger<CallAdmission> logger)
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    private readonly TimeSpan _leaseDuration = TimeSpan.FromSeconds(options.Tenancy.StreamLeaseSeconds);

    /// <summary>True when <paramref name="key"/> (of <paramref name="team"/>) may call <paramref name="model"/>.</summary>
    public static bool MayUse(VirtualKey key, Team team, string model)
    {
        if (team.ModelGroups.Count > 0 && !team.ModelGroups.Contains(model, StringComparer.Ordinal))
        {
            return false;
        }

        return (key.AllowedModels.Count == 0 && key.AllowedModelGroups.Count == 0)
            || key.AllowedModels.Contains(model, StringComparer.Ordinal)
            || key.AllowedModelGroups.Contains(model, StringComparer.Ordinal);
    }

    /// <summary>
    /// Admits <paramref name="call"/> (its model resolved, its billing team set): sets its owner, its lease (dispose it
    /// when the call ends: it frees the concurrent-stream slots) and the rate-limit facts — or returns the 401/403/429
    /// to answer, with the facts that explain it. A call billed to no team (open mode, the master key outside a job) is
    /// admitted as it is.
    /// </summary>
    public ValueTask<ChatException?> AdmitAsync(ChatCall call, CancellationToken cancellationToken) =>
        AdmitAsync(call, countOnly: false, cancellationToken);

    /// <summary>
    /// Admits a token count (Anthropic's <c>count_tokens</c>), which generates nothing and costs no credits: model access
    /// and the requests-per-minute limits only (it is a request, and may be one to the provider) — not credits, tokens per
    /// minute or a concurrent-stream slot.
    /// </summary>
    public ValueTask<ChatException?> AdmitCountAsync(ChatCall call, CancellationToken cancellationToken) =>
        AdmitAsync(call, countOnly: true, cancellationToken);

    private async ValueTask<ChatException?> AdmitAsync(ChatCall call, bool countOnly, CancellationToken cancellationToken)
    {
        if (call.BillingTeamId is not { } teamId)
        {
            return null;
        }

        try
        {
            call.Lease = await AdmitCoreAsync(call, teamId, countOnly, cancellationToken);
            call.Owner = new UsageOwner(teamId, call.Caller.Key?.Id, call.JobId);
            return null;
        }
        catch (ChatException refusal)
        {
            return refusal;
        }
        catch (Exception ex) when (SluiceErrors.IsStoreFailure(ex))
        {
            return SluiceErrors.StoreUnavailable(ex);
        }
    }

    // A ValueTask, and nothing allocated before it is known that a limit applies: most teams and keys have none, and
    // then admission completes at once without a task, a scope list or a facts list.
    private async ValueTask<CallLease> AdmitCoreAsync(ChatCall call, string teamId, bool countOnly, CancellationToken cancellationToken)
    {
        var (caller, model, request) = (call.Caller, call.Model.Name, call.Request);
        var team = await directory.GetTeamAsync(teamId, cancellationToken) ?? throw SluiceErrors.NotFound("team", teamId);
        if (caller.Key is { } key && !MayUse(key, team, model))
        {
            throw SluiceErrors.ModelNotAllowed(model);
        }

        if (team.CreditsRemaining < 1 && !countOnly)
        {
            throw SluiceErrors.InsufficientCredits(teamId, team.CreditsRemaining);
        }

        var keyLimited = caller.Key is { } k && k.Limits != RateLimits.None;
        if (!keyLimited && team.Limits == RateLimits.None)
        {
            return CallLease.None;
        }

        var scopes = new List<(string Scope, RateLimits Limits)>(2);
        if (keyLimited)
        {
            scopes.Add(("key:" + caller.Key!.Id, caller.Key.Limits));
        }

        if (team.Limits != RateLimits.None)
        {
            scopes.Add(("team:" + team.Id, team.Limits));
        }

        // Set before any refusal, so a 429 carries the facts that explain it.
        var facts = new List<KeyValuePair<string, string>>(6);
        call.RateLimitFacts = facts;

        IRateLimitStore store = runtime.Store;
        RateLimitDecision? tightest = null;
        foreach (var (scope, limits) in scopes)
        {
            if (limits.RequestsPerMinute is { } rpm)
            {
                var decision = await store.TryConsumeAsync(scope + ":rpm", Window, 1, rpm, cancellationToken);
                tightest = Tighter(tightest, decision);
                if (!decision.Allowed)
                {
                    AddFacts(facts, "requests", rpm, decision);
                    throw RateLimited(decision, $"{Describe(scope)} allows {rpm} requests per minute");
                }
            }
        }

        if (tightest is { } requests)
        {
            AddFacts(facts, "requests", requests.Used + requests.Remaining, requests);
        }

        if (countOnly)
        {
            return CallLease.None;
        }

        var promptTokens = Math.Max(1, request.PromptTokenEstimate ?? TokenCounter.CountPrompt(request.Messages));
        tightest = null;
        foreach (var (scope, limits) in scopes)
        {
            if (limits.TokensPerMinute is { } tpm)
            {
                var decision = await store.TryConsumeAsync(scope + ":tpm", Window, promptTokens, tpm, cancellationToken);
                tightest = Tighter(tightest, decision);
                if (!decision.Allowed)
                {
                    AddFacts(facts, "tokens", tpm, decision);
                    throw RateLimited(decision, $"{Describe(scope)} allows {tpm} tokens per minute and this prompt has {promptTokens}");
                }
            }
        }

        if (tightest is { } tokens)
        {
            AddFacts(facts, "tokens", tokens.Used + tokens.Remaining, tokens);
        }

        var leases = new List<string>();
        foreach (var (scope, limits) in scopes)
        {
            if (limits.ConcurrentStreams is not { } streams)
            {
                continue;
            }

            var lease = await store.AcquireConcurrencyAsync(scope + ":streams", streams, _leaseDuration, cancellationToken);
            if (!lease.Acquired)
            {
                await ReleaseAsync(store, leases, logger);
                throw new ChatException(
                    429,
                    new ErrorInfo(
                        $"Too many calls at once: {Describe(scope)} allows {streams} concurrent requests. Wait for one to finish and retry.",
                        ErrorTypes.RateLimit, null, "concurrency_limit_exceeded"),
                    TimeSpan.FromSeconds(1));
            }

            leases.Add(lease.LeaseId!);
        }

        return leases.Count == 0 ? CallLease.None : new CallLease(store, leases, _leaseDuration, logger);
    }

    private static RateLimitDecision Tighter(RateLimitDecision? current, RateLimitDecision next) =>
        current is null || next.Remaining < current.Remaining ? next : current;

    private static string Describe(string scope) => scope.StartsWith("key:", StringComparison.Ordinal) ? "this API key" : "this team";

    private ChatException RateLimited(RateLimitDecision decision, string what)
    {
        var wait = decision.RetryAfter(runtime.Time.GetUtcNow());
        return new ChatException(
            429,
            new ErrorInfo(
                $"Rate limit reached: {what}. Retry after {Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds))} s (see Retry-After).",
                ErrorTypes.RateLimit, null, "rate_limit_exceeded"),
            wait < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : wait);
    }

    /// <summary>The state of one limit as data (<c>x-ratelimit-*</c> names); only HTTP turns it into headers.</summary>
    private void AddFacts(List<KeyValuePair<string, string>> facts, string what, long limit, RateLimitDecision decision)
    {
        var reset = Math.Max(0, Math.Ceiling(decision.RetryAfter(runtime.Time.GetUtcNow()).TotalSeconds));
        facts.RemoveAll(f => f.Key.EndsWith("-" + what, StringComparison.Ordinal));
        facts.Add(new("x-ratelimit-limit-" + what, limit.ToString(CultureInfo.InvariantCulture)));
        facts.Add(new("x-ratelimit-remaining-" + what, decision.Remaining.ToString(CultureInfo.InvariantCulture)));
        facts.Add(new("x-ratelimit-reset-" + what, reset.ToString(CultureInfo.InvariantCulture) + "s"));
    }

    internal static async Task ReleaseAsync(IRateLimitStore store, List<string> leases, ILogger logger)
    {
        foreach (var lease in leases)
        {
            try
            {
                await store.ReleaseConcurrencyAsync(lease, CancellationToken.None);
            }
#pragma warning disable CA1031 // A slot that cannot be released lapses by itself; the call's outcome stands.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogReleaseFailed(logger, ex, lease);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not release concurrency lease {Lease}; it lapses by itself")]
    private static partial void LogReleaseFailed(ILogger logger, Exception ex, string lease);
}

/// <summary>The concurrent-stream slots a call holds; renewed while it runs, released on dispose.</summary>
internal sealed class CallLease : IAsyncDisposable
{
    private readonly IRateLimitStore? _store;
    private readonly List<string> _leases = [];
    private readonly ILogger? _logger;
    private readonly CancellationTokenSource? _stop;
    private readonly Task _renewal = Task.CompletedTask;
    private int _released;

    public CallLease(IRateLimitStore store, List<string> leases, TimeSpan leaseDuration, ILogger logger)
    {
        _store = store;
        _leases = leases;
        _logger = logger;
        _stop = new CancellationTokenSource();
        _renewal = RenewAsync(leaseDuration, _stop.Token);
    }

    private CallLease()
    {
    }

    /// <summary>No slots held.</summary>
    public static CallLease None { get; } = new();

    /// <summary>Frees the slots; safe to call more than once (the relay frees them before the terminal frame, the pipeline again at the end).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop is null || _store is null || Interlocked.Exchange(ref _released, 1) == 1)
        {
            return;
        }

        await _stop.CancelAsync();
        await _renewal.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
        await CallAdmission.ReleaseAsync(_store, _leases, _logger!);
    }

    private async Task RenewAsync(TimeSpan leaseDuration, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(leaseDuration / 3);
        while (await timer.WaitForNextTickAsync(cancellationToken))
        {
            foreach (var lease in _leases)
            {
                await _store!.RenewConcurrencyAsync(lease, leaseDuration, cancellationToken);
            }
        }
    }
}
