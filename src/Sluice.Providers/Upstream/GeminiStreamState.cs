using System.Text;
using System.Text.Json;
using Sluice.Protocol.Events;

namespace Sluice.Providers.Upstream;

/// <summary>
/// Turns Gemini <c>GenerateContentResponse</c> chunks into answer events with one <see cref="Utf8JsonReader"/>
/// pass each, and remembers what only matters at the end (finish reasons, usage, a blocked prompt).
/// </summary>
internal sealed class GeminiStreamState
{
    private readonly SortedDictionary<int, Candidate> _candidates = [];
    private ChatUsage? _usage;
    private bool _blocked;

    /// <summary>Reads one chunk; returns true when it is an error object instead (the caller reads its details).</summary>
    /// <exception cref="JsonException">The chunk is not valid JSON or not an object.</exception>
    public bool Apply(ReadOnlySpan<byte> json, List<ChatStreamEvent> output)
    {
        var reader = new Utf8JsonReader(json);
        if (Next(ref reader) != JsonTokenType.StartObject)
        {
            throw new JsonException("A chunk must be a JSON object.");
        }

        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("error"u8))
            {
                return true;
            }

            if (reader.ValueTextEquals("candidates"u8))
            {
                if (Next(ref reader) != JsonTokenType.StartArray)
                {
                    reader.Skip();
                    continue;
                }

                var position = 0;
                while (Next(ref reader) == JsonTokenType.StartObject)
                {
                    ReadCandidate(ref reader, json, position++, output);
                }
            }
            else if (reader.ValueTextEquals("promptFeedback"u8))
            {
                ReadPromptFeedback(ref reader);
            }
            else if (reader.ValueTextEquals("usageMetadata"u8))
            {
                ReadUsage(ref reader);
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        return false;
    }

    /// <summary>The stream closed: adds the finish events and usage. False when the stream said nothing usable.</summary>
    public bool Complete(List<ChatStreamEvent> output)
    {
        var any = false;
        foreach (var (index, candidate) in _candidates)
        {
            if (candidate.FinishReason is null && !candidate.HasContent)
            {
                continue;
            }

            any = true;
            output.Add(new FinishEvent(GeminiChatBackend.FinishReasonOf(candidate.FinishReason, candidate.ToolCount > 0), index));
        }

        if (!any && _blocked)
        {
            any = true;
            output.Add(new FinishEvent(FinishReasons.ContentFilter));
        }

        if (any && _usage is { } usage)
        {
            output.Add(new UsageEvent(usage));
        }

        return any;
    }

    private void ReadCandidate(ref Utf8JsonReader reader, ReadOnlySpan<byte> source, int position, List<ChatStreamEvent> output)
    {
        var index = position;
        var firstEvent = output.Count;
        string? finishReason = null;
        var sawContent = false;
        Candidate? candidate = null;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("index"u8))
            {
                Next(ref reader);
                if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var value))
                {
                    index = value;
                }
            }
            else if (reader.ValueTextEquals("finishReason"u8))
            {
                Next(ref reader);
                finishReason = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader);
            }
            else if (reader.ValueTextEquals("content"u8))
            {
                if (Next(ref reader) != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                // Tool indexes are per candidate, so the candidate must be known before parts are read; the index
                // usually precedes content or is absent (0). If it comes later, events are re-homed below.
                candidate ??= Get(index);
                while (Next(ref reader) == JsonTokenType.PropertyName)
                {
                    if (!reader.ValueTextEquals("parts"u8))
                    {
                        Next(ref reader);
                        reader.Skip();
                        continue;
                    }

                    if (Next(ref reader) != JsonTokenType.StartArray)
                    {
                        reader.Skip();
                        continue;
                    }

                    while (Next(ref reader) == JsonTokenType.StartObject)
                    {
                        sawContent |= ReadPart(ref reader, source, candidate, output);
                    }
                }
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        candidate ??= Get(index);
        if (!ReferenceEquals(candidate, Get(index)))
        {
            var actual = Get(index);
            actual.HasContent |= candidate.HasContent;
            actual.ToolCount += candidate.ToolCount;
            candidate = actual;
        }

        candidate.HasContent |= sawContent;
        if (finishReason is not null)
        {
            candidate.FinishReason = finishReason;
        }

        if (index != 0)
        {
            for (var i = firstEvent; i < output.Count; i++)
            {
                output[i] = output[i] switch
                {
                    TextDeltaEvent text => new TextDeltaEvent(text.Text, index),
                    ToolCallDeltaEvent tool => new ToolCallDeltaEvent(tool.ToolIndex, tool.Id, tool.Name, tool.ArgumentsFragment, index),
                    var other => other,
                };
            }
        }
    }

    /// <summary>Reads one part; true when it added answer content (text or a function call).</summary>
    private static bool ReadPart(ref Utf8JsonReader reader, ReadOnlySpan<byte> source, Candidate candidate, List<ChatStreamEvent> output)
    {
        string? text = null;
        var thought = false;
        string? callName = null;
        string? callId = null;
        string? callArgs = null;
        var isCall = false;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("text"u8))
            {
                Next(ref reader);
                text = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader);
            }
            else if (reader.ValueTextEquals("thought"u8))
            {
                Next(ref reader);
                thought = reader.TokenType == JsonTokenType.True;
            }
            else if (reader.ValueTextEquals("functionCall"u8))
            {
                isCall = true;
                if (Next(ref reader) != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                while (Next(ref reader) == JsonTokenType.PropertyName)
                {
                    if (reader.ValueTextEquals("name"u8))
                    {
                        Next(ref reader);
                        callName = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader);
                    }
                    else if (reader.ValueTextEquals("id"u8))
                    {
                        Next(ref reader);
                        callId = reader.TokenType == JsonTokenType.String ? reader.GetString() : SkipValue(ref reader);
                    }
                    else if (reader.ValueTextEquals("args"u8))
                    {
                        Next(ref reader);
                        var start = (int)reader.TokenStartIndex;
                        reader.Skip();
                        callArgs = Encoding.UTF8.GetString(source[start..(int)reader.BytesConsumed]);
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

        if (isCall)
        {
            // Gemini sends each call whole: one fragment with id, name and the complete arguments.
            output.Add(new ToolCallDeltaEvent(
                candidate.ToolCount++,
                string.IsNullOrEmpty(callId) ? UpstreamStreaming.NewToolCallId() : callId,
                callName ?? string.Empty,
                callArgs ?? "{}"));
            return true;
        }

        if (thought || string.IsNullOrEmpty(text))
        {
            return false;
        }

        output.Add(new TextDeltaEvent(text));
        return true;
    }

    private void ReadPromptFeedback(ref Utf8JsonReader reader)
    {
        if (Next(ref reader) != JsonTokenType.StartObject)
        {
            reader.Skip();
            return;
        }

        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            var isBlock = reader.ValueTextEquals("blockReason"u8);
            Next(ref reader);
            if (isBlock && reader.TokenType == JsonTokenType.String)
            {
                _blocked = true;
            }
            else
            {
                reader.Skip();
            }
        }
    }

    private void ReadUsage(ref Utf8JsonReader reader)
    {
        if (Next(ref reader) != JsonTokenType.StartObject)
        {
            reader.Skip();
            return;
        }

        int prompt = 0, candidates = 0, thoughts = 0, toolPrompt = 0, cached = 0;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            ref var target = ref prompt;
            var known = true;
            if (reader.ValueTextEquals("promptTokenCount"u8))
            {
                target = ref prompt;
            }
            else if (reader.ValueTextEquals("candidatesTokenCount"u8))
            {
                target = ref candidates;
            }
            else if (reader.ValueTextEquals("thoughtsTokenCount"u8))
            {
                target = ref thoughts;
            }
            else if (reader.ValueTextEquals("toolUsePromptTokenCount"u8))
            {
                target = ref toolPrompt;
            }
            else if (reader.ValueTextEquals("cachedContentTokenCount"u8))
            {
                target = ref cached;
            }
            else
            {
                known = false;
            }

            Next(ref reader);
            if (known && reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var value))
            {
                target = value;
            }
            else
            {
                reader.Skip();
            }
        }

        // Gemini bills thinking as output and tool-use prompts as input: totalTokenCount is the sum of all four.
        // Cached content is part of promptTokenCount; thoughts are the reasoning part of the output.
        _usage = new ChatUsage(prompt + toolPrompt, candidates + thoughts) { Details = ChatUsageDetails.Of(cached, 0, thoughts) };
    }

    private Candidate Get(int index)
    {
        if (!_candidates.TryGetValue(index, out var candidate))
        {
            candidate = new Candidate();
            _candidates[index] = candidate;
        }

        return candidate;
    }

    private static string? SkipValue(ref Utf8JsonReader reader)
    {
        reader.Skip();
        return null;
    }

    private static JsonTokenType Next(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
        {
            throw new JsonException("The chunk JSON ends early.");
        }

        return reader.TokenType;
    }

    private sealed class Candidate
    {
        public bool HasContent { get; set; }

        public int ToolCount { get; set; }

        public string? FinishReason { get; set; }
    }
}
