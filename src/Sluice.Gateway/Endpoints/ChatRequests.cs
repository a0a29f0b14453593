using Sluice.Protocol.Chat;

namespace Sluice.Gateway.Endpoints;

/// <summary>Copies of parsed requests with one field changed.</summary>
internal static class ChatRequests
{
    /// <summary>The same request for another model name (the catalog's name for what the client asked).</summary>
    public static ChatRequest WithModel(ChatRequest request, string model, bool? stream = null) =>
        With(request, model, stream ?? request.Stream, request.RawBody);

    /// <summary>
    /// A streamed copy for another model with other messages (a session turn); no raw body, so upstreams get the
    /// parsed request re-serialized rather than the client's session fields.
    /// </summary>
    public static ChatRequest WithMessages(ChatRequest request, string model, IReadOnlyList<ChatMessage> messages) =>
        With(request, model, stream: true, ReadOnlyMemory<byte>.Empty, messages);

    /// <summary>A copy of <paramref name="request"/> with another model, stream flag and raw body (and messages, when given).</summary>
    public static ChatRequest With(
        ChatRequest request, string model, bool stream, ReadOnlyMemory<byte> rawBody, IReadOnlyList<ChatMessage>? messages = null) => new()
    {
        Model = model,
        Messages = messages ?? request.Messages,
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
