using Sluice.Protocol;
using Sluice.Protocol.Embeddings;

namespace Sluice.Providers.Routing;

/// <summary>One model an embeddings route may use, and how many times it is tried.</summary>
/// <param name="Name">The model's name (for messages).</param>
/// <param name="Backend">Its embedding backend.</param>
/// <param name="Attempts">Tries before moving on (at least 1).</param>
public sealed record EmbeddingCandidate(string Name, IEmbeddingBackend Backend, int Attempts);

/// <summary>
/// Retries and falls back for embeddings as <see cref="FallbackChatBackend"/> does for chat: connection errors,
/// timeouts, 429 and 5xx are retried with backoff (honouring <c>Retry-After</c>), then the next candidate is tried;
/// other errors are returned as they are. An embeddings answer is whole, so there is no "after the first event".
/// </summary>
public sealed class FallbackEmbeddingBackend : IEmbeddingBackend
{
    private readonly IReadOnlyList<EmbeddingCandidate> _candidates;
    private readonly RetryOptions _retry;
    private readonly Action<RetryNotice>? _onRetry;

    /// <summary>Creates the route.</summary>
    public FallbackEmbeddingBackend(IReadOnlyList<EmbeddingCandidate> candidates, RetryOptions retry, Action<RetryNotice>? onRetry = null)
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
    public async Task<EmbeddingResult> EmbedAsync(EmbeddingRequest request, CancellationToken cancellationToken)
    {
        var failures = new List<string>();
        Exception? lastError = null;
        for (var c = 0; c < _candidates.Count; c++)
        {
            var candidate = _candidates[c];
            for (var attempt = 1; attempt <= Math.Max(1, candidate.Attempts); attempt++)
            {
                try
                {
                    return await candidate.Backend.EmbedAsync(request, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (!cancellationToken.IsCancellationRequested && FallbackChatBackend.IsRetryable(ex))
                {
                    lastError = ex;
                    failures.Add($"{candidate.Name}: {(ex is ChatException chat ? $"{chat.StatusCode} {chat.Error.Message}" : ex.Message)}");
                    var retryAfter = (ex as ChatException)?.RetryAfter;
                    var last = attempt >= candidate.Attempts || retryAfter?.TotalSeconds > _retry.MaxRetryAfterSeconds;
                    var next = last ? (c + 1 < _candidates.Count ? _candidates[c + 1].Name : null) : candidate.Name;
                    var delay = last ? TimeSpan.Zero : retryAfter ?? TimeSpan.FromMilliseconds(Math.Min(_retry.MaxDelayMs, _retry.BaseDelayMs * Math.Pow(2, attempt - 1)));
                    if (next is not null)
                    {
                        _onRetry?.Invoke(new RetryNotice(candidate.Name, next, attempt, delay, failures[^1]));
                    }

                    if (last)
                    {
                        break;
                    }

                    await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        var summary = $"Every attempt failed ({string.Join("; ", failures)}). Retry later or check the upstreams.";
        if (lastError is ChatException error)
        {
            throw failures.Count == 1 ? error : new ChatException(error.StatusCode, error.Error with { Message = summary }, error.RetryAfter, error);
        }

        throw new ChatException(502, new ErrorInfo(summary, ErrorTypes.Upstream, null, "upstream_unreachable"), inner: lastError);
    }
}
