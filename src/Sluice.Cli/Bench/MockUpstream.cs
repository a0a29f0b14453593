using System.Buffers;
using System.Buffers.Text;
using System.IO.Pipelines;
using System.Net;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Sluice.Protocol;
using Sluice.Protocol.OpenAI;

namespace Sluice.Cli.Bench;

/// <summary>How the mock upstream answers.</summary>
public sealed class MockUpstreamOptions
{
    /// <summary>Address to listen on.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Port to listen on; 0 picks a free one.</summary>
    public int Port { get; set; } = 8081;

    /// <summary>Content chunks per answer (each counts as one completion token).</summary>
    public int Chunks { get; set; } = 16;

    /// <summary>Delay between content chunks, in milliseconds (0 = back to back, each still flushed on its own).</summary>
    public int ChunkDelayMs { get; set; }

    /// <summary>Delay before the first content chunk, in milliseconds.</summary>
    public int FirstDelayMs { get; set; }

    /// <summary>The text of every content chunk.</summary>
    public string ChunkText { get; set; } = " hello";

    /// <summary>
    /// Each content chunk's text is the time it was written, <c>t=&lt;Unix ms with three decimals&gt;;</c> (instead of
    /// <see cref="ChunkText"/>), so a client behind a proxy can measure the delay the proxy adds per chunk.
    /// </summary>
    public bool TimestampChunks { get; set; }

    /// <summary>
    /// How paced chunks are timed: <see cref="MockPacing.Precise"/> (the default: each chunk at its own time, ~1 ms)
    /// or <see cref="MockPacing.Timer"/> (<c>Task.Delay</c>, whose coarse timers release many streams' chunks at once).
    /// </summary>
    public MockPacing Pacing { get; set; } = MockPacing.Precise;

    /// <summary>
    /// Speak HTTP/2 only, without TLS ("prior knowledge"), as the upstream of a gateway model with <c>"HttpVersion": "2"</c>;
    /// HTTP/1.1 clients are refused.
    /// </summary>
    public bool Http2Only { get; set; }

    /// <summary>The model name reported in answers and <c>/v1/models</c> (any requested model is accepted).</summary>
    public string Model { get; set; } = "mock";

    /// <summary>Largest request body accepted, in bytes.</summary>
    public int MaxRequestBodyBytes { get; set; } = 4 * 1024 * 1024;
}

/// <summary>
/// A loopback OpenAI-compatible server for benchmarks: <c>POST /v1/chat/completions</c> (streamed or not) and
/// <c>GET /v1/models</c>, answering every request with the same fixed text at a fixed pace. Everything but the
/// per-request id, timestamp and token counts is encoded once at start, and the request body is only scanned
/// for <c>stream</c> and <c>stream_options.include_usage</c>, so the mock costs as little CPU as possible and
/// the numbers measure whatever sits in front of it.
/// </summary>
public sealed class MockUpstream : IAsyncDisposable
{
    private static readonly JsonWriterOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly byte[] DoneFrame = "data: [DONE]\n\n"u8.ToArray();

    private readonly WebApplication _app;
    private readonly MockUpstreamOptions _options;
    private readonly byte[] _roleTail;
    private readonly byte[] _contentTail;
    private readonly byte[] _contentOpen;
    private readonly byte[] _contentClose;
    private readonly byte[] _finishTail;
    private readonly byte[] _usageTail;
    private readonly byte[] _completionTail;
    private readonly byte[] _models;
    private readonly string _idPrefix;
    private readonly ChunkPacer? _pacer;
    private long _nextId;

    private MockUpstream(WebApplication app, MockUpstreamOptions options)
    {
        _app = app;
        _options = options;
        var model = Encode(options.Model);
        var text = Encode(options.ChunkText);
        var common = Concat(",\"model\":\"", model, "\",\"system_fingerprint\":\"fp_sluice_mock\",\"choices\":");
        _roleTail = Concat(common, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        _contentOpen = Concat(common, "[{\"index\":0,\"delta\":{\"content\":\"");
        _contentClose = Concat("\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        _contentTail = Concat(_contentOpen, text, _contentClose);
        _finishTail = Concat(common, "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n");
        _usageTail = Concat(common, "[],\"usage\":{\"prompt_tokens\":");
        var answer = Encode(string.Concat(Enumerable.Repeat(options.ChunkText, options.Chunks)));
        _completionTail = Concat(common, "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"", answer, "\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        _models = Concat("{\"object\":\"list\",\"data\":[{\"id\":\"", model, "\",\"object\":\"model\",\"created\":" + created + ",\"owned_by\":\"sluice-mock\"}]}");

        // Ids look like OpenAI's (chatcmpl- + 29 characters) and are unique per process run.
        _idPrefix = Guid.NewGuid().ToString("N")[..13];
        if (options.Pacing == MockPacing.Precise && (options.ChunkDelayMs > 0 || options.FirstDelayMs > 0))
        {
            _pacer = new ChunkPacer();
        }
    }

    /// <summary>Where it listens, e.g. <c>http://127.0.0.1:8081/</c>.</summary>
    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>The options it serves with.</summary>
    public MockUpstreamOptions Options => _options;

    /// <summary>Starts the mock on Kestrel.</summary>
    /// <exception cref="ArgumentException">An option is out of range; the message says which.</exception>
    public static async Task<MockUpstream> StartAsync(MockUpstreamOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        Validate(options);
        if (!IPAddress.TryParse(options.Host, out var address))
        {
            throw new ArgumentException($"Host '{options.Host}' is not an IP address; use 127.0.0.1 or 0.0.0.0.", nameof(options));
        }

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "Sluice.MockUpstream" });

        // Kestrel's default listen backlog (512) overflows when a gateway opens thousands of upstream connections at
        // once: dropped SYNs are retried after 1, 3, 7 s… and the gateway's connect timeout fires (502s in
        // bench/proxied-streams.sh at 8,000 streams). The kernel caps it at net.core.somaxconn.
        builder.Services.Configure<Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketTransportOptions>(o => o.Backlog = 8192);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            kestrel.Listen(address, options.Port, listen => listen.Protocols = options.Http2Only ? HttpProtocols.Http2 : HttpProtocols.Http1AndHttp2);
        });
        var app = builder.Build();
        var mock = new MockUpstream(app, options);
        app.Run(mock.HandleAsync);
        await app.StartAsync(cancellationToken);
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        mock.BaseAddress = new Uri(bound.Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal));
        return mock;
    }

    /// <summary>Waits until the process is asked to stop (Ctrl+C) or <paramref name="cancellationToken"/> fires.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken) => _app.WaitForShutdownAsync(cancellationToken);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
        _pacer?.Dispose();
    }

    private static void Validate(MockUpstreamOptions options)
    {
        if (options.Port is < 0 or > 65535)
        {
            throw new ArgumentException($"Port {options.Port} is out of range; use 1–65535 (or 0 for any free port).", nameof(options));
        }

        if (options.Chunks < 0 || options.ChunkDelayMs < 0 || options.FirstDelayMs < 0)
        {
            throw new ArgumentException("Chunks, chunk delay and first delay must be 0 or more.", nameof(options));
        }
    }

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var path = request.Path.Value;
        if (string.Equals(path, "/v1/chat/completions", StringComparison.Ordinal))
        {
            if (HttpMethods.IsPost(request.Method))
            {
                await ChatAsync(context);
            }
            else
            {
                await ErrorAsync(context, StatusCodes.Status405MethodNotAllowed, "Use POST for /v1/chat/completions.");
            }
        }
        else if (string.Equals(path, "/v1/models", StringComparison.Ordinal) && HttpMethods.IsGet(request.Method))
        {
            context.Response.ContentType = "application/json";
            await context.Response.Body.WriteAsync(_models, context.RequestAborted);
        }
        else if (string.Equals(path, "/health", StringComparison.Ordinal))
        {
            context.Response.ContentType = "application/json";
            await context.Response.Body.WriteAsync("{\"status\":\"ok\"}"u8.ToArray(), context.RequestAborted);
        }
        else
        {
            await ErrorAsync(context, StatusCodes.Status404NotFound, $"The mock upstream has no {request.Method} {path}. It serves POST /v1/chat/completions and GET /v1/models.");
        }
    }

    private async Task ChatAsync(HttpContext context)
    {
        var aborted = context.RequestAborted;
        RequestFlags flags;
        try
        {
            flags = await ReadFlagsAsync(context.Request.BodyReader, aborted);
        }
        catch (JsonException)
        {
            await ErrorAsync(context, StatusCodes.Status400BadRequest, "The request body is not a JSON object. Send an OpenAI chat completion request, e.g. {\"model\":\"mock\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"stream\":true}.");
            return;
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException ex)
        {
            await ErrorAsync(context, ex.StatusCode, $"The request body could not be read ({ex.Message}). Send a smaller JSON body.");
            return;
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            return;
        }

        var head = BuildHead(flags.Stream);
        var promptTokens = Math.Max(1, flags.BodyBytes / 4);
        var response = context.Response;
        var output = response.BodyWriter;
        try
        {
            if (!flags.Stream)
            {
                var delay = _options.FirstDelayMs + ((long)Math.Max(0, _options.Chunks - 1) * _options.ChunkDelayMs);
                await DelayUntilAsync(StartClock(), delay, aborted);
                response.ContentType = "application/json";
                output.Write(head);
                output.Write(_completionTail);
                WriteUsageNumbers(output, promptTokens, _options.Chunks, "}}"u8);
                await output.FlushAsync(aborted);
                return;
            }

            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-cache";
            await response.StartAsync(aborted);
            var start = StartClock();
            await DelayUntilAsync(start, _options.FirstDelayMs, aborted);
            WriteFrame(output, head, _roleTail);
            for (var i = 0; i < _options.Chunks; i++)
            {
                if (i > 0)
                {
                    // Precise: chunk i is due at first + i × delay from the start, so streams keep the spread they were
                    // opened with; Timer: a delay after the previous flush, as before.
                    await DelayUntilAsync(start, _options.FirstDelayMs + ((long)i * _options.ChunkDelayMs), aborted, _options.ChunkDelayMs);
                }

                if (_options.TimestampChunks)
                {
                    WriteTimestampFrame(output, head);
                }
                else
                {
                    WriteFrame(output, head, _contentTail);
                }

                await output.FlushAsync(aborted);
            }

            WriteFrame(output, head, _finishTail);
            if (flags.IncludeUsage)
            {
                output.Write(head);
                output.Write(_usageTail);
                WriteUsageNumbers(output, promptTokens, _options.Chunks, "}}\n\n"u8);
            }

            output.Write(DoneFrame);
            await output.FlushAsync(aborted);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client left; nothing to clean up.
        }
    }

    private long StartClock() => _pacer?.Now ?? 0;

    /// <summary>
    /// With the precise pacer, waits until <paramref name="sinceStartMs"/> after <paramref name="start"/>; with timers,
    /// <c>Task.Delay</c> of <paramref name="timerMs"/> (the step since the last chunk; <paramref name="sinceStartMs"/> when not given).
    /// </summary>
    private Task DelayUntilAsync(long start, long sinceStartMs, CancellationToken cancellationToken, long timerMs = -1)
    {
        if (_pacer is not null)
        {
            return _pacer.WaitUntilAsync(_pacer.After(start, sinceStartMs), cancellationToken);
        }

        var milliseconds = timerMs < 0 ? sinceStartMs : timerMs;
        return milliseconds > 0 ? Task.Delay(TimeSpan.FromMilliseconds(milliseconds), cancellationToken) : Task.CompletedTask;
    }

    private static void WriteFrame(PipeWriter output, byte[] head, byte[] tail)
    {
        output.Write(head);
        output.Write(tail);
    }

    /// <summary>A content chunk whose text is <c>t=&lt;Unix ms&gt;;</c>, the time of writing with microsecond digits.</summary>
    private void WriteTimestampFrame(PipeWriter output, byte[] head)
    {
        output.Write(head);
        output.Write(_contentOpen);
        var unixMs = (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) / (double)TimeSpan.TicksPerMillisecond;
        output.Write(Encoding.ASCII.GetBytes(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"t={unixMs:F3};")));
        output.Write(_contentClose);
    }

    private static void WriteUsageNumbers(PipeWriter output, int promptTokens, int completionTokens, ReadOnlySpan<byte> end)
    {
        var span = output.GetSpan(128);
        var written = 0;
        Utf8Formatter.TryFormat(promptTokens, span, out var n);
        written += n;
        ",\"completion_tokens\":"u8.CopyTo(span[written..]);
        written += 21;
        Utf8Formatter.TryFormat(completionTokens, span[written..], out n);
        written += n;
        ",\"total_tokens\":"u8.CopyTo(span[written..]);
        written += 16;
        Utf8Formatter.TryFormat((long)promptTokens + completionTokens, span[written..], out n);
        written += n;
        output.Advance(written);
        output.Write(end);
    }

    /// <summary>The part of every chunk that differs per request: <c>data: {"id":…,"object":…,"created":…</c>.</summary>
    private byte[] BuildHead(bool stream)
    {
        var id = Interlocked.Increment(ref _nextId);
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var text = stream
            ? $"data: {{\"id\":\"chatcmpl-{_idPrefix}{id:x16}\",\"object\":\"chat.completion.chunk\",\"created\":{created}"
            : $"{{\"id\":\"chatcmpl-{_idPrefix}{id:x16}\",\"object\":\"chat.completion\",\"created\":{created}";
        return Encoding.UTF8.GetBytes(text);
    }

    /// <summary>Reads the whole body and finds <c>stream</c> and <c>stream_options.include_usage</c>, skipping everything else.</summary>
    private static async Task<RequestFlags> ReadFlagsAsync(PipeReader body, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await body.ReadAsync(cancellationToken);
            if (!result.IsCompleted)
            {
                // Keep everything buffered until the body is complete.
                body.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                continue;
            }

            try
            {
                return ScanFlags(result.Buffer);
            }
            finally
            {
                body.AdvanceTo(result.Buffer.End);
            }
        }
    }

    internal static RequestFlags ScanFlags(ReadOnlySequence<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException("The body is not a JSON object.");
        }

        var stream = false;
        var includeUsage = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("stream"u8))
            {
                reader.Read();
                stream = reader.TokenType == JsonTokenType.True;
            }
            else if (reader.ValueTextEquals("stream_options"u8))
            {
                reader.Read();
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var isIncludeUsage = reader.ValueTextEquals("include_usage"u8);
                    reader.Read();
                    if (isIncludeUsage)
                    {
                        includeUsage = reader.TokenType == JsonTokenType.True;
                    }

                    reader.Skip();
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        return new RequestFlags(stream, includeUsage, (int)Math.Min(int.MaxValue, json.Length));
    }

    private static async Task ErrorAsync(HttpContext context, int status, string message)
    {
        if (context.Response.HasStarted)
        {
            return;
        }

        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(OpenAIErrorWriter.ToUtf8(new ErrorInfo(message, ErrorTypes.InvalidRequest)), context.RequestAborted);
    }

    private static byte[] Encode(string text)
    {
        var buffer = new ArrayBufferWriter<byte>(text.Length + 16);
        using (var json = new Utf8JsonWriter(buffer, JsonOptions))
        {
            json.WriteStringValue(text);
        }

        // Drop the quotes the writer put around the value.
        return buffer.WrittenSpan[1..^1].ToArray();
    }

    private static byte[] Concat(params object[] parts)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        foreach (var part in parts)
        {
            buffer.Write(part switch
            {
                byte[] bytes => bytes,
                string text => Encoding.UTF8.GetBytes(text),
                _ => throw new ArgumentException("Only strings and byte arrays.", nameof(parts)),
            });
        }

        return buffer.WrittenSpan.ToArray();
    }

    internal readonly record struct RequestFlags(bool Stream, bool IncludeUsage, int BodyBytes);
}
