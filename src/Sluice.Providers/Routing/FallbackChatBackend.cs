using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Providers.Routing;

/// <summary>One model a route may use, and how many times it is tried.</summary>
/// <param name="Name">The model's name (for messages).</param>
/// <param name="Backend">Its backend.</param>
/// <param name="Attempts">Tries before moving on (at least 1).</param>
public sealed record RouteCandidate(string Name, IChatBackend Backend, int Attempts);

/// <summary>
/// Retries and falls back — only before the first event. Connection errors, timeouts, 429 and 5xx are retried
/// with exponential backoff and jitter (honouring <c>Retry-After</c>), then the next candidate is tried. Other
/// 4xx errors are returned as they are. Once a backend has produced its first event the stream is committed:
/// a later failure reaches the client as an error, never as a silent switch to another model.
/// </summary>
public sealed class FallbackChatBackend : IChatBackend
{
    private readonly IReadOnlyList<RouteCandidate> _candidates;
    private readonly RetryOptions _retry;
    private readonly Action<RetryNotice>? _onRetry;

    /// <summary>Creates the route.</summary>
    /// <param name="candidates">Models in priority order.</param>
    /// <param name="retry">Backoff settings.</param>
    /// <param name="onRetry">Told about every retry or fallback (for logs).</param>
    public FallbackChatBackend(IReadOnlyList<RouteCandidate> candidates, RetryOptions retry, Action<RetryNotice>? onRetry = null)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        if (candidates.Count == 0)
        {
            throw new ArgumentException("A route needs at least one candidate.", nameof(candidates));
        }

        _candidates = candidates;
        _retry = retry ?? throw new ArgumentNullException(nameof(retry));
        _onRetry = onRetry;
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatStreamEvent> StreamAsync(
        ChatRequest request,
        ChatCallOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        IAsyncEnumerator<ChatStreamEvent>? active = null;
        var hasFirst = false;
        Exception? lastError = null;
        var failures = new List<(string Model, string Reason)>();

        for (var c = 0; c < _candidates.Count && active is null; c++)
        {
            var candidate = _candidates[c];
            for (var attempt = 1; attempt <= Math.Max(1, candidate.Attempts); attempt++)
            {
                var enumerator = candidate.Backend.StreamAsync(request, options, cancellationToken).GetAsyncEnumerator(cancellationToken);
                try
                {
                    hasFirst = await enumerator.MoveNextAsync();
                    if (hasFirst && enumerator.Current is ErrorEvent error)
                    {
                        throw new ChatException(502, error.Error);
                    }

                    active = enumerator;
                    break;
                }
                catch (Exception ex) when (!cancellationToken.IsCancellationRequested && IsRetryable(ex))
                {
                    await enumerator.DisposeAsync();
                    lastError = ex;
                    failures.Add((candidate.Name, Describe(ex, forOperator: false)));
                    var retryAfter = (ex as ChatException)?.RetryAfter;
                    // Credentials the upstream refused stay refused: the next member is tried at once, without backoff.
                    var last = attempt >= candidate.Attempts || ex is ChatException { Error.Code: Upstream.UpstreamTransport.UpstreamAuthCode };
                    if (retryAfter is { } wait && wait.TotalSeconds > _retry.MaxRetryAfterSeconds)
                    {
                        // Waiting that long would hold the client; another model may answer now.
                        last = true;
                    }

                    var next = last ? (c + 1 < _candidates.Count ? _candidates[c + 1].Name : null) : candidate.Name;
                    var delay = last ? TimeSpan.Zero : retryAfter ?? Backoff(attempt);
                    if (next is not null)
                    {
                        _onRetry?.Invoke(new RetryNotice(candidate.Name, next, attempt, delay, Describe(ex, forOperator: true)) { Kind = ProviderTelemetry.ErrorKind(ex) });
                    }

                    if (last)
                    {
                        break;
                    }

                    await Task.Delay(delay, cancellationToken);
                }
                catch
                {
                    await enumerator.DisposeAsync();
                    throw;
                }
            }
        }

        if (active is null)
        {
            throw Exhausted(lastError!, failures);
        }

        try
        {
            if (!hasFirst)
            {
                yield break;
            }

            yield return active.Current;
            while (await active.MoveNextAsync())
            {
                yield return active.Current;
            }
        }
        finally
        {
            await active.DisposeAsync();
        }
    }

    /// <summary>Whether a failure before the first token may be retried.</summary>
    public static bool IsRetryable(Exception exception) => exception switch
    {
        ChatException chat => chat.StatusCode is 408 or 409 or 425 or 429 or >= 500,
        HttpRequestException or SocketException or IOException => true,
        TimeoutException => true,
        _ => false,
    };

    // For the retry log (the operator's) the note with what to fix is included; never in what the client reads.
    private static string Describe(Exception ex, bool forOperator) => ex switch
    {
        ChatException { OperatorNote: { } note } chat when forOperator => $"{chat.StatusCode} {chat.Error.Message} [{note}]",
        ChatException chat => $"{chat.StatusCode} {chat.Error.Message}",
        _ => $"{ex.GetType().Name}: {ex.Message}",
    };

    private static Exception Exhausted(Exception lastError, List<(string Model, string Reason)> failures)
    {
        var summary = Summarize(failures);
        if (lastError is ChatException chat)
        {
            return failures.Count == 1
                ? chat
                : new ChatException(chat.StatusCode, chat.Error with { Message = $"Every attempt failed: {summary}" + NextStep(summary, "Retry later, or check the upstreams.") }, chat.RetryAfter, lastError)
                {
                    OperatorNote = chat.OperatorNote,
                };
        }

        return new ChatException(502, new ErrorInfo(
            $"Could not reach the upstream: {summary}" + NextStep(summary, "Check the model's BaseUrl and that the server is running."),
            ErrorTypes.Upstream, null, "upstream_unreachable"), inner: lastError);
    }

    /// <summary>
    /// Each distinct failure once, in order, with how many attempts ended that way — a retried model usually fails the
    /// same way each time, and repeating its (long) message per attempt buries the one line that matters.
    /// </summary>
    private static string Summarize(List<(string Model, string Reason)> failures)
    {
        var groups = new List<(string Model, string Reason, int Attempts)>();
        foreach (var (model, reason) in failures)
        {
            var index = groups.FindIndex(g => g.Model == model && g.Reason == reason);
            if (index >= 0)
            {
                groups[index] = groups[index] with { Attempts = groups[index].Attempts + 1 };
            }
            else
            {
                groups.Add((model, reason, 1));
            }
        }

        return string.Join(" ", groups.Select(g =>
        {
            var reason = g.Reason.Trim();
            reason = reason.EndsWith('.') || reason.EndsWith('?') || reason.EndsWith('!') ? reason : reason + ".";
            return g.Attempts == 1 ? $"{g.Model}: {reason}" : $"{g.Model} ({g.Attempts} attempts): {reason}";
        }));
    }

    /// <summary>The generic next step, unless the failures already say what to do.</summary>
    private static string NextStep(string summary, string step) =>
        summary.Contains("retry", StringComparison.OrdinalIgnoreCase) || summary.Contains("check", StringComparison.OrdinalIgnoreCase) ? string.Empty : " " + step;

    private TimeSpan Backoff(int attempt)
    {
        var ceiling = Math.Min(_retry.MaxDelayMs, _retry.BaseDelayMs * Math.Pow(2, attempt - 1));

        // Jitter spreads retries of many clients so they do not hit a recovering upstream together.
        return TimeSpan.FromMilliseconds(ceiling * (0.5 + (Random.Shared.NextDouble() * 0.5)));
    }
}

/// <summary>A retry or fallback decision, for logs.</summary>
/// <param name="Failed">The model that failed.</param>
/// <param name="Next">The model tried next (the same one for a retry).</param>
/// <param name="Attempt">Which attempt failed.</param>
/// <param name="Delay">Wait before the next try.</param>
/// <param name="Reason">What went wrong.</param>
public sealed record RetryNotice(string Failed, string Next, int Attempt, TimeSpan Delay, string Reason)
{
    /// <summary>The failure's kind (<see cref="ProviderTelemetry.ErrorKind(Exception)"/>), a bounded label for metrics.</summary>
    public string Kind { get; init; } = "internal";

    /// <summary>True when the same model is tried again; false when the route moves on to the next model.</summary>
    public bool IsRetry => string.Equals(Failed, Next, StringComparison.Ordinal);
}
