using System.Buffers;
using Sluice.Protocol.Sse;

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
/// One instance per response; not thread-safe.
/// </remarks>
internal sealed class UpstreamEventReader
{
    private const int InitialBufferSize = 16 * 1024;
    private const int MaxLineBytes = 8 * 1024 * 1024;
    private const int MaxStrayBytes = 64 * 1024;

    private readonly Stream _stream;
    private readonly UpstreamFraming _framing;
    private readonly ArrayBufferWriter<byte> _data = new(1024);
    private readonly ArrayBufferWriter<byte> _eventType = new(32);
    private ArrayBufferWriter<byte>? _stray;
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(InitialBufferSize);
    private int _start;
    private int _end;
    private bool _endOfBody;
    private bool _atStart = true;
    private bool _skipLineFeed;
    private bool _hasData;

    public UpstreamEventReader(Stream stream, UpstreamFraming framing)
    {
        _stream = stream;
        _framing = framing;
    }

    /// <summary>The current record: an SSE event's data, or one NDJSON line. Valid until the next read.</summary>
    public ReadOnlySpan<byte> Data => _data.WrittenSpan;

    /// <summary>The current SSE event's <c>event:</c> type, empty for the default type.</summary>
    public ReadOnlySpan<byte> EventType => _eventType.WrittenSpan;

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
        _start = _end = 0;
        _endOfBody = true;
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads the next record; false when the body has ended.</summary>
    /// <exception cref="UpstreamFormatException">A line is longer than 8 MiB.</exception>
    public async ValueTask<bool> ReadAsync(CancellationToken cancellationToken)
    {
        if (_hasData)
        {
            ResetEvent();
        }

        while (true)
        {
            if (TryDispatchBuffered())
            {
                return true;
            }

            if (_endOfBody)
            {
                return DispatchAtEnd();
            }

            if (_start > 0)
            {
                // Keep the unfinished line at the front so the next read can extend it.
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

                var larger = ArrayPool<byte>.Shared.Rent(_buffer.Length * 2);
                _buffer.AsSpan(0, _end).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = larger;
            }

            var read = await _stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                _endOfBody = true;
            }
            else
            {
                _end += read;
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

            _data.Write(line);
            _hasData = true;
            return true;
        }

        if (line.IsEmpty)
        {
            if (_hasData)
            {
                return true;
            }

            _eventType.ResetWrittenCount();
            return false;
        }

        if (!SseLine.TrySplit(line, out var field, out var value))
        {
            return false;
        }

        if (field.SequenceEqual("data"u8))
        {
            SseLine.AppendData(_data, ref _hasData, value);
        }
        else if (field.SequenceEqual("event"u8))
        {
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

    private void ResetEvent()
    {
        // ResetWrittenCount, not Clear: Clear zeroes the bytes, once per record for nothing.
        _data.ResetWrittenCount();
        _eventType.ResetWrittenCount();
        _hasData = false;
    }
}

/// <summary>The upstream's stream is not in the format its API documents.</summary>
internal sealed class UpstreamFormatException(string message) : Exception(message);
