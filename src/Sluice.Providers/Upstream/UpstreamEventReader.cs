using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Sluice.Protocol.Sse;
using Sluice.Providers.Buffers;

namespace Sluice.Providers.Upstream;

/// <summary>How an upstream frames its stream.</summary>
internal enum UpstreamFraming
{
    /// <summary>Server-Sent Events: <c>data:</c> lines, events ended by a blank line.</summary>
    ServerSentEvents,

    /// <summary>Newline-delimited JSON: one record per non-empty line (Ollama).</summary>
    NdJson,
}

/// <summary>
/// Reads an upstream response body record by record as bytes arrive, with no read-ahead beyond what the
/// transport delivered.
/// </summary>
/// <remarks>
/// Follows the SSE line rules of <see cref="Sluice.Protocol.Sse.SseParser"/> (CR, LF and CRLF line ends, one
/// leading BOM, <c>data:</c> lines joined with <c>\n</c>, comments and <c>id</c>/<c>retry</c> ignored) with two
/// differences an upstream client needs and a browser-facing parser must not have:
/// <list type="bullet">
/// <item>An event not ended by a blank line when the body ends is still dispatched: several real recordings
/// end that way (Anthropic's final <c>message_stop</c>, Gemini's last chunk), and the body has ended normally.</item>
/// <item>Lines that are not SSE fields are kept (<see cref="StrayText"/>) instead of being silently ignored:
/// Gemini writes a plain JSON error object into the middle of an SSE stream, and a server that ignored
/// <c>stream: true</c> answers with plain JSON.</item>
/// </list>
/// A record of one line (nearly every chunk: one <c>data:</c> line, or one NDJSON line) is handed out as a slice of the
/// read buffer, not copied; only a record of several lines, or one whose line must move before it completes (the
/// buffer is compacted or grown for the next read), is gathered into a buffer of its own.
/// One instance per response; not thread-safe.
/// </remarks>
internal sealed class UpstreamEventReader
{
    private const int InitialBufferSize = 16 * 1024;
    private const int MaxLineBytes = 8 * 1024 * 1024;
    private const int MaxStrayBytes = 64 * 1024;

    private readonly Stream _stream;
    private readonly UpstreamFraming _framing;
    // Made on first use: most streams never need them (one-line records are slices; only Anthropic names events).
    private ArrayBufferWriter<byte>? _data;
    private ArrayBufferWriter<byte>? _eventType;
    private ArrayBufferWriter<byte>? _stray;
    // Read buffers live as long as their stream: pinned and pooled (see PinnedBufferPool), 1,024 kept (16 MiB).
    private static readonly PinnedBufferPool SharedReadBuffers = new(InitialBufferSize, 1024);

    private readonly PinnedBufferPool _readBuffers;
    private byte[] _buffer;
    private int _start;
    private int _end;
    private bool _endOfBody;
    private bool _atStart = true;
    private bool _skipLineFeed;
    private bool _hasData;

    // The current record is _buffer[_sliceStart.._sliceStart + _sliceLength] rather than _data.
    private bool _inSlice;
    private int _sliceStart;
    private int _sliceLength;

    /// <param name="stream">The response body.</param>
    /// <param name="framing">How it is framed.</param>
    /// <param name="readBuffers">Where the first read buffer comes from and goes back to (the process's pool by default).</param>
    public UpstreamEventReader(Stream stream, UpstreamFraming framing, PinnedBufferPool? readBuffers = null)
    {
        _stream = stream;
        _framing = framing;
        _readBuffers = readBuffers ?? SharedReadBuffers;
        _buffer = _readBuffers.Rent();
    }

    /// <summary>The current record: an SSE event's data, or one NDJSON line. Valid until the next read.</summary>
    public ReadOnlySpan<byte> Data =>
        _inSlice ? _buffer.AsSpan(_sliceStart, _sliceLength) : _data is null ? default : _data.WrittenSpan;

    /// <summary>The current SSE event's <c>event:</c> type, empty for the default type.</summary>
    public ReadOnlySpan<byte> EventType => _eventType is null ? default : _eventType.WrittenSpan;

    /// <summary>Lines seen so far that were not SSE fields, joined with <c>\n</c> (at most 64 KiB).</summary>
    public ReadOnlySpan<byte> StrayText => _stray is null ? default : _stray.WrittenSpan;

    /// <summary>
    /// Gives the read buffer back to the pool; the reader cannot be used afterwards. Only when no read is under way
    /// (a pending read still writes into the buffer); a reader that is never released just leaves its buffer to the GC.
    /// </summary>
    public void ReleaseBuffer()
    {
        var buffer = _buffer;
        _buffer = [];
        _inSlice = false;
        _start = _end = 0;
        _endOfBody = true;
        if (buffer.Length > 0)
        {
            _readBuffers.Release(buffer);
        }
    }

    /// <summary>
    /// Told when each read of the body starts and ends (the call's idle limit counts only while one is pending); null
    /// when nothing watches.
    /// </summary>
    public UpstreamCall? Watch { get; init; }

    /// <summary>The read buffer (for tests).</summary>
    internal byte[] ReadBuffer => _buffer;

    /// <summary>Reads the next record; false when the body has ended.</summary>
    /// <exception cref="UpstreamFormatException">A line is longer than 8 MiB.</exception>
    /// <remarks>
    /// A record already in the buffer completes at once, without an async method; only a read of the body goes
    /// through <see cref="ReadMoreAsync"/>.
    /// </remarks>
    public ValueTask<bool> ReadAsync(CancellationToken cancellationToken)
    {
        if (_hasData)
        {
            ResetEvent();
        }

        return TryDispatchBuffered() ? new ValueTask<bool>(true) : ReadMoreAsync(cancellationToken);
    }

    /// <summary>Reads from the body until a record is complete (or the body ends).</summary>
    /// <remarks>
    /// Pooled, as the awaiting half of <see cref="UpstreamStreaming.NextAsync"/>: the read waits for the upstream's next
    /// chunk.
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ReadMoreAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_endOfBody)
            {
                return DispatchAtEnd();
            }

            if (_start > 0)
            {
                // Keep the unfinished line at the front so the next read can extend it; a record read so far (its
                // blank line still to come) goes into its own buffer first, as its bytes are about to be overwritten.
                GatherSlice();
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }

            if (_end == _buffer.Length)
            {
                if (_buffer.Length >= MaxLineBytes)
                {
                    throw new UpstreamFormatException($"the upstream sent a line longer than {MaxLineBytes / (1024 * 1024)} MiB");
                }

                GatherSlice();
                var larger = ArrayPool<byte>.Shared.Rent(_buffer.Length * 2);
                _buffer.AsSpan(0, _end).CopyTo(larger);
                _readBuffers.Release(_buffer);
                _buffer = larger;
            }

            int read;
            Watch?.ReadStarting();
            try
            {
                read = await _stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                Watch?.ReadEnded();
            }

            if (read == 0)
            {
                _endOfBody = true;
            }
            else
            {
                _end += read;
            }

            if (TryDispatchBuffered())
            {
                return true;
            }
        }
    }

    private bool TryDispatchBuffered()
    {
        if (_atStart)
        {
            if (_end - _start < 3 && !_endOfBody && "\uFEFF"u8.StartsWith(_buffer.AsSpan(_start, _end - _start)))
            {
                return false;
            }

            _atStart = false;
            if (_buffer.AsSpan(_start, _end - _start).StartsWith("\uFEFF"u8))
            {
                _start += 3;
            }
        }

        while (_start < _end)
        {
            var pending = _buffer.AsSpan(_start, _end - _start);
            if (_skipLineFeed)
            {
                _skipLineFeed = false;
                if (pending[0] == (byte)'\n')
                {
                    _start++;
                    continue;
                }
            }

            var lineEnd = pending.IndexOfAny((byte)'\r', (byte)'\n');
            if (lineEnd < 0)
            {
                return false;
            }

            var consumed = lineEnd + 1;
            if (pending[lineEnd] == (byte)'\r')
            {
                if (lineEnd + 1 < pending.Length)
                {
                    if (pending[lineEnd + 1] == (byte)'\n')
                    {
                        consumed++;
                    }
                }
                else
                {
                    // The LF of a CRLF may arrive with the next read.
                    _skipLineFeed = true;
                }
            }

            _start += consumed;
            if (ProcessLine(pending[..lineEnd]))
            {
                return true;
            }
        }

        return false;
    }

    private bool DispatchAtEnd()
    {
        if (_start < _end)
        {
            var last = _buffer.AsSpan(_start, _end - _start);
            _start = _end;
            if (ProcessLine(last))
            {
                return true;
            }
        }

        return _hasData;
    }

    /// <summary>Handles one line; true when it completed a record.</summary>
    private bool ProcessLine(ReadOnlySpan<byte> line)
    {
        if (_framing == UpstreamFraming.NdJson)
        {
            if (line.Trim(" \t"u8).IsEmpty)
            {
                return false;
            }

            Slice(line);
            _hasData = true;
            return true;
        }

        if (line.IsEmpty)
        {
            if (_hasData)
            {
                return true;
            }

            _eventType?.ResetWrittenCount();
            return false;
        }

        if (!SseLine.TrySplit(line, out var field, out var value))
        {
            return false;
        }

        if (field.SequenceEqual("data"u8))
        {
            if (!_hasData)
            {
                Slice(value);
                _hasData = true;
            }
            else
            {
                GatherSlice();
                SseLine.AppendData(_data ??= new ArrayBufferWriter<byte>(256), ref _hasData, value);
            }
        }
        else if (field.SequenceEqual("event"u8))
        {
            _eventType ??= new ArrayBufferWriter<byte>(32);
            _eventType.ResetWrittenCount();
            _eventType.Write(value);
        }
        else if (!field.SequenceEqual("id"u8) && !field.SequenceEqual("retry"u8))
        {
            KeepStray(line);
        }

        return false;
    }

    private void KeepStray(ReadOnlySpan<byte> line)
    {
        _stray ??= new ArrayBufferWriter<byte>(256);
        if (_stray.WrittenCount + line.Length + 1 <= MaxStrayBytes)
        {
            _stray.Write(line);
            _stray.Write("\n"u8);
        }
    }

    /// <summary>Makes <paramref name="part"/> (a slice of the read buffer) the current record, without copying it.</summary>
    private void Slice(ReadOnlySpan<byte> part)
    {
        _sliceStart = part.IsEmpty ? 0 : (int)Unsafe.ByteOffset(ref MemoryMarshal.GetArrayDataReference(_buffer), ref MemoryMarshal.GetReference(part));
        _sliceLength = part.Length;
        _inSlice = true;
    }

    /// <summary>Copies a record held as a slice into its own buffer (the read buffer is about to change, or a line joins it).</summary>
    private void GatherSlice()
    {
        if (!_inSlice)
        {
            return;
        }

        _data ??= new ArrayBufferWriter<byte>(256);
        _data.Write(_buffer.AsSpan(_sliceStart, _sliceLength));
        _inSlice = false;
    }

    private void ResetEvent()
    {
        // ResetWrittenCount, not Clear: Clear zeroes the bytes, once per record for nothing.
        _data?.ResetWrittenCount();
        _eventType?.ResetWrittenCount();
        _inSlice = false;
        _hasData = false;
    }
}

/// <summary>The upstream's stream is not in the format its API documents.</summary>
internal sealed class UpstreamFormatException(string message) : Exception(message);
