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
    public static void Write(IBufferWriter<byte> output, string id, string model, AssembledChoice? answer, ChatUsage usage) =>
        Write(output, id, model, answer, usage, null);

    /// <summary>Writes the message JSON; with the backend's opening facts (its message id and service tier) when it gave them.</summary>
    /// <param name="output">Where to write.</param>
    /// <param name="id">The message id (<c>msg_…</c>) when the backend gave none.</param>
    /// <param name="model">The model name reported to the client.</param>
    /// <param name="answer">The assembled answer (choice 0), or null when the stream produced nothing.</param>
    /// <param name="usage">Token counts.</param>
    /// <param name="start">What the backend said before its content (an Anthropic upstream's message id, service tier), if anything.</param>
    public static void Write(IBufferWriter<byte> output, string id, string model, AssembledChoice? answer, ChatUsage usage, AnswerStartEvent? start) =>
        Write(output, id, model, answer, usage, start, []);

    /// <summary>
    /// Writes the message JSON; when an Anthropic upstream's content blocks were passed through
    /// (<paramref name="blocks"/>), the content is those blocks assembled (thinking, signatures, citations and all) rather
    /// than the answer's text and tool calls.
    /// </summary>
    /// <param name="output">Where to write.</param>
    /// <param name="id">The message id (<c>msg_…</c>) when the backend gave none.</param>
    /// <param name="model">The model name reported to the client.</param>
    /// <param name="answer">The assembled answer (choice 0), or null when the stream produced nothing.</param>
    /// <param name="usage">Token counts.</param>
    /// <param name="start">What the backend said before its content, if anything.</param>
    /// <param name="blocks">The upstream's content-block events, or empty.</param>
    public static void Write(IBufferWriter<byte> output, string id, string model, AssembledChoice? answer, ChatUsage usage, AnswerStartEvent? start, IReadOnlyList<AnthropicBlockEvent> blocks)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(usage);
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        json.WriteString("id"u8, start?.MessageId ?? id);
        json.WriteString("type"u8, "message"u8);
        json.WriteString("role"u8, "assistant"u8);
        json.WriteString("model"u8, model);
        json.WriteStartArray("content"u8);
        if (blocks.Count > 0)
        {
            AnthropicContentBlocks.WriteElements(json, blocks);
            answer = answer is null ? null : answer with { Content = null, Refusal = null, ToolCalls = [] };
        }

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
        var stopReason = answer?.AnthropicStopReason ?? AnthropicStopReasons.FromFinishReason(answer?.FinishReason, answer?.StopSequence);
        json.WriteString("stop_reason"u8, stopReason);
        if (stopReason == AnthropicStopReasons.StopSequence)
        {
            json.WriteString("stop_sequence"u8, answer!.StopSequence);
        }
        else
        {
            json.WriteNull("stop_sequence"u8);
        }

        if (answer?.StopDetailsJson is { } stopDetails)
        {
            json.WritePropertyName("stop_details"u8);
            json.WriteRawValue(stopDetails, skipInputValidation: true);
        }

        json.WritePropertyName("usage"u8);
        WriteUsage(json, usage, start?.ServiceTier);
        json.WriteEndObject();
    }

    /// <summary>
    /// Writes Anthropic's <c>usage</c> object: <c>input_tokens</c> without the cache reads and writes, which have fields of
    /// their own (written when the backend reported them), then <c>output_tokens</c> and the service tier if known.
    /// </summary>
    internal static void WriteUsage(Utf8JsonWriter json, ChatUsage usage, string? serviceTier)
    {
        var details = usage.Details;
        var cacheRead = details?.CachedPromptTokens ?? 0;
        var cacheCreation = details?.CacheCreationPromptTokens ?? 0;
        json.WriteStartObject();
        json.WriteNumber("input_tokens"u8, Math.Max(0, usage.PromptTokens - cacheRead - cacheCreation));
        if (details is not null)
        {
            json.WriteNumber("cache_creation_input_tokens"u8, cacheCreation);
            json.WriteNumber("cache_read_input_tokens"u8, cacheRead);
        }

        json.WriteNumber("output_tokens"u8, usage.CompletionTokens);
        if (serviceTier is not null)
        {
            json.WriteString("service_tier"u8, serviceTier);
        }

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
