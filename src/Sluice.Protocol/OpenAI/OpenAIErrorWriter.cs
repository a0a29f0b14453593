using System.Buffers;
using System.Text.Json;

namespace Sluice.Protocol.OpenAI;

/// <summary>Writes the OpenAI error body <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public static class OpenAIErrorWriter
{
    /// <summary>Writes the error object to <paramref name="writer"/>.</summary>
    public static void Write(Utf8JsonWriter writer, ErrorInfo error)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(error);
        writer.WriteStartObject();
        writer.WriteStartObject(OpenAIJson.Error);
        writer.WriteString(OpenAIJson.Message, error.Message);
        writer.WriteString(OpenAIJson.Type, error.Type);
        WriteNullableString(writer, OpenAIJson.Param, error.Param);
        WriteNullableString(writer, OpenAIJson.Code, error.Code);
        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    /// <summary>Writes the error body as UTF-8 JSON into <paramref name="output"/>.</summary>
    public static void Write(IBufferWriter<byte> output, ErrorInfo error)
    {
        using var writer = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        Write(writer, error);
    }

    /// <summary>The error body as UTF-8 JSON bytes.</summary>
    public static byte[] ToUtf8(ErrorInfo error)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        Write(buffer, error);
        return buffer.WrittenSpan.ToArray();
    }

    internal static void WriteNullableString(Utf8JsonWriter writer, JsonEncodedText name, string? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, value);
        }
    }
}
