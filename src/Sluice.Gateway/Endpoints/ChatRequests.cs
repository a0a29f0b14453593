using Sluice.Protocol.Chat;

namespace Sluice.Gateway.Endpoints;

/// <summary>Copies of parsed requests with one field changed.</summary>
internal static class ChatRequests
{
    /// <summary>The same request for another model name (the catalog's name for what the client asked).</summary>
    public static ChatRequest WithModel(ChatRequest request, string model, bool? stream = null) =>
        With(request, model, stream ?? request.Stream, request.RawBody);

    /// <summary>A copy of <paramref name="request"/> with another model, stream flag and raw body.</summary>
    public static ChatRequest With(ChatRequest request, string model, bool stream, ReadOnlyMemory<byte> rawBody) => new()
    {
        Model = model,
        Messages = request.Messages,
        N = request.N,
        RawBody = rawBody,
        Stream = stream,
        IncludeUsage = request.IncludeUsage,
        MaxTokens = request.MaxTokens,
        Temperature = request.Temperature,
        TopP = request.TopP,
        TopK = request.TopK,
        Stop = request.Stop,
        Seed = request.Seed,
        User = request.User,
        Tools = request.Tools,
        ToolsJson = request.ToolsJson,
        ToolChoice = request.ToolChoice,
        Metadata = request.Metadata,
    };
}
