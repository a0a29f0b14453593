using Sluice.Protocol.Chat;

namespace Sluice.Gateway.Endpoints;

/// <summary>Copies of parsed requests with one field changed.</summary>
internal static class ChatRequests
{
    /// <summary>The same request for another model name (the catalog's name for what the client asked).</summary>
    public static ChatRequest WithModel(ChatRequest request, string model, bool? stream = null) => new()
    {
        Model = model,
        Messages = request.Messages,
        N = request.N,
        RawBody = request.RawBody,
        Stream = stream ?? request.Stream,
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
