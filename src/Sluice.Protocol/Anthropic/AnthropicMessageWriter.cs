using System.Buffers;
using System.Text.Json;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;

namespace Sluice.Protocol.Anthropic;

/// <summary>Writes a non-streamed Anthropic <c>message</c> object from an assembled answer.</summary>
public static class AnthropicMessageWriter
{
    /// <summary>Writes the message JSON into <paramref name="output"/>.</summary>
    /// <param name="output">Where to write.</param>
    /// <param name="id">The message id (<c>msg_…</c>).</param>
    /// <param name="model">The model name reported to the client.</param>
    /// <param name="answer">The assembled answer (choice 0), or null when the stream produced nothing.</param>
    /// <param name="usage">Token counts.</param>
    /// <remarks>
    /// Text (or refusal text) becomes one <c>text</c> block, each tool call a <c>tool_use</c> block whose
    /// <c>input</c> is the call's arguments as an object; arguments that are not a JSON object (cut off by
    /// <c>max_tokens</c>) become <c>{}</c>, since Anthropic clients require an object there.
    /// </remarks>
    public static void Write(IBufferWriter<byte> output, string id, string model, AssembledChoice? answer, ChatUsage usage)
    {
        ArgumentNullException.ThrowIfNull(usage);
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        json.WriteString("id"u8, id);
        json.WriteString("type"u8, "message"u8);
        json.WriteString("role"u8, "assistant"u8);
        json.WriteString("model"u8, model);
        json.WriteStartArray("content"u8);
        var text = answer?.Content ?? answer?.Refusal;
        if (!string.IsNullOrEmpty(text))
        {
            json.WriteStartObject();
            json.WriteString("type"u8, "text"u8);
            json.WriteString("text"u8, text);
            json.WriteEndObject();
        }

        foreach (var call in answer?.ToolCalls ?? [])
        {
            json.WriteStartObject();
            json.WriteString("type"u8, "tool_use"u8);
            json.WriteString("id"u8, call.Id.Length == 0 ? "toolu_" + Guid.NewGuid().ToString("N") : call.Id);
            json.WriteString("name"u8, call.Name);
            json.WritePropertyName("input"u8);
            ToolJson.WriteArgumentsObject(json, call.Arguments);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        var stopReason = AnthropicStopReasons.FromFinishReason(answer?.FinishReason, answer?.StopSequence);
        json.WriteString("stop_reason"u8, stopReason);
        if (stopReason == AnthropicStopReasons.StopSequence)
        {
            json.WriteString("stop_sequence"u8, answer!.StopSequence);
        }
        else
        {
            json.WriteNull("stop_sequence"u8);
        }

        json.WriteStartObject("usage"u8);
        json.WriteNumber("input_tokens"u8, usage.PromptTokens);
        json.WriteNumber("output_tokens"u8, usage.CompletionTokens);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>Writes <c>{"input_tokens": N}</c>, the <c>count_tokens</c> answer.</summary>
    public static void WriteTokenCount(IBufferWriter<byte> output, int inputTokens)
    {
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        json.WriteNumber("input_tokens"u8, inputTokens);
        json.WriteEndObject();
    }
}
