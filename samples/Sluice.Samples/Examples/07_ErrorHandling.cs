using Microsoft.Extensions.AI;
using Sluice.Client;

namespace Sluice.Samples.Examples;

/// <summary>How <see cref="ErrorHandling"/> ended.</summary>
public enum ErrorHandlingOutcome
{
    /// <summary>The answer arrived (possibly after waiting out a rate limit).</summary>
    Answered,

    /// <summary>403 insufficient credits: the team must get credits first.</summary>
    OutOfCredits,

    /// <summary>429 twice: still rate limited after waiting once.</summary>
    RateLimited,

    /// <summary>A time limit was hit.</summary>
    TimedOut,

    /// <summary>The stream broke after it started.</summary>
    Interrupted,
}

/// <summary>A failure the simulated models produce on request (through the request's <c>metadata</c> fault switches).</summary>
public enum ErrorSimulation
{
    /// <summary>Nothing simulated: the real answer (or whatever the gateway really says).</summary>
    None,

    /// <summary>A 429 with <c>Retry-After: 1</c> on the first attempt only: the example waits, retries and gets the answer.</summary>
    RateLimit,

    /// <summary>A 429 on every attempt: the example gives up after waiting once.</summary>
    RateLimitTwice,

    /// <summary>The model stalls 10 s before its first token, longer than the example's 2 s first-token limit.</summary>
    Timeout,

    /// <summary>The stream breaks after 10 tokens.</summary>
    MidStream,
}

/// <summary>7. Error handling: insufficient credits (403), rate limits (429) and timeouts, each handled on purpose.</summary>
public static class ErrorHandling
{
    /// <summary>Asks once, handling each failure class; returns what happened.</summary>
    /// <param name="context">Where and how to ask.</param>
    /// <param name="simulate">
    /// A failure to trigger on the simulated models (<c>--simulate</c>), so each handler can be seen at work.
    /// Insufficient credits cannot be simulated: it happens for real when a team's credits run out (SaaS flow).
    /// </param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public static async Task<ErrorHandlingOutcome> RunAsync(SampleContext context, ErrorSimulation simulate = ErrorSimulation.None, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);

        // The client already retries 429/5xx before the first token; here retries are off to show the handling.
        using var client = context.CreateClient(o =>
        {
            o.MaxRetries = 0;
            o.FirstTokenTimeout = simulate == ErrorSimulation.Timeout ? TimeSpan.FromSeconds(2) : TimeSpan.FromSeconds(30);
        });

        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var options = context.NewOptions(40);
                Simulate(options, simulate, attempt);
                var response = await client.GetResponseAsync("Summarise the latest report", options, cancellationToken);
                await context.Output.WriteLineAsync(response.Text);
                return ErrorHandlingOutcome.Answered;
            }
            catch (SluiceInsufficientCreditsException ex)
            {
                // Not worth retrying: nothing changes until someone adds credits.
                await context.Output.WriteLineAsync($"Out of credits: {ex.ServerMessage} (request {ex.RequestId}). Ask your administrator to add credits.");
                return ErrorHandlingOutcome.OutOfCredits;
            }
            catch (SluiceRateLimitException ex) when (attempt == 1)
            {
                var wait = ex.RetryAfter ?? TimeSpan.FromSeconds(1);
                await context.Output.WriteLineAsync($"Rate limited; retrying in {wait.TotalSeconds:F0} s.");
                await Task.Delay(wait, cancellationToken);
            }
            catch (SluiceRateLimitException ex)
            {
                await context.Output.WriteLineAsync($"Still rate limited ({ex.ServerMessage}). Try again later.");
                return ErrorHandlingOutcome.RateLimited;
            }
            catch (SluiceTimeoutException ex)
            {
                await context.Output.WriteLineAsync($"Timed out ({ex.Kind}): {ex.Message}");
                return ErrorHandlingOutcome.TimedOut;
            }
            catch (SluiceStreamException ex)
            {
                await context.Output.WriteLineAsync($"The answer broke off: {ex.Message}");
                return ErrorHandlingOutcome.Interrupted;
            }
        }
    }

    /// <summary>Adds the simulation's fault switches to the request's metadata (next to any the context already has).</summary>
    private static void Simulate(ChatOptions options, ErrorSimulation simulate, int attempt)
    {
        Dictionary<string, string>? switches = simulate switch
        {
            ErrorSimulation.RateLimit when attempt == 1 => new() { ["sim_fail_status"] = "429", ["sim_retry_after"] = "1" },
            ErrorSimulation.RateLimitTwice => new() { ["sim_fail_status"] = "429", ["sim_retry_after"] = "1" },
            ErrorSimulation.Timeout => new() { ["sim_stall_ms"] = "10000" },
            ErrorSimulation.MidStream => new() { ["sim_fail_after_tokens"] = "10" },
            _ => null,
        };
        if (switches is null)
        {
            return;
        }

        options.AdditionalProperties ??= [];
        if (options.AdditionalProperties.TryGetValue("metadata", out var existing) && existing is IDictionary<string, string> earlier)
        {
            foreach (var (key, value) in earlier)
            {
                switches.TryAdd(key, value);
            }
        }

        options.AdditionalProperties["metadata"] = switches;
    }
}
