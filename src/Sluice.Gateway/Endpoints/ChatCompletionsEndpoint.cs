using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;
using Sluice.Protocol.OpenAI;

namespace Sluice.Gateway.Endpoints;

/// <summary><c>POST /v1/chat/completions</c>: OpenAI-compatible, streamed (SSE, resumable) or not.</summary>
internal sealed class ChatCompletionsEndpoint(HttpCalls calls, TimeProvider time)
{
    private readonly HttpAnswer _answer = new(
        call => new OpenAIStreamFormat(new OpenAIChunkWriter(CompletionId(call), time.GetUtcNow().ToUnixTimeSeconds(), call.Model.Name) { WritesUsageNull = call.Request.IncludeUsage }, call.Request.IncludeUsage),
        (output, call, answer, usage) => OpenAICompletionWriter.Write(output, CompletionId(call), time.GetUtcNow().ToUnixTimeSeconds(), call.Model.Name, answer.Choices, usage),
        Resumable: true);

    public Task HandleAsync(HttpContext context) => calls.RunAsync(context, CallDialect.OpenAI, _answer);

    private static string CompletionId(ChatCall call) => "chatcmpl-" + call.RequestId;
}
