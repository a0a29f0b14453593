using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Sluice.Protocol;
using Sluice.Storage;

namespace Sluice.Gateway.Http;

/// <summary>Runs a JSON API handler (tenancy, jobs, sessions), turning known failures into OpenAI-shaped error responses.</summary>
internal static class ApiHandler
{
    public static async Task RunAsync(HttpContext context, Func<Task> handler)
    {
        try
        {
            await handler();
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex);
        }
        catch (StoreNotFoundException ex)
        {
            await ErrorResponses.WriteAsync(context, SluiceErrors.NotFound(ex.Kind, ex.Id));
        }
        catch (StoreConflictException ex)
        {
            await ErrorResponses.WriteAsync(context, StatusCodes.Status409Conflict, new ErrorInfo(ex.Message, ErrorTypes.InvalidRequest, null, "conflict"));
        }
        catch (InsufficientCreditsException ex)
        {
            await ErrorResponses.WriteAsync(
                context, ex.OpenJobs > 0 ? SluiceErrors.CreditsHeld(ex.TeamId, ex.Balance, ex.OpenJobs) : SluiceErrors.InsufficientCredits(ex.TeamId, ex.Balance));
        }
        catch (ArgumentException ex)
        {
            // The store validates names, ids and amounts; its message says what is wrong.
            var message = ex.ParamName is null ? ex.Message : ex.Message.Replace($" (Parameter '{ex.ParamName}')", string.Empty, StringComparison.Ordinal);
            await ErrorResponses.WriteAsync(context, StatusCodes.Status400BadRequest, new ErrorInfo(message, ErrorTypes.InvalidRequest, null, "invalid_value"));
        }
        catch (Exception ex) when (context.RequestAborted.IsCancellationRequested && ex is OperationCanceledException or IOException or ConnectionAbortedException)
        {
            // The client left.
        }
        catch (Exception ex) when (SluiceErrors.IsStoreFailure(ex))
        {
            await ErrorResponses.WriteAsync(context, SluiceErrors.StoreUnavailable(ex));
        }
    }
}
