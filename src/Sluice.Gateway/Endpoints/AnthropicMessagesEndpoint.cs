using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Protocol.Anthropic;
using Sluice.Providers;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// <c>POST /v1/messages</c> and <c>POST /v1/messages/count_tokens</c>: Anthropic's Messages API, served from any
/// model the gateway knows. Errors (401 included) use Anthropic's body and types, with <c>request-id</c>.
/// </summary>
/// <remarks>Clients authenticate with <c>x-api-key</c> or <c>Authorization: Bearer</c> and send <c>anthropic-version</c>.</remarks>
internal sealed class AnthropicMessagesEndpoint(HttpCalls calls, ModelResolver resolver)
{
    private static readonly HttpAnswer Answer = new(
        call => new AnthropicStreamFormat(new AnthropicStreamWriter(MessageId(call), call.Model.Name)),
        (output, call, answer, usage) => AnthropicMessageWriter.Write(output, MessageId(call), call.Model.Name, answer.Choices.FirstOrDefault(c => c.Index == 0), usage, answer.Start));

    public Task HandleAsync(HttpContext context) => calls.RunAsync(context, CallDialect.Anthropic, Answer);

    /// <summary>
    /// <c>{"input_tokens": N}</c> for models whose backend can count (simulated models count exactly what their usage
    /// will report); a 400 for upstream models, which would need a provider call to know.
    /// </summary>
    public async Task CountTokensAsync(HttpContext context)
    {
        if (await calls.BeginAsync(context, CallDialect.Anthropic) is not { } call)
        {
            return;
        }

        try
        {
            var request = AnthropicRequestParser.Parse(call.Body, calls.Pipeline.Limits, requireMaxTokens: false);
            var model = await resolver.ResolveAsync(request.Model, CallDialect.Anthropic, context.RequestAborted);
            if (resolver.FirstSource(model) is not IPromptTokenCounter counter)
            {
                throw ChatException.BadRequest(
                    $"The model '{model.Name}' (provider {model.Options.Provider}) cannot count tokens without generating; count_tokens works for simulated models. Send the request to /v1/messages and read usage.input_tokens instead.",
                    "model", "unsupported_value");
            }

            context.Response.StatusCode = StatusCodes.Status200OK;
            context.Response.ContentType = "application/json";
            AnthropicMessageWriter.WriteTokenCount(context.Response.BodyWriter, counter.CountPromptTokens(request));
            await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, ErrorDialect.Anthropic);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
    }

    private static string MessageId(ChatCall call) => "msg_" + call.RequestId;
}
