using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Cluster;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Portal;
using Sluice.Storage;

namespace Sluice.Gateway.Http;

/// <summary>
/// Resume, replay and cancel of a stream that another instance of the cluster owns: the request goes on to the owner
/// (the instance named at the end of the stream id, found in the shared instance directory) with the client's own key
/// headers, and the answer comes back as it is made — frame by frame, flushed as it arrives. The owner applies the
/// same owner scope as for its own clients (another team's key gets the unknown-id 404).
/// </summary>
/// <remarks>
/// The owner's address comes from the directory, never from the request: a crafted stream id can only name an
/// instance that registered itself. A forwarded request carries <see cref="ForwardedHeader"/> and is never forwarded
/// again. An owner that stopped answers as an unknown stream (404, saying why); one that dies while a forwarded stream
/// runs — the connection breaks, or goes silent past twice the ping interval — ends it with a
/// <c>stream_owner_lost</c> error frame in the stream's format instead of a hang.
/// </remarks>
internal sealed partial class StreamForwarder : IDisposable
{
    /// <summary>
    /// Set on a forwarded request (the forwarding instance's id): the receiver serves it itself. The forwarding
    /// instance sets it on its answer too, so a client (or a test) can see that another instance served it.
    /// </summary>
    public const string ForwardedHeader = "x-sluice-forwarded-by";

    /// <summary>The owner names the stream's format (<c>openai</c>, <c>portal</c>), for an error frame the forwarder may have to write.</summary>
    public const string FormatHeader = "x-sluice-stream-format";

    private static readonly TimeSpan InstanceMemory = TimeSpan.FromSeconds(2);
    private static readonly string[] RequestHeaders = ["Authorization", "x-api-key", "Last-Event-ID"];
    private static readonly HashSet<string> SkippedResponseHeaders = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length", "Date", "Server", "x-request-id",
    };

    private readonly ClusterNode _node;
    private readonly GatewayDrain _drain;
    private readonly ILogger<StreamForwarder> _logger;
    private readonly HttpClient _http;
    private readonly TimeSpan _idleLimit;
    private readonly ConcurrentDictionary<string, (GatewayInstance? Instance, long Until)> _instances = new(StringComparer.Ordinal);

    public StreamForwarder(ClusterNode node, GatewayDrain drain, GatewayOptions options, ILogger<StreamForwarder> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _node = node;
        _drain = drain;
        _logger = logger;

        // The owner pings a silent stream every PingIntervalSeconds: twice that without a byte means it is gone.
        _idleLimit = TimeSpan.FromSeconds((2 * options.Streaming.PingIntervalSeconds) + 5);
        _http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            ConnectTimeout = TimeSpan.FromSeconds(3),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
            UseCookies = false,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    /// <summary>The error frame of a forwarded stream whose owner stopped while it was read.</summary>
    public static ErrorInfo OwnerLost(string owner) => new(
        $"The gateway instance that runs this answer ({owner}) stopped answering while you were reading it; the answer is incomplete and cannot be resumed. Send the request again.",
        ErrorTypes.Server, null, "stream_owner_lost");

    /// <summary>True when the stream belongs to another instance of this cluster and this request was not forwarded already.</summary>
    public bool ShouldForward(HttpContext context, string streamId, out string owner)
    {
        owner = ClusterNode.OwnerOf(streamId) ?? string.Empty;
        return _node.IsOther(owner) && !context.Request.Headers.ContainsKey(ForwardedHeader);
    }

    /// <summary>Forwards <c>GET /v1/streams/{id}</c> (resume or replay) to the owner and streams its answer back.</summary>
    public async Task ResumeAsync(HttpContext context, string owner, string id, Func<string, Task> notFound)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(notFound);
        if (await FindAsync(owner, context.RequestAborted) is not { } instance)
        {
            await notFound(owner);
            return;
        }

        using var request = NewRequest(HttpMethod.Get, instance, context, id);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _drain.Deadline);
        HttpResponseMessage upstream;
        try
        {
            upstream = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stop.Token);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException && !context.RequestAborted.IsCancellationRequested)
        {
            LogUnreachable(_logger, owner, instance.InternalUrl, ex.Message);
            Forget(owner);
            await notFound(owner);
            return;
        }

        using (upstream)
        {
            var response = context.Response;
            response.StatusCode = (int)upstream.StatusCode;
            CopyHeaders(upstream, response);
            response.Headers[ForwardedHeader] = _node.InstanceId;
            context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            await response.StartAsync(context.RequestAborted);
            var format = upstream.Headers.TryGetValues(FormatHeader, out var values) ? values.FirstOrDefault() : null;
            await CopyBodyAsync(context, upstream, upstream.IsSuccessStatusCode ? format ?? "openai" : null, owner, stop);
        }
    }

    /// <summary>Forwards <c>DELETE /v1/streams/{id}</c> to the owner and answers what it answered.</summary>
    public async Task CancelAsync(HttpContext context, string owner, string id, Func<string, Task> notFound)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(notFound);
        if (await FindAsync(owner, context.RequestAborted) is not { } instance)
        {
            await notFound(owner);
            return;
        }

        using var request = NewRequest(HttpMethod.Delete, instance, context, id);
        try
        {
            using var upstream = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, context.RequestAborted);
            context.Response.StatusCode = (int)upstream.StatusCode;
            CopyHeaders(upstream, context.Response);
            context.Response.Headers[ForwardedHeader] = _node.InstanceId;
            await upstream.Content.CopyToAsync(context.Response.Body, context.RequestAborted);
        }
        catch (HttpRequestException ex)
        {
            LogUnreachable(_logger, owner, instance.InternalUrl, ex.Message);
            Forget(owner);
            await notFound(owner);
        }
    }

    public void Dispose() => _http.Dispose();

    private HttpRequestMessage NewRequest(HttpMethod method, GatewayInstance instance, HttpContext context, string id)
    {
        var request = new HttpRequestMessage(method, new Uri(instance.InternalUrl, "v1/streams/" + Uri.EscapeDataString(id) + context.Request.QueryString.Value))
        {
            Version = HttpVersion.Version11,
        };
        foreach (var name in RequestHeaders)
        {
            if (context.Request.Headers.TryGetValue(name, out var value))
            {
                request.Headers.TryAddWithoutValidation(name, (IEnumerable<string>)value!);
            }
        }

        request.Headers.TryAddWithoutValidation(ForwardedHeader, _node.InstanceId);
        return request;
    }

    /// <summary>The owner, when it is registered and alive (its heartbeat recent); remembered for a moment.</summary>
    private async ValueTask<GatewayInstance?> FindAsync(string owner, CancellationToken cancellationToken)
    {
        var now = Environment.TickCount64;
        if (!_instances.TryGetValue(owner, out var known) || known.Until < now)
        {
            var instance = await _node.Store!.GetInstanceAsync(owner, cancellationToken);
            known = (instance, now + (long)InstanceMemory.TotalMilliseconds);
            _instances[owner] = known;
        }

        return known.Instance is { } found && DateTimeOffset.UtcNow - found.HeartbeatAt <= ClusterNode.StaleAfter ? found : null;
    }

    private void Forget(string owner) => _instances.TryRemove(owner, out _);

    private static void CopyHeaders(HttpResponseMessage upstream, HttpResponse response)
    {
        foreach (var (name, values) in upstream.Headers.Concat(upstream.Content.Headers))
        {
            if (!SkippedResponseHeaders.Contains(name))
            {
                response.Headers[name] = values.ToArray();
            }
        }
    }

    private async Task CopyBodyAsync(HttpContext context, HttpResponseMessage upstream, string? format, string owner, CancellationTokenSource stop)
    {
        var output = context.Response.BodyWriter;
        var ids = new SseIdTracker();
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
        try
        {
            await using var body = await upstream.Content.ReadAsStreamAsync(stop.Token);
            while (true)
            {
                idle.CancelAfter(_idleLimit);
                var read = await body.ReadAsync(buffer, idle.Token);
                if (read == 0)
                {
                    // The owner ended the stream (a finished answer, or its own error frame).
                    return;
                }

                ids.Observe(buffer.AsSpan(0, read));
                output.Write(buffer.AsSpan(0, read));
                await output.FlushAsync(context.RequestAborted);
            }
        }
        catch (Exception ex) when (context.RequestAborted.IsCancellationRequested && ex is OperationCanceledException or IOException or ConnectionAbortedException)
        {
            // The client left: the owner sees the forwarded connection close and detaches its reader.
        }
        catch (Exception ex) when (format is not null && ex is OperationCanceledException or IOException or HttpRequestException)
        {
            // The owner went away mid-stream (or this instance's own shutdown deadline came): say so, never a silent cut.
            var error = _drain.Deadline.IsCancellationRequested ? GatewayDrain.ShuttingDown : OwnerLost(owner);
            if (!_drain.Deadline.IsCancellationRequested)
            {
                LogLost(_logger, owner, ex.GetType().Name);
                Forget(owner);
            }

            WriteError(output, format, ids.Last + 1, error);
            await output.FlushAsync(context.RequestAborted);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static void WriteError(IBufferWriter<byte> output, string format, long sequence, ErrorInfo error) =>
        ReplayFrames.ForName(format).WriteError(output, sequence, error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: instance {Owner} at {Url} is unreachable ({Reason}); its streams answer 404 here. It stopped or its Cluster:InternalUrl is wrong.")]
    private static partial void LogUnreachable(ILogger logger, string owner, Uri url, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: instance {Owner} stopped answering during a forwarded stream ({Reason}); the client got a stream_owner_lost error frame")]
    private static partial void LogLost(ILogger logger, string owner, string reason);

    /// <summary>Follows the <c>id:</c> lines of an SSE byte stream across reads: the id of the last event seen.</summary>
    private sealed class SseIdTracker
    {
        private const int MaxLine = 32;
        private readonly byte[] _line = new byte[MaxLine];
        private int _length;
        private bool _overlong;

        public long Last { get; private set; }

        public void Observe(ReadOnlySpan<byte> bytes)
        {
            foreach (var b in bytes)
            {
                if (b == (byte)'\n')
                {
                    if (!_overlong && _length > 3 && _line.AsSpan(0, 3).SequenceEqual("id:"u8)
                        && long.TryParse(_line.AsSpan(3, _length - 3).Trim((byte)' ').Trim((byte)'\r'), NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                    {
                        Last = id;
                    }

                    _length = 0;
                    _overlong = false;
                }
                else if (_length < MaxLine)
                {
                    _line[_length++] = b;
                }
                else
                {
                    _overlong = true;
                }
            }
        }
    }
}
