using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Completions;
using Sluice.Protocol.Embeddings;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;

namespace Sluice.Providers.Upstream;

/// <summary>
/// An OpenAI-compatible upstream (OpenAI, xAI Grok, vLLM, llama.cpp, Ollama's <c>/v1</c>, Cloud Temple LLMaaS, …):
/// <c>POST {BaseUrl}/chat/completions</c> with a Bearer key.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>The client's request body is forwarded as sent — unknown fields included — with only <c>model</c>
/// (set to <see cref="ModelOptions.UpstreamModel"/>), <c>stream</c> (always true) and <c>stream_options</c>
/// (always <c>include_usage</c>, so usage is recorded even when the client did not ask for it) replaced.</item>
/// <item>Each upstream chunk is yielded as an <see cref="OpenAIChunkEvent"/>: its exact bytes (written to the client
/// unchanged) plus what one <see cref="Utf8JsonReader"/> pass decoded for accounting — or, for a consumer that
/// accepts them (<see cref="ChatCallOptions.AcceptsChunkBatches"/>), all the chunks one upstream read delivered as one
/// <see cref="OpenAIChunkBatch"/>. The upstream's usage chunk
/// becomes a <see cref="UsageEvent"/>; the gateway writes its own only if the client asked.</item>
/// <item>Non-streaming client requests are streamed upstream too and assembled by the gateway.</item>
/// <item>A stream must end with <c>[DONE]</c>, or close cleanly after every choice has finished; an error frame
/// (<c>data: {"error": …}</c>, as llama.cpp and vLLM send) or anything else is an error.</item>
/// </list>
/// </remarks>
public sealed class OpenAIChatBackend : UpstreamChatBackend, IEmbeddingBackend
{
    /// <summary>The <c>Provider</c> value.</summary>
    public const string ProviderName = "openai";

    private readonly JsonEncodedText _upstreamModel;

    /// <summary>Creates the adapter and its connection pool.</summary>
    /// <param name="options">The model entry (BaseUrl required).</param>
    /// <param name="apiKey">The API key, or null for keyless servers.</param>
    public OpenAIChatBackend(ModelOptions options, string? apiKey)
        : this(UpstreamTransport.Create(options, "OpenAI-compatible", apiKey, "text/event-stream", "Authorization", "Bearer "))
    {
    }

    private OpenAIChatBackend(UpstreamTransport transport)
        : base(transport, new Uri(transport.BaseUrl + "/chat/completions"), UpstreamFraming.ServerSentEvents) =>
        _upstreamModel = JsonEncodedText.Encode(transport.UpstreamModel);

    private protected override bool SupportsSeveralChoices => true;

    private protected override bool PassesCompletionsThrough => true;

    private protected override bool ReturnsLogprobs => true;

    /// <summary>Legacy completion requests go to <c>{BaseUrl}/completions</c>; everything else to the chat endpoint.</summary>
    private protected override Uri EndpointFor(ChatRequest request) =>
        request.Completion is null ? base.EndpointFor(request) : new Uri(Transport.BaseUrl + "/completions");

    /// <summary>
    /// <c>POST {BaseUrl}/embeddings</c>. An OpenAI client's body goes as sent (only <c>model</c> replaced) and the answer comes
    /// back verbatim; a request from another dialect is built (<c>encoding_format: base64</c>, the smaller answer).
    /// </summary>
    public async Task<EmbeddingResult> EmbedAsync(EmbeddingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var passThrough = !request.RawBody.IsEmpty;
        var body = passThrough ? EmbeddingAnswers.WithModel(request.RawBody, Transport.UpstreamModel) : BuildEmbeddingBody(request);
        var answer = await UpstreamStreaming.ExchangeAsync(Transport, new Uri(Transport.BaseUrl + "/embeddings"), body, cancellationToken).ConfigureAwait(false);
        var (vectors, tokens) = EmbeddingAnswers.ReadOpenAI(answer, request.Inputs.Count, Transport);
        return new EmbeddingResult { Vectors = vectors, PromptTokens = tokens, Verbatim = passThrough ? answer : default };
    }

    private byte[] BuildEmbeddingBody(EmbeddingRequest request)
    {
        using var lease = PooledJsonWriter.Rent(256);
        var json = lease.Writer;
        json.WriteStartObject();
        json.WriteString("model"u8, _upstreamModel);
        json.WriteStartArray("input"u8);
        foreach (var input in request.Inputs)
        {
            WriteTextOrTokens(json, input.Text, input.Tokens);
        }

        json.WriteEndArray();
        json.WriteString("encoding_format"u8, "base64"u8);
        if (request.Dimensions is { } dimensions)
        {
            json.WriteNumber("dimensions"u8, dimensions);
        }

        if (request.User is not null)
        {
            json.WriteString("user"u8, request.User);
        }

        json.WriteEndObject();

        return lease.ToArray();
    }

    private protected override UpstreamDecoder CreateDecoder(ChatRequest request, ChatCallOptions options) =>
        request.Completion is null ? new Decoder(request.N > 1, options.AcceptsChunkBatches) : new CompletionDecoder();

    /// <summary>
    /// A legacy completion stream: every <c>text_completion</c> chunk is decoded (text with its logprobs, finishes) and
    /// passed on with its exact bytes; the usage chunk becomes a <see cref="UsageEvent"/>, an error frame an error.
    /// </summary>
    private sealed class CompletionDecoder : UpstreamDecoder
    {
        private readonly List<ChatStreamEvent> _scratch = new(4);
        private ChoiceTracker _choices;
        private bool _captureIdentity = true;

        public override string EndMarker => "its finish_reason and data: [DONE]";

        public override UpstreamRecord Decode(ReadOnlySpan<byte> data, ReadOnlySpan<byte> eventType, List<ChatStreamEvent> events)
        {
            if (data.SequenceEqual("[DONE]"u8))
            {
                return UpstreamRecord.End;
            }

            _scratch.Clear();
            var info = CompletionChunkDecoder.Decode(data, _scratch, _captureIdentity);
            if (info.Error is { } upstreamError)
            {
                return UpstreamRecord.Error(upstreamError.Message, upstreamError.Code ?? upstreamError.Type);
            }

            if (info.ChoiceCount == 0 && info.Usage is { } finalUsage)
            {
                events.Add(new UsageEvent(finalUsage));
                return UpstreamRecord.Continue;
            }

            _choices.Observe(_scratch);
            _captureIdentity &= info.Identity is null;
            events.Add(new OpenAIChunkEvent(data.ToArray(), [.. _scratch], info.Identity));
            if (info.Usage is { } usage)
            {
                events.Add(new UsageEvent(usage));
            }

            return UpstreamRecord.Continue;
        }

        public override bool Finish(List<ChatStreamEvent> events) => _choices.AllFinished;
    }

    /// <summary>
    /// The <c>/completions</c> body: the client's own (every field as sent) with <c>model</c>, <c>stream</c> and
    /// <c>stream_options</c> replaced, or one built from the parsed request.
    /// </summary>
    private byte[] BuildCompletionBody(ChatRequest request, LegacyCompletion completion)
    {
        using var lease = PooledJsonWriter.Rent(Math.Max(256, completion.RawBody.Length + 128));
        var json = lease.Writer;
        json.WriteStartObject();
        json.WriteString("model"u8, _upstreamModel);
        if (!completion.RawBody.IsEmpty)
        {
            CopyClientFields(json, completion.RawBody.Span, promptIsShorthand: false);
        }
        else
        {
            json.WriteStartArray("prompt"u8);
            foreach (var prompt in completion.Prompts)
            {
                WriteTextOrTokens(json, prompt.Text, prompt.Tokens);
            }

            json.WriteEndArray();
            json.WriteNumber("max_tokens"u8, completion.MaxTokens);
            if (completion.Suffix is not null)
            {
                json.WriteString("suffix"u8, completion.Suffix);
            }

            if (completion.Echo)
            {
                json.WriteBoolean("echo"u8, true);
            }

            if (completion.Logprobs is { } logprobs)
            {
                json.WriteNumber("logprobs"u8, logprobs);
            }

            if (completion.BestOf is { } bestOf)
            {
                json.WriteNumber("best_of"u8, bestOf);
            }

            // Completions have logprobs of their own (a count, written above), not chat's boolean.
            WriteParsedFields(json, request with { MaxTokens = null, Logprobs = false, TopLogprobs = null });
        }

        json.WriteBoolean("stream"u8, true);
        json.WriteStartObject("stream_options"u8);
        json.WriteBoolean("include_usage"u8, true);
        json.WriteEndObject();
        json.WriteEndObject();

        return lease.ToArray();
    }

    /// <summary>
    /// One response's chunks: plain deltas (nearly all of them) are forwarded and counted without being decoded; the
    /// first chunk, finishes, usage and every chunk of a several-choice answer are decoded. For a consumer that takes
    /// them, the chunks of one upstream read are passed on as one <see cref="OpenAIChunkBatch"/>.
    /// </summary>
    private sealed class Decoder(bool decodeAll, bool batching) : UpstreamDecoder
    {
        /// <summary>A batch is passed on at this size even if more is ready, so it stays bounded.</summary>
        private const int MaxBatchBytes = 32 * 1024;

        private readonly List<ChatStreamEvent> _scratch = new(4);
        private readonly OpenAIDeltaShape _shape = new();
        private ChoiceTracker _choices;
        private OpenAIChunkBatch? _batch;

        // The last batch passed on: once its consumer has disposed it, the next read reuses the object (see TryReopen).
        private OpenAIChunkBatch? _passedOn;
        private bool _captureIdentity = true;

        // Until the first token has gone on, a batch goes on as soon as it holds a token, whatever else is ready: time
        // to first token is what users feel. The role chunk before it waits only if the token's chunk is already here
        // (one send for both instead of two). Later chunks that arrived together are passed on together.
        private bool _eager = true;
        private bool _batchHasToken;

        public override string EndMarker => "its finish_reason and data: [DONE]";

        public override UpstreamRecord Decode(ReadOnlySpan<byte> data, ReadOnlySpan<byte> eventType, List<ChatStreamEvent> events)
        {
            if (data.SequenceEqual("[DONE]"u8))
            {
                return UpstreamRecord.End;
            }

            // Plain delta chunks (nearly all of them) are forwarded and counted without being decoded.
            if (!_captureIdentity && !decodeAll && IsPlainDelta(data))
            {
                if (batching)
                {
                    (_batch ??= NewBatch()).Add(data, null);
                    _batchHasToken = true;
                }
                else
                {
                    events.Add(new OpenAIChunkEvent(data.ToArray(), null));
                }

                return UpstreamRecord.Continue;
            }

            _scratch.Clear();
            var info = OpenAIChunkDecoder.Decode(data, _scratch, _captureIdentity);
            if (info.Error is { } upstreamError)
            {
                Release(events);
                return UpstreamRecord.Error(upstreamError.Message, upstreamError.Code ?? upstreamError.Type);
            }

            if (info.ChoiceCount == 0 && info.Usage is { } finalUsage)
            {
                Release(events);
                events.Add(new UsageEvent(finalUsage));
                return UpstreamRecord.Continue;
            }

            _choices.Observe(_scratch);
            if (info.Usage is { } usage)
            {
                _scratch.Add(new UsageEvent(usage));
            }

            IReadOnlyList<ChatStreamEvent> meaning = _scratch.Count == 0 ? [] : _scratch.ToArray();
            _captureIdentity &= info.Identity is null;
            if (batching)
            {
                // The batch keeps the bytes once; an event of its own (and a second copy) only if a consumer asks.
                (_batch ??= NewBatch()).Add(data, meaning, info.Identity);
                _batchHasToken |= HasToken(_scratch);
            }
            else
            {
                events.Add(new OpenAIChunkEvent(data.ToArray(), meaning, info.Identity));
            }

            return UpstreamRecord.Continue;
        }

        public override ChatStreamEvent? ShouldRelease(bool nextReady)
        {
            if (_batch is null || (nextReady && _batch.ByteCount < MaxBatchBytes && !(_eager && _batchHasToken)))
            {
                return null;
            }

            // The upstream has nothing more ready, the batch is full, or it holds the answer's first token: pass on
            // what it delivered as one event.
            return TakeBatch();
        }

        /// <summary>A clean close after every choice finished is an acceptable end (some servers send no [DONE]).</summary>
        public override bool Finish(List<ChatStreamEvent> events) => _choices.AllFinished;

        public override void Dispose()
        {
            _batch?.Dispose();
            _shape.Dispose();
        }

        private void Release(List<ChatStreamEvent> events)
        {
            if (_batch is not null)
            {
                events.Add(TakeBatch());
            }
        }

        private OpenAIChunkBatch TakeBatch()
        {
            var ready = _batch!;
            _batch = null;
            _eager &= !_batchHasToken;
            _batchHasToken = false;
            _passedOn = ready;
            return ready;
        }

        // What the usage meter counts as a token (its first one is the time to first token).
        private static bool HasToken(List<ChatStreamEvent> meaning)
        {
            foreach (var e in meaning)
            {
                if (e is TextDeltaEvent or RefusalDeltaEvent or ToolCallDeltaEvent)
                {
                    return true;
                }
            }

            return false;
        }

        private OpenAIChunkBatch NewBatch() =>
            _passedOn is { } spare && spare.TryReopen() ? spare : new OpenAIChunkBatch();

        /// <summary>
        /// True for a well-formed chunk that needs no decode: recognised by its shape (same bytes as the stream's last
        /// plain delta around its text), or else checked in full — and then its shape is learned for the next ones.
        /// </summary>
        private bool IsPlainDelta(ReadOnlySpan<byte> data)
        {
            if (_shape.Matches(data))
            {
                return true;
            }

            if (OpenAIChunkScanner.NeedsDecode(data) || !OpenAIChunkScanner.IsWellFormedObject(data))
            {
                return false;
            }

            _shape.Learn(data);
            return true;
        }
    }

    /// <summary>The upstream request body: the client's own body with model/stream/stream_options replaced, or one built from the parsed request.</summary>
    internal override byte[] BuildBody(ChatRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Completion is { } completion)
        {
            return BuildCompletionBody(request, completion);
        }

        using var lease = PooledJsonWriter.Rent(Math.Max(256, request.RawBody.Length + 128));
        var json = lease.Writer;
        json.WriteStartObject();
        json.WriteString("model"u8, _upstreamModel);
        var wroteMessages = !request.RawBody.IsEmpty && CopyClientFields(json, request.RawBody.Span);
        if (!wroteMessages)
        {
            WriteMessages(json, request.Messages);
        }

        if (request.RawBody.IsEmpty)
        {
            WriteParsedFields(json, request);
        }

        json.WriteBoolean("stream"u8, true);
        json.WriteStartObject("stream_options"u8);
        json.WriteBoolean("include_usage"u8, true);
        json.WriteEndObject();
        json.WriteEndObject();

        return lease.ToArray();
    }

    /// <summary>Copies every top-level field of the client's body except the ones Sluice sets; true if it had <c>messages</c>.</summary>
    /// <param name="json">The body being written.</param>
    /// <param name="raw">The client's body.</param>
    /// <param name="promptIsShorthand">True for chat bodies, whose <c>prompt</c> is Sluice's shorthand; false for completions, whose prompt it is.</param>
    private static bool CopyClientFields(Utf8JsonWriter json, ReadOnlySpan<byte> raw, bool promptIsShorthand = true)
    {
        var reader = new Utf8JsonReader(raw, new JsonReaderOptions { MaxDepth = 256 });
        reader.Read();
        var hadMessages = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            // "prompt" is Sluice's shorthand, which upstreams do not know: it is sent as messages instead.
            var replaced = reader.ValueTextEquals("model"u8) || reader.ValueTextEquals("stream"u8)
                || reader.ValueTextEquals("stream_options"u8) || (promptIsShorthand && reader.ValueTextEquals("prompt"u8));
            hadMessages |= reader.ValueTextEquals("messages"u8);
            if (replaced)
            {
                reader.Read();
                reader.Skip();
                continue;
            }

            if (reader.ValueIsEscaped)
            {
                json.WritePropertyName(reader.GetString()!);
            }
            else
            {
                json.WritePropertyName(reader.ValueSpan);
            }

            reader.Read();
            var start = (int)reader.TokenStartIndex;
            reader.Skip();
            json.WriteRawValue(raw[start..(int)reader.BytesConsumed], skipInputValidation: true);
        }

        return hadMessages;
    }

    private void WriteMessages(Utf8JsonWriter json, IReadOnlyList<ChatMessage> messages)
    {
        json.WriteStartArray("messages"u8);
        foreach (var message in messages)
        {
            json.WriteStartObject();
            json.WriteString("role"u8, message.Role);
            if (message.Parts is { } parts)
            {
                WriteParts(json, parts);
            }
            else if (message.Content is null)
            {
                json.WriteNull("content"u8);
            }
            else
            {
                json.WriteString("content"u8, message.Content);
            }

            if (message.Name is not null)
            {
                json.WriteString("name"u8, message.Name);
            }

            if (message.ToolCallId is not null)
            {
                json.WriteString("tool_call_id"u8, message.ToolCallId);
            }

            if (message.ToolCalls is { Count: > 0 } calls)
            {
                json.WriteStartArray("tool_calls"u8);
                foreach (var call in calls)
                {
                    json.WriteStartObject();
                    json.WriteString("id"u8, call.Id);
                    json.WriteString("type"u8, "function"u8);
                    json.WriteStartObject("function"u8);
                    json.WriteString("name"u8, call.Name);
                    json.WriteString("arguments"u8, call.Arguments);
                    json.WriteEndObject();
                    json.WriteEndObject();
                }

                json.WriteEndArray();
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
    }

    /// <summary>
    /// Content parts in OpenAI's shape: <c>text</c>, <c>image_url</c> (an http(s) or data URL, with <c>detail</c>) and
    /// <c>file</c> (<c>file_data</c> as a data URL with a <c>filename</c>, or <c>file_id</c>); plain-text documents as text.
    /// </summary>
    private void WriteParts(Utf8JsonWriter json, IReadOnlyList<ContentPart> parts)
    {
        json.WriteStartArray("content"u8);
        foreach (var part in parts)
        {
            json.WriteStartObject();
            if (part.Kind == ContentPartKind.Text || part.Text is not null)
            {
                json.WriteString("type"u8, "text"u8);
                json.WriteString("text"u8, part.Kind == ContentPartKind.Text || part.Filename is null ? part.Text : $"{part.Filename}\n\n{part.Text}");
            }
            else if (part.Kind == ContentPartKind.Image)
            {
                json.WriteString("type"u8, "image_url"u8);
                json.WriteStartObject("image_url"u8);
                json.WriteString("url"u8, part.Url ?? AttachmentSupport.DataUrl(part));
                if (part.Detail is not null)
                {
                    json.WriteString("detail"u8, part.Detail);
                }

                json.WriteEndObject();
            }
            else
            {
                if (part.Url is not null)
                {
                    throw AttachmentSupport.Refuse(part, Transport.Options.Name, Transport.ProviderLabel,
                        "OpenAI's chat API takes files as data or file ids, not by URL", "Send the document's bytes (base64) instead.");
                }

                json.WriteString("type"u8, "file"u8);
                json.WriteStartObject("file"u8);
                if (part.FileId is not null)
                {
                    json.WriteString("file_id"u8, part.FileId);
                }
                else
                {
                    json.WriteString("file_data"u8, AttachmentSupport.DataUrl(part));
                    json.WriteString("filename"u8, part.Filename ?? (part.MediaType == "application/pdf" ? "document.pdf" : "document"));
                }

                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
    }

    /// <summary>One embedding input or completion prompt: its text as a string, or its token ids as an array.</summary>
    private static void WriteTextOrTokens(Utf8JsonWriter json, string? text, IReadOnlyList<int>? tokens)
    {
        if (text is not null)
        {
            json.WriteStringValue(text);
            return;
        }

        json.WriteStartArray();
        foreach (var token in tokens!)
        {
            json.WriteNumberValue(token);
        }

        json.WriteEndArray();
    }

    private static void WriteParsedFields(Utf8JsonWriter json, ChatRequest request)
    {
        if (request.N > 1)
        {
            json.WriteNumber("n"u8, request.N);
        }

        if (request.MaxTokens is { } max)
        {
            // max_tokens rather than max_completion_tokens: every OpenAI-compatible server knows it.
            json.WriteNumber("max_tokens"u8, max);
        }

        if (request.Temperature is { } temperature)
        {
            json.WriteNumber("temperature"u8, temperature);
        }

        if (request.TopP is { } topP)
        {
            json.WriteNumber("top_p"u8, topP);
        }

        if (request.Stop is { Count: > 0 } stop)
        {
            json.WriteStartArray("stop"u8);
            foreach (var sequence in stop)
            {
                json.WriteStringValue(sequence);
            }

            json.WriteEndArray();
        }

        if (request.Seed is { } seed)
        {
            json.WriteNumber("seed"u8, seed);
        }

        if (request.User is not null)
        {
            json.WriteString("user"u8, request.User);
        }

        if (request.ToolsJson is { } tools)
        {
            json.WritePropertyName("tools"u8);
            tools.WriteTo(json);
        }

        if (request.ToolChoice is { } choice)
        {
            json.WritePropertyName("tool_choice"u8);
            choice.WriteTo(json);
        }

        if (request.ParallelToolCalls is { } parallel)
        {
            json.WriteBoolean("parallel_tool_calls"u8, parallel);
        }

        if (request.Logprobs)
        {
            json.WriteBoolean("logprobs"u8, true);
            if (request.TopLogprobs is { } top)
            {
                json.WriteNumber("top_logprobs"u8, top);
            }
        }

        if (request.ResponseFormat is { } format)
        {
            WriteResponseFormat(json, format);
        }
    }

    /// <summary>Chat Completions' <c>response_format</c> for a format parsed from any dialect.</summary>
    internal static void WriteResponseFormat(Utf8JsonWriter json, ResponseFormat format)
    {
        json.WriteStartObject("response_format"u8);
        json.WriteString("type"u8, format.Type);
        if (format.Type == ResponseFormat.JsonSchemaType)
        {
            json.WriteStartObject("json_schema"u8);
            json.WriteString("name"u8, format.Name ?? "answer");
            if (format.Description is not null)
            {
                json.WriteString("description"u8, format.Description);
            }

            if (format.Schema is { } schema)
            {
                json.WritePropertyName("schema"u8);
                schema.WriteTo(json);
            }

            if (format.Strict is { } strict)
            {
                json.WriteBoolean("strict"u8, strict);
            }

            json.WriteEndObject();
        }

        json.WriteEndObject();
    }

    /// <summary>Which choices have started and which have finished (a clean close after all finished is an acceptable end).</summary>
    private struct ChoiceTracker
    {
        private ulong _seen;
        private ulong _finished;

        public readonly bool AllFinished => _seen != 0 && _seen == _finished;

        public void Observe(List<ChatStreamEvent> events)
        {
            foreach (var streamEvent in events)
            {
                var index = streamEvent.ChoiceIndex;
                if (index is < 0 or >= 64)
                {
                    continue;
                }

                _seen |= 1UL << index;
                if (streamEvent is FinishEvent)
                {
                    _finished |= 1UL << index;
                }
            }
        }
    }
}
