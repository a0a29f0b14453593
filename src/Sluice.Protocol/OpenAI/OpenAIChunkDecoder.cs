using System.Text.Json;
using Sluice.Protocol.Events;

namespace Sluice.Protocol.OpenAI;

/// <summary>What one OpenAI stream chunk contained, beyond its answer events.</summary>
/// <param name="ChoiceCount">How many entries <c>choices</c> had (0 for the final usage chunk).</param>
/// <param name="Usage">The <c>usage</c> object, when present and not null.</param>
/// <param name="Error">The <c>error</c> object of an error frame (llama.cpp, vLLM and proxies send these mid-stream).</param>
/// <param name="Identity">The chunk's identity, when asked for and present.</param>
public readonly record struct OpenAIChunkInfo(int ChoiceCount, ChatUsage? Usage, ErrorInfo? Error, OpenAIChunkIdentity? Identity);

/// <summary>
/// Decodes an OpenAI <c>chat.completion.chunk</c> with one forward <see cref="Utf8JsonReader"/> pass (no
/// document, no object model): only what accounting and answer assembly need is materialised — text, refusal
/// and tool-call fragments, finish reasons, usage and errors. Everything else is skipped, not copied.
/// </summary>
public static class OpenAIChunkDecoder
{
    private static readonly JsonReaderOptions ReaderOptions = new() { MaxDepth = 64 };

    /// <summary>Decodes <paramref name="json"/>, appending its answer events to <paramref name="events"/> in order.</summary>
    /// <param name="json">One chunk's JSON (an SSE <c>data</c> value other than <c>[DONE]</c>).</param>
    /// <param name="events">Receives text, refusal and tool-call deltas, then finish events.</param>
    /// <param name="captureIdentity">Also return <c>id</c>/<c>created</c>/<c>model</c> (only needed for a stream's first chunk).</param>
    /// <exception cref="JsonException">The chunk is not valid JSON or not an object.</exception>
    public static OpenAIChunkInfo Decode(ReadOnlySpan<byte> json, List<ChatStreamEvent> events, bool captureIdentity = false)
    {
        ArgumentNullException.ThrowIfNull(events);
        var reader = new Utf8JsonReader(json, ReaderOptions);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException("A stream chunk must be a JSON object.");
        }

        var choiceCount = 0;
        ChatUsage? usage = null;
        ErrorInfo? error = null;
        string? id = null;
        string? model = null;
        string? fingerprint = null;
        long created = 0;
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("choices"u8))
            {
                Next(ref reader);
                if (reader.TokenType == JsonTokenType.StartArray)
                {
                    while (Next(ref reader) == JsonTokenType.StartObject)
                    {
                        ReadChoice(ref reader, json, events, choiceCount);
                        choiceCount++;
                    }
                }
                else
                {
                    reader.Skip();
                }
            }
            else if (reader.ValueTextEquals("usage"u8))
            {
                Next(ref reader);
                usage = reader.TokenType == JsonTokenType.StartObject ? ReadUsage(ref reader) : SkipValue(ref reader, (ChatUsage?)null);
            }
            else if (reader.ValueTextEquals("error"u8))
            {
                Next(ref reader);
                error = ReadError(ref reader);
            }
            else if (captureIdentity && reader.ValueTextEquals("id"u8))
            {
                Next(ref reader);
                id = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader, (string?)null);
            }
            else if (captureIdentity && reader.ValueTextEquals("model"u8))
            {
                Next(ref reader);
                model = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader, (string?)null);
            }
            else if (captureIdentity && reader.ValueTextEquals("system_fingerprint"u8))
            {
                Next(ref reader);
                fingerprint = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader, (string?)null);
            }
            else if (captureIdentity && reader.ValueTextEquals("created"u8))
            {
                Next(ref reader);
                created = reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var value) ? value : SkipValue(ref reader, 0L);
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        var identity = captureIdentity && id is not null ? new OpenAIChunkIdentity(id, created, model ?? string.Empty, fingerprint) : null;
        return new OpenAIChunkInfo(choiceCount, usage, error, identity);
    }

    /// <summary>Reads an OpenAI-style error object (or a bare string) at the reader's current value.</summary>
    internal static ErrorInfo ReadError(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            return new ErrorInfo(reader.GetString() ?? string.Empty, ErrorTypes.Upstream);
        }

        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return new ErrorInfo("The upstream reported an error without details.", ErrorTypes.Upstream);
        }

        string? message = null;
        string? type = null;
        string? param = null;
        string? code = null;
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("message"u8))
            {
                Next(ref reader);
                message = ScalarText(ref reader);
            }
            else if (reader.ValueTextEquals("type"u8))
            {
                Next(ref reader);
                type = ScalarText(ref reader);
            }
            else if (reader.ValueTextEquals("param"u8))
            {
                Next(ref reader);
                param = ScalarText(ref reader);
            }
            else if (reader.ValueTextEquals("code"u8))
            {
                Next(ref reader);
                code = ScalarText(ref reader);
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        return new ErrorInfo(message ?? "The upstream reported an error without a message.", type ?? ErrorTypes.Upstream, param, code);
    }

    private static void ReadChoice(ref Utf8JsonReader reader, ReadOnlySpan<byte> source, List<ChatStreamEvent> events, int position)
    {
        var index = position;
        string? finish = null;
        List<TokenLogprob>? logprobs = null;
        var firstEvent = events.Count;
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("index"u8))
            {
                Next(ref reader);
                if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var value))
                {
                    index = value;
                }
            }
            else if (reader.ValueTextEquals("delta"u8))
            {
                Next(ref reader);
                if (reader.TokenType == JsonTokenType.StartObject)
                {
                    ReadDelta(ref reader, source, events);
                }
                else
                {
                    reader.Skip();
                }
            }
            else if (reader.ValueTextEquals("finish_reason"u8))
            {
                Next(ref reader);
                finish = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader, (string?)null);
            }
            else if (reader.ValueTextEquals("logprobs"u8))
            {
                Next(ref reader);
                logprobs = OpenAILogprobs.Read(ref reader);
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        if (index != 0)
        {
            // Delta events are created for choice 0 (so the common n = 1 case allocates once) and "index" may
            // come after "delta" in the object: fix them up now that the index is known.
            for (var i = firstEvent; i < events.Count; i++)
            {
                events[i] = WithChoice(events[i], index);
            }
        }

        if (logprobs is not null)
        {
            // The tokens' log probabilities ride on the choice's text, as Sluice's own writers emit them.
            var text = events.FindIndex(firstEvent, e => e is TextDeltaEvent);
            if (text >= 0)
            {
                events[text] = new TextDeltaEvent(((TextDeltaEvent)events[text]).Text, index) { Logprobs = logprobs };
            }
        }

        if (finish is not null)
        {
            events.Add(new FinishEvent(finish, index));
        }
    }

    private static void ReadDelta(ref Utf8JsonReader reader, ReadOnlySpan<byte> source, List<ChatStreamEvent> events)
    {
        // Events are created with choice 0 and re-indexed by ReadChoice when needed; the common case (n = 1) never is.
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("content"u8))
            {
                Next(ref reader);
                if (reader.TokenType == JsonTokenType.String && reader.ValueSpan.Length > 0)
                {
                    events.Add(new TextDeltaEvent(reader.GetString()!));
                }
                else
                {
                    reader.Skip();
                }
            }
            else if (reader.ValueTextEquals("refusal"u8))
            {
                Next(ref reader);
                if (reader.TokenType == JsonTokenType.String && reader.ValueSpan.Length > 0)
                {
                    events.Add(new RefusalDeltaEvent(reader.GetString()!));
                }
                else
                {
                    reader.Skip();
                }
            }
            else if (reader.ValueTextEquals("tool_calls"u8))
            {
                Next(ref reader);
                if (reader.TokenType == JsonTokenType.StartArray)
                {
                    var position = 0;
                    while (Next(ref reader) == JsonTokenType.StartObject)
                    {
                        events.Add(ReadToolCall(ref reader, source, position++));
                    }
                }
                else
                {
                    reader.Skip();
                }
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }
    }

    private static ToolCallDeltaEvent ReadToolCall(ref Utf8JsonReader reader, ReadOnlySpan<byte> source, int position)
    {
        var index = position;
        string? id = null;
        string? name = null;
        string? arguments = null;
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("index"u8))
            {
                Next(ref reader);
                if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var value))
                {
                    index = value;
                }
            }
            else if (reader.ValueTextEquals("id"u8))
            {
                Next(ref reader);
                id = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader, (string?)null);
            }
            else if (reader.ValueTextEquals("function"u8))
            {
                Next(ref reader);
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                while (Next(ref reader) != JsonTokenType.EndObject)
                {
                    if (reader.ValueTextEquals("name"u8))
                    {
                        Next(ref reader);
                        name = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader, (string?)null);
                    }
                    else if (reader.ValueTextEquals("arguments"u8))
                    {
                        Next(ref reader);
                        arguments = reader.TokenType switch
                        {
                            JsonTokenType.String => reader.GetString(),
                            JsonTokenType.Null => null,
                            // A few servers send arguments as an object; keep its JSON text.
                            _ => RawValue(ref reader, source),
                        };
                    }
                    else
                    {
                        Next(ref reader);
                        reader.Skip();
                    }
                }
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        return new ToolCallDeltaEvent(index, id, name, arguments);
    }

    /// <summary>Reads an OpenAI <c>usage</c> object (the reader is on its start), details included.</summary>
    internal static ChatUsage ReadUsage(ref Utf8JsonReader reader)
    {
        var prompt = 0;
        var completion = 0;
        var cached = 0;
        var reasoning = 0;
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("prompt_tokens"u8))
            {
                Next(ref reader);
                prompt = IntValue(ref reader);
            }
            else if (reader.ValueTextEquals("completion_tokens"u8))
            {
                Next(ref reader);
                completion = IntValue(ref reader);
            }
            else if (reader.ValueTextEquals("prompt_tokens_details"u8))
            {
                Next(ref reader);
                cached = DetailValue(ref reader, "cached_tokens"u8);
            }
            else if (reader.ValueTextEquals("completion_tokens_details"u8))
            {
                Next(ref reader);
                reasoning = DetailValue(ref reader, "reasoning_tokens"u8);
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        return new ChatUsage(prompt, completion) { Details = ChatUsageDetails.Of(cached, 0, reasoning) };
    }

    private static int IntValue(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var value))
        {
            return value;
        }

        reader.Skip();
        return 0;
    }

    /// <summary>One count of a <c>*_tokens_details</c> object (the reader is on the object, or on null).</summary>
    private static int DetailValue(ref Utf8JsonReader reader, ReadOnlySpan<byte> name)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return 0;
        }

        var result = 0;
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            var match = reader.ValueTextEquals(name);
            Next(ref reader);
            if (match)
            {
                result = IntValue(ref reader);
            }
            else
            {
                reader.Skip();
            }
        }

        return result;
    }

    private static ChatStreamEvent WithChoice(ChatStreamEvent streamEvent, int index) => streamEvent switch
    {
        TextDeltaEvent text => new TextDeltaEvent(text.Text, index) { Logprobs = text.Logprobs },
        RefusalDeltaEvent refusal => new RefusalDeltaEvent(refusal.Text, index),
        ToolCallDeltaEvent tool => new ToolCallDeltaEvent(tool.ToolIndex, tool.Id, tool.Name, tool.ArgumentsFragment, index),
        _ => streamEvent,
    };

    private static string? ScalarText(ref Utf8JsonReader reader)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.String:
                return reader.GetString();
            case JsonTokenType.Number:
                return System.Text.Encoding.UTF8.GetString(reader.ValueSpan);
            case JsonTokenType.Null:
                return null;
            default:
                reader.Skip();
                return null;
        }
    }

    private static string RawValue(ref Utf8JsonReader reader, ReadOnlySpan<byte> source)
    {
        var start = (int)reader.TokenStartIndex;
        reader.Skip();
        return System.Text.Encoding.UTF8.GetString(source[start..(int)reader.BytesConsumed]);
    }

    private static T SkipValue<T>(ref Utf8JsonReader reader, T fallback)
    {
        reader.Skip();
        return fallback;
    }

    private static JsonTokenType Next(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
        {
            throw new JsonException("The chunk JSON ends early.");
        }

        return reader.TokenType;
    }
}
