using System.Globalization;
using System.Text.Json;

namespace Sluice.Protocol.Chat;

/// <summary>Limits applied while parsing a request.</summary>
public sealed record ChatRequestLimits
{
    /// <summary>Longest accepted <c>prompt</c> shorthand, in characters.</summary>
    public int MaxPromptChars { get; init; } = 5_000;

    /// <summary>Most messages accepted in one request.</summary>
    public int MaxMessages { get; init; } = 2_048;

    /// <summary>
    /// True for bodies whose conversation comes from elsewhere (a session turn names one <c>message</c>): with neither
    /// <c>messages</c> nor <c>prompt</c>, the request is parsed with no messages instead of being refused.
    /// </summary>
    public bool MessagesOptional { get; init; }

    /// <summary>Most image and document parts accepted in one request.</summary>
    public int MaxAttachments { get; init; } = 16;

    /// <summary>Largest image or document accepted inline, in decoded bytes.</summary>
    public int MaxAttachmentBytes { get; init; } = 5 * 1024 * 1024;
}

/// <summary>
/// Parses an OpenAI Chat Completions request body (or the <c>{"prompt": "..."}</c> shorthand) into a
/// <see cref="ChatRequest"/>, rejecting bad input with a 400 that names the offending parameter.
/// </summary>
public static class ChatRequestParser
{
    /// <summary>Largest accepted <c>n</c> (OpenAI's own limit).</summary>
    public const int MaxChoices = 128;

    /// <summary>Largest accepted <c>top_logprobs</c> (OpenAI's own limit).</summary>
    public const int MaxTopLogprobs = 20;

    private const int MaxDepth = 64;

    /// <summary>
    /// Parses and validates <paramref name="utf8Json"/>. The request keeps a reference to the bytes as
    /// <see cref="ChatRequest.RawBody"/>, so the caller must not reuse the buffer afterwards.
    /// </summary>
    /// <exception cref="ChatException">The body is not a valid request; the error names the parameter.</exception>
    public static ChatRequest Parse(ReadOnlyMemory<byte> utf8Json, ChatRequestLimits? limits = null)
    {
        limits ??= new ChatRequestLimits();
        if (utf8Json.IsEmpty)
        {
            throw ChatException.BadRequest(
                "The request body is empty. Send a JSON object such as {\"model\": \"sim-fast\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}.",
                null, "invalid_json");
        }

        using (var document = JsonInput.Parse(utf8Json, MaxDepth))
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw ChatException.BadRequest("The request body must be a JSON object.", null, "invalid_type");
            }

            return ParseRoot(root, limits, utf8Json);
        }
    }

    private static ChatRequest ParseRoot(JsonElement root, ChatRequestLimits limits, ReadOnlyMemory<byte> rawBody)
    {
        var model = OptionalString(root, "model") ?? string.Empty;
        var messages = ParseMessagesOrPrompt(root, limits);

        var choices = 1;
        if (root.TryGetProperty("n", out var n) && n.ValueKind != JsonValueKind.Null)
        {
            if (n.ValueKind != JsonValueKind.Number || !n.TryGetInt32(out var count))
            {
                throw TypeError("n", "an integer");
            }

            if (count is < 1 or > MaxChoices)
            {
                throw ChatException.BadRequest($"n must be between 1 and {MaxChoices} (got {count}).", "n");
            }

            choices = count;
        }

        var stream = OptionalBool(root, "stream") ?? false;
        var includeUsage = false;
        if (root.TryGetProperty("stream_options", out var streamOptions) && streamOptions.ValueKind != JsonValueKind.Null)
        {
            if (streamOptions.ValueKind != JsonValueKind.Object)
            {
                throw TypeError("stream_options", "an object");
            }

            includeUsage = OptionalBool(streamOptions, "include_usage", "stream_options.include_usage") ?? false;
        }

        var maxCompletion = OptionalInt(root, "max_completion_tokens");
        var maxTokens = OptionalInt(root, "max_tokens");
        var max = maxCompletion ?? maxTokens;
        if (max is < 1)
        {
            var name = maxCompletion is not null ? "max_completion_tokens" : "max_tokens";
            throw ChatException.BadRequest($"{name} must be at least 1 (got {max}).", name);
        }

        var temperature = OptionalDouble(root, "temperature");
        if (temperature is < 0 or > 2)
        {
            throw ChatException.BadRequest($"temperature must be between 0 and 2 (got {Format(temperature.Value)}).", "temperature");
        }

        var topP = OptionalDouble(root, "top_p");
        if (topP is < 0 or > 1)
        {
            throw ChatException.BadRequest($"top_p must be between 0 and 1 (got {Format(topP.Value)}).", "top_p");
        }

        // top_k and the extensions below are not OpenAI's, but llama.cpp's server, vLLM and Ollama's /v1 take them;
        // local models use them and upstream adapters that know a name for them pass them on.
        var topK = OptionalInt(root, "top_k");
        if (topK is < 0)
        {
            throw ChatException.BadRequest($"top_k must be 0 or more (got {topK}); 0 turns it off.", "top_k");
        }

        var extensions = SamplingExtensions.Parse(root);

        long? seed = null;
        if (root.TryGetProperty("seed", out var seedElement) && seedElement.ValueKind != JsonValueKind.Null)
        {
            if (seedElement.ValueKind != JsonValueKind.Number || !seedElement.TryGetInt64(out var seedValue))
            {
                throw TypeError("seed", "an integer");
            }

            seed = seedValue;
        }

        var (tools, toolsJson) = ParseTools(root);
        JsonElement? toolChoice = null;
        if (root.TryGetProperty("tool_choice", out var choice) && choice.ValueKind != JsonValueKind.Null)
        {
            if (choice.ValueKind == JsonValueKind.String)
            {
                var value = choice.GetString();
                if (value is not ("auto" or "none" or "required"))
                {
                    throw ChatException.BadRequest($"tool_choice must be \"auto\", \"none\", \"required\" or an object naming a function (got \"{value}\").", "tool_choice");
                }
            }
            else if (choice.ValueKind != JsonValueKind.Object)
            {
                throw TypeError("tool_choice", "a string or an object");
            }

            toolChoice = choice.Clone();
        }

        var logprobs = OptionalBool(root, "logprobs") ?? false;
        var topLogprobs = OptionalInt(root, "top_logprobs");
        if (topLogprobs is < 0 or > MaxTopLogprobs)
        {
            throw ChatException.BadRequest($"top_logprobs must be between 0 and {MaxTopLogprobs} (got {topLogprobs}).", "top_logprobs");
        }

        if (topLogprobs is not null && !logprobs)
        {
            throw ChatException.BadRequest("top_logprobs needs \"logprobs\": true; add it, or leave top_logprobs out.", "logprobs", "missing_required_parameter");
        }

        var responseFormat = root.TryGetProperty("response_format", out var format) ? ResponseFormat.ParseChat(format) : null;

        return new ChatRequest
        {
            Model = model,
            Messages = messages,
            N = choices,
            RawBody = rawBody,
            Stream = stream,
            IncludeUsage = includeUsage,
            MaxTokens = max,
            Temperature = temperature,
            TopP = topP,
            TopK = topK,
            MinP = extensions.MinP,
            RepetitionPenalty = extensions.RepetitionPenalty,
            FrequencyPenalty = extensions.FrequencyPenalty,
            PresencePenalty = extensions.PresencePenalty,
            Stop = ParseStop(root),
            Seed = seed,
            User = OptionalString(root, "user"),
            Tools = tools,
            ToolsJson = toolsJson,
            ToolChoice = toolChoice,
            Metadata = ParseMetadata(root),
            ResponseFormat = responseFormat,
            ParallelToolCalls = OptionalBool(root, "parallel_tool_calls"),
            Logprobs = logprobs,
            TopLogprobs = topLogprobs,
        };
    }

    private static List<ChatMessage> ParseMessagesOrPrompt(JsonElement root, ChatRequestLimits limits)
    {
        var hasMessages = root.TryGetProperty("messages", out var messagesElement) && messagesElement.ValueKind != JsonValueKind.Null;
        var hasPrompt = root.TryGetProperty("prompt", out var promptElement) && promptElement.ValueKind != JsonValueKind.Null;

        if (hasMessages && hasPrompt)
        {
            throw ChatException.BadRequest("Send either messages or prompt, not both.", "prompt", "invalid_value");
        }

        if (!hasMessages && !hasPrompt && limits.MessagesOptional)
        {
            return [];
        }

        if (hasPrompt)
        {
            if (promptElement.ValueKind != JsonValueKind.String)
            {
                throw TypeError("prompt", "a string");
            }

            var prompt = promptElement.GetString()!;
            if (string.IsNullOrWhiteSpace(prompt))
            {
                throw ChatException.BadRequest("prompt is empty. Send the question as a non-empty string.", "prompt", "empty_value");
            }

            if (prompt.Length > limits.MaxPromptChars)
            {
                throw ChatException.BadRequest(
                    $"prompt is {prompt.Length} characters; the limit is {limits.MaxPromptChars}. Shorten it or raise Limits:MaxPromptChars.",
                    "prompt", "string_above_max_length");
            }

            return [new ChatMessage(ChatRoles.User, prompt)];
        }

        if (!hasMessages)
        {
            throw ChatException.BadRequest(
                "messages is required: send [{\"role\": \"user\", \"content\": \"...\"}] (or the shorthand \"prompt\": \"...\").",
                "messages", "missing_required_parameter");
        }

        if (messagesElement.ValueKind != JsonValueKind.Array)
        {
            throw TypeError("messages", "an array");
        }

        var count = messagesElement.GetArrayLength();
        if (count == 0)
        {
            throw ChatException.BadRequest("messages is empty; send at least one message.", "messages", "empty_array");
        }

        if (count > limits.MaxMessages)
        {
            throw ChatException.BadRequest($"messages has {count} entries; the limit is {limits.MaxMessages}.", "messages", "array_above_max_length");
        }

        var messages = new List<ChatMessage>(count);
        var index = 0;
        var attachments = new ContentParts.Counter(limits);
        foreach (var element in messagesElement.EnumerateArray())
        {
            messages.Add(ParseMessage(element, index++, limits, attachments));
        }

        return messages;
    }

    private static ChatMessage ParseMessage(JsonElement element, int index, ChatRequestLimits limits, ContentParts.Counter attachments)
    {
        var path = $"messages[{index}]";
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw TypeError(path, "an object with role and content");
        }

        if (!element.TryGetProperty("role", out var roleElement) || roleElement.ValueKind == JsonValueKind.Null)
        {
            throw ChatException.BadRequest($"{path}.role is required.", $"{path}.role", "missing_required_parameter");
        }

        if (roleElement.ValueKind != JsonValueKind.String)
        {
            throw TypeError($"{path}.role", "a string");
        }

        var role = roleElement.GetString()!;
        if (!ChatRoles.IsKnown(role))
        {
            throw ChatException.BadRequest(
                $"{path}.role \"{role}\" is not a known role; use system, developer, user, assistant or tool.",
                $"{path}.role", "invalid_value");
        }

        var (content, parts) = ParseContent(element, path, role, limits, attachments);
        var toolCalls = role == ChatRoles.Assistant ? ParseToolCalls(element, path) : null;
        if (content is null && toolCalls is null)
        {
            throw ChatException.BadRequest($"{path}.content is required.", $"{path}.content", "missing_required_parameter");
        }

        var toolCallId = OptionalString(element, "tool_call_id", $"{path}.tool_call_id");
        if (role == ChatRoles.Tool && toolCallId is null)
        {
            throw ChatException.BadRequest($"{path}.tool_call_id is required for tool messages.", $"{path}.tool_call_id", "missing_required_parameter");
        }

        return new ChatMessage(role, content)
        {
            Name = OptionalString(element, "name", $"{path}.name"),
            ToolCallId = toolCallId,
            ToolCalls = toolCalls,
            Parts = parts,
        };
    }

    /// <summary>
    /// The message's text (text parts joined) and, when it has image or file parts, all its parts in order. Images
    /// (<c>image_url</c>: an http(s) or data URL, optional <c>detail</c>) and files (<c>file</c>: <c>file_data</c> as a data
    /// URL or base64, or <c>file_id</c>; optional <c>filename</c>) are accepted in user messages.
    /// </summary>
    private static (string? Text, List<ContentPart>? Parts) ParseContent(
        JsonElement message, string path, string role, ChatRequestLimits limits, ContentParts.Counter attachments)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
        {
            return (null, null);
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            return (content.GetString(), null);
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            throw TypeError($"{path}.content", "a string or an array of content parts");
        }

        var parts = new List<ContentPart>();
        var hasAttachment = false;
        var partIndex = 0;
        foreach (var part in content.EnumerateArray())
        {
            var partPath = $"{path}.content[{partIndex++}]";
            if (part.ValueKind != JsonValueKind.Object)
            {
                throw TypeError(partPath, "an object such as {\"type\": \"text\", \"text\": \"...\"}");
            }

            var type = OptionalString(part, "type", $"{partPath}.type");
            if (type is "image_url" or "file")
            {
                if (role != ChatRoles.User)
                {
                    throw ChatException.BadRequest(
                        $"{partPath}.type \"{type}\" is only accepted in user messages (this is a {role} message). Move the image or file into a user message.",
                        $"{partPath}.type", "unsupported_value");
                }

                attachments.Add(partPath);
                parts.Add(type == "image_url" ? ParseImageUrl(part, partPath, limits) : ParseFile(part, partPath, limits));
                hasAttachment = true;
                continue;
            }

            if (type != "text")
            {
                throw ChatException.BadRequest(
                    $"{partPath}.type \"{type}\" is not supported; content parts are text, image_url and file (audio is not).",
                    $"{partPath}.type", "unsupported_value");
            }

            parts.Add(ContentPart.FromText(OptionalString(part, "text", $"{partPath}.text")
                ?? throw ChatException.BadRequest($"{partPath}.text is required.", $"{partPath}.text", "missing_required_parameter")));
        }

        return (ContentParts.JoinText(parts, string.Empty), hasAttachment ? parts : null);
    }

    private static ContentPart ParseImageUrl(JsonElement part, string path, ChatRequestLimits limits)
    {
        if (!part.TryGetProperty("image_url", out var image) || image.ValueKind != JsonValueKind.Object)
        {
            throw ChatException.BadRequest(
                $"{path}.image_url is required: {{\"url\": \"https://…\" or \"data:image/png;base64,…\"}}.", $"{path}.image_url", "missing_required_parameter");
        }

        var urlPath = $"{path}.image_url.url";
        var url = OptionalString(image, "url", urlPath)
            ?? throw ChatException.BadRequest($"{urlPath} is required: an http(s) URL or a data URL.", urlPath, "missing_required_parameter");
        var detail = OptionalString(image, "detail", $"{path}.image_url.detail");
        if (detail is not (null or "auto" or "low" or "high"))
        {
            throw ChatException.BadRequest($"{path}.image_url.detail must be \"auto\", \"low\" or \"high\" (got \"{detail}\").", $"{path}.image_url.detail");
        }

        if (ContentParts.TryReadDataUrl(url, urlPath, limits, out var mediaType, out var data, out var bytes))
        {
            ContentParts.CheckImageType(mediaType, urlPath);
            return new ContentPart { Kind = ContentPartKind.Image, MediaType = mediaType, Data = data, ByteCount = bytes, Detail = detail, Param = path };
        }

        return new ContentPart
        {
            Kind = ContentPartKind.Image,
            Url = ContentParts.CheckUrl(url, urlPath),
            MediaType = ContentParts.MediaTypeFromUrl(url),
            Detail = detail,
            Param = path,
        };
    }

    private static ContentPart ParseFile(JsonElement part, string path, ChatRequestLimits limits)
    {
        if (!part.TryGetProperty("file", out var file) || file.ValueKind != JsonValueKind.Object)
        {
            throw ChatException.BadRequest(
                $"{path}.file is required: {{\"file_data\": \"data:application/pdf;base64,…\", \"filename\": \"…\"}} or {{\"file_id\": \"file-…\"}}.",
                $"{path}.file", "missing_required_parameter");
        }

        var filename = OptionalString(file, "filename", $"{path}.file.filename");
        if (OptionalString(file, "file_id", $"{path}.file.file_id") is { } fileId)
        {
            return new ContentPart { Kind = ContentPartKind.Document, FileId = fileId, Filename = filename, Param = path };
        }

        var dataPath = $"{path}.file.file_data";
        var fileData = OptionalString(file, "file_data", dataPath)
            ?? throw ChatException.BadRequest($"{path}.file needs file_data (a data URL or base64) or file_id.", dataPath, "missing_required_parameter");
        if (ContentParts.TryReadDataUrl(fileData, dataPath, limits, out var mediaType, out var data, out var bytes))
        {
            return new ContentPart { Kind = ContentPartKind.Document, MediaType = mediaType, Data = data, ByteCount = bytes, Filename = filename, Param = path };
        }

        // Bare base64: the file name's extension says what it is; OpenAI's file inputs are PDFs otherwise.
        return new ContentPart
        {
            Kind = ContentPartKind.Document,
            MediaType = (filename is null ? null : ContentParts.MediaTypeFromUrl(filename)) ?? "application/pdf",
            Data = fileData,
            ByteCount = ContentParts.CheckBase64(fileData, dataPath, limits),
            Filename = filename,
            Param = path,
        };
    }

    private static List<ToolCall>? ParseToolCalls(JsonElement message, string path)
    {
        if (!message.TryGetProperty("tool_calls", out var calls) || calls.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (calls.ValueKind != JsonValueKind.Array)
        {
            throw TypeError($"{path}.tool_calls", "an array");
        }

        var result = new List<ToolCall>();
        var index = 0;
        foreach (var call in calls.EnumerateArray())
        {
            var callPath = $"{path}.tool_calls[{index++}]";
            if (call.ValueKind != JsonValueKind.Object
                || !call.TryGetProperty("function", out var function)
                || function.ValueKind != JsonValueKind.Object)
            {
                throw TypeError(callPath, "an object with id and function");
            }

            result.Add(new ToolCall(
                OptionalString(call, "id", $"{callPath}.id") ?? string.Empty,
                OptionalString(function, "name", $"{callPath}.function.name") ?? string.Empty,
                OptionalString(function, "arguments", $"{callPath}.function.arguments") ?? "{}"));
        }

        return result;
    }

    private static (List<ToolDefinition>?, JsonElement?) ParseTools(JsonElement root)
    {
        if (!root.TryGetProperty("tools", out var tools) || tools.ValueKind == JsonValueKind.Null)
        {
            return (null, null);
        }

        if (tools.ValueKind != JsonValueKind.Array)
        {
            throw TypeError("tools", "an array");
        }

        var result = new List<ToolDefinition>();
        var index = 0;
        foreach (var tool in tools.EnumerateArray())
        {
            var path = $"tools[{index++}]";
            if (tool.ValueKind != JsonValueKind.Object)
            {
                throw TypeError(path, "an object");
            }

            var type = OptionalString(tool, "type", $"{path}.type");
            if (type != "function")
            {
                throw ChatException.BadRequest($"{path}.type must be \"function\" (got \"{type}\").", $"{path}.type");
            }

            if (!tool.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object)
            {
                throw ChatException.BadRequest($"{path}.function is required.", $"{path}.function", "missing_required_parameter");
            }

            var name = OptionalString(function, "name", $"{path}.function.name");
            if (string.IsNullOrEmpty(name))
            {
                throw ChatException.BadRequest($"{path}.function.name is required.", $"{path}.function.name", "missing_required_parameter");
            }

            JsonElement? parameters = function.TryGetProperty("parameters", out var p) && p.ValueKind == JsonValueKind.Object
                ? p.Clone()
                : null;
            result.Add(new ToolDefinition(name, OptionalString(function, "description", $"{path}.function.description"), parameters));
        }

        return (result, tools.Clone());
    }

    private static List<string>? ParseStop(JsonElement root)
    {
        if (!root.TryGetProperty("stop", out var stop) || stop.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (stop.ValueKind == JsonValueKind.String)
        {
            var value = stop.GetString()!;
            return value.Length == 0 ? null : [value];
        }

        if (stop.ValueKind != JsonValueKind.Array)
        {
            throw TypeError("stop", "a string or an array of strings");
        }

        var result = new List<string>();
        foreach (var item in stop.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw TypeError("stop", "a string or an array of strings");
            }

            var value = item.GetString()!;
            if (value.Length > 0)
            {
                result.Add(value);
            }
        }

        if (result.Count > 4)
        {
            throw ChatException.BadRequest($"stop accepts at most 4 sequences (got {result.Count}).", "stop");
        }

        return result.Count == 0 ? null : result;
    }

    private static Dictionary<string, string>? ParseMetadata(JsonElement root)
    {
        if (!root.TryGetProperty("metadata", out var metadata) || metadata.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (metadata.ValueKind != JsonValueKind.Object)
        {
            throw TypeError("metadata", "an object of string values");
        }

        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in metadata.EnumerateObject())
        {
            result[property.Name] = property.Value.ValueKind switch
            {
                JsonValueKind.String => property.Value.GetString()!,
                JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => property.Value.GetRawText(),
                _ => throw TypeError($"metadata.{property.Name}", "a string"),
            };
        }

        return result;
    }

    private static string? OptionalString(JsonElement obj, string name, string? path = null)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw TypeError(path ?? name, "a string");
    }

    private static bool? OptionalBool(JsonElement obj, string name, string? path = null)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw TypeError(path ?? name, "a boolean"),
        };
    }

    private static int? OptionalInt(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var result))
        {
            throw TypeError(name, "an integer");
        }

        return result;
    }

    private static double? OptionalDouble(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Number ? value.GetDouble() : throw TypeError(name, "a number");
    }

    private static ChatException TypeError(string param, string expected) =>
        ChatException.BadRequest($"{param} must be {expected}.", param, "invalid_type");

    private static string Format(double value) => value.ToString(CultureInfo.InvariantCulture);
}
