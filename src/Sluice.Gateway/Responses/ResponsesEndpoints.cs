using System.Buffers;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Responses;

namespace Sluice.Gateway.Responses;

/// <summary>
/// The OpenAI Responses API: <c>POST /v1/responses</c> (streamed or not, from every model through the one pipeline),
/// <c>GET /v1/responses/{id}</c>, <c>GET /v1/responses/{id}/input_items</c> and <c>DELETE /v1/responses/{id}</c> for
/// stored responses, which belong to the caller's
/// team (or the operator): another owner's id is a 404 exactly like a missing one.
/// </summary>
internal sealed class ResponsesEndpoints(
    HttpCalls calls, TenancyRuntime tenancy, TimeProvider time, ILogger<ResponsesEndpoints> logger, StoredResponseRetention retention)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/responses", CreateAsync).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/v1/responses/{id}", c => ApiHandler.RunAsync(c, () => GetAsync(c))).WithPolicy(EndpointPolicy.Key);
        app.MapDelete("/v1/responses/{id}", c => ApiHandler.RunAsync(c, () => DeleteAsync(c))).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/v1/responses/{id}/input_items", c => ApiHandler.RunAsync(c, () => ListInputItemsAsync(c))).WithPolicy(EndpointPolicy.Key);
    }

    private Task CreateAsync(HttpContext context)
    {
        var stage = new ResponsesStage(tenancy.Store, calls.Pipeline.Limits, time, logger, retention);
        var answer = new HttpAnswer(
            _ => new ResponsesStreamFormat(new ResponsesStreamWriter(stage.Header)),
            (output, _, _, _) => output.Write(stage.Tracker.FinalResponse.Span));
        return calls.RunAsync(context, CallDialect.Responses, answer, stage);
    }

    private async Task GetAsync(HttpContext context)
    {
        var id = context.Request.RouteValues["id"] as string ?? string.Empty;
        var stored = await tenancy.Store.GetResponseAsync(context.GetCaller().OwnerId, id, context.RequestAborted)
            ?? throw SluiceErrors.NotFound("response", id);
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(stored.ResponseJson, context.RequestAborted);
    }

    private async Task ListInputItemsAsync(HttpContext context)
    {
        var page = ReadPage(context.Request.Query);
        var id = context.Request.RouteValues["id"] as string ?? string.Empty;
        var stored = await tenancy.Store.GetResponseAsync(context.GetCaller().OwnerId, id, context.RequestAborted)
            ?? throw SluiceErrors.NotFound("response", id);
        var body = new ArrayBufferWriter<byte>(1024);
        ResponsesInputItems.Write(body, stored.Id, stored.ResponseJson, stored.ConversationJson, page);
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(body.WrittenMemory, context.RequestAborted);
    }

    /// <summary><c>limit</c> (1–100, default 20), <c>order</c> (<c>asc</c> or <c>desc</c>, default desc), <c>after</c>; <c>include</c> is accepted and has nothing to add here.</summary>
    private static InputItemsPage ReadPage(IQueryCollection query)
    {
        var page = new InputItemsPage();
        page = page with { Limit = ApiJson.QueryNumber(query, "limit", page.Limit, 1, InputItemsPage.MaxLimit) };
        page = query["order"].ToString() switch
        {
            "" or "desc" => page,
            "asc" => page with { Ascending = true },
            var other => throw ChatException.BadRequest($"order must be 'asc' or 'desc' (got '{SluiceErrors.Echo(other)}').", "order"),
        };
        return query["after"].ToString() is { Length: > 0 } after ? page with { After = after } : page;
    }

    private async Task DeleteAsync(HttpContext context)
    {
        var id = context.Request.RouteValues["id"] as string ?? string.Empty;
        if (!await tenancy.Store.DeleteResponseAsync(context.GetCaller().OwnerId, id, context.RequestAborted))
        {
            throw SluiceErrors.NotFound("response", id);
        }

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        ResponsesStreamWriter.WriteDeleted(context.Response.BodyWriter, id);
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
    }
}
