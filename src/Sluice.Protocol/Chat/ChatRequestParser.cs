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
}

/// <summary>
/// Parses an OpenAI Chat Completions request body (or the <c>{"prompt": "..."}</c> shorthand) into a
/// <see cref="ChatRequest"/>, rejecting bad input with a 400 that names the offending parameter.
/// </summary>
public static class ChatRequestParser
{
    /// <summary>Largest accepted <c>n</c> (OpenAI's own limit).</summary>
    public const int MaxChoices = 128;

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
            Stop = ParseStop(root),
            Seed = seed,
            User = OptionalString(root, "user"),
            Tools = tools,
            ToolsJson = toolsJson,
            ToolChoice = toolChoice,
            Metadata = ParseMetadata(root),
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
        foreach (var element in messagesElement.EnumerateArray())
        {
            messages.Add(ParseMessage(element, index++));
        }

        return messages;
    }

    private static ChatMessage ParseMessage(JsonElement element, int index)
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

        var content = ParseContent(element, path);
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
        };
    }

    private static string? ParseContent(JsonElement message, string path)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            return content.GetString();
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            throw TypeError($"{path}.content", "a string or an array of text parts");
        }

        var parts = new List<string>();
        var partIndex = 0;
        foreach (var part in content.EnumerateArray())
        {
            var partPath = $"{path}.content[{partIndex++}]";
            if (part.ValueKind != JsonValueKind.Object)
            {
                throw TypeError(partPath, "an object such as {\"type\": \"text\", \"text\": \"...\"}");
            }

            var type = OptionalString(part, "type", $"{partPath}.type");
            if (type != "text")
            {
                throw ChatException.BadRequest(
                    $"{partPath}.type \"{type}\" is not supported; only text parts are accepted.",
                    $"{partPath}.type", "unsupported_value");
            }

            parts.Add(OptionalString(part, "text", $"{partPath}.text")
                ?? throw ChatException.BadRequest($"{partPath}.text is required.", $"{partPath}.text", "missing_required_parameter"));
        }

        return string.Concat(parts);
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
