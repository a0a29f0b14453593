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
/// and recognises Kestrel's own error response — a 4xx/5xx status line whose header block has
/// <c>Content-Length: 0</c> and <c>Connection: close</c> (the connection is closed after it). Sluice's own errors always
/// have a body, so nothing the application writes matches. The check costs a few byte comparisons per write.</para>
/// <para>The body is OpenAI-shaped whatever the path: the request could not be parsed, so no endpoint (and no dialect)
/// is known. A header block Kestrel writes in pieces (on a kept-alive connection whose current block is nearly full) is
/// held until it is whole, then judged like one written at once (<see cref="RewritingWriter"/>).</para>
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

    /// <summary>
    /// Passes every write through; Kestrel's bodiless error response is replaced before it is committed. The head may come
    /// in pieces — on a kept-alive connection the previous response can leave the pipe's current block nearly full, and
    /// Kestrel then writes the head across two blocks — so a write that starts an error head (<c>HTTP/1.x 4xx</c>/<c>5xx</c>)
    /// is held back, uncommitted, until the head's blank line: then the whole head is judged and written, replaced or as
    /// it was. Every other write passes straight through.
    /// </summary>
    /// <remarks>
    /// Kestrel may write again into what is left of the memory it was given after an <see cref="Advance"/>, without asking
    /// for more: a write's bytes are where the previous one ended (<c>_offset</c>). While a head is held, new memory is
    /// handed out from the holding buffer, so nothing Kestrel writes lands in the transport before the head is judged.
    /// </remarks>
    internal sealed class RewritingWriter(PipeWriter inner) : PipeWriter
    {
        // A head longer than this is not Kestrel's small error response: what is held goes out as it is.
        private const int MaxHeld = 8 * 1024;

        private Memory<byte> _last;
        private bool _lastIsOwn;
        private int _offset;
        private byte[]? _buffer;
        private bool _holding;
        private int _heldLength;

        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => inner.UnflushedBytes + (_holding ? _heldLength : 0);

        public override Memory<byte> GetMemory(int sizeHint = 0)
        {
            _offset = 0;
            if (_holding && _heldLength + Math.Max(sizeHint, 1) <= MaxHeld)
            {
                _lastIsOwn = true;
                return _last = _buffer.AsMemory(_heldLength, MaxHeld - _heldLength);
            }

            Release(null);
            if (_buffer is not null)
            {
                // Nothing points into the holding buffer any more: back to the pool until the next error head.
                ReturnBuffer();
            }

            _lastIsOwn = false;
            return _last = inner.GetMemory(sizeHint);
        }

        public override Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

        public override void Advance(int bytes)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(bytes);
            if (_offset + bytes > _last.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(bytes), "Advanced past the memory handed out.");
            }

            var piece = _last.Span.Slice(_offset, bytes);
            _offset += bytes;
            if (_holding)
            {
                Hold(piece);
                return;
            }

            if (_lastIsOwn)
            {
                // Written after a released head into what was left of the holding buffer: copied to the transport.
                piece.CopyTo(inner.GetSpan(bytes));
                inner.Advance(bytes);
                return;
            }

            // Status lines start with "HTTP/1.": the first comparison rejects every body write.
            if (bytes == 0 || piece[0] != (byte)'H' || !StartsErrorHead(piece))
            {
                inner.Advance(bytes);
                return;
            }

            if (piece.EndsWith("\r\n\r\n"u8))
            {
                // The whole head in one write, as nearly always.
                if (Rewrite(piece) is { } replacement)
                {
                    // Nothing was committed yet: the same memory is handed out again and the new response written into it.
                    replacement.CopyTo(inner.GetSpan(replacement.Length));
                    inner.Advance(replacement.Length);
                    return;
                }

                inner.Advance(bytes);
                return;
            }

            _buffer ??= ArrayPool<byte>.Shared.Rent(MaxHeld);
            _holding = true;
            _heldLength = 0;
            Hold(piece);
        }

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null)
        {
            Release(null);
            ReturnBuffer();
            inner.Complete(exception);
        }

        public override ValueTask CompleteAsync(Exception? exception = null)
        {
            Release(null);
            ReturnBuffer();
            return inner.CompleteAsync(exception);
        }

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            // Kestrel flushes after a whole head; should a flush come in the middle of one, what is held goes out as it is.
            Release(null);
            return inner.FlushAsync(cancellationToken);
        }

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            Release(null);
            return inner.WriteAsync(source.Length >= 16 && source.Span[0] == (byte)'H' && Rewrite(source.Span) is { } replacement ? replacement : source, cancellationToken);
        }

        // "HTTP/1." then, if that far, a 4xx/5xx status: the start of an error head (or too short to tell yet).
        private static bool StartsErrorHead(ReadOnlySpan<byte> written)
        {
            ReadOnlySpan<byte> prefix = "HTTP/1."u8;
            if (written.Length < prefix.Length)
            {
                return prefix.StartsWith(written);
            }

            return written.StartsWith(prefix) && (written.Length < 10 || (written[8] == (byte)' ' && written[9] is (byte)'4' or (byte)'5'));
        }

        // One more piece of a held head: kept (not committed); once the head is whole, judged and written.
        private void Hold(ReadOnlySpan<byte> piece)
        {
            if (_lastIsOwn)
            {
                // Written straight into the holding buffer, where it belongs.
                _heldLength += piece.Length;
            }
            else if (_heldLength + piece.Length <= MaxHeld)
            {
                piece.CopyTo(_buffer.AsSpan(_heldLength));
                _heldLength += piece.Length;
            }
            else
            {
                // Not a small error head after all: what is held, then this piece, go out as they are.
                var rest = piece.ToArray();
                Release(null);
                rest.CopyTo(inner.GetSpan(rest.Length));
                inner.Advance(rest.Length);
                return;
            }

            var head = _buffer.AsSpan(0, _heldLength);
            if (head.IndexOf("\r\n\r\n"u8) is var blank and >= 0)
            {
                // The head is whole (anything after its blank line is body and goes out with it).
                Release(blank + 4 == head.Length ? Rewrite(head) : null);
            }
            else if (_heldLength == MaxHeld)
            {
                Release(null);
            }
        }

        // Writes what is held (or its replacement) into the transport and stops holding.
        private void Release(byte[]? replacement)
        {
            if (!_holding)
            {
                return;
            }

            _holding = false;
            var bytes = replacement is null ? _buffer.AsSpan(0, _heldLength) : replacement;
            _heldLength = 0;
            bytes.CopyTo(inner.GetSpan(bytes.Length));
            inner.Advance(bytes.Length);
            if (!_lastIsOwn)
            {
                ReturnBuffer();
            }
        }

        private void ReturnBuffer()
        {
            if (_buffer is { } buffer)
            {
                _buffer = null;
                if (_lastIsOwn)
                {
                    _last = default;
                    _lastIsOwn = false;
                }

                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }
}
