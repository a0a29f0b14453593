using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Http;
using Sluice.Protocol;
using Sluice.Protocol.Embeddings;
using Sluice.Protocol.Events;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// Embeddings: OpenAI's <c>POST /v1/embeddings</c> and Ollama's <c>POST /api/embed</c> and <c>POST /api/embeddings</c>,
/// through the call pipeline (model resolution, admission on input tokens, usage records) with an
/// <see cref="EmbeddingStage"/>; answered as one JSON body in the dialect's shape.
/// </summary>
internal sealed class EmbeddingsEndpoint(HttpCalls calls, TimeProvider time)
{
    public Task OpenAIAsync(HttpContext context) => RunAsync(context, CallDialect.Embeddings, EmbeddingRequestParser.ParseOpenAI, static (output, call, stage, result, usage, _) =>
        EmbeddingWriter.WriteOpenAI(output, call.Model.Name, result, stage.Request.Encoding, usage.PromptTokens));

    public Task OllamaEmbedAsync(HttpContext context) => RunAsync(context, CallDialect.OllamaEmbed, EmbeddingRequestParser.ParseOllamaEmbed, static (output, call, _, result, usage, duration) =>
        EmbeddingWriter.WriteOllamaEmbed(output, call.RequestedModel, result, usage.PromptTokens, duration));

    public Task OllamaEmbeddingsAsync(HttpContext context) => RunAsync(context, CallDialect.OllamaEmbed, EmbeddingRequestParser.ParseOllamaEmbeddings, static (output, _, _, result, _, _) =>
        EmbeddingWriter.WriteOllamaEmbeddings(output, result));

    private async Task RunAsync(HttpContext context, CallDialect dialect, Func<ReadOnlyMemory<byte>, EmbeddingRequest> parse, EmbeddingBodyWriter write)
    {
        if (await calls.BeginAsync(context, dialect) is not { } call)
        {
            return;
        }

        EmbeddingStage stage;
        try
        {
            var request = parse(call.Body);
            stage = new EmbeddingStage(request);
            call.Request = request.ToChatRequest();
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, dialect.Errors);
            return;
        }

        var answer = new HttpAnswer(
            static _ => throw new InvalidOperationException("Embeddings are never streamed."),
            (output, c, assembled, usage) => write(
                output, c, stage, assembled.Embeddings ?? throw new InvalidOperationException("The embedding backend answered nothing."), usage, time.GetElapsedTime(c.StartTimestamp)));
        await calls.RunAsync(context, call, answer, stage);
    }

    private delegate void EmbeddingBodyWriter(
        System.Buffers.IBufferWriter<byte> output, ChatCall call, EmbeddingStage stage, EmbeddingResult result, ChatUsage usage, TimeSpan duration);
}
