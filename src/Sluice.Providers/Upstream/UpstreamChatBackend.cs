using System.Runtime.CompilerServices;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Providers.Upstream;

/// <summary>
/// The base of the provider adapters (OpenAI-compatible, Anthropic, Gemini, Ollama): it owns the one read loop they
/// share, and an adapter supplies only how a request body is built and how the provider's records are decoded.
/// </summary>
/// <remarks>
/// The steps of <see cref="StreamAsync"/> (marked <c>// :: Step N</c>):
/// <list type="number">
/// <item>Check what the provider cannot do (several choices), build the body, start the call's time limits.</item>
/// <item>Send the request and open the response (connection errors, timeouts and HTTP errors are thrown before the first
/// event, so fallback can still try another model).</item>
/// <item>Read the next record. A decoder holding events back (OpenAI's chunk batches) releases them when the upstream
/// has nothing more ready, so nothing waits in a batch while the relay could send it.</item>
/// <item>Decode it; a record that is not valid JSON is a 502 naming an excerpt.</item>
/// <item>The provider's own error: thrown before the first event (a real HTTP status for the client), an
/// <see cref="ErrorEvent"/> after it (an error frame). The end marker ends the stream.</item>
/// <item>The body ended without the end marker: the decoder says whether that is an acceptable end (Gemini's only end,
/// or every OpenAI choice finished), else a 502 "ended early" — or the provider's error written as plain JSON.</item>
/// </list>
/// </remarks>
public abstract class UpstreamChatBackend : IChatBackend, IDisposable
{
    private readonly Uri _endpoint;
    private readonly UpstreamFraming _framing;

    private protected UpstreamChatBackend(UpstreamTransport transport, Uri endpoint, UpstreamFraming framing)
    {
        Transport = transport;
        _endpoint = endpoint;
        _framing = framing;
    }

    /// <summary>The connection pool, limits and error texts of this upstream.</summary>
    internal UpstreamTransport Transport { get; }

    /// <summary>Whether the provider answers <c>n</c> &gt; 1 in one request (only OpenAI-compatible servers do).</summary>
    private protected virtual bool SupportsSeveralChoices => false;

    /// <summary>
    /// Whether the provider answers legacy completion requests at a completions endpoint of its own (OpenAI-compatible
    /// servers); the others answer the prompt as a chat turn and refuse what that cannot carry.
    /// </summary>
    private protected virtual bool PassesCompletionsThrough => false;

    /// <summary>
    /// Whether the adapter returns token log probabilities (<c>logprobs</c>); the others refuse a request for them rather
    /// than answer with <c>"logprobs": null</c> as if the model had none.
    /// </summary>
    private protected virtual bool ReturnsLogprobs => false;

    /// <summary>Whether <paramref name="request"/> goes up as the client's own body (an Anthropic client to an Anthropic upstream).</summary>
    private protected virtual bool SendsClientBody(ChatRequest request) => false;

    /// <summary>Where <paramref name="request"/> is sent (the chat endpoint unless an adapter has another for it).</summary>
    private protected virtual Uri EndpointFor(ChatRequest request) => _endpoint;

    /// <summary>A header of this request's own beside the transport's (a client's beta flags); null for none.</summary>
    private protected virtual KeyValuePair<string, string>? HeaderFor(ChatRequest request) => null;

    /// <inheritdoc />
    public IAsyncEnumerable<ChatStreamEvent> StreamAsync(ChatRequest request, ChatCallOptions? options, CancellationToken cancellationToken) =>
        ProviderTelemetry.Source.HasListeners() ? TracedAsync(request, options, cancellationToken) : StreamCoreAsync(request, options, cancellationToken);

    /// <summary>
    /// The stream inside its upstream span. The span is started in this iterator, so it is current for the request
    /// (HttpClient sends its <c>traceparent</c>) without leaking into the caller's context.
    /// </summary>
    private async IAsyncEnumerable<ChatStreamEvent> TracedAsync(
        ChatRequest request,
        ChatCallOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var activity = ProviderTelemetry.StartUpstream(Transport.GenAiProvider, Transport.UpstreamModel, _endpoint, request);
        var inner = StreamCoreAsync(request, options, cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            while (true)
            {
                bool has;
                try
                {
                    has = await inner.MoveNextAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (activity is not null)
                {
                    ProviderTelemetry.Fail(activity, ex);
                    throw;
                }

                if (!has)
                {
                    break;
                }

                if (activity is not null)
                {
                    ProviderTelemetry.Observe(activity, inner.Current);
                }

                yield return inner.Current;
            }
        }
        finally
        {
            await inner.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async IAsyncEnumerable<ChatStreamEvent> StreamCoreAsync(
        ChatRequest request,
        ChatCallOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // :: Step 1
        ArgumentNullException.ThrowIfNull(request);
        if (!SupportsSeveralChoices)
        {
            UpstreamStreaming.RequireSingleChoice(request, Transport);
        }

        if (request.AnthropicOnly is { } anthropicOnly && !SendsClientBody(request))
        {
            throw anthropicOnly.Refusal(Transport.Options.Name, Transport.ProviderLabel);
        }

        if (request.Logprobs && !ReturnsLogprobs)
        {
            throw ChatException.BadRequest(
                $"Model \"{Transport.Options.Name}\" ({Transport.ProviderLabel}) does not return log probabilities through Sluice. Leave out logprobs (or set it to false), or use an OpenAI-compatible model.",
                "logprobs", "unsupported_parameter");
        }

        AttachmentSupport.RequireVision(request, Transport.Options, Transport.ProviderLabel);
        if (!PassesCompletionsThrough)
        {
            CompletionSupport.RequireTranslatable(request, Transport.Options.Name, Transport.ProviderLabel);
        }

        var body = BuildBody(request);
        using var call = new UpstreamCall(Transport, cancellationToken);

        // :: Step 2
        using var upstream = UpstreamStreaming.Open(await Transport.SendAsync(EndpointFor(request), body, call, header: HeaderFor(request)).ConfigureAwait(false), call, Transport);
        var reader = new UpstreamEventReader(upstream.Body, _framing) { Watch = call };
        using var decoder = CreateDecoder(request, options ?? ChatCallOptions.Default);
        var events = new List<ChatStreamEvent>(4);
        var started = false;
        var next = default(ValueTask<bool>);
        var readPending = false;
        try
        {
            while (true)
            {
                // :: Step 3
                next = UpstreamStreaming.NextAsync(reader, call, Transport);
                if (decoder.ShouldRelease(next.IsCompletedSuccessfully) is { } held)
                {
                    // The consumer may stop here while the read waits: the finally leaves the read to fail on disposal.
                    readPending = true;
                    Start(ref started, call);
                    yield return held;
                }

                readPending = false;
                if (!await next.ConfigureAwait(false))
                {
                    break;
                }

                // :: Step 4
                events.Clear();
                var record = UpstreamRecord.Continue;
                JsonException? malformed = null;
                try
                {
                    record = decoder.Decode(reader.Data, reader.EventType, events);
                }
                catch (JsonException ex)
                {
                    malformed = ex;
                }

                if (malformed is not null)
                {
                    // What arrived before the bad record still goes out, then the stream fails.
                    if (decoder.ShouldRelease(nextReady: false) is { } before)
                    {
                        Start(ref started, call);
                        yield return before;
                    }

                    throw Transport.Malformed($"{decoder.RecordName} is not valid JSON (\"{UpstreamStreaming.Excerpt(reader.Data)}\")", malformed);
                }

                // :: Step 5
                foreach (var streamEvent in events)
                {
                    Start(ref started, call);
                    yield return streamEvent;
                }

                if (record.Kind == UpstreamRecordKind.Error)
                {
                    var error = Transport.StreamError(record.ErrorMessage, record.ErrorCode, record.ErrorStatus);
                    if (!started)
                    {
                        throw error;
                    }

                    yield return new ErrorEvent(error.Error);
                    yield break;
                }

                if (record.Kind == UpstreamRecordKind.End)
                {
                    upstream.MarkComplete();
                    if (decoder.ShouldRelease(nextReady: false) is { } last)
                    {
                        yield return last;
                    }

                    yield break;
                }
            }

            // :: Step 6
            if (decoder.ShouldRelease(nextReady: false) is { } rest)
            {
                Start(ref started, call);
                yield return rest;
            }

            if (UpstreamStreaming.StrayError(reader, Transport) is { } stray)
            {
                if (!started)
                {
                    throw stray;
                }

                yield return new ErrorEvent(stray.Error);
                yield break;
            }

            events.Clear();
            if (!decoder.Finish(events))
            {
                throw UpstreamStreaming.EndedEarly(reader, Transport, decoder.EndMarker);
            }

            foreach (var streamEvent in events)
            {
                yield return streamEvent;
            }
        }
        finally
        {
            if (readPending)
            {
                // The consumer stopped while a read was under way: the read fails when the response is disposed.
                _ = next.AsTask().ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }
            else
            {
                reader.ReleaseBuffer();
            }
        }
    }

    /// <summary>Releases the connection pool.</summary>
    public void Dispose()
    {
        Transport.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>The provider's request body for <paramref name="request"/>.</summary>
    internal abstract byte[] BuildBody(ChatRequest request);

    /// <summary>A decoder for one response (it may keep state across records).</summary>
    private protected abstract UpstreamDecoder CreateDecoder(ChatRequest request, ChatCallOptions options);

    private static void Start(ref bool started, UpstreamCall call)
    {
        if (!started)
        {
            started = true;
            call.MarkAnswerStarted();
        }
    }
}

/// <summary>What one upstream record meant, besides the events it produced.</summary>
internal enum UpstreamRecordKind
{
    /// <summary>Answer data (or nothing): read on.</summary>
    Continue,

    /// <summary>The provider's end marker (<c>[DONE]</c>, <c>message_stop</c>, <c>"done": true</c>).</summary>
    End,

    /// <summary>The provider reported an error.</summary>
    Error,
}

/// <summary>The decoder's verdict on one record.</summary>
internal readonly record struct UpstreamRecord(UpstreamRecordKind Kind, string? ErrorMessage = null, string? ErrorCode = null, int? ErrorStatus = null)
{
    public static UpstreamRecord Continue => default;

    public static UpstreamRecord End => new(UpstreamRecordKind.End);

    public static UpstreamRecord Error(string? message, string? code, int? status = null) => new(UpstreamRecordKind.Error, message, code, status);
}

/// <summary>Decodes one provider's records into stream events (one instance per response).</summary>
internal abstract class UpstreamDecoder : IDisposable
{
    /// <summary>What the stream must end with, for the "ended early" error (e.g. <c>message_stop</c>).</summary>
    public abstract string EndMarker { get; }

    /// <summary>How the provider's records are named in a "not valid JSON" error (e.g. <c>a data line</c>).</summary>
    public virtual string RecordName => "a data line";

    /// <summary>Decodes one record (an SSE event's data, or an NDJSON line) into <paramref name="events"/>.</summary>
    /// <exception cref="JsonException">The record is not valid JSON.</exception>
    public abstract UpstreamRecord Decode(ReadOnlySpan<byte> data, ReadOnlySpan<byte> eventType, List<ChatStreamEvent> events);

    /// <summary>Events held back to go out together, released now if <paramref name="nextReady"/> is false (or they must go).</summary>
    public virtual ChatStreamEvent? ShouldRelease(bool nextReady) => null;

    /// <summary>The body ended without the end marker: adds final events and says whether that is an acceptable end.</summary>
    public virtual bool Finish(List<ChatStreamEvent> events) => false;

    public virtual void Dispose()
    {
    }
}
