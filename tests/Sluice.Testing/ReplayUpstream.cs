using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Sluice.Testing;

/// <summary>How <see cref="ReplayUpstream.PlayAsync"/> cuts a recording into writes (each write is flushed).</summary>
public enum ReplayChunking
{
    /// <summary>One write per event (up to and including its blank line), like a live server.</summary>
    PerEvent,

    /// <summary>The whole body in one write.</summary>
    Whole,

    /// <summary>Writes of 7 bytes, so events, lines and CRLF pairs are split across reads.</summary>
    SmallSlices,
}

/// <summary>A request the fake upstream received.</summary>
/// <param name="Method">HTTP method.</param>
/// <param name="PathAndQuery">Path with query string.</param>
/// <param name="Headers">Request headers (names lower-case; repeated headers joined with ", ").</param>
/// <param name="Body">The body bytes.</param>
/// <param name="ConnectionId">The server's id of the connection it came on (equal ids: the client reused a connection).</param>
public sealed record RecordedRequest(string Method, string PathAndQuery, IReadOnlyDictionary<string, string> Headers, byte[] Body, string ConnectionId)
{
    /// <summary>The body parsed as JSON.</summary>
    public JsonElement Json
    {
        get
        {
            using var document = JsonDocument.Parse(Body);
            return document.RootElement.Clone();
        }
    }
}

/// <summary>
/// A loopback HTTP server (Kestrel on 127.0.0.1, a free port) that stands in for an LLM provider in tests: it
/// records every request and answers with a handler, typically replaying a recorded stream byte for byte.
/// Dispose to stop it.
/// </summary>
public sealed class ReplayUpstream : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();

    private ReplayUpstream(WebApplication app, Uri baseAddress)
    {
        _app = app;
        BaseAddress = baseAddress;
    }

    /// <summary>Where the server listens, e.g. <c>http://127.0.0.1:54321/</c>.</summary>
    public Uri BaseAddress { get; }

    /// <summary>The base address without the trailing slash (what a model's <c>BaseUrl</c> takes).</summary>
    public string BaseUrl => BaseAddress.ToString().TrimEnd('/');

    /// <summary>The requests received so far, in arrival order.</summary>
    public IReadOnlyList<RecordedRequest> Requests => [.. _requests];

    /// <summary>Writes <paramref name="text"/> (UTF-8) to the response and flushes it, so the client gets it in its own read.</summary>
    public static async Task WriteFlushedAsync(HttpContext context, string text)
    {
        ArgumentNullException.ThrowIfNull(context);
        await context.Response.Body.WriteAsync(System.Text.Encoding.UTF8.GetBytes(text), context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    /// <summary>Starts a server that answers every request with <paramref name="handler"/> (after recording it).</summary>
    public static Task<ReplayUpstream> StartAsync(Func<HttpContext, Task> handler, CancellationToken cancellationToken = default) =>
        StartAsync(handler, HttpProtocols.Http1AndHttp2, cancellationToken);

    /// <summary>
    /// Like <see cref="StartAsync(Func{HttpContext, Task}, CancellationToken)"/>, speaking only HTTP/2 without TLS (what a
    /// client with "prior knowledge" expects; an HTTP/1.1 client is refused).
    /// </summary>
    public static Task<ReplayUpstream> StartHttp2OnlyAsync(Func<HttpContext, Task> handler, CancellationToken cancellationToken = default) =>
        StartAsync(handler, HttpProtocols.Http2, cancellationToken);

    private static async Task<ReplayUpstream> StartAsync(Func<HttpContext, Task> handler, HttpProtocols protocols, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = protocols);
        });
        var app = builder.Build();
        ReplayUpstream? upstream = null;
        app.Run(async context =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body, context.RequestAborted);
            var headers = context.Request.Headers.ToDictionary(
                h => h.Key.ToLowerInvariant(), h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase);
            upstream!._requests.Enqueue(new RecordedRequest(
                context.Request.Method, context.Request.Path + context.Request.QueryString, headers, body.ToArray(), context.Connection.Id));
            await handler(context);
        });
        await app.StartAsync(cancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        upstream = new ReplayUpstream(app, new Uri(address.EndsWith('/') ? address : address + "/"));
        return upstream;
    }

    /// <summary>Starts a server that replays <paramref name="body"/> for every request.</summary>
    public static Task<ReplayUpstream> StartAsync(
        byte[] body,
        string contentType = "text/event-stream",
        int status = 200,
        ReplayChunking chunking = ReplayChunking.PerEvent,
        CancellationToken cancellationToken = default) =>
        StartAsync(context => PlayAsync(context, body, contentType, status, chunking), cancellationToken);

    /// <summary>Writes <paramref name="body"/> unchanged as the response, in flushed pieces cut as <paramref name="chunking"/> says.</summary>
    public static async Task PlayAsync(
        HttpContext context,
        byte[] body,
        string contentType = "text/event-stream",
        int status = 200,
        ReplayChunking chunking = ReplayChunking.PerEvent)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(body);
        context.Response.StatusCode = status;
        context.Response.ContentType = contentType;
        foreach (var (offset, length) in Pieces(body, chunking))
        {
            await context.Response.Body.WriteAsync(body.AsMemory(offset, length), context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
        }
    }

    /// <summary>Splits a recording after each blank line (LF, CRLF or CR line ends); the pieces cover it exactly.</summary>
    public static IReadOnlyList<byte[]> SplitEvents(byte[] body)
    {
        ArgumentNullException.ThrowIfNull(body);
        return [.. Pieces(body, ReplayChunking.PerEvent).Select(p => body.AsSpan(p.Offset, p.Length).ToArray())];
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }

    private static List<(int Offset, int Length)> Pieces(byte[] body, ReplayChunking chunking)
    {
        var pieces = new List<(int, int)>();
        switch (chunking)
        {
            case ReplayChunking.Whole:
                pieces.Add((0, body.Length));
                break;
            case ReplayChunking.SmallSlices:
                for (var i = 0; i < body.Length; i += 7)
                {
                    pieces.Add((i, Math.Min(7, body.Length - i)));
                }

                break;
            default:
                var start = 0;
                var lineStart = 0;
                var i2 = 0;
                while (i2 < body.Length)
                {
                    if (body[i2] is not ((byte)'\r' or (byte)'\n'))
                    {
                        i2++;
                        continue;
                    }

                    var isEmptyLine = i2 == lineStart;
                    i2 += body[i2] == (byte)'\r' && i2 + 1 < body.Length && body[i2 + 1] == (byte)'\n' ? 2 : 1;
                    lineStart = i2;
                    if (isEmptyLine)
                    {
                        pieces.Add((start, i2 - start));
                        start = i2;
                    }
                }

                if (start < body.Length)
                {
                    pieces.Add((start, body.Length - start));
                }

                break;
        }

        return pieces;
    }
}
