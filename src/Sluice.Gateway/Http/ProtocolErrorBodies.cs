using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Sluice.Protocol;
using Sluice.Protocol.OpenAI;

namespace Sluice.Gateway.Http;

/// <summary>
/// Gives the error responses Kestrel writes itself — for requests it rejects before any application code runs: a
/// malformed request line or header, a URL or headers over its limits, a header timeout, an unsupported HTTP version —
/// the JSON error body every other Sluice error has, instead of an empty body. Kestrel's 505 for an unknown HTTP
/// version becomes a 400: what a client sends is never a server error.
/// </summary>
/// <remarks>
/// <para>Kestrel has no hook for these responses, so this is connection middleware: it wraps the connection's output
/// and recognises Kestrel's own error response — a 4xx/5xx status line whose header block, written in one piece, has
/// <c>Content-Length: 0</c> and <c>Connection: close</c> (the connection is closed after it). Sluice's own errors always
/// have a body, so nothing the application writes matches. The check costs a few byte comparisons per write.</para>
/// <para>The body is OpenAI-shaped whatever the path: the request could not be parsed, so no endpoint (and no dialect)
/// is known. A header block Kestrel happens to write in two pieces (it never has in practice: it is one small write into
/// a fresh pipe segment) keeps its empty body.</para>
/// </remarks>
internal static class ProtocolErrorBodies
{
    /// <summary>Adds the middleware to a listen endpoint.</summary>
    public static ListenOptions UseProtocolErrorBodies(this ListenOptions listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        listen.Use(next => async connection =>
        {
            var transport = connection.Transport;
            connection.Transport = new Pipe(transport.Input, new RewritingWriter(transport.Output));
            try
            {
                await next(connection);
            }
            finally
            {
                connection.Transport = transport;
            }
        });
        return listen;
    }

    /// <summary>The body for a status Kestrel rejected a request with: what went wrong and what to do.</summary>
    internal static ErrorInfo ErrorFor(int status) => status switch
    {
        408 => new ErrorInfo(
            "The request was not received in time: its headers did not arrive within the server's limit (Limits:RequestHeadersTimeoutSeconds). Send the whole request at once.",
            ErrorTypes.Timeout, null, "request_timeout"),
        414 => new ErrorInfo(
            "The request URL is longer than the server accepts (8 KiB for the request line). Shorten it; send long input in the JSON body.",
            ErrorTypes.InvalidRequest, null, "url_too_long"),
        431 => new ErrorInfo(
            "The request headers are larger than the server accepts (32 KiB in total). Send fewer or shorter headers.",
            ErrorTypes.InvalidRequest, null, "headers_too_large"),
        505 => new ErrorInfo(
            "This HTTP version is not supported (the status is 400: it is the request's fault). Send HTTP/1.1 (or HTTP/2).",
            ErrorTypes.InvalidRequest, null, "http_version_not_supported"),
        _ => new ErrorInfo(
            "The request is not valid HTTP: a malformed request line, header name or value, Host header, Content-Length or chunked body. " +
            "Send a well-formed HTTP/1.1 request (headers in ASCII, one Content-Length or valid chunked encoding).",
            ErrorTypes.InvalidRequest, null, "bad_request"),
    };

    /// <summary>
    /// The response to write instead of <paramref name="head"/> when it is Kestrel's bodiless error response; null
    /// otherwise.
    /// </summary>
    internal static byte[]? Rewrite(ReadOnlySpan<byte> head)
    {
        // "HTTP/1.1 400 ..." — only error statuses, only a whole header block.
        if (head.Length < 16 || !head.StartsWith("HTTP/1."u8) || head[8] != (byte)' ' || head[9] is not ((byte)'4' or (byte)'5')
            || !head.EndsWith("\r\n\r\n"u8) || head.IndexOf("\r\nContent-Length: 0\r\n"u8) < 0 || head.IndexOf("\r\nConnection: close\r\n"u8) < 0
            || !int.TryParse(head.Slice(9, 3), NumberStyles.None, CultureInfo.InvariantCulture, out var status))
        {
            return null;
        }

        var body = new ArrayBufferWriter<byte>(512);
        OpenAIErrorWriter.Write(body, ErrorFor(status));
        var text = Encoding.ASCII.GetString(head[..^2]);

        // A version Kestrel does not speak ("HTTP/3.7") is the client's error, not the server's: answered as a 400, so
        // no 5xx reaches the operator's alerts for what a client sent.
        if (status == 505)
        {
            text = text[..9] + "400 Bad Request" + text[text.IndexOf("\r\n", StringComparison.Ordinal)..];
        }

        text = text.Replace(
            "\r\nContent-Length: 0\r\n",
            $"\r\nContent-Type: application/json\r\nContent-Length: {body.WrittenCount.ToString(CultureInfo.InvariantCulture)}\r\n",
            StringComparison.Ordinal);
        return [.. Encoding.ASCII.GetBytes(text + "\r\n"), .. body.WrittenSpan];
    }

    private sealed class Pipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>Passes every write through; a write that is Kestrel's bodiless error response is replaced before it is committed.</summary>
    private sealed class RewritingWriter(PipeWriter inner) : PipeWriter
    {
        private Memory<byte> _last;

        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => inner.UnflushedBytes;

        public override Memory<byte> GetMemory(int sizeHint = 0) => _last = inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => (_last = inner.GetMemory(sizeHint)).Span;

        public override void Advance(int bytes)
        {
            // Status lines start with "HTTP/1.": the first comparison rejects every body write.
            if (bytes >= 16 && bytes <= _last.Length && _last.Span[0] == (byte)'H' && Rewrite(_last.Span[..bytes]) is { } replacement)
            {
                // Nothing was committed yet: the same memory is handed out again and the new response written into it.
                replacement.CopyTo(inner.GetSpan(replacement.Length));
                inner.Advance(replacement.Length);
                return;
            }

            inner.Advance(bytes);
        }

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default) =>
            inner.WriteAsync(source.Length >= 16 && source.Span[0] == (byte)'H' && Rewrite(source.Span) is { } replacement ? replacement : source, cancellationToken);
    }
}
