using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Storage;

namespace Sluice.Gateway.Tenancy;

/// <summary>The errors of the tenancy layer, in the OpenAI error shape, and the wrapper that maps store failures.</summary>
internal static class ApiErrors
{
    /// <summary>
    /// The 404 for a tenant object. The same text whether the object is missing or belongs to another team, so
    /// a response never tells a caller that someone else's object exists.
    /// </summary>
    public static ChatException NotFound(string kind, string id) => new(
        StatusCodes.Status404NotFound,
        new ErrorInfo(
            $"No {kind} '{id}' was found for this API key; check the id (objects of other teams are not visible).",
            ErrorTypes.InvalidRequest, null, kind.Replace(' ', '_') + "_not_found"));

    public static ChatException OperatorOnly() => new(
        StatusCodes.Status403Forbidden,
        new ErrorInfo(
            "This endpoint is for the gateway operator: call it with the master key (SLUICE_MASTER_KEY), not a team's virtual key.",
            ErrorTypes.Permission, null, "master_key_required"));

    public static ChatException InsufficientCredits(string teamId, long balance) => new(
        StatusCodes.Status403Forbidden,
        new ErrorInfo(
            $"Team '{teamId}' has {balance} credits left; a job or model call needs at least 1. Ask the operator to add credits (POST /api/credits/teams/{teamId}/add).",
            ErrorTypes.Permission, null, "insufficient_credits"));

    public static ChatException ModelNotAllowed(string model) => new(
        StatusCodes.Status403Forbidden,
        new ErrorInfo(
            $"This API key may not use '{model}'. Use one of the models or model groups assigned to the key's team, or ask the operator to assign '{model}'.",
            ErrorTypes.Permission, "model", "model_not_allowed"));

    /// <summary>The 503 for a store that cannot be reached (the request did nothing; it may be retried).</summary>
    public static ChatException StoreUnavailable(Exception inner) => new(
        StatusCodes.Status503ServiceUnavailable,
        new ErrorInfo(
            $"The gateway's database is unavailable ({inner.GetType().Name}); retry shortly. If it persists, the operator should check the Store setting and the database server.",
            ErrorTypes.Server, null, "store_unavailable"),
        TimeSpan.FromSeconds(1),
        inner);

    /// <summary>True for failures of the database itself, as opposed to refusals the store decided on.</summary>
    public static bool IsStoreFailure(Exception exception) =>
        exception is System.Data.Common.DbException or TimeoutException or InvalidOperationException { InnerException: System.Data.Common.DbException };

    /// <summary>Runs an API handler, turning known failures into error responses.</summary>
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
            await ErrorResponses.WriteAsync(context, NotFound(ex.Kind, ex.Id));
        }
        catch (StoreConflictException ex)
        {
            await ErrorResponses.WriteAsync(context, StatusCodes.Status409Conflict, new ErrorInfo(ex.Message, ErrorTypes.InvalidRequest, null, "conflict"));
        }
        catch (InsufficientCreditsException ex)
        {
            await ErrorResponses.WriteAsync(context, InsufficientCredits(ex.TeamId, ex.Balance));
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
        catch (Exception ex) when (IsStoreFailure(ex))
        {
            await ErrorResponses.WriteAsync(context, StoreUnavailable(ex));
        }
    }
}
