using System.Text;

namespace Sluice.Engine.Tokenization;

/// <summary>
/// Turns generated token ids, one at a time, into text that is safe to show: a UTF-8 character split over several tokens
/// (byte-fallback pieces, byte-level BPE fragments of an emoji) is held until it is complete, so half a character is never
/// emitted. The text emitted over a whole generation equals <see cref="Tokenizer.Decode"/> of the ids without space
/// clean-up: in particular the dummy-prefix space SentencePiece puts on the first generated word is dropped, as
/// <c>llama_detokenize</c> and Hugging Face's decoders drop it. Not thread-safe: one instance per generation.
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _renderSpecial;
    private readonly bool _stripLeadingSpace;
    private readonly List<byte> _pending = new(8);
    private bool _first = true;

    internal StreamingDetokenizer(Tokenizer tokenizer, bool renderSpecial, bool stripLeadingSpace)
    {
        _tokenizer = tokenizer;
        _renderSpecial = renderSpecial;
        _stripLeadingSpace = stripLeadingSpace;
    }

    /// <summary>Bytes held back because they may be the start of a character that later tokens complete.</summary>
    public int PendingByteCount => _pending.Count;

    /// <summary>Adds one token; returns the text that became complete (possibly empty).</summary>
    public string Push(int tokenId)
    {
        var piece = _tokenizer.GetPiece(tokenId, _renderSpecial, _first && _stripLeadingSpace ? 1 : 0);
        _first = false;
        _pending.AddRange(piece);
        var ready = Utf8.CompletePrefixLength(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending));
        if (ready == 0)
        {
            return "";
        }
        var text = Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending)[..ready]);
        _pending.RemoveRange(0, ready);
        return text;
    }

    /// <summary>Ends the generation: whatever is still held (an unfinished character) is emitted, as U+FFFD.</summary>
    public string Flush()
    {
        var text = Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending));
        _pending.Clear();
        return text;
    }

    /// <summary>Starts a new generation.</summary>
    public void Reset()
    {
        _pending.Clear();
        _first = true;
    }
}

/// <summary>
/// Finds stop strings in streamed text. Text that could be the start of a stop string is held back until the next chunk
/// settles it; once a stop string is complete, the text before it is released and the stop string itself (and all after it)
/// never is. Not thread-safe: one instance per generation.
/// </summary>
public sealed class StopStringMatcher
{
    private readonly string[] _stops;
    private string _held = "";

    /// <summary>Creates a matcher; empty stop strings are ignored.</summary>
    public StopStringMatcher(IEnumerable<string> stopStrings)
    {
        ArgumentNullException.ThrowIfNull(stopStrings);
        _stops = [.. stopStrings.Where(s => !string.IsNullOrEmpty(s)).Distinct(StringComparer.Ordinal)];
    }

    /// <summary>Whether a stop string has been seen; after that nothing more is emitted.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The stop string that ended the text, if any.</summary>
    public string? MatchedStopString { get; private set; }

    /// <summary>Text currently held back as a possible stop-string start.</summary>
    public string HeldText => _held;

    /// <summary>Adds a chunk of text; returns what can be emitted now.</summary>
    public string Push(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Stopped)
        {
            return "";
        }
        var buffer = _held + text;
        var earliest = -1;
        foreach (var stop in _stops)
        {
            var at = buffer.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (earliest < 0 || at < earliest))
            {
                earliest = at;
                MatchedStopString = stop;
            }
        }
        if (earliest >= 0)
        {
            Stopped = true;
            _held = "";
            return buffer[..earliest];
        }
        var hold = 0;
        foreach (var stop in _stops)
        {
            // The longest end of the buffer that is a proper beginning of this stop string.
            for (var k = Math.Min(stop.Length - 1, buffer.Length); k > hold; k--)
            {
                if (buffer.AsSpan(buffer.Length - k).SequenceEqual(stop.AsSpan(0, k)))
                {
                    hold = k;
                    break;
                }
            }
        }
        _held = buffer[(buffer.Length - hold)..];
        return buffer[..(buffer.Length - hold)];
    }

    /// <summary>Ends the text: held-back text that never became a stop string is released.</summary>
    public string Flush()
    {
        var text = Stopped ? "" : _held;
        _held = "";
        return text;
    }
}

/// <summary>
/// The text side of a generation: token ids in, displayable text out, with stop strings applied
/// (<see cref="StreamingDetokenizer"/> followed by <see cref="StopStringMatcher"/>).
/// </summary>
public sealed class TokenTextStream
{
    private readonly StreamingDetokenizer _detokenizer;
    private readonly StopStringMatcher _stops;

    /// <summary>Creates a stream for one generation.</summary>
    public TokenTextStream(Tokenizer tokenizer, IEnumerable<string>? stopStrings = null, bool renderSpecial = false, bool? stripLeadingSpace = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _detokenizer = tokenizer.CreateStreamingDetokenizer(renderSpecial, stripLeadingSpace);
        _stops = new StopStringMatcher(stopStrings ?? []);
    }

    /// <summary>Whether a stop string ended the text: the caller should stop generating.</summary>
    public bool Stopped => _stops.Stopped;

    /// <summary>The stop string that ended the text, if any.</summary>
    public string? MatchedStopString => _stops.MatchedStopString;

    /// <summary>Adds one generated token; returns the text to emit now (possibly empty).</summary>
    public string Push(int tokenId) => _stops.Stopped ? "" : _stops.Push(_detokenizer.Push(tokenId));

    /// <summary>Ends the generation; returns the last text to emit.</summary>
    public string Flush()
    {
        if (_stops.Stopped)
        {
            return "";
        }
        var tail = _stops.Push(_detokenizer.Flush());
        return tail + _stops.Flush();
    }
}
