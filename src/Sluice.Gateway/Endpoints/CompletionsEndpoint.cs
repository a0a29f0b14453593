using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;
using Sluice.Protocol.Completions;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// The legacy <c>POST /v1/completions</c>: passed through to OpenAI-compatible upstreams (their <c>/completions</c>, chunks
/// byte for byte), answered as a chat turn by the other backends and written as <c>text_completion</c> objects; streamed
/// (SSE, resumable) or not, through the one call pipeline.
/// </summary>
internal sealed class CompletionsEndpoint(HttpCalls calls, TimeProvider time)
{
    private readonly HttpAnswer _answer = new(
        call => new OpenAIStreamFormat(
            new CompletionStreamWriter(CompletionId(call), time.GetUtcNow().ToUnixTimeSeconds(), call.Model.Name) { WritesUsageNull = call.Request.IncludeUsage },
            call.Request.IncludeUsage),
        (output, call, answer, usage) => CompletionBodyWriter.Write(output, CompletionId(call), time.GetUtcNow().ToUnixTimeSeconds(), call.Model.Name, answer.Choices, usage),
        Resumable: true);

    public Task HandleAsync(HttpContext context) => calls.RunAsync(context, CallDialect.Completions, _answer, new CompletionStage());

    private static string CompletionId(ChatCall call) => "cmpl-" + call.RequestId;
}
