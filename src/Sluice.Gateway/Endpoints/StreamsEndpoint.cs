using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Http;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// <c>GET /v1/streams/{id}</c>: the frames of a stream after <c>Last-Event-ID</c> (or <c>?after=N</c>), then the
/// rest live until it ends — the generation is neither restarted nor billed again. <c>?replay=timed</c> replays with
/// the original timing. <c>DELETE /v1/streams/{id}</c> cancels a running generation. In a cluster, a stream of another
/// instance is served through it (<see cref="StreamForwarder"/>): the client may reconnect to any instance.
/// </summary>
internal sealed class StreamsEndpoint(StreamRegistry registry, GatewayOptions options, StreamForwarder forwarder, CallTelemetry telemetry)
{
    private readonly TimeSpan _pingInterval = TimeSpan.FromSeconds(options.Streaming.PingIntervalSeconds);

    public async Task ResumeAsync(HttpContext context)
    {
        var id = context.Request.RouteValues["id"] as string ?? string.Empty;
        if (!TryParseAfter(context.Request, out var after))
        {
            await ErrorResponses.WriteAsync(context, StatusCodes.Status400BadRequest, new ErrorInfo(
                "Last-Event-ID (or ?after=) must be the integer id of the last event you received, e.g. 12 — or omit it to replay from the start.",
                ErrorTypes.InvalidRequest, "after", "invalid_value"));
            return;
        }

        if (forwarder.ShouldForward(context, id, out var owner))
        {
            await forwarder.ResumeAsync(context, owner, id, o => OwnerGoneAsync(context, id, o));
            return;
        }

        if (!registry.TryGet(id, OwnerScope(context), out var stream))
        {
            await NotFoundAsync(context, id, null);
            return;
        }

        if (after > 0 && stream.Finished && stream.Resumable && stream.IndexAfter(after) >= stream.Count)
        {
            // The client has every frame of a stream that will never grow: a 200 with an empty body would make a browser
            // EventSource reconnect every few seconds until the replay expires; 204 tells it to stop.
            context.Response.StatusCode = StatusCodes.Status204NoContent;
            context.Response.Headers[HttpStreamSink.StreamIdHeader] = stream.Id;
            return;
        }

        switch (stream.TryAttachReader(registry.Options.MaxReadersPerStream))
        {
            case ReaderAttach.Gone:
                await NotFoundAsync(context, id, stream);
                return;
            case ReaderAttach.Full:
                await ErrorResponses.WriteAsync(
                    context,
                    StatusCodes.Status429TooManyRequests,
                    new ErrorInfo(
                        $"Stream '{SluiceErrors.Echo(id)}' already has {registry.Options.MaxReadersPerStream} clients reading it (Streaming:MaxReadersPerStream). Close one of them, or retry when one has left.",
                        ErrorTypes.RateLimit, "id", "too_many_readers"),
                    TimeSpan.FromSeconds(1));
                return;
        }

        var timed = string.Equals(context.Request.Query["replay"], "timed", StringComparison.OrdinalIgnoreCase);
        telemetry.Resumed(timed ? "replay" : "resume");
        var aborted = context.RequestAborted;
        var response = context.Response;
        try
        {
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = stream.ContentType;
            response.Headers.CacheControl = "no-cache";
            response.Headers["X-Accel-Buffering"] = "no";
            response.Headers[HttpStreamSink.StreamIdHeader] = stream.Id;
            if (context.Request.Headers.ContainsKey(StreamForwarder.ForwardedHeader))
            {
                // The forwarding instance writes an error frame in this format if this instance dies mid-stream.
                response.Headers[StreamForwarder.FormatHeader] = stream.Frames.Name;
            }

            context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            await response.StartAsync(aborted);

            var output = response.BodyWriter;
            var position = stream.IndexAfter(after);
            var replayStart = Stopwatch.GetTimestamp();
            long? timeBase = null;
            var copy = new ArrayBufferWriter<byte>(1024);
            while (true)
            {
                var count = stream.Count;
                while (position < count && stream.TryCopyFrame(position, copy, out var frameTimestamp))
                {
                    position++;
                    if (timed)
                    {
                        // Frame i goes out at (its original offset from the first replayed frame) after the replay
                        // began; frames still being generated arrive late on their own, so nothing is delayed twice.
                        timeBase ??= position == 1 ? stream.StartTimestamp : frameTimestamp;
                        var due = Stopwatch.GetElapsedTime(timeBase.Value, frameTimestamp) - Stopwatch.GetElapsedTime(replayStart);
                        if (due > TimeSpan.Zero)
                        {
                            await output.FlushAsync(aborted);
                            await Task.Delay(due, aborted);
                        }
                    }

                    output.Write(copy.WrittenSpan);
                }

                await output.FlushAsync(aborted);
                if (!stream.Resumable)
                {
                    // Evicted or outgrown while being read: say so, in the stream's own format, instead of ending as if complete.
                    stream.Frames.WriteError(output, stream.LastSequence + 1, SluiceErrors.StreamLost(stream.Overflowed));
                    await output.FlushAsync(aborted);
                    return;
                }

                if (stream.Finished && position >= stream.Count)
                {
                    return;
                }

                if (!await stream.WaitAsync(position, _pingInterval, aborted))
                {
                    stream.WritePing(output);
                    await output.FlushAsync(aborted);
                }
            }
        }
        catch (Exception ex) when (aborted.IsCancellationRequested && ex is OperationCanceledException or IOException or ConnectionAbortedException)
        {
            // This reader left; the stream goes on for the others (and the grace period starts if it was the last).
        }
        finally
        {
            stream.DetachReader();
        }
    }

    public async Task CancelAsync(HttpContext context)
    {
        var id = context.Request.RouteValues["id"] as string ?? string.Empty;
        if (forwarder.ShouldForward(context, id, out var owner))
        {
            await forwarder.CancelAsync(context, owner, id, o => OwnerGoneAsync(context, id, o));
            return;
        }

        if (!registry.TryGet(id, OwnerScope(context), out var stream))
        {
            await NotFoundAsync(context, id, null);
            return;
        }

        var wasRunning = !stream.Finished;
        stream.CancelGeneration();
        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("id", stream.Id);
        json.WriteString("object", "stream");
        json.WriteBoolean("cancelled", wasRunning);
        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted);
    }

    private Task NotFoundAsync(HttpContext context, string id, ResumableStream? stream)
    {
        var message = stream is { Overflowed: true }
            ? $"Stream '{SluiceErrors.Echo(id)}' cannot be resumed: it outgrew the replay buffer (Streaming:MaxStreamBufferBytes = {registry.Options.MaxStreamBufferBytes}). Send the request again."
            : $"Stream '{SluiceErrors.Echo(id)}' has expired or never existed: finished streams stay replayable for {registry.Options.ReplayTtlSeconds.ToString(CultureInfo.InvariantCulture)} s within a {registry.Options.ReplayBudgetBytes} byte budget (oldest evicted first). Send the request again.";
        return ErrorResponses.WriteAsync(context, StatusCodes.Status404NotFound, new ErrorInfo(
            message, ErrorTypes.InvalidRequest, "id", "stream_not_found"));
    }

    /// <summary>The 404 for a stream whose instance stopped: its frames went with it (nothing says whose it was).</summary>
    private static Task OwnerGoneAsync(HttpContext context, string id, string owner) =>
        ErrorResponses.WriteAsync(context, StatusCodes.Status404NotFound, new ErrorInfo(
            $"Stream '{id}' cannot be resumed, replayed or cancelled: the gateway instance that ran it ({owner}) has stopped or is unreachable, and its streams went with it. Send the request again.",
            ErrorTypes.InvalidRequest, "id", "stream_not_found"));

    private static bool TryParseAfter(HttpRequest request, out long after)
    {
        var text = request.Headers["Last-Event-ID"].ToString();
        if (text.Length == 0)
        {
            text = request.Query["after"].ToString();
        }

        if (text.Length == 0)
        {
            after = 0;
            return true;
        }

        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out after);
    }

    /// <summary>Streams are owner-scoped: the operator sees every stream, a team key only its team's (others are 404).</summary>
    private static string? OwnerScope(HttpContext context)
    {
        var caller = context.GetCaller();
        return caller.IsOperator ? null : caller.OwnerId;
    }
}
