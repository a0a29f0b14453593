using System.Buffers;
using System.Buffers.Text;
using System.Text;

namespace Sluice.Protocol.Sse;

/// <summary>
/// An incremental Server-Sent Events parser (WHATWG rules): accepts CR, LF and CRLF line ends, drops one
/// leading BOM, joins multi-line data with <c>\n</c>, tracks the last event id, ignores unknown fields and
/// events without data, and drops an unfinished event at end of input. Feed it bytes as they arrive.
/// </summary>
public sealed class SseParser
{
    private readonly bool _surfaceComments;
    private readonly ArrayBufferWriter<byte> _data = new(256);
    private readonly ArrayBufferWriter<byte> _partialLine = new(256);
    private bool _hasData;
    private string? _eventType;
    private string? _lastEventId;
    private int? _retry;
    private int? _eventRetry;
    private bool _skipLeadingLineFeed;
    private bool _atStart = true;

    /// <summary>Creates a parser.</summary>
    /// <param name="surfaceComments">When true, comment lines are returned as events with <see cref="SseEvent.IsComment"/>.</param>
    public SseParser(bool surfaceComments = false) => _surfaceComments = surfaceComments;

    /// <summary>The last event id seen so far (what a reconnecting client sends as <c>Last-Event-ID</c>).</summary>
    public string? LastEventId => _lastEventId;

    /// <summary>The last <c>retry:</c> value seen, in milliseconds.</summary>
    public int? RetryMs => _retry;

    /// <summary>Parses <paramref name="chunk"/> and adds every completed event to <paramref name="events"/>.</summary>
    public void Feed(ReadOnlySpan<byte> chunk, List<SseEvent> events)
    {
        if (_atStart)
        {
            if (_partialLine.WrittenCount + chunk.Length < 3 && "\uFEFF"u8.StartsWith(Concat(_partialLine.WrittenSpan, chunk)))
            {
                // Too few bytes to know whether a BOM starts the stream; keep them until we can tell.
                _partialLine.Write(chunk);
                return;
            }

            _atStart = false;
            if (_partialLine.WrittenCount > 0)
            {
                // The BOM may straddle the held bytes and this chunk: strip it from the two together.
                var combined = Concat(_partialLine.WrittenSpan, chunk);
                _partialLine.Clear();
                FeedLines(StripBom(combined), events);
                return;
            }

            chunk = StripBom(chunk);
        }

        FeedLines(chunk, events);
    }

    /// <summary>Parses a sequence (e.g. from a <see cref="System.IO.Pipelines.PipeReader"/>).</summary>
    public void Feed(in ReadOnlySequence<byte> sequence, List<SseEvent> events)
    {
        foreach (var segment in sequence)
        {
            Feed(segment.Span, events);
        }
    }

    /// <summary>
    /// Ends the input. A final line without a line end is processed, but per the spec an event that was not
    /// ended by a blank line is dropped.
    /// </summary>
    public void Complete(List<SseEvent> events)
    {
        if (_partialLine.WrittenCount > 0)
        {
            var line = _partialLine.WrittenSpan.ToArray();
            _partialLine.Clear();
            ProcessLine(line, events);
        }

        ResetEvent();
    }

    private static ReadOnlySpan<byte> StripBom(ReadOnlySpan<byte> chunk) =>
        chunk.StartsWith("\uFEFF"u8) ? chunk[3..] : chunk;

    private static byte[] Concat(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var result = new byte[a.Length + b.Length];
        a.CopyTo(result);
        b.CopyTo(result.AsSpan(a.Length));
        return result;
    }

    private void FeedLines(ReadOnlySpan<byte> chunk, List<SseEvent> events)
    {
        while (!chunk.IsEmpty)
        {
            if (_skipLeadingLineFeed)
            {
                _skipLeadingLineFeed = false;
                if (chunk[0] == (byte)'\n')
                {
                    chunk = chunk[1..];
                    continue;
                }
            }

            var end = chunk.IndexOfAny((byte)'\r', (byte)'\n');
            if (end < 0)
            {
                _partialLine.Write(chunk);
                return;
            }

            if (chunk[end] == (byte)'\r')
            {
                // A CR may be followed by an LF we have not received yet: skip it when it comes.
                if (end + 1 < chunk.Length)
                {
                    if (chunk[end + 1] == (byte)'\n')
                    {
                        end++;
                    }
                }
                else
                {
                    _skipLeadingLineFeed = true;
                }
            }

            var lineEnd = chunk[end] == (byte)'\n' && end > 0 && chunk[end - 1] == (byte)'\r' ? end - 1 : end;
            if (_partialLine.WrittenCount > 0)
            {
                _partialLine.Write(chunk[..lineEnd]);
                var line = _partialLine.WrittenSpan;
                ProcessLine(line, events);
                _partialLine.Clear();
            }
            else
            {
                ProcessLine(chunk[..lineEnd], events);
            }

            chunk = chunk[(end + 1)..];
        }
    }

    private void ProcessLine(ReadOnlySpan<byte> line, List<SseEvent> events)
    {
        if (line.IsEmpty)
        {
            Dispatch(events);
            return;
        }

        if (!SseLine.TrySplit(line, out var field, out var value))
        {
            if (_surfaceComments)
            {
                var text = value;
                if (!text.IsEmpty && text[0] == (byte)' ')
                {
                    text = text[1..];
                }

                events.Add(new SseEvent(null, text.ToArray(), _lastEventId, null, isComment: true));
            }

            return;
        }

        if (field.SequenceEqual("data"u8))
        {
            SseLine.AppendData(_data, ref _hasData, value);
        }
        else if (field.SequenceEqual("event"u8))
        {
            _eventType = Encoding.UTF8.GetString(value);
        }
        else if (field.SequenceEqual("id"u8))
        {
            if (value.IndexOf((byte)0) < 0)
            {
                _lastEventId = Encoding.UTF8.GetString(value);
            }
        }
        else if (field.SequenceEqual("retry"u8))
        {
            if (!value.IsEmpty && value.IndexOfAnyExceptInRange((byte)'0', (byte)'9') < 0
                && Utf8Parser.TryParse(value, out int retry, out _))
            {
                _retry = retry;
                _eventRetry = retry;
            }
        }
    }

    private void Dispatch(List<SseEvent> events)
    {
        if (_hasData)
        {
            events.Add(new SseEvent(
                string.IsNullOrEmpty(_eventType) ? null : _eventType,
                _data.WrittenSpan.ToArray(),
                _lastEventId,
                _eventRetry));
        }

        ResetEvent();
    }

    private void ResetEvent()
    {
        _data.Clear();
        _hasData = false;
        _eventType = null;
        _eventRetry = null;
    }
}
