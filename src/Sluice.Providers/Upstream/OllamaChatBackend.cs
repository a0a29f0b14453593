using System.Buffers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Embeddings;
using Sluice.Protocol.Events;

namespace Sluice.Providers.Upstream;

/// <summary>
/// Ollama's native API: <c>POST {BaseUrl}/api/chat</c>, answered as newline-delimited JSON.
/// (For Ollama's OpenAI-compatible <c>/v1</c> endpoint, use the <c>openai</c> provider instead.)
/// </summary>
/// <remarks>
/// Streams: <c>message.content</c> deltas (<c>thinking</c> skipped), whole <c>tool_calls</c> (ids synthesized when
/// absent, the arguments object sent as JSON text), <c>done_reason</c> as finish reason, <c>prompt_eval_count</c>/
/// <c>eval_count</c> as usage. An <c>{"error": …}</c> line is an error; the stream must reach <c>done: true</c>.
/// A Bearer key is sent when <see cref="ModelOptions.ApiKeyEnv"/> is set (Ollama behind a proxy, Ollama cloud).
/// </remarks>
public sealed class OllamaChatBackend : UpstreamChatBackend, IEmbeddingBackend
{
    /// <summary>The <c>Provider</c> value.</summary>
    public const string ProviderName = "ollama";

    /// <summary>Creates the adapter and its connection pool.</summary>
    /// <param name="options">The model entry (BaseUrl required, e.g. <c>http://127.0.0.1:11434</c>).</param>
    /// <param name="apiKey">A Bearer key, or null for a local Ollama.</param>
    public OllamaChatBackend(ModelOptions options, string? apiKey)
        : this(UpstreamTransport.Create(options, "Ollama", apiKey, "application/x-ndjson", "Authorization", "Bearer "))
    {
    }

    private OllamaChatBackend(UpstreamTransport transport)
        : base(transport, new Uri(transport.BaseUrl + "/api/chat"), UpstreamFraming.NdJson)
    {
    }

    private protected override UpstreamDecoder CreateDecoder(ChatRequest request, ChatCallOptions options) => new Decoder();

    /// <summary><c>POST {BaseUrl}/api/embed</c> with the texts, <c>truncate</c> and <c>dimensions</c>; Ollama counts the tokens.</summary>
    public async Task<EmbeddingResult> EmbedAsync(EmbeddingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        EmbeddingAnswers.RequireText(request, Transport);
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, PooledJsonWriter.Options))
        {
            json.WriteStartObject();
            json.WriteString("model"u8, Transport.UpstreamModel);
            json.WriteStartArray("input"u8);
            foreach (var input in request.Inputs)
            {
                json.WriteStringValue(input.Text);
            }

            json.WriteEndArray();
            if (request.Truncate is { } truncate)
            {
                json.WriteBoolean("truncate"u8, truncate);
            }

            if (request.Dimensions is { } dimensions)
            {
                json.WriteNumber("dimensions"u8, dimensions);
            }

            json.WriteEndObject();
        }

        var answer = await UpstreamStreaming.ExchangeAsync(Transport, new Uri(Transport.BaseUrl + "/api/embed"), buffer.WrittenMemory, cancellationToken).ConfigureAwait(false);
        var (vectors, tokens) = EmbeddingAnswers.ReadOllama(answer, request.Inputs.Count, Transport);
        return new EmbeddingResult { Vectors = vectors, PromptTokens = tokens };
    }

    /// <summary>NDJSON lines: text and whole tool calls; <c>{"error"}</c> is the provider's error; <c>"done": true</c> ends with usage.</summary>
    private sealed class Decoder : UpstreamDecoder
    {
        private int _toolCount;

        public override string EndMarker => "its \"done\": true line";

        public override string RecordName => "a line";

        public override UpstreamRecord Decode(ReadOnlySpan<byte> data, ReadOnlySpan<byte> eventType, List<ChatStreamEvent> events)
        {
            var line = OllamaLine.Parse(data, events, ref _toolCount);
            if (line.Error is not null)
            {
                return UpstreamRecord.Error(line.Error, null);
            }

            if (!line.Done)
            {
                return UpstreamRecord.Continue;
            }

            events.Add(new FinishEvent(line.DoneReason == "length" ? FinishReasons.Length
                : _toolCount > 0 ? FinishReasons.ToolCalls : FinishReasons.Stop));
            if (line.PromptTokens is not null || line.CompletionTokens is not null)
            {
                events.Add(new UsageEvent(new ChatUsage(line.PromptTokens ?? 0, line.CompletionTokens ?? 0)));
            }

            return UpstreamRecord.End;
        }
    }

    /// <summary>The <c>/api/chat</c> request for <paramref name="request"/>.</summary>
    internal override byte[] BuildBody(ChatRequest request)
    {
        var callNames = new Dictionary<string, string>(StringComparer.Ordinal);
        using var lease = PooledJsonWriter.Rent(1024);
        var json = lease.Writer;
        json.WriteStartObject();
        json.WriteString("model"u8, Transport.UpstreamModel);
        json.WriteStartArray("messages"u8);
        for (var i = 0; i < request.Messages.Count; i++)
        {
            var message = request.Messages[i];
            json.WriteStartObject();
            json.WriteString("role"u8, message.Role == ChatRoles.Developer ? ChatRoles.System : message.Role);
            if (message.Parts is { } parts)
            {
                WriteParts(json, parts);
            }
            else
            {
                json.WriteString("content"u8, message.Content ?? string.Empty);
            }

            if (message.Role == ChatRoles.Tool && message.ToolCallId is { } id && callNames.TryGetValue(id, out var toolName))
            {
                json.WriteString("tool_name"u8, toolName);
            }

            if (message.ToolCalls is { Count: > 0 } calls)
            {
                json.WriteStartArray("tool_calls"u8);
                for (var c = 0; c < calls.Count; c++)
                {
                    callNames[calls[c].Id] = calls[c].Name;
                    json.WriteStartObject();
                    json.WriteStartObject("function"u8);
                    json.WriteString("name"u8, calls[c].Name);
                    json.WritePropertyName("arguments"u8);
                    AnthropicChatBackend.WriteArgumentsObject(json, calls[c].Arguments, $"messages[{i}].tool_calls[{c}].function.arguments");
                    json.WriteEndObject();
                    json.WriteEndObject();
                }

                json.WriteEndArray();
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
        if (request.ToolsJson is { } tools)
        {
            // Ollama takes tool definitions in OpenAI's shape.
            json.WritePropertyName("tools"u8);
            tools.WriteTo(json);
        }

        WriteOptions(json, request);
        json.WriteBoolean("stream"u8, true);
        json.WriteEndObject();

        return lease.ToArray();
    }

    /// <summary>
    /// A message with parts as Ollama takes it: the text (plain-text documents included) as <c>content</c> and the images,
    /// base64, as <c>images</c>. Images by URL and other documents are refused: Ollama fetches nothing and reads no PDFs.
    /// </summary>
    private void WriteParts(Utf8JsonWriter json, IReadOnlyList<ContentPart> parts)
    {
        var text = new StringBuilder();
        foreach (var part in parts)
        {
            if (part.Kind == ContentPartKind.Image && part.Data is null)
            {
                throw AttachmentSupport.Refuse(part, Transport.Options.Name, Transport.ProviderLabel,
                    "Ollama takes images as base64 data only", "Send the image's bytes (a data URL or base64) instead of a URL or file id.");
            }

            if (part.Kind == ContentPartKind.Document && part.Text is null)
            {
                throw AttachmentSupport.Refuse(part, Transport.Options.Name, Transport.ProviderLabel,
                    "Ollama takes text and images, not documents", "Send the document's text instead, or use a model that reads PDFs.");
            }

            if (part.Text is not null)
            {
                if (text.Length > 0)
                {
                    text.Append('\n');
                }

                text.Append(part.Kind == ContentPartKind.Document && part.Filename is not null ? $"{part.Filename}\n\n{part.Text}" : part.Text);
            }
        }

        json.WriteString("content"u8, text.ToString());
        json.WriteStartArray("images"u8);
        foreach (var part in parts)
        {
            if (part.Kind == ContentPartKind.Image)
            {
                json.WriteStringValue(part.Data);
            }
        }

        json.WriteEndArray();
    }

    private static void WriteOptions(Utf8JsonWriter json, ChatRequest request)
    {
        SamplingOptionsWriter.Write(json, request, SamplingNames.Ollama);
        if (request.ResponseFormat is { IsJson: true } format)
        {
            // Ollama's structured output: "json", or the JSON schema itself.
            if (format.Schema is { } schema)
            {
                json.WritePropertyName("format"u8);
                schema.WriteTo(json);
            }
            else
            {
                json.WriteString("format"u8, "json"u8);
            }
        }
    }

    /// <summary>One NDJSON line of <c>/api/chat</c>, read in one pass; its text and tool calls go straight to the output list.</summary>
    private readonly record struct OllamaLine(bool Done, string? DoneReason, int? PromptTokens, int? CompletionTokens, string? Error)
    {
        public static OllamaLine Parse(ReadOnlySpan<byte> json, List<ChatStreamEvent> output, ref int toolCount)
        {
            var reader = new Utf8JsonReader(json);
            if (Next(ref reader) != JsonTokenType.StartObject)
            {
                throw new JsonException("A line must be a JSON object.");
            }

            var line = default(OllamaLine);
            while (Next(ref reader) == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("message"u8))
                {
                    ReadMessage(ref reader, json, output, ref toolCount);
                }
                else if (reader.ValueTextEquals("done"u8))
                {
                    line = line with { Done = Next(ref reader) == JsonTokenType.True };
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("done_reason"u8))
                {
                    line = line with { DoneReason = Next(ref reader) == JsonTokenType.String ? reader.GetString() : null };
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("prompt_eval_count"u8))
                {
                    line = line with { PromptTokens = Next(ref reader) == JsonTokenType.Number && reader.TryGetInt32(out var v) ? v : null };
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("eval_count"u8))
                {
                    line = line with { CompletionTokens = Next(ref reader) == JsonTokenType.Number && reader.TryGetInt32(out var v) ? v : null };
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("error"u8))
                {
                    Next(ref reader);
                    line = line with
                    {
                        Error = reader.TokenType == JsonTokenType.String
                            ? reader.GetString()
                            : UpstreamStreaming.ErrorOf(json).Message ?? "(no details)",
                    };
                    reader.Skip();
                }
                else
                {
                    Next(ref reader);
                    reader.Skip();
                }
            }

            return line;
        }

        private static void ReadMessage(ref Utf8JsonReader reader, ReadOnlySpan<byte> source, List<ChatStreamEvent> output, ref int toolCount)
        {
            if (Next(ref reader) != JsonTokenType.StartObject)
            {
                reader.Skip();
                return;
            }

            while (Next(ref reader) == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("content"u8))
                {
                    if (Next(ref reader) == JsonTokenType.String && reader.ValueSpan.Length > 0)
                    {
                        output.Add(new TextDeltaEvent(reader.GetString()!));
                    }

                    reader.Skip();
                }
                else if (reader.ValueTextEquals("tool_calls"u8))
                {
                    if (Next(ref reader) != JsonTokenType.StartArray)
                    {
                        reader.Skip();
                        continue;
                    }

                    while (Next(ref reader) == JsonTokenType.StartObject)
                    {
                        output.Add(ReadToolCall(ref reader, source, toolCount++));
                    }
                }
                else
                {
                    Next(ref reader);
                    reader.Skip();
                }
            }
        }

        private static ToolCallDeltaEvent ReadToolCall(ref Utf8JsonReader reader, ReadOnlySpan<byte> source, int toolIndex)
        {
            string? id = null;
            string? name = null;
            string? arguments = null;
            while (Next(ref reader) == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("id"u8))
                {
                    id = Next(ref reader) == JsonTokenType.String ? reader.GetString() : null;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("function"u8))
                {
                    if (Next(ref reader) != JsonTokenType.StartObject)
                    {
                        reader.Skip();
                        continue;
                    }

                    while (Next(ref reader) == JsonTokenType.PropertyName)
                    {
                        if (reader.ValueTextEquals("name"u8))
                        {
                            name = Next(ref reader) == JsonTokenType.String ? reader.GetString() : null;
                            reader.Skip();
                        }
                        else if (reader.ValueTextEquals("arguments"u8))
                        {
                            Next(ref reader);
                            if (reader.TokenType == JsonTokenType.String)
                            {
                                arguments = reader.GetString();
                            }
                            else
                            {
                                var start = (int)reader.TokenStartIndex;
                                reader.Skip();
                                arguments = Encoding.UTF8.GetString(source[start..(int)reader.BytesConsumed]);
                            }
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

            return new ToolCallDeltaEvent(toolIndex, string.IsNullOrEmpty(id) ? UpstreamStreaming.NewToolCallId() : id, name ?? string.Empty, arguments ?? "{}");
        }

        private static JsonTokenType Next(ref Utf8JsonReader reader)
        {
            if (!reader.Read())
            {
                throw new JsonException("The line's JSON ends early.");
            }

            return reader.TokenType;
        }
    }
}
