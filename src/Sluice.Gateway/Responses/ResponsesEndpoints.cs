using System.Buffers;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol.Responses;

namespace Sluice.Gateway.Responses;

/// <summary>
/// The OpenAI Responses API: <c>POST /v1/responses</c> (streamed or not, from every model through the one pipeline),
/// <c>GET /v1/responses/{id}</c> and <c>DELETE /v1/responses/{id}</c> for stored responses, which belong to the caller's
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
