using System.Text;
using System.Text.Json;
using Sluice.Protocol.Chat;

namespace Sluice.Protocol.Anthropic;

/// <summary>
/// Parses an Anthropic Messages request (<c>POST /v1/messages</c>) into a <see cref="ChatRequest"/> every backend
/// understands, rejecting bad input with a 400 that names the parameter (as Anthropic's own API does).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><c>system</c> (a string or text blocks) becomes the first, system message; <c>system</c>-role messages
/// (text only) are kept where they stand.</item>
/// <item>Message content is a string or blocks: <c>text</c>; <c>tool_use</c> (assistant) becomes a tool call;
/// <c>tool_result</c> (user) becomes a <c>tool</c> message answering that call, placed before the turn's text.
/// <c>thinking</c> and <c>redacted_thinking</c> blocks are dropped (they only mean something to the model that wrote
/// them); <c>image</c> (base64 or url source) and <c>document</c> (base64, text or url source) blocks in user messages
/// become <see cref="ChatMessage.Parts"/>.</item>
/// <item><c>tools</c> and <c>tool_choice</c> are translated to their OpenAI shape (<c>any</c> → <c>required</c>,
/// <c>tool</c> → a forced function), which is what the backends read.</item>
/// <item><c>metadata</c> is kept as a string map (so simulation fault switches work); <c>metadata.user_id</c> is
/// also the request's user.</item>
/// <item>The raw body is not kept: backends that forward OpenAI bodies must build one from the parsed fields.</item>
/// </list>
/// </remarks>
public static class AnthropicRequestParser
{
    private const string Example =
        "{\"model\": \"sim-fast\", \"max_tokens\": 256, \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}";

    /// <summary>Parses and validates a Messages request body.</summary>
    /// <param name="utf8Json">The body; kept as <see cref="ChatRequest.AnthropicBody"/>, so do not reuse the buffer afterwards.</param>
    /// <param name="limits">Message-count limits.</param>
    /// <param name="requireMaxTokens">False for <c>count_tokens</c>, whose body has no <c>max_tokens</c>.</param>
    /// <exception cref="ChatException">The body is not a valid request; the error names the parameter.</exception>
    public static ChatRequest Parse(ReadOnlyMemory<byte> utf8Json, ChatRequestLimits? limits = null, bool requireMaxTokens = true)
    {
        limits ??= new ChatRequestLimits();
        using var document = RequestFields.ParseObject(utf8Json, Example);
        var root = document.RootElement;

        var model = RequestFields.OptionalString(root, "model");
        if (string.IsNullOrEmpty(model))
        {
            throw RequestFields.Missing("model", "name the model to use, e.g. \"model\": \"sim-fast\" (GET /v1/models lists them).");
        }

        var maxTokens = RequestFields.OptionalInt(root, "max_tokens");
        if (maxTokens is null && requireMaxTokens)
        {
            throw RequestFields.Missing("max_tokens", "set the most tokens the answer may have, e.g. \"max_tokens\": 1024.");
        }

        if (maxTokens is < 1)
        {
            throw ChatException.BadRequest($"max_tokens must be at least 1 (got {maxTokens}).", "max_tokens");
        }

        var messages = new List<ChatMessage>();
        var system = ParseSystem(root);
        if (system is not null)
        {
            messages.Add(new ChatMessage(ChatRoles.System, system));
        }

        var providerOnly = new ProviderOnly();
        ParseMessages(root, limits, messages, providerOnly);

        var topK = RequestFields.OptionalInt(root, "top_k");
        if (topK is < 0)
        {
            throw ChatException.BadRequest($"top_k must be 0 or more (got {topK}).", "top_k");
        }

        var tools = ParseTools(root, providerOnly);
        var metadata = RequestFields.OptionalStringMap(root, "metadata");
        return new ChatRequest
        {
            Model = model,
            Messages = messages,
            Stream = RequestFields.OptionalBool(root, "stream") ?? false,
            MaxTokens = maxTokens,
            Temperature = RequestFields.OptionalRange(root, "temperature", 0, 1),
            TopP = RequestFields.OptionalRange(root, "top_p", 0, 1),
            TopK = topK,
            Stop = RequestFields.OptionalStrings(root, "stop_sequences", allowSingle: false),
            User = metadata is not null && metadata.TryGetValue("user_id", out var user) && user.Length > 0 ? user : null,
            Tools = tools,
            ToolsJson = tools is null ? null : ToolJson.Tools(tools),
            ToolChoice = ParseToolChoice(root),
            Metadata = metadata,
            ResponseFormat = RequestFields.TryGet(root, "output_format", out var outputFormat) ? ResponseFormat.ParseAnthropic(outputFormat) : null,
            AnthropicBody = utf8Json,
            AnthropicOnly = providerOnly.First,
        };
    }

    private static string? ParseSystem(JsonElement root)
    {
        if (!RequestFields.TryGet(root, "system", out var system))
        {
            return null;
        }

        if (system.ValueKind == JsonValueKind.String)
        {
            var text = system.GetString()!;
            return text.Length == 0 ? null : text;
        }

        if (system.ValueKind != JsonValueKind.Array)
        {
            throw RequestFields.TypeError("system", "a string or an array of text blocks");
        }

        var builder = new StringBuilder();
        var index = 0;
        foreach (var block in system.EnumerateArray())
        {
            var path = $"system[{index++}]";
            var type = BlockType(block, path);
            if (type != "text")
            {
                throw ChatException.BadRequest($"{path}.type must be \"text\" (got \"{type}\").", $"{path}.type");
            }

            AppendParagraph(builder, RequiredText(block, path));
        }

        return builder.Length == 0 ? null : builder.ToString();
    }

    // The first part of the request only Anthropic's own API can take: a server tool (the cause, named first) or else a
    // server tool's block from an earlier turn.
    private sealed class ProviderOnly
    {
        private AnthropicOnlyPart? _tool;
        private AnthropicOnlyPart? _block;

        public AnthropicOnlyPart? First => _tool ?? _block;

        public void NoteTool(string param, string what) => _tool ??= new AnthropicOnlyPart(param, what);

        public void NoteBlock(string param, string what) => _block ??= new AnthropicOnlyPart(param, what);
    }

    // Blocks of Anthropic's server tools and containers: Anthropic runs them and sends them; Sluice cannot translate them.
    private static bool IsServerBlock(string type, string role) =>
        role == ChatRoles.Assistant
            ? type is "server_tool_use" or "mcp_tool_use" or "mcp_tool_result" or "container_upload" || type.EndsWith("_tool_result", StringComparison.Ordinal) && type != "tool_result"
            : type is "search_result" or "container_upload";

    private static void ParseMessages(JsonElement root, ChatRequestLimits limits, List<ChatMessage> output, ProviderOnly providerOnly)
    {
        if (!RequestFields.TryGet(root, "messages", out var messages))
        {
            throw RequestFields.Missing("messages", "send [{\"role\": \"user\", \"content\": \"...\"}].");
        }

        if (messages.ValueKind != JsonValueKind.Array)
        {
            throw RequestFields.TypeError("messages", "an array");
        }

        var count = messages.GetArrayLength();
        if (count == 0)
        {
            throw ChatException.BadRequest("messages is empty; send at least one message.", "messages", "empty_array");
        }

        if (count > limits.MaxMessages)
        {
            throw ChatException.BadRequest($"messages has {count} entries; the limit is {limits.MaxMessages}.", "messages", "array_above_max_length");
        }

        var index = 0;
        var attachments = new ContentParts.Counter(limits);
        foreach (var message in messages.EnumerateArray())
        {
            ParseMessage(message, index++, output, limits, attachments, providerOnly);
        }
    }

    private static void ParseMessage(JsonElement message, int index, List<ChatMessage> output, ChatRequestLimits limits, ContentParts.Counter attachments, ProviderOnly providerOnly)
    {
        var path = $"messages[{index}]";
        if (message.ValueKind != JsonValueKind.Object)
        {
            throw RequestFields.TypeError(path, "an object with role and content");
        }

        var role = RequestFields.OptionalString(message, "role", $"{path}.role")
            ?? throw RequestFields.Missing($"{path}.role", "use \"user\" or \"assistant\".");
        if (role is not (ChatRoles.User or ChatRoles.Assistant or ChatRoles.System))
        {
            throw ChatException.BadRequest(
                $"{path}.role \"{role}\" is not a known role: messages alternate \"user\" and \"assistant\"; put instructions in the top-level system field.",
                $"{path}.role");
        }

        if (!RequestFields.TryGet(message, "content", out var content))
        {
            throw RequestFields.Missing($"{path}.content", "send a string or an array of content blocks.");
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            output.Add(new ChatMessage(role, content.GetString()));
            return;
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            throw RequestFields.TypeError($"{path}.content", "a string or an array of content blocks");
        }

        if (content.GetArrayLength() == 0)
        {
            throw ChatException.BadRequest($"{path}.content is empty; send at least one block.", $"{path}.content", "empty_array");
        }

        var text = new StringBuilder();
        var hasText = false;
        var parts = new List<ContentPart>();
        var hasAttachment = false;
        List<ToolCall>? calls = null;
        var blockIndex = 0;
        foreach (var block in content.EnumerateArray())
        {
            var blockPath = $"{path}.content[{blockIndex++}]";
            var type = BlockType(block, blockPath);
            switch (type)
            {
                case "text":
                    var blockText = RequiredText(block, blockPath);
                    AppendParagraph(text, blockText);
                    parts.Add(ContentPart.FromText(blockText));
                    hasText = true;
                    break;
                case "image" or "document" when role == ChatRoles.User:
                    attachments.Add(blockPath);
                    parts.Add(type == "image" ? ParseImage(block, blockPath, limits) : ParseDocument(block, blockPath, limits));
                    hasAttachment = true;
                    break;
                case not "text" when role == ChatRoles.System:
                    throw ChatException.BadRequest($"{blockPath}.type must be \"text\" in a system message (got \"{type}\").", $"{blockPath}.type");
                case "tool_use" when role == ChatRoles.Assistant:
                    calls ??= [];
                    calls.Add(ParseToolUse(block, blockPath));
                    break;
                case "tool_result" when role == ChatRoles.User:
                    // Tool results answer the previous assistant turn, so they go before this turn's own text.
                    output.Add(ParseToolResult(block, blockPath));
                    break;
                case var server when role != ChatRoles.System && IsServerBlock(server, role):
                    // Sent on in the client's own body to an Anthropic upstream; any other backend refuses the request.
                    providerOnly.NoteBlock($"{blockPath}.type", $"a \"{type}\" block");
                    break;
                case "thinking" or "redacted_thinking" or "compaction" when role == ChatRoles.Assistant:
                    // Meaningful only to the model that wrote them: an Anthropic upstream gets them in the client's own
                    // body (ChatRequest.AnthropicBody); translated for another backend, they are left out.
                    break;
                case "tool_use" or "tool_result":
                    throw ChatException.BadRequest(
                        $"{blockPath}.type \"{type}\" belongs in {(type == "tool_use" ? "an assistant" : "a user")} message, not a {role} message.",
                        $"{blockPath}.type");
                case "image" or "document":
                    throw ChatException.BadRequest(
                        $"{blockPath}.type \"{type}\" belongs in a user message, not a {role} message.", $"{blockPath}.type", "unsupported_value");
                default:
                    throw ChatException.BadRequest(
                        $"{blockPath}.type \"{type}\" is not supported here; Sluice accepts text, image, document, tool_use and tool_result blocks.",
                        $"{blockPath}.type", "unsupported_value");
            }
        }

        if (hasText || calls is not null || hasAttachment)
        {
            output.Add(new ChatMessage(role, hasText ? text.ToString() : hasAttachment ? string.Empty : null)
            {
                ToolCalls = calls,
                Parts = hasAttachment ? parts : null,
            });
        }
    }

    /// <summary>An <c>image</c> block: <c>source</c> base64 (<c>media_type</c>, <c>data</c>) or <c>url</c>.</summary>
    private static ContentPart ParseImage(JsonElement block, string path, ChatRequestLimits limits)
    {
        var (source, sourceType) = Source(block, path, "base64 or url");
        switch (sourceType)
        {
            case "base64":
                var mediaType = RequestFields.OptionalString(source, "media_type", $"{path}.source.media_type")
                    ?? throw RequestFields.Missing($"{path}.source.media_type", "say what the image is, e.g. \"image/png\".");
                ContentParts.CheckImageType(mediaType, $"{path}.source.media_type");
                var data = RequiredData(source, path);
                return new ContentPart
                {
                    Kind = ContentPartKind.Image,
                    MediaType = mediaType.ToLowerInvariant(),
                    Data = data,
                    ByteCount = ContentParts.CheckBase64(data, $"{path}.source.data", limits),
                    Param = path,
                };
            case "url":
                return new ContentPart { Kind = ContentPartKind.Image, Url = RequiredUrl(source, path), MediaType = null, Param = path };
            default:
                throw UnsupportedSource(path, sourceType, "base64 or url");
        }
    }

    /// <summary>A <c>document</c> block: <c>source</c> base64 (a PDF), <c>text</c> (plain text) or <c>url</c>; <c>title</c> kept.</summary>
    private static ContentPart ParseDocument(JsonElement block, string path, ChatRequestLimits limits)
    {
        var (source, sourceType) = Source(block, path, "base64, text or url");
        var title = RequestFields.OptionalString(block, "title", $"{path}.title");
        switch (sourceType)
        {
            case "base64":
                var mediaType = RequestFields.OptionalString(source, "media_type", $"{path}.source.media_type") ?? "application/pdf";
                var data = RequiredData(source, path);
                return new ContentPart
                {
                    Kind = ContentPartKind.Document,
                    MediaType = mediaType.ToLowerInvariant(),
                    Data = data,
                    ByteCount = ContentParts.CheckBase64(data, $"{path}.source.data", limits),
                    Filename = title,
                    Param = path,
                };
            case "text":
                var text = RequiredData(source, path);
                var bytes = Encoding.UTF8.GetByteCount(text);
                ContentParts.CheckSize(bytes, $"{path}.source.data", limits);
                return new ContentPart { Kind = ContentPartKind.Document, MediaType = "text/plain", Text = text, ByteCount = bytes, Filename = title, Param = path };
            case "url":
                var url = RequiredUrl(source, path);
                return new ContentPart { Kind = ContentPartKind.Document, Url = url, MediaType = ContentParts.MediaTypeFromUrl(url) ?? "application/pdf", Filename = title, Param = path };
            default:
                throw UnsupportedSource(path, sourceType, "base64, text or url");
        }
    }

    private static (JsonElement Source, string Type) Source(JsonElement block, string path, string accepted)
    {
        if (!RequestFields.TryGet(block, "source", out var source) || source.ValueKind != JsonValueKind.Object)
        {
            throw RequestFields.Missing($"{path}.source", $"give the {accepted} source, e.g. {{\"type\": \"base64\", \"media_type\": \"image/png\", \"data\": \"…\"}}.");
        }

        var type = RequestFields.OptionalString(source, "type", $"{path}.source.type")
            ?? throw RequestFields.Missing($"{path}.source.type", $"use {accepted}.");
        return (source, type);
    }

    private static string RequiredData(JsonElement source, string path) =>
        RequestFields.OptionalString(source, "data", $"{path}.source.data")
        ?? throw RequestFields.Missing($"{path}.source.data", "send the content in \"data\".");

    private static string RequiredUrl(JsonElement source, string path) =>
        ContentParts.CheckUrl(
            RequestFields.OptionalString(source, "url", $"{path}.source.url") ?? throw RequestFields.Missing($"{path}.source.url", "send the http(s) address in \"url\"."),
            $"{path}.source.url");

    private static ChatException UnsupportedSource(string path, string type, string accepted) => ChatException.BadRequest(
        $"{path}.source.type \"{type}\" is not supported; use {accepted} (file ids belong to one provider's Files API, so send the bytes or a URL).",
        $"{path}.source.type", "unsupported_value");

    private static ToolCall ParseToolUse(JsonElement block, string path)
    {
        var id = RequestFields.OptionalString(block, "id", $"{path}.id")
            ?? throw RequestFields.Missing($"{path}.id", "send the id the model gave the call (toolu_…).");
        var name = RequestFields.OptionalString(block, "name", $"{path}.name")
            ?? throw RequestFields.Missing($"{path}.name", "send the name of the tool the model called.");
        var arguments = "{}";
        if (RequestFields.TryGet(block, "input", out var input))
        {
            if (input.ValueKind != JsonValueKind.Object)
            {
                throw RequestFields.TypeError($"{path}.input", "an object");
            }

            arguments = input.GetRawText();
        }

        return new ToolCall(id, name, arguments);
    }

    private static ChatMessage ParseToolResult(JsonElement block, string path)
    {
        var id = RequestFields.OptionalString(block, "tool_use_id", $"{path}.tool_use_id")
            ?? throw RequestFields.Missing($"{path}.tool_use_id", "send the id of the tool_use block this result answers.");
        var text = string.Empty;
        if (RequestFields.TryGet(block, "content", out var content))
        {
            if (content.ValueKind == JsonValueKind.String)
            {
                text = content.GetString()!;
            }
            else if (content.ValueKind == JsonValueKind.Array)
            {
                var builder = new StringBuilder();
                var index = 0;
                foreach (var part in content.EnumerateArray())
                {
                    var partPath = $"{path}.content[{index++}]";
                    var type = BlockType(part, partPath);
                    if (type != "text")
                    {
                        throw ChatException.BadRequest(
                            $"{partPath}.type \"{type}\" is not supported in a tool result; send the result as text.",
                            $"{partPath}.type", "unsupported_value");
                    }

                    AppendParagraph(builder, RequiredText(part, partPath));
                }

                text = builder.ToString();
            }
            else
            {
                throw RequestFields.TypeError($"{path}.content", "a string or an array of text blocks");
            }
        }

        // OpenAI-shaped backends have no error flag on tool results: say it in the text instead.
        if (RequestFields.OptionalBool(block, "is_error", $"{path}.is_error") == true)
        {
            text = "Error: " + text;
        }

        return new ChatMessage(ChatRoles.Tool, text) { ToolCallId = id };
    }

    private static List<ToolDefinition>? ParseTools(JsonElement root, ProviderOnly providerOnly)
    {
        if (!RequestFields.TryGet(root, "tools", out var tools))
        {
            return null;
        }

        if (tools.ValueKind != JsonValueKind.Array)
        {
            throw RequestFields.TypeError("tools", "an array");
        }

        var result = new List<ToolDefinition>();
        var index = 0;
        foreach (var tool in tools.EnumerateArray())
        {
            var path = $"tools[{index++}]";
            if (tool.ValueKind != JsonValueKind.Object)
            {
                throw RequestFields.TypeError(path, "an object with name and input_schema");
            }

            var type = RequestFields.OptionalString(tool, "type", $"{path}.type");
            if (type is not (null or "custom"))
            {
                // A server tool (web search, code execution, …): Anthropic runs it; other backends refuse the request.
                providerOnly.NoteTool($"{path}.type", $"the server tool \"{type}\"");
                continue;
            }

            var name = RequestFields.OptionalString(tool, "name", $"{path}.name");
            if (string.IsNullOrEmpty(name))
            {
                throw RequestFields.Missing($"{path}.name", "give the tool a name, e.g. \"get_weather\".");
            }

            JsonElement? schema = null;
            if (RequestFields.TryGet(tool, "input_schema", out var inputSchema))
            {
                if (inputSchema.ValueKind != JsonValueKind.Object)
                {
                    throw RequestFields.TypeError($"{path}.input_schema", "a JSON schema object");
                }

                schema = inputSchema.Clone();
            }

            result.Add(new ToolDefinition(name, RequestFields.OptionalString(tool, "description", $"{path}.description"), schema));
        }

        return result.Count == 0 ? null : result;
    }

    private static JsonElement? ParseToolChoice(JsonElement root)
    {
        if (!RequestFields.TryGet(root, "tool_choice", out var choice))
        {
            return null;
        }

        if (choice.ValueKind != JsonValueKind.Object)
        {
            throw RequestFields.TypeError("tool_choice", "an object such as {\"type\": \"auto\"}");
        }

        var type = RequestFields.OptionalString(choice, "type", "tool_choice.type");
        return type switch
        {
            "auto" => ToolJson.Choice("auto"),
            "any" => ToolJson.Choice("required"),
            "none" => ToolJson.Choice("none"),
            "tool" => ToolJson.ForcedChoice(RequestFields.OptionalString(choice, "name", "tool_choice.name") is { Length: > 0 } name
                ? name
                : throw RequestFields.Missing("tool_choice.name", "name the tool the model must call.")),
            _ => throw ChatException.BadRequest(
                $"tool_choice.type must be \"auto\", \"any\", \"tool\" or \"none\" (got {(type is null ? "nothing" : $"\"{type}\"")}).",
                "tool_choice.type"),
        };
    }

    private static string BlockType(JsonElement block, string path)
    {
        if (block.ValueKind != JsonValueKind.Object)
        {
            throw RequestFields.TypeError(path, "an object such as {\"type\": \"text\", \"text\": \"...\"}");
        }

        return RequestFields.OptionalString(block, "type", $"{path}.type")
            ?? throw RequestFields.Missing($"{path}.type", "every content block has a type, e.g. \"text\".");
    }

    private static string RequiredText(JsonElement block, string path) =>
        RequestFields.OptionalString(block, "text", $"{path}.text")
        ?? throw RequestFields.Missing($"{path}.text", "a text block carries its text in \"text\".");

    private static void AppendParagraph(StringBuilder builder, string text)
    {
        if (builder.Length > 0 && text.Length > 0)
        {
            builder.Append('\n');
        }

        builder.Append(text);
    }
}
