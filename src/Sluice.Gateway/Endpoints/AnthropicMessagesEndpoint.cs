using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Anthropic;
using Sluice.Protocol.Chat;
using Sluice.Providers;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// <c>POST /v1/messages</c> and <c>POST /v1/messages/count_tokens</c>: Anthropic's Messages API, served from any
/// model the gateway knows. Errors use Anthropic's body and types.
/// </summary>
/// <remarks>
/// Clients authenticate with <c>x-api-key</c> or <c>Authorization: Bearer</c> and send <c>anthropic-version</c>;
/// both are accepted (the gateway has no keys of its own yet, so any value passes).
/// </remarks>
internal sealed class AnthropicMessagesEndpoint(
    ModelCatalog catalog,
    GatewayOptions options,
    StreamRelay relay,
    ModelGroupRegistry groups,
    CallAdmission admission)
{
    private readonly ChatRequestLimits _limits = new() { MaxPromptChars = options.Limits.MaxPromptChars };
    private readonly TimeSpan _pingInterval = TimeSpan.FromSeconds(options.Streaming.PingIntervalSeconds);

    public async Task HandleAsync(HttpContext context)
    {
        var start = Stopwatch.GetTimestamp();
        var requestId = StartResponse(context);
        if (await ReadAsync(context, requireMaxTokens: true) is not { } parsed)
        {
            return;
        }

        var (request, model) = parsed;
        CallLease lease;
        UsageOwner? owner;
        try
        {
            (lease, owner) = await TenantCall.AdmitAsync(context, admission, model.Name, request);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, ErrorDialect.Anthropic);
            return;
        }

        await using (lease)
        {
            await ServeAsync(context, request, model, new RelaySettings(requestId, start, _pingInterval, options.Streaming.MaxPendingBytes, owner));
        }
    }

    private async Task ServeAsync(HttpContext context, ChatRequest request, ModelEntry model, RelaySettings settings)
    {
        var messageId = "msg_" + settings.RequestId;
        if (request.Stream)
        {
            var format = new AnthropicStreamFormat(new AnthropicStreamWriter(messageId, model.Name));
            await relay.RelayAsync(context, model.Backend, request, format, settings);
            return;
        }

        try
        {
            var (answer, usage) = await relay.CollectAsync(context, model.Backend, request, settings);
            context.Response.StatusCode = StatusCodes.Status200OK;
            context.Response.ContentType = "application/json";
            AnthropicMessageWriter.Write(
                context.Response.BodyWriter, messageId, model.Name, answer.Choices.FirstOrDefault(c => c.Index == 0), usage);
            await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, ErrorDialect.Anthropic);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client left; usage was recorded as abandoned.
        }
    }

    /// <summary>
    /// <c>{"input_tokens": N}</c> for models whose backend can count (simulated models count exactly what their usage
    /// will report); a 400 for upstream models, which would need a provider call to know.
    /// </summary>
    public async Task CountTokensAsync(HttpContext context)
    {
        StartResponse(context);
        if (await ReadAsync(context, requireMaxTokens: false) is not { } parsed)
        {
            return;
        }

        var (request, model) = parsed;
        if (FindCounter(model, 0) is not { } counter)
        {
            await ErrorResponses.WriteAsync(context, ChatException.BadRequest(
                $"The model '{model.Name}' (provider {model.Options.Provider}) cannot count tokens without generating; count_tokens works for simulated models. Send the request to /v1/messages and read usage.input_tokens instead.",
                "model", "unsupported_value"), ErrorDialect.Anthropic);
            return;
        }

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        AnthropicMessageWriter.WriteTokenCount(context.Response.BodyWriter, counter.CountPromptTokens(request));
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
    }

    private static string StartResponse(HttpContext context)
    {
        var requestId = RequestIds.Next();
        context.Response.Headers["x-request-id"] = requestId;

        // Anthropic's own name for the header, which its SDKs put in exceptions.
        context.Response.Headers["request-id"] = requestId;
        return requestId;
    }

    /// <summary>Reads, parses and resolves the request; on failure writes the Anthropic error and returns null.</summary>
    private async Task<(ChatRequest Request, ModelEntry Model)?> ReadAsync(HttpContext context, bool requireMaxTokens)
    {
        try
        {
            var body = await RequestBody.ReadAsync(context.Request, options.Limits.MaxRequestBodyBytes, context.RequestAborted);
            var request = AnthropicRequestParser.Parse(body, _limits, requireMaxTokens);
            var model = await ChatCompletionsEndpoint.ResolveModelAsync(catalog, groups, request.Model, context.RequestAborted);
            return (request, model);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, ErrorDialect.Anthropic);
            return null;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>The backend that would answer first for <paramref name="model"/>, if it can count tokens.</summary>
    private IPromptTokenCounter? FindCounter(ModelEntry model, int depth)
    {
        if (model.Source is { } source)
        {
            return source as IPromptTokenCounter;
        }

        // Aliases and groups: the first member is the one that answers when nothing fails. The catalog rejects
        // cycles; the depth bound only guards against a future catalog that does not.
        return depth < 16 && model.Members.Count > 0 && catalog.TryGet(model.Members[0], out var first)
            ? FindCounter(first, depth + 1)
            : null;
    }
}
