using System.Text.Json;
using Sluice.Protocol.Chat;

namespace Sluice.Protocol.Ollama;

/// <summary>
/// Parses Ollama API requests (<c>POST /api/chat</c>, <c>POST /api/generate</c>) into <see cref="ChatRequest"/>s,
/// rejecting bad input with a 400 that names the parameter.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><c>stream</c> defaults to true, as in Ollama.</item>
/// <item><c>options</c>: <c>temperature</c>, <c>top_p</c>, <c>top_k</c>, <c>min_p</c>, <c>repeat_penalty</c>,
/// <c>frequency_penalty</c>, <c>presence_penalty</c>, <c>num_predict</c> (0 or less: no limit), <c>stop</c>, <c>seed</c>
/// are used; the rest (<c>num_ctx</c>, …) are ignored (a local model's context is fixed when it loads), as are
/// <c>keep_alive</c> and <c>think</c>; <c>sim_*</c> options are the simulation's fault switches.</item>
/// <item><c>format</c>: <c>"json"</c> or a JSON schema, as <see cref="ChatRequest.ResponseFormat"/>.</item>
/// <item>Tool calls in assistant messages carry no id in older clients: Sluice gives them ids, and a following
/// <c>tool</c> message answers the first unanswered call with its <c>tool_name</c> (or the first unanswered call).</item>
/// <item><c>images</c> (base64, in user messages and <c>/api/generate</c>) become image <see cref="ChatMessage.Parts"/>, their
/// media type read from their first bytes.</item>
/// </list>
/// </remarks>
public static class OllamaRequestParser
{
    private const string ChatExample = "{\"model\": \"sim-fast\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}";
    private const string GenerateExample = "{\"model\": \"sim-fast\", \"prompt\": \"Hello\"}";

    /// <summary>Parses a <c>/api/chat</c> body.</summary>
    /// <exception cref="ChatException">The body is not a valid request.</exception>
    public static ChatRequest ParseChat(ReadOnlyMemory<byte> utf8Json, ChatRequestLimits? limits = null)
    {
        limits ??= new ChatRequestLimits();
        using var document = RequestFields.ParseObject(utf8Json, ChatExample);
        var root = document.RootElement;
        var model = RequireModel(root);
        if (!RequestFields.TryGet(root, "messages", out var messagesElement))
        {
            throw RequestFields.Missing("messages", "send [{\"role\": \"user\", \"content\": \"...\"}].");
        }

        if (messagesElement.ValueKind != JsonValueKind.Array)
        {
            throw RequestFields.TypeError("messages", "an array");
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
        var unanswered = new List<ToolCall>();
        var attachments = new ContentParts.Counter(limits);
        var index = 0;
        foreach (var element in messagesElement.EnumerateArray())
        {
            messages.Add(ParseMessage(element, index++, unanswered, limits, attachments));
        }

        var tools = ParseTools(root);
        return Build(root, model, messages, tools);
    }

    /// <summary>
    /// Parses a <c>/api/generate</c> body. <c>system</c> and <c>prompt</c> become a system and a user message; with no
    /// prompt the request has no messages, which in Ollama means "load the model" (the caller answers at once).
    /// </summary>
    /// <exception cref="ChatException">The body is not a valid request.</exception>
    public static ChatRequest ParseGenerate(ReadOnlyMemory<byte> utf8Json, ChatRequestLimits? limits = null)
    {
        limits ??= new ChatRequestLimits();
        using var document = RequestFields.ParseObject(utf8Json, GenerateExample);
        var root = document.RootElement;
        var model = RequireModel(root);
        var images = ParseImages(root, "images", limits, new ContentParts.Counter(limits));
        if (RequestFields.TryGet(root, "tools", out _))
        {
            // As in Ollama: /api/generate completes a prompt; tool calling is a chat feature.
            throw ChatException.BadRequest("tools are not part of /api/generate (as in Ollama). Send them to /api/chat with messages.", "tools", "unsupported_parameter");
        }

        var messages = new List<ChatMessage>(2);
        var prompt = RequestFields.OptionalString(root, "prompt");
        if (!string.IsNullOrEmpty(prompt))
        {
            if (RequestFields.OptionalString(root, "system") is { Length: > 0 } system)
            {
                messages.Add(new ChatMessage(ChatRoles.System, system));
            }

            messages.Add(new ChatMessage(ChatRoles.User, prompt) { Parts = WithText(images, prompt) });
        }

        return Build(root, model, messages, null);
    }

    /// <summary>Reads the model name of a <c>/api/show</c> body (<c>model</c>, or the older <c>name</c>).</summary>
    /// <exception cref="ChatException">No model is named.</exception>
    public static string ParseShow(ReadOnlyMemory<byte> utf8Json)
    {
        using var document = RequestFields.ParseObject(utf8Json, "{\"model\": \"sim-fast\"}");
        var root = document.RootElement;
        var model = RequestFields.OptionalString(root, "model") ?? RequestFields.OptionalString(root, "name");
        return string.IsNullOrEmpty(model)
            ? throw RequestFields.Missing("model", "name the model to describe, e.g. {\"model\": \"sim-fast\"}.")
            : model;
    }

    /// <summary>Reads <c>POST /api/pull</c>: the model (<c>model</c>, or the older <c>name</c>) and whether to stream progress (default true).</summary>
    public static (string Model, bool Stream) ParsePull(ReadOnlyMemory<byte> utf8Json)
    {
        using var document = RequestFields.ParseObject(utf8Json, "{\"model\": \"sim-fast\"}");
        var root = document.RootElement;
        var model = RequestFields.OptionalString(root, "model") ?? RequestFields.OptionalString(root, "name");
        return string.IsNullOrEmpty(model)
            ? throw RequestFields.Missing("model", "name the model to pull, e.g. {\"model\": \"sim-fast\"}.")
            : (model, RequestFields.OptionalBool(root, "stream") ?? true);
    }

    private static ChatRequest Build(JsonElement root, string model, List<ChatMessage> messages, List<ToolDefinition>? tools)
    {
        int? maxTokens = null;
        double? temperature = null;
        double? topP = null;
        int? topK = null;
        long? seed = null;
        List<string>? stop = null;
        SamplingExtensions extensions = default;
        Dictionary<string, string>? metadata = null;
        if (RequestFields.TryGet(root, "options", out var options))
        {
            if (options.ValueKind != JsonValueKind.Object)
            {
                throw RequestFields.TypeError("options", "an object such as {\"temperature\": 0.7}");
            }

            var numPredict = RequestFields.OptionalInt(options, "num_predict", "options.num_predict");
            maxTokens = numPredict is > 0 ? numPredict : null;
            temperature = RequestFields.OptionalRange(options, "temperature", 0, 2, "options.temperature");
            topP = RequestFields.OptionalRange(options, "top_p", 0, 1, "options.top_p");
            topK = RequestFields.OptionalInt(options, "top_k", "options.top_k");
            if (topK is < 0)
            {
                throw ChatException.BadRequest($"options.top_k must be 0 or more (got {topK}).", "options.top_k");
            }

            seed = RequestFields.OptionalLong(options, "seed", "options.seed");
            stop = RequestFields.OptionalStrings(options, "stop", "options.stop");
            extensions = SamplingExtensions.Parse(options, "options.");
            metadata = SimulationSwitches(options);
        }

        return new ChatRequest
        {
            Model = model,
            Messages = messages,
            Stream = RequestFields.OptionalBool(root, "stream") ?? true,
            MaxTokens = maxTokens,
            Temperature = temperature,
            TopP = topP,
            TopK = topK,
            MinP = extensions.MinP,
            RepetitionPenalty = extensions.RepetitionPenalty,
            FrequencyPenalty = extensions.FrequencyPenalty,
            PresencePenalty = extensions.PresencePenalty,
            Seed = seed,
            Stop = stop,
            Tools = tools,
            ToolsJson = tools is null ? null : ToolJson.Tools(tools),
            Metadata = metadata,
            ResponseFormat = ParseFormat(root),
        };
    }

    /// <summary>
    /// Ollama's <c>format</c>: <c>"json"</c> (any JSON) or a JSON schema object — the same structured output as OpenAI's
    /// <c>response_format</c>, so every backend can honour it.
    /// </summary>
    private static ResponseFormat? ParseFormat(JsonElement root)
    {
        if (!RequestFields.TryGet(root, "format", out var format))
        {
            return null;
        }

        if (format.ValueKind == JsonValueKind.String)
        {
            return format.GetString() switch
            {
                "json" => new ResponseFormat { Type = ResponseFormat.JsonObjectType },
                "" => null,
                var other => throw ChatException.BadRequest(
                    $"format \"{other}\" is not supported: send \"json\" or a JSON schema object.", "format"),
            };
        }

        if (format.ValueKind != JsonValueKind.Object)
        {
            throw RequestFields.TypeError("format", "\"json\" or a JSON schema object");
        }

        return new ResponseFormat { Type = ResponseFormat.JsonSchemaType, Name = "ollama_format", Schema = format.Clone() };
    }

    /// <summary>
    /// The simulation's fault switches (<c>sim_fail_status</c>, …) from <c>options</c>: Ollama requests have no
    /// <c>metadata</c>, and front ends pass unknown options through.
    /// </summary>
    private static Dictionary<string, string>? SimulationSwitches(JsonElement options)
    {
        Dictionary<string, string>? result = null;
        foreach (var option in options.EnumerateObject())
        {
            if (!option.Name.StartsWith("sim_", StringComparison.Ordinal))
            {
                continue;
            }

            result ??= new Dictionary<string, string>(StringComparer.Ordinal);
            result[option.Name] = option.Value.ValueKind switch
            {
                JsonValueKind.String => option.Value.GetString()!,
                JsonValueKind.Number => option.Value.GetRawText(),
                _ => throw RequestFields.TypeError($"options.{option.Name}", "a number or a string"),
            };
        }

        return result;
    }

    private static string RequireModel(JsonElement root)
    {
        var model = RequestFields.OptionalString(root, "model");
        return string.IsNullOrEmpty(model)
            ? throw RequestFields.Missing("model", "name the model to use, e.g. \"model\": \"sim-fast\" (GET /api/tags lists them).")
            : model;
    }

    private static ChatMessage ParseMessage(JsonElement element, int index, List<ToolCall> unanswered, ChatRequestLimits limits, ContentParts.Counter attachments)
    {
        var path = $"messages[{index}]";
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw RequestFields.TypeError(path, "an object with role and content");
        }

        var role = RequestFields.OptionalString(element, "role", $"{path}.role")
            ?? throw RequestFields.Missing($"{path}.role", "use system, user, assistant or tool.");
        if (role is not (ChatRoles.System or ChatRoles.User or ChatRoles.Assistant or ChatRoles.Tool))
        {
            throw ChatException.BadRequest($"{path}.role \"{role}\" is not a known role; use system, user, assistant or tool.", $"{path}.role");
        }

        var images = ParseImages(element, $"{path}.images", limits, attachments);
        if (images is not null && role != ChatRoles.User)
        {
            throw ChatException.BadRequest(
                $"{path}.images is only accepted in user messages (this is a {role} message). Move the images into a user message.",
                $"{path}.images", "unsupported_value");
        }

        var content = RequestFields.OptionalString(element, "content", $"{path}.content") ?? string.Empty;
        if (images is not null)
        {
            return new ChatMessage(role, content) { Parts = WithText(images, content) };
        }

        if (role == ChatRoles.Tool)
        {
            var name = RequestFields.OptionalString(element, "tool_name", $"{path}.tool_name");
            var id = RequestFields.OptionalString(element, "tool_call_id", $"{path}.tool_call_id");
            var answered = unanswered.FindIndex(c => id is not null ? c.Id == id : name is null || c.Name == name);
            if (answered < 0 && unanswered.Count > 0 && id is null)
            {
                answered = 0;
            }

            if (answered >= 0)
            {
                id = unanswered[answered].Id;
                unanswered.RemoveAt(answered);
            }

            return new ChatMessage(ChatRoles.Tool, content) { ToolCallId = id ?? $"call_{index}", Name = name };
        }

        List<ToolCall>? calls = null;
        if (role == ChatRoles.Assistant && RequestFields.TryGet(element, "tool_calls", out var toolCalls))
        {
            calls = ParseToolCalls(toolCalls, path, index);
            unanswered.Clear();
            unanswered.AddRange(calls);
        }

        return new ChatMessage(role, calls is not null && content.Length == 0 ? null : content) { ToolCalls = calls };
    }

    private static List<ToolCall> ParseToolCalls(JsonElement toolCalls, string path, int messageIndex)
    {
        if (toolCalls.ValueKind != JsonValueKind.Array)
        {
            throw RequestFields.TypeError($"{path}.tool_calls", "an array");
        }

        var calls = new List<ToolCall>();
        var index = 0;
        foreach (var call in toolCalls.EnumerateArray())
        {
            var callPath = $"{path}.tool_calls[{index}]";
            if (call.ValueKind != JsonValueKind.Object || !RequestFields.TryGet(call, "function", out var function) || function.ValueKind != JsonValueKind.Object)
            {
                throw RequestFields.TypeError(callPath, "an object with a function");
            }

            var name = RequestFields.OptionalString(function, "name", $"{callPath}.function.name")
                ?? throw RequestFields.Missing($"{callPath}.function.name", "send the name of the tool the model called.");
            var arguments = "{}";
            if (RequestFields.TryGet(function, "arguments", out var args))
            {
                arguments = args.ValueKind switch
                {
                    JsonValueKind.Object => args.GetRawText(),
                    JsonValueKind.String => args.GetString()!,
                    _ => throw RequestFields.TypeError($"{callPath}.function.arguments", "an object"),
                };
            }

            var id = RequestFields.OptionalString(call, "id", $"{callPath}.id") ?? $"call_{messageIndex}_{index}";
            calls.Add(new ToolCall(id, name, arguments));
            index++;
        }

        return calls;
    }

    private static List<ToolDefinition>? ParseTools(JsonElement root)
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
            if (tool.ValueKind != JsonValueKind.Object || !RequestFields.TryGet(tool, "function", out var function) || function.ValueKind != JsonValueKind.Object)
            {
                throw RequestFields.TypeError(path, "an object such as {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": {...}}}");
            }

            var name = RequestFields.OptionalString(function, "name", $"{path}.function.name");
            if (string.IsNullOrEmpty(name))
            {
                throw RequestFields.Missing($"{path}.function.name", "give the tool a name, e.g. \"get_weather\".");
            }

            JsonElement? parameters = RequestFields.TryGet(function, "parameters", out var p) && p.ValueKind == JsonValueKind.Object ? p.Clone() : null;
            result.Add(new ToolDefinition(name, RequestFields.OptionalString(function, "description", $"{path}.function.description"), parameters));
        }

        return result.Count == 0 ? null : result;
    }

    /// <summary>
    /// Ollama's <c>images</c>: base64 strings without a media type, which is read from the bytes (PNG, JPEG, GIF, WebP);
    /// null when there are none.
    /// </summary>
    private static List<ContentPart>? ParseImages(JsonElement obj, string path, ChatRequestLimits limits, ContentParts.Counter attachments)
    {
        if (!RequestFields.TryGet(obj, "images", out var images))
        {
            return null;
        }

        if (images.ValueKind != JsonValueKind.Array)
        {
            throw RequestFields.TypeError(path, "an array of base64-encoded images");
        }

        var parts = new List<ContentPart>();
        var index = 0;
        foreach (var image in images.EnumerateArray())
        {
            var imagePath = $"{path}[{index++}]";
            if (image.ValueKind != JsonValueKind.String)
            {
                throw RequestFields.TypeError(imagePath, "a base64-encoded image");
            }

            attachments.Add(imagePath);
            var data = image.GetString()!;
            var bytes = ContentParts.CheckBase64(data, imagePath, limits);
            var mediaType = ContentParts.SniffImageType(data)
                ?? throw ChatException.BadRequest(
                    $"{imagePath} is not a PNG, JPEG, GIF or WebP image (judging by its first bytes). Send the image file's bytes, base64-encoded.",
                    imagePath, "unsupported_value");
            parts.Add(new ContentPart { Kind = ContentPartKind.Image, MediaType = mediaType, Data = data, ByteCount = bytes, Param = imagePath });
        }

        return parts.Count == 0 ? null : parts;
    }

    /// <summary>The images first, then the text (Ollama attaches images to a message without a position).</summary>
    private static List<ContentPart>? WithText(List<ContentPart>? images, string text)
    {
        if (images is null)
        {
            return null;
        }

        if (text.Length > 0)
        {
            images.Add(ContentPart.FromText(text));
        }

        return images;
    }
}
