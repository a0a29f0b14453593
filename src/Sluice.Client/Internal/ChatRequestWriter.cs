using System.Buffers;
using System.Collections;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Sluice.Client.Internal;

/// <summary>Writes an OpenAI Chat Completions request body from Microsoft.Extensions.AI messages and options.</summary>
internal static class ChatRequestWriter
{
    private static readonly JsonWriterOptions WriterOptions = new()
    {
        // Keep text readable in traces; JSON-significant characters are still escaped.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Fields the writer sets itself; <c>AdditionalProperties</c> cannot override them.</summary>
    private static readonly HashSet<string> ReservedFields = new(StringComparer.Ordinal)
    {
        "model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens", "stop", "seed",
        "tools", "tool_choice", "frequency_penalty", "presence_penalty", "response_format", "parallel_tool_calls",
    };

    /// <summary>The request body.</summary>
    /// <param name="messages">The conversation.</param>
    /// <param name="options">Model and sampling options; <c>AdditionalProperties</c> become extra top-level fields (e.g. <c>metadata</c>).</param>
    /// <param name="defaultModel">Used when <paramref name="options"/> names no model.</param>
    /// <param name="stream">Ask for an event stream (with usage).</param>
    /// <param name="extra">Writes further fields (e.g. the job API's <c>purpose</c>).</param>
    /// <exception cref="ArgumentException">A message holds content this client cannot send.</exception>
    public static byte[] Write(
        IEnumerable<ChatMessage> messages,
        ChatOptions? options,
        string? defaultModel,
        bool stream,
        Action<Utf8JsonWriter>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            json.WriteStartObject();
            if ((options?.ModelId ?? defaultModel) is { Length: > 0 } model)
            {
                json.WriteString("model", model);
            }

            json.WriteStartArray("messages");
            if (options?.Instructions is { Length: > 0 } instructions)
            {
                WriteTextMessage(json, "system", instructions);
            }

            foreach (var message in messages)
            {
                WriteMessage(json, message);
            }

            json.WriteEndArray();
            if (stream)
            {
                json.WriteBoolean("stream", true);
                json.WriteStartObject("stream_options");
                json.WriteBoolean("include_usage", true);
                json.WriteEndObject();
            }

            if (options is not null)
            {
                WriteOptions(json, options);
            }

            extra?.Invoke(json);
            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteOptions(Utf8JsonWriter json, ChatOptions options)
    {
        WriteNumber(json, "temperature", options.Temperature);
        WriteNumber(json, "top_p", options.TopP);
        WriteNumber(json, "frequency_penalty", options.FrequencyPenalty);
        WriteNumber(json, "presence_penalty", options.PresencePenalty);
        if (options.MaxOutputTokens is { } maxTokens)
        {
            json.WriteNumber("max_tokens", maxTokens);
        }

        if (options.Seed is { } seed)
        {
            json.WriteNumber("seed", seed);
        }

        if (options.StopSequences is { Count: > 0 } stops)
        {
            json.WriteStartArray("stop");
            foreach (var stop in stops)
            {
                json.WriteStringValue(stop);
            }

            json.WriteEndArray();
        }

        var hasTools = false;
        if (options.Tools is { Count: > 0 } tools)
        {
            json.WriteStartArray("tools");
            foreach (var tool in tools)
            {
                if (tool is not AIFunctionDeclaration function)
                {
                    throw new ArgumentException(
                        $"Tool '{tool.Name}' is a {tool.GetType().Name}; an OpenAI-compatible server takes function tools only. Pass AIFunction or AIFunctionDeclaration tools.",
                        nameof(options));
                }

                json.WriteStartObject();
                json.WriteString("type", "function");
                json.WriteStartObject("function");
                json.WriteString("name", function.Name);
                if (!string.IsNullOrEmpty(function.Description))
                {
                    json.WriteString("description", function.Description);
                }

                json.WritePropertyName("parameters");
                if (function.JsonSchema.ValueKind == JsonValueKind.Object)
                {
                    function.JsonSchema.WriteTo(json);
                }
                else
                {
                    json.WriteRawValue("""{"type":"object","properties":{}}""");
                }

                json.WriteEndObject();
                json.WriteEndObject();
                hasTools = true;
            }

            json.WriteEndArray();
        }

        if (options.ToolMode is { } mode && (hasTools || mode is NoneChatToolMode))
        {
            switch (mode)
            {
                case NoneChatToolMode:
                    json.WriteString("tool_choice", "none");
                    break;
                case RequiredChatToolMode { RequiredFunctionName: { } name }:
                    json.WriteStartObject("tool_choice");
                    json.WriteString("type", "function");
                    json.WriteStartObject("function");
                    json.WriteString("name", name);
                    json.WriteEndObject();
                    json.WriteEndObject();
                    break;
                case RequiredChatToolMode:
                    json.WriteString("tool_choice", "required");
                    break;
                default:
                    json.WriteString("tool_choice", "auto");
                    break;
            }
        }

        if (hasTools && options.AllowMultipleToolCalls is { } parallel)
        {
            json.WriteBoolean("parallel_tool_calls", parallel);
        }

        WriteResponseFormat(json, options.ResponseFormat);

        if (options.AdditionalProperties is { Count: > 0 } additional)
        {
            foreach (var (name, value) in additional)
            {
                if (!ReservedFields.Contains(name))
                {
                    json.WritePropertyName(name);
                    WriteValue(json, value);
                }
            }
        }
    }

    private static void WriteResponseFormat(Utf8JsonWriter json, ChatResponseFormat? format)
    {
        switch (format)
        {
            case ChatResponseFormatJson { Schema: { } schema } structured:
                json.WriteStartObject("response_format");
                json.WriteString("type", "json_schema");
                json.WriteStartObject("json_schema");
                json.WriteString("name", structured.SchemaName ?? "response");
                if (structured.SchemaDescription is { } description)
                {
                    json.WriteString("description", description);
                }

                json.WritePropertyName("schema");
                schema.WriteTo(json);
                json.WriteEndObject();
                json.WriteEndObject();
                break;
            case ChatResponseFormatJson:
                json.WriteStartObject("response_format");
                json.WriteString("type", "json_object");
                json.WriteEndObject();
                break;
        }
    }

    private static void WriteMessage(Utf8JsonWriter json, ChatMessage message)
    {
        var role = message.Role.Value;
        string? text = null;
        List<FunctionCallContent>? calls = null;
        foreach (var content in message.Contents)
        {
            switch (content)
            {
                case TextContent textContent:
                    text = text is null ? textContent.Text : text + textContent.Text;
                    break;
                case FunctionCallContent call:
                    (calls ??= []).Add(call);
                    break;
                case FunctionResultContent result:
                    // Each result is its own "tool" message, answering one call by id.
                    json.WriteStartObject();
                    json.WriteString("role", "tool");
                    json.WriteString("tool_call_id", result.CallId);
                    json.WriteString("content", ResultText(result.Result));
                    json.WriteEndObject();
                    break;
                case DataContent or UriContent:
                    throw new ArgumentException(
                        $"A {role} message holds {content.GetType().Name}; this client sends text, function calls and function results only. Describe the media in text, or use a client for a multimodal API.",
                        nameof(message));
                default:
                    // Reasoning, usage and other informational contents are not part of what the model is sent.
                    break;
            }
        }

        if (text is null && calls is null)
        {
            if (message.Contents.Any(c => c is FunctionResultContent))
            {
                return;
            }

            text = string.Empty;
        }

        json.WriteStartObject();
        json.WriteString("role", role);
        if (text is null)
        {
            json.WriteNull("content");
        }
        else
        {
            json.WriteString("content", text);
        }

        if (message.AuthorName is { Length: > 0 } name)
        {
            json.WriteString("name", name);
        }

        if (calls is not null)
        {
            json.WriteStartArray("tool_calls");
            foreach (var call in calls)
            {
                json.WriteStartObject();
                json.WriteString("id", call.CallId);
                json.WriteString("type", "function");
                json.WriteStartObject("function");
                json.WriteString("name", call.Name);
                json.WriteString("arguments", ArgumentsJson(call.Arguments));
                json.WriteEndObject();
                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        json.WriteEndObject();
    }

    private static void WriteTextMessage(Utf8JsonWriter json, string role, string text)
    {
        json.WriteStartObject();
        json.WriteString("role", role);
        json.WriteString("content", text);
        json.WriteEndObject();
    }

    private static string ArgumentsJson(IDictionary<string, object?>? arguments)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            json.WriteStartObject();
            if (arguments is not null)
            {
                foreach (var (name, value) in arguments)
                {
                    json.WritePropertyName(name);
                    WriteValue(json, value);
                }
            }

            json.WriteEndObject();
        }

        return Utf8.NoBom.GetString(buffer.WrittenSpan);
    }

    private static string ResultText(object? result)
    {
        switch (result)
        {
            case null:
                return string.Empty;
            case string text:
                return text;
            case JsonElement { ValueKind: JsonValueKind.String } element:
                return element.GetString() ?? string.Empty;
        }

        var buffer = new ArrayBufferWriter<byte>(128);
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            WriteValue(json, result);
        }

        return Utf8.NoBom.GetString(buffer.WrittenSpan);
    }

    /// <summary>Writes common CLR values without reflection; anything else through <see cref="AIJsonUtilities.DefaultOptions"/>.</summary>
    private static void WriteValue(Utf8JsonWriter json, object? value)
    {
        switch (value)
        {
            case null:
                json.WriteNullValue();
                break;
            case string text:
                json.WriteStringValue(text);
                break;
            case bool flag:
                json.WriteBooleanValue(flag);
                break;
            case int or long or short or byte or sbyte or ushort or uint or ulong:
                json.WriteRawValue(Convert.ToString(value, CultureInfo.InvariantCulture)!);
                break;
            case double number:
                json.WriteNumberValue(number);
                break;
            case float number:
                json.WriteNumberValue(number);
                break;
            case decimal number:
                json.WriteNumberValue(number);
                break;
            case JsonElement element:
                element.WriteTo(json);
                break;
            case JsonDocument document:
                document.RootElement.WriteTo(json);
                break;
            case IDictionary<string, string> strings:
                json.WriteStartObject();
                foreach (var (key, item) in strings)
                {
                    json.WriteString(key, item);
                }

                json.WriteEndObject();
                break;
            case IDictionary<string, object?> objects:
                json.WriteStartObject();
                foreach (var (key, item) in objects)
                {
                    json.WritePropertyName(key);
                    WriteValue(json, item);
                }

                json.WriteEndObject();
                break;
            case IEnumerable items and not IDictionary:
                json.WriteStartArray();
                foreach (var item in items)
                {
                    WriteValue(json, item);
                }

                json.WriteEndArray();
                break;
            default:
                JsonSerializer.Serialize(json, value, AIJsonUtilities.DefaultOptions.GetTypeInfo(value.GetType()));
                break;
        }
    }

    private static void WriteNumber(Utf8JsonWriter json, string name, float? value)
    {
        if (value is { } number)
        {
            if (!float.IsFinite(number))
            {
                throw new ArgumentException($"ChatOptions: {name} must be a finite number (got {number}).", nameof(value));
            }

            // float → double widening would print 0.699999988; go through the shortest float text instead.
            json.WritePropertyName(name);
            json.WriteRawValue(number.ToString("R", CultureInfo.InvariantCulture));
        }
    }
}
