using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;

namespace Sluice.Providers.Upstream;

/// <summary>
/// HTTP/1.1 over plain TCP for upstream streams, without <see cref="SocketsHttpHandler"/>'s per-read allocations: a
/// paced stream's read waits for its next chunk, and HttpClient's response stream allocates two async boxes for every
/// such wait (87 % of the gateway's allocated bytes at 8,000 paced streams). Here a read that waits reuses a pooled box
/// and the socket's own awaitable, so a stream allocates nothing per chunk.
/// </summary>
/// <remarks>
/// Only for <c>http://</c> upstreams without a proxy (TLS, proxies and HTTP/2 stay with <see cref="SocketsHttpHandler"/>).
/// Connections are pooled per host and port and reused after a body was read to its end; a body abandoned mid-way
/// closes its connection (the upstream sees the disconnect and stops generating). A request that fails on a reused
/// connection before any byte of its answer arrived is sent once more on a new one, as HttpClient does.
/// </remarks>
internal sealed class Http11Handler : HttpMessageHandler
{
    /// <summary>A connection's read buffer (it grows only for a larger response head).</summary>
    internal const int BufferBytes = 16 * 1024;

    /// <summary>Largest response head accepted.</summary>
    internal const int MaxHeadBytes = 64 * 1024;

    private readonly ConcurrentDictionary<string, ConcurrentStack<Http11Connection>> _idle = new(StringComparer.Ordinal);
    private readonly TimeSpan _connectTimeout;
    private readonly TimeSpan _idleTimeout;
    private readonly ITimer _sweep;
    private volatile bool _disposed;

    /// <param name="connectTimeout">How long a connect may take.</param>
    /// <param name="idleTimeout">
    /// How long a pooled connection may sit unused: one that has is not reused, and a sweep every quarter of this
    /// (between 50 ms and 15 s) closes it even when no request comes — after a burst of thousands of streams, their
    /// connections are not held open for as long as the process runs.
    /// </param>
    public Http11Handler(TimeSpan connectTimeout, TimeSpan idleTimeout)
    {
        _connectTimeout = connectTimeout;
        _idleTimeout = idleTimeout;
        var period = idleTimeout == Timeout.InfiniteTimeSpan
            ? Timeout.InfiniteTimeSpan
            : TimeSpan.FromTicks(Math.Clamp(idleTimeout.Ticks / 4, TimeSpan.FromMilliseconds(50).Ticks, TimeSpan.FromSeconds(15).Ticks));
        // The timer holds the handler weakly (as SocketsHttpHandler's cleaning timer does): one never disposed can still
        // be collected, and its timer then stops itself.
        var state = new SweepState(new WeakReference<Http11Handler>(this));
        _sweep = state.Timer = TimeProvider.System.CreateTimer(static s => SweepState.Tick((SweepState)s!), state, period, period);
    }

    /// <inheritdoc />
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
        SendAsync(request, ReadOnlyMemory<byte>.Empty, cancellationToken);

    /// <summary>
    /// Sends <paramref name="request"/> with <paramref name="fixedHeaders"/> (header lines encoded once per upstream, see
    /// <see cref="EncodeHeaders"/>) after its own — called directly rather than through <see cref="HttpClient"/>, which
    /// copied its default headers into every request and linked a cancellation source per call.
    /// </summary>
    internal async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, ReadOnlyMemory<byte> fixedHeaders, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var uri = request.RequestUri ?? throw new InvalidOperationException("The request has no URI.");
        InjectTraceContext(request);
        // The gateway's own bodies are read in place; any other content is copied out once.
        var body = request.Content switch
        {
            null => ReadOnlyMemory<byte>.Empty,
            UpstreamBodyContent own => own.Body,
            var other => await other.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false),
        };
        var (bytes, length) = RequestBytes(request, uri, fixedHeaders.Span, body.Span);
        try
        {
            return await SendAsync(request, uri, bytes.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, Uri uri, ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            var connection = RentIdle(uri.Authority);
            var reused = connection is not null;
            connection ??= await ConnectAsync(uri, cancellationToken).ConfigureAwait(false);
            try
            {
                await connection.SendAsync(bytes, cancellationToken).ConfigureAwait(false);
                var response = await connection.ReadHeadAsync(request, cancellationToken).ConfigureAwait(false);
                return response;
            }
            catch (Exception ex) when (reused && connection.NothingReceived && ex is IOException or SocketException && !cancellationToken.IsCancellationRequested)
            {
                // The server closed an idle connection as we reused it: nothing was processed; once more on a new one.
                connection.Dispose();
            }
            catch (Exception ex) when (ex is IOException or SocketException)
            {
                connection.Dispose();
                throw new HttpRequestException(HttpRequestError.ResponseEnded, ex.Message, ex);
            }
            catch
            {
                connection.Dispose();
                throw;
            }
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _disposed = true;
            _sweep.Dispose();
            foreach (var stack in _idle.Values)
            {
                while (stack.TryPop(out var connection))
                {
                    connection.Dispose();
                }
            }
        }

        base.Dispose(disposing);
    }

    internal void Return(Http11Connection connection)
    {
        if (_disposed)
        {
            connection.Dispose();
            return;
        }

        connection.IdleSince = Stopwatch.GetTimestamp();
        _idle.GetOrAdd(connection.Authority, static _ => new ConcurrentStack<Http11Connection>()).Push(connection);
    }

    private sealed class SweepState(WeakReference<Http11Handler> handler)
    {
        public ITimer? Timer { get; set; }

        public static void Tick(SweepState state)
        {
            if (state.Handler.TryGetTarget(out var handler))
            {
                handler.SweepIdle();
            }
            else
            {
                state.Timer?.Dispose();
            }
        }

        private WeakReference<Http11Handler> Handler { get; } = handler;
    }

    /// <summary>Closes every pooled connection idle for longer than the idle timeout; the rest go back as they were.</summary>
    private void SweepIdle()
    {
        foreach (var stack in _idle.Values)
        {
            // Last in, first out: the stalest sit at the bottom, where renting never looks. Take all, put the fresh back
            // in their order (a renter meanwhile finds fewer and may connect anew: this runs every few seconds at most).
            var count = stack.Count;
            if (count == 0)
            {
                continue;
            }

            var taken = ArrayPool<Http11Connection>.Shared.Rent(count);
            var popped = stack.TryPopRange(taken, 0, count);
            var kept = 0;
            for (var i = 0; i < popped; i++)
            {
                var connection = taken[i];
                if (Stopwatch.GetElapsedTime(connection.IdleSince) < _idleTimeout)
                {
                    taken[kept++] = connection;
                }
                else
                {
                    connection.Dispose();
                }
            }

            if (kept > 0)
            {
                Array.Reverse(taken, 0, kept);
                stack.PushRange(taken, 0, kept);
            }

            Array.Clear(taken, 0, popped);
            ArrayPool<Http11Connection>.Shared.Return(taken);
            if (_disposed)
            {
                // Disposed while this ran: what was pushed back is closed here, not left open.
                while (stack.TryPop(out var connection))
                {
                    connection.Dispose();
                }
            }
        }
    }

    private Http11Connection? RentIdle(string authority)
    {
        if (!_idle.TryGetValue(authority, out var stack))
        {
            return null;
        }

        while (stack.TryPop(out var connection))
        {
            if (Stopwatch.GetElapsedTime(connection.IdleSince) < _idleTimeout && connection.LooksOpen())
            {
                return connection;
            }

            connection.Dispose();
        }

        return null;
    }

    private async Task<Http11Connection> ConnectAsync(Uri uri, CancellationToken cancellationToken)
    {
        using var timeout = _connectTimeout == Timeout.InfiniteTimeSpan ? null : new CancellationTokenSource(_connectTimeout);
        using var linked = timeout is null ? null : CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            // An IP literal (IPv6 ones come bracketed in the URI) connects as is; a name is resolved.
            EndPoint endPoint = IPAddress.TryParse(uri.DnsSafeHost, out var address) ? new IPEndPoint(address, uri.Port) : new DnsEndPoint(uri.IdnHost, uri.Port);
            await socket.ConnectAsync(endPoint, linked?.Token ?? cancellationToken).ConfigureAwait(false);
            // Non-blocking for the synchronous peek that checks an idle connection (reads and writes are async anyway).
            socket.Blocking = false;
            return new Http11Connection(this, socket, uri.Authority);
        }
        catch (OperationCanceledException ex) when (timeout is { IsCancellationRequested: true } && !cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw new TaskCanceledException($"Connecting to {uri.Authority} took longer than {_connectTimeout.TotalMilliseconds:F0} ms.", new TimeoutException(ex.Message));
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new HttpRequestException(HttpRequestError.ConnectionError, $"{ex.Message} ({uri.Authority})", ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The whole request — request line, headers, then body — in one pooled buffer (return it with
    /// <see cref="ArrayPool{T}"/>), so it goes out in one system call: head and body sent apart were two for every stream.
    /// </summary>
    /// <remarks>Written straight to bytes: a string builder and its string were most of what a request allocated here.</remarks>
    internal static (byte[] Buffer, int Length) RequestBytes(HttpRequestMessage request, Uri uri, ReadOnlySpan<byte> fixedHeaders, ReadOnlySpan<byte> body)
    {
        var writer = new HeadWriter(ArrayPool<byte>.Shared.Rent(1024 + fixedHeaders.Length + body.Length));
        writer.Append(request.Method.Method).Append(" ").Append(uri.PathAndQuery).Append(" HTTP/1.1\r\nHost: ").Append(uri.Authority).Append("\r\n");
        foreach (var (name, values) in request.Headers.NonValidated)
        {
            if (!WrittenBySluice(name))
            {
                writer.Header(name, values);
            }
        }

        writer.Append(fixedHeaders);
        if (request.Content is { } content)
        {
            foreach (var (name, values) in content.Headers.NonValidated)
            {
                if (!name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                {
                    writer.Header(name, values);
                }
            }
        }

        if (request.Content is not null || request.Method == HttpMethod.Post)
        {
            writer.Append("Content-Length: ").Append(body.Length).Append("\r\n");
        }

        writer.Append("\r\n").Append(body);
        return (writer.Buffer, writer.Length);
    }

    /// <summary>
    /// Header lines ("Name: value\r\n" each) for <see cref="SendAsync(HttpRequestMessage, ReadOnlyMemory{byte}, CancellationToken)"/>,
    /// encoded once: an upstream's fixed headers (its key, API version, configured extras) are the same on every request.
    /// </summary>
    /// <param name="headers">The headers.</param>
    /// <param name="except">A header name left out (written per request instead), or null.</param>
    internal static byte[] EncodeHeaders(System.Net.Http.Headers.HttpHeaders headers, string? except)
    {
        var writer = new HeadWriter(ArrayPool<byte>.Shared.Rent(1024));
        foreach (var (name, values) in headers.NonValidated)
        {
            if (!name.Equals(except, StringComparison.OrdinalIgnoreCase) && !WrittenBySluice(name))
            {
                writer.Header(name, values);
            }
        }

        var bytes = writer.Buffer.AsSpan(0, writer.Length).ToArray();
        ArrayPool<byte>.Shared.Return(writer.Buffer);
        return bytes;
    }

    // Framing headers this client writes itself (or, for Connection, leaves to HTTP/1.1's default keep-alive).
    private static bool WrittenBySluice(string name) =>
        name.Equals("Host", StringComparison.OrdinalIgnoreCase) || name.Equals("Connection", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase);

    /// <summary>Appends Latin-1 text to a pooled buffer, growing it (through the pool) as needed.</summary>
    private sealed class HeadWriter(byte[] buffer)
    {
        public byte[] Buffer { get; private set; } = buffer;

        public int Length { get; private set; }

        public HeadWriter Append(string text)
        {
            Ensure(text.Length);
            Length += Encoding.Latin1.GetBytes(text, Buffer.AsSpan(Length));
            return this;
        }

        public HeadWriter Append(ReadOnlySpan<byte> bytes)
        {
            Ensure(bytes.Length);
            bytes.CopyTo(Buffer.AsSpan(Length));
            Length += bytes.Length;
            return this;
        }

        public HeadWriter Append(int value)
        {
            Ensure(11);
            value.TryFormat(Buffer.AsSpan(Length), out var written, default, CultureInfo.InvariantCulture);
            Length += written;
            return this;
        }

        public void Header(string name, System.Net.Http.Headers.HeaderStringValues values)
        {
            Append(name).Append(": ");
            var first = true;
            foreach (var value in values)
            {
                (first ? this : Append(", ")).Append(value);
                first = false;
            }

            Append("\r\n");
        }

        private void Ensure(int more)
        {
            if (Length + more > Buffer.Length)
            {
                var larger = ArrayPool<byte>.Shared.Rent(Math.Max(Buffer.Length * 2, Length + more));
                Buffer.AsSpan(0, Length).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(Buffer);
                Buffer = larger;
            }
        }
    }

    private static void InjectTraceContext(HttpRequestMessage request)
    {
        if (Activity.Current is { } activity && !request.Headers.Contains("traceparent"))
        {
            DistributedContextPropagator.Current.Inject(activity, request, static (carrier, name, value) =>
                ((HttpRequestMessage)carrier!).Headers.TryAddWithoutValidation(name, value));
        }
    }
}

/// <summary>One pooled HTTP/1.1 connection: its socket and its read buffer.</summary>
internal sealed class Http11Connection : IDisposable
{
    private readonly Http11Handler _owner;
    private readonly Socket _socket;
    // Not from a pool: a connection closed from another thread may still have a receive landing in it, and a pooled
    // buffer would by then belong to someone else. On the pinned object heap: it lives as long as the connection, and
    // thousands of open connections' buffers were copied by every collection that promoted them (see PinnedBufferPool).
    private byte[] _buffer = GC.AllocateUninitializedArray<byte>(Http11Handler.BufferBytes, pinned: true);
    private int _start;
    private int _end;

    public Http11Connection(Http11Handler owner, Socket socket, string authority)
    {
        _owner = owner;
        _socket = socket;
        Authority = authority;
    }

    public string Authority { get; }

    /// <summary>The read buffer (for tests).</summary>
    internal byte[] ReadBuffer => _buffer;

    /// <summary>When the connection was opened (a connection is not reused after 5 minutes, so DNS changes are seen).</summary>
    public long OpenedAt { get; } = Stopwatch.GetTimestamp();

    public long IdleSince { get; set; }

    /// <summary>No byte of the current request's answer has arrived yet.</summary>
    public bool NothingReceived { get; private set; } = true;

    internal byte[] Buffer => _buffer;

    internal int Start { get => _start; set => _start = value; }

    internal int End => _end;

    /// <summary>
    /// Whether an idle connection can take a request: one non-blocking peek (a system call per reuse — a poll and a
    /// FIONREAD before were two). Nothing to read is the healthy case; the end of the stream (the server closed it), an
    /// error, or bytes nobody asked for each make it unusable.
    /// </summary>
    public bool LooksOpen()
    {
        try
        {
            Span<byte> one = stackalloc byte[1];
            var read = _socket.Receive(one, SocketFlags.Peek, out var error);
            return read == 0 && error == SocketError.WouldBlock;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    public async ValueTask SendAsync(ReadOnlyMemory<byte> request, CancellationToken cancellationToken)
    {
        NothingReceived = true;
        _start = _end = 0;
        await _socket.SendAsync(request, SocketFlags.None, cancellationToken).ConfigureAwait(false);
    }

    public async Task<HttpResponseMessage> ReadHeadAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        while (true)
        {
            var headEnd = IndexOfHeadEnd();
            while (headEnd < 0)
            {
                if (_end - _start >= Http11Handler.MaxHeadBytes)
                {
                    throw new HttpRequestException(HttpRequestError.InvalidResponse, $"The upstream's response head is larger than {Http11Handler.MaxHeadBytes / 1024} KB.");
                }

                if (await FillAsync(cancellationToken).ConfigureAwait(false) == 0)
                {
                    throw new IOException("The upstream closed the connection before it sent a response.");
                }

                NothingReceived = false;
                headEnd = IndexOfHeadEnd();
            }

            var response = ParseHead(request, _buffer.AsSpan(_start, headEnd - _start), out var framing, out var length, out var keepAlive);
            _start = headEnd + 4;
            if ((int)response.StatusCode is >= 100 and < 200)
            {
                response.Dispose();
                continue;
            }

            if (request.Method == HttpMethod.Head || response.StatusCode is HttpStatusCode.NoContent or HttpStatusCode.NotModified)
            {
                framing = Http11Framing.Length;
                length = 0;
            }

            ((Http11Content)response.Content).Body = new Http11BodyStream(this, framing, length, keepAlive);
            return response;
        }
    }

    /// <summary>Reads more into the buffer (compacting or growing it first when full); 0 when the server closed.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<int> FillAsync(CancellationToken cancellationToken)
    {
        if (_start > 0 && _end == _buffer.Length)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }
        else if (_start == 0 && _end == _buffer.Length)
        {
            if (_buffer.Length >= Http11Handler.MaxHeadBytes)
            {
                // Only a head or a chunk-size or trailer line fills the buffer unconsumed: bounded, whatever the upstream sends.
                throw new IOException($"The upstream sent a line longer than {Http11Handler.MaxHeadBytes / 1024} KB in its answer.");
            }

            var larger = GC.AllocateUninitializedArray<byte>(_buffer.Length * 2);
            _buffer.AsSpan(0, _end).CopyTo(larger);
            _buffer = larger;
        }

        int read;
        try
        {
            read = await _socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            // As HttpClient's response streams report it: a broken connection is an I/O error.
            throw new IOException($"Reading the upstream's answer failed: {ex.Message}", ex);
        }
        catch (OperationCanceledException)
        {
            // A cancelled read aborts the request at once, as HttpClient does: the upstream sees the disconnect now.
            Dispose();
            throw;
        }

        _end += read;
        return read;
    }

    /// <summary>The body was read to its end: the connection goes back to the pool if it can carry another request.</summary>
    internal void Completed(bool keepAlive)
    {
        if (keepAlive && _start == _end && Stopwatch.GetElapsedTime(OpenedAt) < TimeSpan.FromMinutes(5))
        {
            _owner.Return(this);
        }
        else
        {
            Dispose();
        }
    }

    public void Dispose() => _socket.Dispose();

    private int IndexOfHeadEnd()
    {
        var index = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8);
        return index < 0 ? -1 : _start + index;
    }

    private static readonly string[] KnownNames =
    [
        "Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "Date", "Server", "Cache-Control", "Keep-Alive",
        "Retry-After", "X-Request-Id", "Vary", "Access-Control-Allow-Origin", "X-Accel-Buffering",
    ];

    private static readonly string[] KnownValues = ["chunked", "text/event-stream", "keep-alive", "close", "no-cache", "application/json", "application/x-ndjson"];

    private static HttpResponseMessage ParseHead(HttpRequestMessage request, ReadOnlySpan<byte> head, out Http11Framing framing, out long length, out bool keepAlive)
    {
        // One string for the whole head, then spans over it: names and common values come from the tables above.
        var text = Encoding.Latin1.GetString(head).AsSpan();
        var eol = text.IndexOf("\r\n", StringComparison.Ordinal);
        var statusLine = eol < 0 ? text : text[..eol];
        var rest = eol < 0 ? [] : text[(eol + 2)..];
        if (statusLine.Length < 12 || !statusLine.StartsWith("HTTP/1.", StringComparison.Ordinal) || statusLine[8] != ' '
            || !int.TryParse(statusLine.Slice(9, 3), NumberStyles.None, CultureInfo.InvariantCulture, out var code) || code < 100)
        {
            throw new HttpRequestException(HttpRequestError.InvalidResponse, $"The upstream's answer does not start with an HTTP/1.x status line (\"{statusLine[..Math.Min(statusLine.Length, 80)]}\").");
        }

        var reason = statusLine.Length > 13 ? statusLine[13..] : [];
        var content = new Http11Content();
        var response = new HttpResponseMessage((HttpStatusCode)code)
        {
            RequestMessage = request,
            Version = statusLine[7] == '0' ? HttpVersion.Version10 : HttpVersion.Version11,
            ReasonPhrase = reason.IsEmpty ? null : reason.SequenceEqual("OK") ? "OK" : reason.ToString(),
            Content = content,
        };
        framing = Http11Framing.Close;
        length = -1;
        keepAlive = response.Version == HttpVersion.Version11;
        while (!rest.IsEmpty)
        {
            eol = rest.IndexOf("\r\n", StringComparison.Ordinal);
            var line = eol < 0 ? rest : rest[..eol];
            rest = eol < 0 ? [] : rest[(eol + 2)..];
            var colon = line.IndexOf(':');
            if (colon <= 0)
            {
                throw new HttpRequestException(HttpRequestError.InvalidResponse, $"The upstream sent a malformed header line (\"{line[..Math.Min(line.Length, 80)]}\").");
            }

            var nameSpan = line[..colon].Trim();
            var valueSpan = line[(colon + 1)..].Trim();
            var name = Known(KnownNames, nameSpan, StringComparison.OrdinalIgnoreCase) ?? nameSpan.ToString();
            var value = Known(KnownValues, valueSpan, StringComparison.Ordinal) ?? valueSpan.ToString();
            if (ReferenceEquals(name, "Transfer-Encoding"))
            {
                if (value.Contains("chunked", StringComparison.OrdinalIgnoreCase))
                {
                    framing = Http11Framing.Chunked;
                }
            }
            else if (ReferenceEquals(name, "Content-Length"))
            {
                if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out length))
                {
                    throw new HttpRequestException(HttpRequestError.InvalidResponse, $"The upstream sent Content-Length \"{value}\", which is not a length.");
                }

                content.Headers.TryAddWithoutValidation(name, value);
            }
            else if (ReferenceEquals(name, "Connection"))
            {
                keepAlive = response.Version == HttpVersion.Version11
                    ? !value.Contains("close", StringComparison.OrdinalIgnoreCase)
                    : value.Contains("keep-alive", StringComparison.OrdinalIgnoreCase);
            }
            else if (!response.Headers.TryAddWithoutValidation(name, value))
            {
                content.Headers.TryAddWithoutValidation(name, value);
            }
        }

        if (framing != Http11Framing.Chunked && length >= 0)
        {
            framing = Http11Framing.Length;
        }

        if (framing == Http11Framing.Close)
        {
            keepAlive = false;
        }

        return response;
    }

    private static string? Known(string[] table, ReadOnlySpan<char> text, StringComparison comparison)
    {
        foreach (var known in table)
        {
            if (text.Equals(known, comparison))
            {
                return known;
            }
        }

        return null;
    }
}

/// <summary>How a response body ends.</summary>
internal enum Http11Framing
{
    /// <summary>After Content-Length bytes.</summary>
    Length,

    /// <summary>At the zero-size chunk (and the trailers after it).</summary>
    Chunked,

    /// <summary>When the server closes the connection.</summary>
    Close,
}

/// <summary>The response content: the body stream itself, with the headers parsed from the head.</summary>
internal sealed class Http11Content : HttpContent
{
    /// <summary>Set once the head is parsed (the framing comes from its headers).</summary>
    public Http11BodyStream? Body { get; set; }

    private Http11BodyStream Stream => Body ?? throw new InvalidOperationException("The response body is not set.");

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => Stream.CopyToAsync(stream);

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken) =>
        Stream.CopyToAsync(stream, cancellationToken);

    protected override Stream CreateContentReadStream(CancellationToken cancellationToken) => Stream;

    protected override Task<Stream> CreateContentReadStreamAsync() => Task.FromResult<Stream>(Stream);

    protected override bool TryComputeLength(out long length)
    {
        length = 0;
        return false;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Body?.Dispose();
        }

        base.Dispose(disposing);
    }
}

/// <summary>A response body read straight from its connection's buffer: Content-Length, chunked or until close.</summary>
internal sealed class Http11BodyStream(Http11Connection connection, Http11Framing framing, long length, bool keepAlive) : Stream
{
    private const int ChunkSize = 0;
    private const int ChunkData = 1;
    private const int ChunkDataEnd = 2;
    private const int Trailers = 3;

    private long _remaining = framing == Http11Framing.Length ? length : 0;
    private int _chunkState = ChunkSize;
    private bool _done = framing == Http11Framing.Length && length == 0;
    private bool _released;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_done)
        {
            Release();
            return new ValueTask<int>(0);
        }

        if (buffer.IsEmpty)
        {
            // A zero-byte read waits until body bytes can be read (it does not mean the end).
            return connection.Start < connection.End ? new ValueTask<int>(0) : WaitForDataAsync(cancellationToken);
        }

        var copied = Decode(buffer.Span);
        return copied > 0 || _done ? Finish(copied) : ReadSlowAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_released)
        {
            // Abandoned mid-body: close, so the upstream sees the disconnect and stops generating.
            _released = true;
            connection.Dispose();
        }

        base.Dispose(disposing);
    }

    private ValueTask<int> Finish(int copied)
    {
        if (_done)
        {
            Release();
        }

        return new ValueTask<int>(copied);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ReadSlowAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            var read = await connection.FillAsync(cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                if (framing == Http11Framing.Close)
                {
                    _done = true;
                    Release();
                    return 0;
                }

                throw new IOException("The upstream closed the connection before the end of the response body.");
            }

            var copied = Decode(buffer.Span);
            if (copied > 0 || _done)
            {
                if (_done)
                {
                    Release();
                }

                return copied;
            }
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> WaitForDataAsync(CancellationToken cancellationToken)
    {
        if (await connection.FillAsync(cancellationToken).ConfigureAwait(false) == 0)
        {
            if (framing != Http11Framing.Close)
            {
                throw new IOException("The upstream closed the connection before the end of the response body.");
            }

            _done = true;
            Release();
        }

        return 0;
    }

    private void Release()
    {
        if (!_released && _done)
        {
            _released = true;
            connection.Completed(keepAlive);
        }
    }

    /// <summary>Copies body bytes from the connection's buffer; 0 when more must be read first (or the body is done).</summary>
    private int Decode(Span<byte> destination)
    {
        var data = connection.Buffer;
        var start = connection.Start;
        var end = connection.End;
        var copied = 0;
        try
        {
            switch (framing)
            {
                case Http11Framing.Close:
                    copied = Math.Min(destination.Length, end - start);
                    data.AsSpan(start, copied).CopyTo(destination);
                    start += copied;
                    return copied;
                case Http11Framing.Length:
                    copied = (int)Math.Min(Math.Min(destination.Length, end - start), _remaining);
                    data.AsSpan(start, copied).CopyTo(destination);
                    start += copied;
                    _remaining -= copied;
                    _done = _remaining == 0;
                    return copied;
            }

            while (copied < destination.Length && !_done)
            {
                switch (_chunkState)
                {
                    case ChunkSize:
                    {
                        var line = data.AsSpan(start, end - start).IndexOf("\r\n"u8);
                        if (line < 0)
                        {
                            return copied;
                        }

                        var size = data.AsSpan(start, line);
                        var semicolon = size.IndexOf((byte)';');
                        if (semicolon >= 0)
                        {
                            size = size[..semicolon];
                        }

                        // Parsed from the bytes: a string per chunk was most of what a paced stream still allocated.
                        size = size.Trim(" \t"u8);
                        if (size.IsEmpty || size.Length > 15 || !System.Buffers.Text.Utf8Parser.TryParse(size, out ulong parsed, out var consumed, 'X') || consumed != size.Length)
                        {
                            throw new IOException("The upstream's chunked body has a malformed chunk size.");
                        }

                        var chunk = (long)parsed;
                        start += line + 2;
                        _remaining = chunk;
                        _chunkState = chunk == 0 ? Trailers : ChunkData;
                        break;
                    }

                    case ChunkData:
                    {
                        var take = (int)Math.Min(Math.Min(destination.Length - copied, end - start), _remaining);
                        if (take == 0)
                        {
                            return copied;
                        }

                        data.AsSpan(start, take).CopyTo(destination[copied..]);
                        start += take;
                        copied += take;
                        _remaining -= take;
                        if (_remaining == 0)
                        {
                            _chunkState = ChunkDataEnd;
                        }

                        break;
                    }

                    case ChunkDataEnd:
                        if (end - start < 2)
                        {
                            return copied;
                        }

                        if (data[start] != '\r' || data[start + 1] != '\n')
                        {
                            throw new IOException("The upstream's chunked body has a chunk without its closing CRLF.");
                        }

                        start += 2;
                        _chunkState = ChunkSize;
                        break;

                    default:
                    {
                        // Trailers: lines up to an empty one.
                        var line = data.AsSpan(start, end - start).IndexOf("\r\n"u8);
                        if (line < 0)
                        {
                            return copied;
                        }

                        start += line + 2;
                        _done = line == 0;
                        break;
                    }
                }
            }

            return copied;
        }
        finally
        {
            connection.Start = start;
        }
    }
}
