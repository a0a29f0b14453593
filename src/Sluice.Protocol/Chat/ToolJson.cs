using System.Buffers;
using System.Text.Json;
using Sluice.Protocol.OpenAI;

namespace Sluice.Protocol.Chat;

/// <summary>
/// Builds the OpenAI-shaped <c>tools</c> and <c>tool_choice</c> values that <see cref="ChatRequest"/> carries, for
/// requests that arrived in another dialect: every backend already understands the OpenAI shape.
/// </summary>
internal static class ToolJson
{
    /// <summary><c>[{"type": "function", "function": {"name", "description", "parameters"}}, …]</c>.</summary>
    public static JsonElement Tools(IReadOnlyList<ToolDefinition> tools)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, OpenAIJson.WriterOptions))
        {
            json.WriteStartArray();
            foreach (var tool in tools)
            {
                json.WriteStartObject();
                json.WriteString("type"u8, "function"u8);
                json.WriteStartObject("function"u8);
                json.WriteString("name"u8, tool.Name);
                if (tool.Description is not null)
                {
                    json.WriteString("description"u8, tool.Description);
                }

                if (tool.Parameters is { } parameters)
                {
                    json.WritePropertyName("parameters"u8);
                    parameters.WriteTo(json);
                }

                json.WriteEndObject();
                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        return Parse(buffer);
    }

    /// <summary>A string choice: <c>"auto"</c>, <c>"none"</c> or <c>"required"</c>.</summary>
    public static JsonElement Choice(string value)
    {
        var buffer = new ArrayBufferWriter<byte>(16);
        using (var json = new Utf8JsonWriter(buffer, OpenAIJson.WriterOptions))
        {
            json.WriteStringValue(value);
        }

        return Parse(buffer);
    }

    /// <summary><c>{"type": "function", "function": {"name": …}}</c>: the model must call this tool.</summary>
    public static JsonElement ForcedChoice(string name)
    {
        var buffer = new ArrayBufferWriter<byte>(64);
        using (var json = new Utf8JsonWriter(buffer, OpenAIJson.WriterOptions))
        {
            json.WriteStartObject();
            json.WriteString("type"u8, "function"u8);
            json.WriteStartObject("function"u8);
            json.WriteString("name"u8, name);
            json.WriteEndObject();
            json.WriteEndObject();
        }

        return Parse(buffer);
    }

    /// <summary>
    /// Writes tool-call arguments (JSON text) as the object Anthropic and Ollama clients require; arguments that are
    /// not a JSON object (cut off by the token limit) become <c>{}</c>.
    /// </summary>
    public static void WriteArgumentsObject(Utf8JsonWriter json, string? arguments)
    {
        if (!string.IsNullOrWhiteSpace(arguments))
        {
            try
            {
                using var document = JsonDocument.Parse(arguments);
                if (document.RootElement.ValueKind == JsonValueKind.Object)
                {
                    document.RootElement.WriteTo(json);
                    return;
                }
            }
            catch (JsonException)
            {
                // Truncated arguments: fall through to an empty object.
            }
        }

        json.WriteStartObject();
        json.WriteEndObject();
    }

    private static JsonElement Parse(ArrayBufferWriter<byte> buffer)
    {
        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        return document.RootElement.Clone();
    }
}
