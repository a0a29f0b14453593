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

/// <summary>7. Error handling: insufficient credits (403), rate limits (429) and timeouts, each handled on purpose.</summary>
public static class ErrorHandling
{
    /// <summary>Asks once, handling each failure class; returns what happened.</summary>
    public static async Task<ErrorHandlingOutcome> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        // The client already retries 429/5xx before the first token; here retries are off to show the handling.
        using var client = context.CreateClient(o =>
        {
            o.MaxRetries = 0;
            o.FirstTokenTimeout = TimeSpan.FromSeconds(30);
        });

        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var response = await client.GetResponseAsync("Summarise the latest report", context.NewOptions(40), cancellationToken);
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
}
