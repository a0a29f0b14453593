using System.Text;
using System.Text.Json;
using Sluice.Protocol.Sse;

namespace Sluice.Testing;

/// <summary>One event of a Responses API stream.</summary>
/// <param name="Type">The SSE <c>event:</c> name.</param>
/// <param name="Data">The JSON.</param>
public sealed record ResponsesStreamEvent(string Type, JsonElement Data);

/// <summary>
/// Checks a Responses API stream against the documented event grammar and returns its events:
/// <c>response.created</c>, <c>response.in_progress</c>, then per output item <c>response.output_item.added</c> →
/// (content parts: <c>content_part.added</c> → <c>output_text.delta</c>* / <c>refusal.delta</c>* → <c>.done</c> →
/// <c>content_part.done</c>) or (<c>function_call_arguments.delta</c>* → <c>.done</c>) → <c>response.output_item.done</c>,
/// then exactly one terminal <c>response.completed</c> / <c>response.incomplete</c> / (<c>error</c> then)
/// <c>response.failed</c>, nothing after it. Every event's <c>type</c> equals its SSE name; <c>sequence_number</c>s start
/// at 0 and go up by one; deltas add up to the done texts; the terminal response's output equals the items done.
/// </summary>
public static class ResponsesGrammar
{
    /// <summary>Parses and checks <paramref name="sse"/>; throws <see cref="InvalidOperationException"/> naming the first violation.</summary>
    /// <param name="sse">The stream body.</param>
    /// <param name="consecutive">Whether sequence numbers must go up by exactly one (false for recordings with events cut out).</param>
    /// <param name="extraItemEvents">Item-level event types allowed besides the text and function-call ones (e.g. reasoning summaries).</param>
    public static List<ResponsesStreamEvent> Check(string sse, bool consecutive = true, IReadOnlySet<string>? extraItemEvents = null)
    {
        var events = Parse(sse);
        void Fail(int i, string what) => throw new InvalidOperationException(
            $"Event {i} ({(i < events.Count ? events[i].Type : "end")}): {what}. Sequence: {string.Join(", ", events.Select(e => e.Type))}");

        if (events.Count < 3)
        {
            Fail(events.Count, "a stream has at least response.created, response.in_progress and a terminal event");
        }

        var lastSequence = -1;
        for (var i = 0; i < events.Count; i++)
        {
            var data = events[i].Data;
            if (data.GetProperty("type").GetString() != events[i].Type)
            {
                Fail(i, "the data's type differs from the SSE event name");
            }

            var sequence = data.GetProperty("sequence_number").GetInt32();
            if (consecutive ? sequence != lastSequence + 1 : sequence <= lastSequence)
            {
                Fail(i, $"sequence_number {sequence} after {lastSequence}");
            }

            lastSequence = sequence;
        }

        if (events[0].Type != "response.created" || events[1].Type != "response.in_progress")
        {
            Fail(0, "the stream must open with response.created then response.in_progress");
        }

        var id = events[0].Data.GetProperty("response").GetProperty("id").GetString();
        var done = new List<JsonElement>();
        var terminal = -1;
        var i2 = 2;
        while (i2 < events.Count)
        {
            var e = events[i2];
            if (e.Type is "response.completed" or "response.incomplete" or "response.failed")
            {
                terminal = i2;
                break;
            }

            if (e.Type == "error")
            {
                if (i2 + 1 >= events.Count || events[i2 + 1].Type != "response.failed")
                {
                    Fail(i2, "an error event must be followed by response.failed");
                }

                i2++;
                continue;
            }

            if (e.Type != "response.output_item.added")
            {
                Fail(i2, "expected response.output_item.added or a terminal event");
            }

            var outputIndex = e.Data.GetProperty("output_index").GetInt32();
            var item = e.Data.GetProperty("item");
            var itemId = item.GetProperty("id").GetString();
            var kind = item.GetProperty("type").GetString();
            var arguments = new StringBuilder();
            var parts = 0;
            i2++;
            while (true)
            {
                if (i2 >= events.Count)
                {
                    Fail(i2, $"item {itemId} never ended");
                }

                var inner = events[i2];
                if (inner.Type == "response.output_item.done")
                {
                    if (inner.Data.GetProperty("output_index").GetInt32() != outputIndex || inner.Data.GetProperty("item").GetProperty("id").GetString() != itemId)
                    {
                        Fail(i2, "output_item.done for another item");
                    }

                    var finished = inner.Data.GetProperty("item");
                    if (kind == "function_call" && finished.GetProperty("arguments").GetString() != arguments.ToString())
                    {
                        Fail(i2, "the finished call's arguments differ from its deltas");
                    }

                    if (kind == "message" && finished.GetProperty("content").GetArrayLength() != parts)
                    {
                        Fail(i2, "the finished message's content differs from its parts");
                    }

                    done.Add(finished.Clone());
                    i2++;
                    break;
                }

                if (inner.Type == "error" || inner.Type.StartsWith("response.completed", StringComparison.Ordinal) || inner.Type == "response.failed" || inner.Type == "response.incomplete")
                {
                    if (inner.Type is "error" or "response.failed")
                    {
                        // A failure may cut an item short.
                        break;
                    }

                    Fail(i2, $"item {itemId} is still open");
                }

                if (inner.Data.TryGetProperty("item_id", out var owner) && owner.GetString() != itemId)
                {
                    Fail(i2, "an event for another item while this one is open");
                }

                if (kind == "message" && inner.Type == "response.content_part.added")
                {
                    var contentIndex = inner.Data.GetProperty("content_index").GetInt32();
                    if (contentIndex != parts)
                    {
                        Fail(i2, $"content_index {contentIndex}, expected {parts}");
                    }

                    var partType = inner.Data.GetProperty("part").GetProperty("type").GetString();
                    var (deltaType, doneType, field) = partType == "refusal"
                        ? ("response.refusal.delta", "response.refusal.done", "refusal")
                        : ("response.output_text.delta", "response.output_text.done", "text");
                    var text = new StringBuilder();
                    i2++;
                    while (i2 < events.Count && events[i2].Type == deltaType)
                    {
                        if (events[i2].Data.GetProperty("content_index").GetInt32() != contentIndex)
                        {
                            Fail(i2, "a delta for another content part");
                        }

                        text.Append(events[i2].Data.GetProperty("delta").GetString());
                        i2++;
                    }

                    if (i2 < events.Count && events[i2].Type == "error")
                    {
                        // A failure may cut a part short: the error and response.failed end the stream.
                        break;
                    }

                    if (i2 >= events.Count || events[i2].Type != doneType)
                    {
                        Fail(i2, $"expected {doneType}");
                    }

                    // Recordings with deltas cut out (not consecutive) keep the done text whole: compare only complete ones.
                    if (consecutive && events[i2].Data.GetProperty(field).GetString() != text.ToString())
                    {
                        Fail(i2, "the done text differs from the deltas");
                    }

                    var whole = events[i2].Data.GetProperty(field).GetString();
                    i2++;
                    if (i2 >= events.Count || events[i2].Type != "response.content_part.done"
                        || events[i2].Data.GetProperty("part").GetProperty(field).GetString() != whole)
                    {
                        Fail(i2, "expected response.content_part.done with the whole text");
                    }

                    parts++;
                    i2++;
                    continue;
                }

                if (kind == "function_call" && inner.Type == "response.function_call_arguments.delta")
                {
                    arguments.Append(inner.Data.GetProperty("delta").GetString());
                    i2++;
                    continue;
                }

                if (kind == "function_call" && inner.Type == "response.function_call_arguments.done")
                {
                    if (inner.Data.GetProperty("arguments").GetString() != arguments.ToString())
                    {
                        Fail(i2, "function_call_arguments.done differs from the deltas");
                    }

                    i2++;
                    continue;
                }

                if (extraItemEvents?.Contains(inner.Type) == true)
                {
                    i2++;
                    continue;
                }

                Fail(i2, $"{inner.Type} is not allowed inside a {kind} item");
            }
        }

        if (terminal < 0)
        {
            Fail(events.Count, "no terminal event");
        }

        if (terminal != events.Count - 1)
        {
            Fail(terminal + 1, "nothing may follow the terminal event");
        }

        var response = events[terminal].Data.GetProperty("response");
        if (response.GetProperty("id").GetString() != id)
        {
            Fail(terminal, "the terminal response has another id");
        }

        var status = response.GetProperty("status").GetString();
        var expectedStatus = events[terminal].Type["response.".Length..];
        if (status != expectedStatus)
        {
            Fail(terminal, $"status {status} in {events[terminal].Type}");
        }

        if (status != "failed")
        {
            var output = response.GetProperty("output").EnumerateArray().Select(o => o.GetRawText()).ToList();
            if (!output.SequenceEqual(done.Select(d => d.GetRawText())))
            {
                Fail(terminal, "the terminal response's output differs from the items done");
            }

            var usage = response.GetProperty("usage");
            if (usage.GetProperty("total_tokens").GetInt32() != usage.GetProperty("input_tokens").GetInt32() + usage.GetProperty("output_tokens").GetInt32())
            {
                Fail(terminal, "usage.total_tokens is not input_tokens + output_tokens");
            }
        }

        return events;
    }

    /// <summary>The stream's events (comments skipped).</summary>
    public static List<ResponsesStreamEvent> Parse(string sse)
    {
        var parser = new SseParser();
        var parsed = new List<SseEvent>();
        parser.Feed(Encoding.UTF8.GetBytes(sse + "\n\n"), parsed);
        parser.Complete(parsed);
        var result = new List<ResponsesStreamEvent>();
        foreach (var e in parsed.Where(e => !e.IsComment))
        {
            using var document = JsonDocument.Parse(e.Data);
            result.Add(new ResponsesStreamEvent(e.EventType ?? string.Empty, document.RootElement.Clone()));
        }

        return result;
    }
}
