using System.Text.Json;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;

namespace Sluice.Protocol.Completions;

/// <summary>
/// Decodes a legacy <c>text_completion</c> stream chunk (<c>choices[].text</c>, <c>logprobs</c>, <c>finish_reason</c>,
/// <c>usage</c>, an <c>error</c> frame) into answer events, so a passed-through completion stream is metered and can be
/// assembled like a chat one.
/// </summary>
public static class CompletionChunkDecoder
{
    private static readonly JsonReaderOptions ReaderOptions = new() { MaxDepth = 64 };

    /// <summary>Decodes <paramref name="json"/>, appending its text deltas (with their logprobs) and finishes to <paramref name="events"/>.</summary>
    /// <exception cref="JsonException">The chunk is not a JSON object.</exception>
    public static OpenAIChunkInfo Decode(ReadOnlySpan<byte> json, List<ChatStreamEvent> events, bool captureIdentity = false)
    {
        ArgumentNullException.ThrowIfNull(events);
        var reader = new Utf8JsonReader(json, ReaderOptions);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException("A completion chunk must be a JSON object.");
        }

        var choices = 0;
        ChatUsage? usage = null;
        ErrorInfo? error = null;
        string? id = null, model = null, fingerprint = null;
        long created = 0;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("choices"u8))
            {
                if (Next(ref reader) != JsonTokenType.StartArray)
                {
                    reader.Skip();
                    continue;
                }

                while (Next(ref reader) == JsonTokenType.StartObject)
                {
                    ReadChoice(ref reader, events, choices++);
                }
            }
            else if (reader.ValueTextEquals("usage"u8))
            {
                usage = Next(ref reader) == JsonTokenType.StartObject ? OpenAIChunkDecoder.ReadUsage(ref reader) : Skip<ChatUsage?>(ref reader, null);
            }
            else if (reader.ValueTextEquals("error"u8))
            {
                Next(ref reader);
                error = OpenAIChunkDecoder.ReadError(ref reader);
            }
            else if (captureIdentity && reader.ValueTextEquals("id"u8))
            {
                id = Next(ref reader) == JsonTokenType.String ? reader.GetString() : Skip<string?>(ref reader, null);
            }
            else if (captureIdentity && reader.ValueTextEquals("model"u8))
            {
                model = Next(ref reader) == JsonTokenType.String ? reader.GetString() : Skip<string?>(ref reader, null);
            }
            else if (captureIdentity && reader.ValueTextEquals("system_fingerprint"u8))
            {
                fingerprint = Next(ref reader) == JsonTokenType.String ? reader.GetString() : Skip<string?>(ref reader, null);
            }
            else if (captureIdentity && reader.ValueTextEquals("created"u8))
            {
                created = Next(ref reader) == JsonTokenType.Number && reader.TryGetInt64(out var value) ? value : Skip(ref reader, 0L);
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        var identity = captureIdentity && id is not null ? new OpenAIChunkIdentity(id, created, model ?? string.Empty, fingerprint) : null;
        return new OpenAIChunkInfo(choices, usage, error, identity);
    }

    private static void ReadChoice(ref Utf8JsonReader reader, List<ChatStreamEvent> events, int position)
    {
        var index = position;
        string? text = null;
        string? finish = null;
        IReadOnlyList<TokenLogprob>? logprobs = null;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("index"u8))
            {
                index = Next(ref reader) == JsonTokenType.Number && reader.TryGetInt32(out var value) ? value : Skip(ref reader, position);
            }
            else if (reader.ValueTextEquals("text"u8))
            {
                text = Next(ref reader) == JsonTokenType.String ? reader.GetString() : Skip<string?>(ref reader, null);
            }
            else if (reader.ValueTextEquals("finish_reason"u8))
            {
                finish = Next(ref reader) == JsonTokenType.String ? reader.GetString() : Skip<string?>(ref reader, null);
            }
            else if (reader.ValueTextEquals("logprobs"u8))
            {
                if (Next(ref reader) == JsonTokenType.StartObject)
                {
                    using var document = JsonDocument.ParseValue(ref reader);
                    logprobs = CompletionLogprobs.Read(document.RootElement);
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

        if (!string.IsNullOrEmpty(text))
        {
            events.Add(new TextDeltaEvent(text, index) { Logprobs = logprobs });
        }

        if (finish is not null)
        {
            events.Add(new FinishEvent(finish, index));
        }
    }

    private static T Skip<T>(ref Utf8JsonReader reader, T fallback)
    {
        reader.Skip();
        return fallback;
    }

    private static JsonTokenType Next(ref Utf8JsonReader reader) =>
        reader.Read() ? reader.TokenType : throw new JsonException("The chunk JSON ends early.");
}
