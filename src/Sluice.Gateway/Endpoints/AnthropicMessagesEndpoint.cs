using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Anthropic;
using Sluice.Providers;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// <c>POST /v1/messages</c> and <c>POST /v1/messages/count_tokens</c>: Anthropic's Messages API, served from any
/// model the gateway knows. Errors (401 included) use Anthropic's body and types, with <c>request-id</c>.
/// </summary>
/// <remarks>Clients authenticate with <c>x-api-key</c> or <c>Authorization: Bearer</c> and send <c>anthropic-version</c>.</remarks>
internal sealed class AnthropicMessagesEndpoint(HttpCalls calls, ModelResolver resolver, CallAdmission admission)
{
    /// <summary>Anthropic's header for beta features, sent on to Anthropic upstreams.</summary>
    public const string BetaHeader = "anthropic-beta";

    /// <summary>Set to <c>estimate</c> on a count that is Sluice's estimate rather than the model's or its provider's.</summary>
    public const string TokenCountHeader = "x-sluice-token-count";

    private static readonly HttpAnswer Answer = new(
        call => new AnthropicStreamFormat(new AnthropicStreamWriter(MessageId(call), call.Model.Name)),
        (output, call, answer, usage) => AnthropicMessageWriter.Write(output, MessageId(call), call.Model.Name, answer.Choices.FirstOrDefault(c => c.Index == 0), usage, answer.Start, answer.AnthropicBlocks));

    /// <summary>
    /// Runs a Messages call. An Anthropic upstream gets the client's body as it is (model and stream replaced) with its
    /// <c>anthropic-beta</c> header, and its content blocks come back byte for byte (<see cref="ChatCall.AcceptsAnthropicBlocks"/>).
    /// </summary>
    public async Task HandleAsync(HttpContext context)
    {
        if (await calls.BeginAsync(context, CallDialect.Anthropic) is not { } call)
        {
            return;
        }

        call.AcceptsAnthropicBlocks = true;
        var beta = context.Request.Headers[BetaHeader];
        await calls.RunAsync(context, call, Answer, beta.Count == 0 ? null : new BetaStage(beta.ToString()));
    }

    // Puts the client's beta header on the parsed request, for an Anthropic upstream to send on.
    private sealed class BetaStage(string beta) : CallStage
    {
        public override ValueTask PrepareAsync(ChatCall call, CancellationToken cancellationToken)
        {
            call.Request = call.Request with { AnthropicBeta = beta };
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>
    /// <c>{"input_tokens": N}</c>: counted by the model's backend where it can — simulated and local models exactly,
    /// Anthropic and Gemini upstreams by their provider's counting endpoint — and otherwise (OpenAI-compatible and
    /// Ollama upstreams, which have none) Sluice's estimate, marked <c>x-sluice-token-count: estimate</c>. Admitted like
    /// a call (model access, requests per minute) but free: no credits, tokens per minute or stream slot.
    /// </summary>
    public async Task CountTokensAsync(HttpContext context)
    {
        if (await calls.BeginAsync(context, CallDialect.Anthropic) is not { } call)
        {
            return;
        }

        try
        {
            var beta = context.Request.Headers[BetaHeader];
            call.Request = AnthropicRequestParser.Parse(call.Body, calls.Pipeline.Limits, requireMaxTokens: false) with
            {
                AnthropicBeta = beta.Count == 0 ? null : beta.ToString(),
            };
            call.RequestedModel = call.Request.Model;
            call.BillingTeamId ??= call.Caller.TeamId;
            call.Model = await resolver.ResolveAsync(call.Request.Model, CallDialect.Anthropic, context.RequestAborted);
            var refusal = await admission.AdmitCountAsync(call, context.RequestAborted);
            foreach (var fact in call.RateLimitFacts)
            {
                context.Response.Headers[fact.Key] = fact.Value;
            }

            if (refusal is not null)
            {
                throw refusal;
            }

            int tokens;
            if (resolver.FirstSource(call.Model) is IPromptTokenCounter counter)
            {
                tokens = await counter.CountPromptTokensAsync(call.Request with { Model = call.Model.Name }, context.RequestAborted);
            }
            else
            {
                // The tool definitions count too: an agent's tool list is often most of its prompt.
                tokens = (call.Request.PromptTokenEstimate ?? TokenCounter.CountPrompt(call.Request.Messages))
                    + (call.Request.ToolsJson is { } tools ? TokenCounter.Count(tools.GetRawText()) : 0);
                context.Response.Headers[TokenCountHeader] = "estimate";
            }

            context.Response.StatusCode = StatusCodes.Status200OK;
            context.Response.ContentType = "application/json";
            AnthropicMessageWriter.WriteTokenCount(context.Response.BodyWriter, tokens);
            await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
        }
        catch (Exception ex) when (CallPipeline.Refusal(ex, context.RequestAborted) is { } error)
        {
            await ErrorResponses.WriteAsync(context, error, ErrorDialect.Anthropic);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
    }

    private static string MessageId(ChatCall call) => "msg_" + call.RequestId;
}
