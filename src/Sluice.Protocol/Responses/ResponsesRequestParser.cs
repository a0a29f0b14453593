using System.Buffers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Chat;
using Sluice.Protocol.OpenAI;

namespace Sluice.Protocol.Responses;

/// <summary>
/// Parses an OpenAI Responses API request (<c>POST /v1/responses</c>) into a <see cref="ChatRequest"/>, rejecting bad
/// input with a 400 that names the parameter (<c>input[2].call_id</c>, <c>tools[0].type</c>, …).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><c>input</c>: a string (one user message) or items — messages (<c>input_text</c>/<c>output_text</c>/<c>refusal</c>
/// parts), <c>function_call</c> (joined to the assistant turn before it), <c>function_call_output</c> (a tool message);
/// <c>reasoning</c> items are dropped (they only mean something to the model that wrote them). <c>input_image</c> and
/// <c>input_file</c> parts of user messages become <see cref="ChatMessage.Parts"/>; audio, <c>item_reference</c> and
/// hosted tools are refused.</item>
/// <item><c>instructions</c> is a system message first; function <c>tools</c>, <c>tool_choice</c> and <c>text.format</c>
/// become the Chat Completions shapes every backend reads; <c>max_output_tokens</c>, <c>temperature</c>, <c>top_p</c>,
/// <c>parallel_tool_calls</c>, <c>metadata</c>, <c>user</c>, <c>top_logprobs</c> map to their chat fields.</item>
/// <item>A continuation (<c>previous_response_id</c>) is parsed with the stored conversation as <c>history</c>: its
/// items come first, then the request's own.</item>
/// </list>
/// The body is kept as <see cref="ChatRequest.ResponsesBody"/> for upstreams that speak the Responses API.
/// </remarks>
public static class ResponsesRequestParser
{
    /// <summary>The <c>include</c> value that asks for output token log probabilities.</summary>
    public const string LogprobsInclude = "message.output_text.logprobs";

    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 64 };

    /// <summary>Parses and validates <paramref name="utf8Json"/>.</summary>
    /// <param name="utf8Json">The body (kept by reference as <see cref="ChatRequest.ResponsesBody"/>).</param>
    /// <param name="limits">Parsing limits.</param>
    /// <param name="history">The stored conversation this request continues (Responses input items), or null.</param>
    /// <exception cref="ChatException">The body is not a valid request; the error names the parameter.</exception>
    public static ChatRequest Parse(ReadOnlyMemory<byte> utf8Json, ChatRequestLimits? limits = null, JsonElement? history = null)
    {
        limits ??= new ChatRequestLimits();
        using var document = ParseDocument(utf8Json);
        var root = document.RootElement;
        foreach (var unsupported in (string[])["background", "conversation", "prompt"])
        {
            if (TryGet(root, unsupported, out var value) && value.ValueKind is not JsonValueKind.False)
            {
                throw ChatException.BadRequest(
                    unsupported switch
                    {
                        "background" => "background responses are not supported by this gateway; send the request with \"stream\": true, or without background, and wait for the answer.",
                        "conversation" => "conversation objects are not supported by this gateway; chain responses with previous_response_id instead.",
                        _ => "stored prompt templates (prompt) are not supported by this gateway; send the instructions and input themselves.",
                    },
                    unsupported, "unsupported_parameter");
            }
        }

        var messages = new List<ChatMessage>();
        var attachments = new ContentParts.Counter(limits);
        if (OptionalString(root, "instructions") is { Length: > 0 } instructions)
        {
            messages.Add(new ChatMessage(ChatRoles.System, instructions));
        }

        if (history is { ValueKind: JsonValueKind.Array } stored)
        {
            ParseItems(stored, "previous_response_id", messages, limits, attachments);
        }

        var hasInput = TryGet(root, "input", out var input);
        if (hasInput)
        {
            if (input.ValueKind == JsonValueKind.String)
            {
                var text = input.GetString()!;
                if (text.Length > limits.MaxPromptChars * 20)
                {
                    throw ChatException.BadRequest($"input is {text.Length} characters; shorten it.", "input", "string_above_max_length");
                }

                messages.Add(new ChatMessage(ChatRoles.User, text));
            }
            else if (input.ValueKind == JsonValueKind.Array)
            {
                if (input.GetArrayLength() > limits.MaxMessages)
                {
                    throw ChatException.BadRequest($"input has {input.GetArrayLength()} items; the limit is {limits.MaxMessages}.", "input", "array_above_max_length");
                }

                ParseItems(input, "input", messages, limits, attachments);
            }
            else
            {
                throw TypeError("input", "a string or an array of input items");
            }
        }

        if (!messages.Any(m => m.Role is not (ChatRoles.System or ChatRoles.Developer)))
        {
            throw ChatException.BadRequest(
                "input is required: send \"input\": \"your question\" or an array of input items such as [{\"role\": \"user\", \"content\": \"...\"}].",
                "input", "missing_required_parameter");
        }

        var maxOutput = OptionalInt(root, "max_output_tokens");
        if (maxOutput is < 1)
        {
            throw ChatException.BadRequest($"max_output_tokens must be at least 1 (got {maxOutput}).", "max_output_tokens");
        }

        var temperature = OptionalDouble(root, "temperature");
        if (temperature is < 0 or > 2)
        {
            throw ChatException.BadRequest($"temperature must be between 0 and 2 (got {temperature}).", "temperature");
        }

        var topP = OptionalDouble(root, "top_p");
        if (topP is < 0 or > 1)
        {
            throw ChatException.BadRequest($"top_p must be between 0 and 1 (got {topP}).", "top_p");
        }

        var topLogprobs = OptionalInt(root, "top_logprobs");
        if (topLogprobs is < 0 or > ChatRequestParser.MaxTopLogprobs)
        {
            throw ChatException.BadRequest($"top_logprobs must be between 0 and {ChatRequestParser.MaxTopLogprobs} (got {topLogprobs}).", "top_logprobs");
        }

        var (tools, toolsJson) = ParseTools(root);
        ResponseFormat? format = null;
        if (TryGet(root, "text", out var text2))
        {
            if (text2.ValueKind != JsonValueKind.Object)
            {
                throw TypeError("text", "an object such as {\"format\": {\"type\": \"json_object\"}}");
            }

            if (text2.TryGetProperty("format", out var formatValue))
            {
                format = ResponseFormat.ParseResponses(formatValue);
                format = format?.Type == ResponseFormat.TextType ? null : format;
            }
        }

        return new ChatRequest
        {
            Model = OptionalString(root, "model") ?? string.Empty,
            Messages = messages,
            Stream = OptionalBool(root, "stream") ?? false,
            IncludeUsage = true,
            MaxTokens = maxOutput,
            Temperature = temperature,
            TopP = topP,
            User = OptionalString(root, "user") ?? OptionalString(root, "safety_identifier"),
            Tools = tools,
            ToolsJson = toolsJson,
            ToolChoice = ParseToolChoice(root, tools),
            Metadata = ParseMetadata(root),
            ResponseFormat = format,
            ParallelToolCalls = OptionalBool(root, "parallel_tool_calls"),
            Logprobs = Includes(root, LogprobsInclude),
            TopLogprobs = Includes(root, LogprobsInclude) ? topLogprobs : null,
            ResponsesBody = utf8Json,
            ResponsesInput = history is { ValueKind: JsonValueKind.Array } h ? CombinedInput(h, hasInput ? input : null) : null,
        };
    }

    /// <summary>
    /// The conversation as Responses input items: <paramref name="history"/>'s items (if any), then the request's
    /// own <c>input</c> (a string becomes one user message item). What is stored for a later <c>previous_response_id</c>.
    /// </summary>
    public static JsonElement CombinedInput(JsonElement? history, JsonElement? input)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer, OpenAIJson.WriterOptions))
        {
            json.WriteStartArray();
            if (history is { ValueKind: JsonValueKind.Array } stored)
            {
                foreach (var item in stored.EnumerateArray())
                {
                    item.WriteTo(json);
                }
            }

            if (input is { ValueKind: JsonValueKind.String } text)
            {
                WriteUserMessage(json, text.GetString()!);
            }
            else if (input is { ValueKind: JsonValueKind.Array } items)
            {
                foreach (var item in items.EnumerateArray())
                {
                    item.WriteTo(json);
                }
            }

            json.WriteEndArray();
        }

        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        return document.RootElement.Clone();
    }

    /// <summary>Reads <c>store</c> (default true) and <c>previous_response_id</c> without parsing the rest.</summary>
    public static (bool Store, string? PreviousResponseId) ReadStorage(ReadOnlyMemory<byte> utf8Json)
    {
        using var document = ParseDocument(utf8Json);
        var root = document.RootElement;
        var previous = OptionalString(root, "previous_response_id");
        if (previous is { Length: 0 })
        {
            throw ChatException.BadRequest("previous_response_id is empty; send the id of a stored response (resp_…) or leave it out.", "previous_response_id");
        }

        return (OptionalBool(root, "store") ?? true, previous);
    }

    /// <summary>The input part of the body as sent (<c>input</c>), or null.</summary>
    public static JsonElement? RawInput(ReadOnlyMemory<byte> utf8Json)
    {
        using var document = ParseDocument(utf8Json);
        return TryGet(document.RootElement, "input", out var input) ? input.Clone() : null;
    }

    private static JsonDocument ParseDocument(ReadOnlyMemory<byte> utf8Json)
    {
        if (utf8Json.IsEmpty)
        {
            throw ChatException.BadRequest(
                "The request body is empty. Send a JSON object such as {\"model\": \"sim-fast\", \"input\": \"Hello\"}.", null, "invalid_json");
        }

        // JsonInput also refuses strings that are not valid Unicode text (lone surrogate escapes), naming the field.
        var document = JsonInput.Parse(utf8Json, DocumentOptions.MaxDepth);

        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw ChatException.BadRequest("The request body must be a JSON object.", null, "invalid_type");
        }

        return document;
    }

    private static void WriteUserMessage(Utf8JsonWriter json, string text)
    {
        json.WriteStartObject();
        json.WriteString("type"u8, "message"u8);
        json.WriteString("role"u8, "user"u8);
        json.WriteStartArray("content"u8);
        json.WriteStartObject();
        json.WriteString("type"u8, "input_text"u8);
        json.WriteString("text"u8, text);
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static void ParseItems(JsonElement items, string path, List<ChatMessage> messages, ChatRequestLimits limits, ContentParts.Counter attachments)
    {
        var index = 0;
        foreach (var item in items.EnumerateArray())
        {
            var itemPath = $"{path}[{index++}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                throw TypeError(itemPath, "an object such as {\"role\": \"user\", \"content\": \"...\"}");
            }

            var type = OptionalString(item, "type", $"{itemPath}.type") ?? "message";
            switch (type)
            {
                case "message":
                    messages.Add(ParseMessage(item, itemPath, limits, attachments));
                    break;
                case "function_call":
                    var call = new ToolCall(
                        RequiredString(item, "call_id", itemPath, "the id of the call, as the response's function_call item gave it"),
                        RequiredString(item, "name", itemPath, "the function's name"),
                        OptionalString(item, "arguments", $"{itemPath}.arguments") ?? "{}");
                    if (messages.Count > 0 && messages[^1].Role == ChatRoles.Assistant)
                    {
                        // Several calls (and the text before them) are one assistant turn in every other dialect.
                        var last = messages[^1];
                        messages[^1] = last with { ToolCalls = [.. last.ToolCalls ?? [], call] };
                    }
                    else
                    {
                        messages.Add(new ChatMessage(ChatRoles.Assistant, null) { ToolCalls = [call] });
                    }

                    break;
                case "function_call_output":
                    var callId = RequiredString(item, "call_id", itemPath, "the call_id of the function_call this answers");
                    messages.Add(new ChatMessage(ChatRoles.Tool, OutputText(item, itemPath)) { ToolCallId = callId });
                    break;
                case "reasoning":
                    // Reasoning only means something to the model that wrote it; upstreams that speak the Responses API get it
                    // with the body passed through.
                    break;
                default:
                    throw ChatException.BadRequest(
                        $"{itemPath}.type \"{type}\" is not supported; send message, function_call, function_call_output or reasoning items "
                        + "(item_reference and hosted-tool items are not: send the items themselves).",
                        $"{itemPath}.type", "unsupported_value");
            }
        }
    }

    private static ChatMessage ParseMessage(JsonElement item, string path, ChatRequestLimits limits, ContentParts.Counter attachments)
    {
        var role = OptionalString(item, "role", $"{path}.role")
            ?? throw ChatException.BadRequest($"{path}.role is required: user, assistant, system or developer.", $"{path}.role", "missing_required_parameter");
        if (role is not (ChatRoles.User or ChatRoles.Assistant or ChatRoles.System or ChatRoles.Developer))
        {
            throw ChatException.BadRequest($"{path}.role \"{role}\" is not a message role; use user, assistant, system or developer.", $"{path}.role");
        }

        if (!TryGet(item, "content", out var content))
        {
            throw ChatException.BadRequest($"{path}.content is required.", $"{path}.content", "missing_required_parameter");
        }

        string text;
        List<ContentPart>? parts = null;
        if (content.ValueKind == JsonValueKind.String)
        {
            text = content.GetString()!;
        }
        else if (content.ValueKind == JsonValueKind.Array)
        {
            var builder = new StringBuilder();
            var all = new List<ContentPart>();
            var partIndex = 0;
            foreach (var part in content.EnumerateArray())
            {
                var partPath = $"{path}.content[{partIndex++}]";
                var partType = part.ValueKind == JsonValueKind.Object ? OptionalString(part, "type", $"{partPath}.type") : null;
                switch (partType)
                {
                    case "input_text" or "output_text" or "text":
                        var partText = RequiredString(part, "text", partPath, "the part's text");
                        builder.Append(partText);
                        all.Add(ContentPart.FromText(partText));
                        break;
                    case "refusal":
                        builder.Append(OptionalString(part, "refusal", $"{partPath}.refusal"));
                        break;
                    case "input_image" or "input_file" when role == ChatRoles.User:
                        attachments.Add(partPath);
                        all.Add(partType == "input_image" ? ParseInputImage(part, partPath, limits) : ParseInputFile(part, partPath, limits));
                        parts = all;
                        break;
                    case "input_image" or "input_file":
                        throw ChatException.BadRequest(
                            $"{partPath}.type \"{partType}\" is only accepted in user messages (this is a {role} message).", $"{partPath}.type", "unsupported_value");
                    default:
                        throw ChatException.BadRequest(
                            $"{partPath}.type \"{partType}\" is not supported: content parts are input_text, output_text, refusal, input_image and input_file (audio is not).",
                            $"{partPath}.type", "unsupported_value");
                }
            }

            text = builder.ToString();
        }
        else
        {
            throw TypeError($"{path}.content", "a string or an array of content parts");
        }

        if (text.Length > limits.MaxPromptChars * 20)
        {
            throw ChatException.BadRequest($"{path}.content is {text.Length} characters; shorten it.", $"{path}.content", "string_above_max_length");
        }

        return new ChatMessage(role, text) { Parts = parts };
    }

    /// <summary><c>input_image</c>: <c>image_url</c> (an http(s) or data URL) or <c>file_id</c>, and <c>detail</c>.</summary>
    private static ContentPart ParseInputImage(JsonElement part, string path, ChatRequestLimits limits)
    {
        var detail = OptionalString(part, "detail", $"{path}.detail");
        if (detail is not (null or "auto" or "low" or "high"))
        {
            throw ChatException.BadRequest($"{path}.detail must be \"auto\", \"low\" or \"high\" (got \"{detail}\").", $"{path}.detail");
        }

        if (OptionalString(part, "file_id", $"{path}.file_id") is { } fileId)
        {
            return new ContentPart { Kind = ContentPartKind.Image, FileId = fileId, Detail = detail, Param = path };
        }

        var urlPath = $"{path}.image_url";
        var url = OptionalString(part, "image_url", urlPath)
            ?? throw ChatException.BadRequest($"{path} needs image_url (an http(s) or data URL) or file_id.", urlPath, "missing_required_parameter");
        if (ContentParts.TryReadDataUrl(url, urlPath, limits, out var mediaType, out var data, out var bytes))
        {
            ContentParts.CheckImageType(mediaType, urlPath);
            return new ContentPart { Kind = ContentPartKind.Image, MediaType = mediaType, Data = data, ByteCount = bytes, Detail = detail, Param = path };
        }

        return new ContentPart { Kind = ContentPartKind.Image, Url = ContentParts.CheckUrl(url, urlPath), MediaType = ContentParts.MediaTypeFromUrl(url), Detail = detail, Param = path };
    }

    /// <summary><c>input_file</c>: <c>file_data</c> (a data URL) with <c>filename</c>, <c>file_url</c>, or <c>file_id</c>.</summary>
    private static ContentPart ParseInputFile(JsonElement part, string path, ChatRequestLimits limits)
    {
        var filename = OptionalString(part, "filename", $"{path}.filename");
        if (OptionalString(part, "file_id", $"{path}.file_id") is { } fileId)
        {
            return new ContentPart { Kind = ContentPartKind.Document, FileId = fileId, Filename = filename, Param = path };
        }

        if (OptionalString(part, "file_url", $"{path}.file_url") is { } fileUrl)
        {
            return new ContentPart
            {
                Kind = ContentPartKind.Document,
                Url = ContentParts.CheckUrl(fileUrl, $"{path}.file_url"),
                MediaType = ContentParts.MediaTypeFromUrl(fileUrl) ?? "application/pdf",
                Filename = filename,
                Param = path,
            };
        }

        var dataPath = $"{path}.file_data";
        var fileData = OptionalString(part, "file_data", dataPath)
            ?? throw ChatException.BadRequest($"{path} needs file_data (a data URL), file_url or file_id.", dataPath, "missing_required_parameter");
        if (ContentParts.TryReadDataUrl(fileData, dataPath, limits, out var mediaType, out var data, out var bytes))
        {
            return new ContentPart { Kind = ContentPartKind.Document, MediaType = mediaType, Data = data, ByteCount = bytes, Filename = filename, Param = path };
        }

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

    private static string OutputText(JsonElement item, string path)
    {
        if (!TryGet(item, "output", out var output))
        {
            throw ChatException.BadRequest($"{path}.output is required: the function's result as a string.", $"{path}.output", "missing_required_parameter");
        }

        if (output.ValueKind == JsonValueKind.String)
        {
            return output.GetString()!;
        }

        if (output.ValueKind == JsonValueKind.Array)
        {
            var builder = new StringBuilder();
            foreach (var part in output.EnumerateArray())
            {
                if (part.ValueKind == JsonValueKind.Object && OptionalString(part, "type") is "input_text" or "output_text")
                {
                    builder.Append(OptionalString(part, "text"));
                }
                else
                {
                    throw ChatException.BadRequest($"{path}.output may hold text parts only (input_text).", $"{path}.output", "unsupported_value");
                }
            }

            return builder.ToString();
        }

        throw TypeError($"{path}.output", "a string");
    }

    private static (List<ToolDefinition>?, JsonElement?) ParseTools(JsonElement root)
    {
        if (!TryGet(root, "tools", out var tools))
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
                throw TypeError(path, "an object such as {\"type\": \"function\", \"name\": \"...\", \"parameters\": {...}}");
            }

            var type = OptionalString(tool, "type", $"{path}.type");
            if (type != "function")
            {
                throw ChatException.BadRequest(
                    $"{path}.type \"{type}\" is not supported: this gateway runs function tools only (hosted tools such as web_search or file_search are not available). Define the tool as {{\"type\": \"function\", \"name\", \"parameters\"}}.",
                    $"{path}.type", "unsupported_value");
            }

            var name = RequiredString(tool, "name", path, "the function's name");
            JsonElement? parameters = tool.TryGetProperty("parameters", out var p) && p.ValueKind == JsonValueKind.Object ? p.Clone() : null;
            result.Add(new ToolDefinition(name, OptionalString(tool, "description", $"{path}.description"), parameters));
        }

        return result.Count == 0 ? (null, null) : (result, ToolJson.Tools(result));
    }

    private static JsonElement? ParseToolChoice(JsonElement root, List<ToolDefinition>? tools)
    {
        if (!TryGet(root, "tool_choice", out var choice))
        {
            return null;
        }

        if (choice.ValueKind == JsonValueKind.String)
        {
            var value = choice.GetString();
            return value is "auto" or "none" or "required"
                ? ToolJson.Choice(value)
                : throw ChatException.BadRequest($"tool_choice must be \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"name\": \"...\"}} (got \"{value}\").", "tool_choice");
        }

        if (choice.ValueKind != JsonValueKind.Object)
        {
            throw TypeError("tool_choice", "a string or an object");
        }

        var type = OptionalString(choice, "type", "tool_choice.type");
        if (type != "function")
        {
            throw ChatException.BadRequest(
                $"tool_choice.type \"{type}\" is not supported: force a function with {{\"type\": \"function\", \"name\": \"...\"}}, or send \"auto\", \"none\" or \"required\".",
                "tool_choice.type", "unsupported_value");
        }

        var name = RequiredString(choice, "name", "tool_choice", "the function to call");
        if (tools?.Any(t => t.Name == name) != true)
        {
            throw ChatException.BadRequest($"tool_choice names \"{name}\", which is not in tools. Add the function to tools or name one of them.", "tool_choice.name");
        }

        return ToolJson.ForcedChoice(name);
    }

    private static Dictionary<string, string>? ParseMetadata(JsonElement root)
    {
        if (!TryGet(root, "metadata", out var metadata))
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

    private static bool Includes(JsonElement root, string value)
    {
        if (!TryGet(root, "include", out var include))
        {
            return false;
        }

        if (include.ValueKind != JsonValueKind.Array)
        {
            throw TypeError("include", "an array of strings");
        }

        return include.EnumerateArray().Any(i => i.ValueKind == JsonValueKind.String && i.GetString() == value);
    }

    private static bool TryGet(JsonElement obj, string name, out JsonElement value) =>
        obj.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null;

    private static string RequiredString(JsonElement obj, string name, string path, string what) =>
        OptionalString(obj, name, $"{path}.{name}") is { Length: > 0 } value
            ? value
            : throw ChatException.BadRequest($"{path}.{name} is required: {what}.", $"{path}.{name}", "missing_required_parameter");

    private static string? OptionalString(JsonElement obj, string name, string? path = null)
    {
        if (!TryGet(obj, name, out var value))
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw TypeError(path ?? name, "a string");
    }

    private static bool? OptionalBool(JsonElement obj, string name) =>
        !TryGet(obj, name, out var value) ? null
        : value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw TypeError(name, "a boolean"),
        };

    private static int? OptionalInt(JsonElement obj, string name) =>
        !TryGet(obj, name, out var value) ? null
        : value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var result) ? result : throw TypeError(name, "an integer");

    private static double? OptionalDouble(JsonElement obj, string name) =>
        !TryGet(obj, name, out var value) ? null
        : value.ValueKind == JsonValueKind.Number ? value.GetDouble() : throw TypeError(name, "a number");

    private static ChatException TypeError(string param, string expected) =>
        ChatException.BadRequest($"{param} must be {expected}.", param, "invalid_type");
}
