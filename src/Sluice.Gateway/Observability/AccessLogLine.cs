using System.Buffers;
using System.Collections;
using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Sluice.Gateway.Observability;

/// <summary>
/// The state of one access-log line (event 1, "Call"): the fields as structured values for any logging provider, and
/// the message written straight into a caller's buffer (<see cref="TryFormat"/>) so the console log does not need a
/// message string per call.
/// </summary>
/// <remarks>
/// It replaces a source-generated <c>[LoggerMessage]</c> state with the same fields, message and event: providers see the
/// same <c>IReadOnlyList</c> of name/value pairs (with <c>{OriginalFormat}</c> last) and the same text from
/// <see cref="ToString"/>. The generated state could only give its message as a new string (432 bytes per call, the
/// largest single allocation of a proxied stream).
/// </remarks>
internal readonly struct AccessLogLine : IReadOnlyList<KeyValuePair<string, object?>>
{
    /// <summary>The event every access-log line carries.</summary>
    public static readonly EventId Event = new(1, "Call");

    /// <summary>The message template (the <c>{OriginalFormat}</c> value).</summary>
    public const string Template =
        "{RequestId} {Dialect} model={Model} status={Status} outcome={Outcome} team={TeamId} key={KeyId} ttft_ms={TtftMs} duration_ms={DurationMs} tokens_in={TokensIn} tokens_out={TokensOut} error={ErrorCode}";

    /// <summary>The formatter logging APIs take: the message as a string (what <see cref="ToString"/> gives).</summary>
    public static readonly Func<AccessLogLine, Exception?, string> Format = static (line, _) => line.ToString();

    private readonly string _requestId;
    private readonly string _dialect;
    private readonly string _model;
    private readonly int _status;
    private readonly string _outcome;
    private readonly string? _teamId;
    private readonly string? _keyId;
    private readonly double? _ttftMs;
    private readonly double _durationMs;
    private readonly int _tokensIn;
    private readonly int _tokensOut;
    private readonly string? _errorCode;

    public AccessLogLine(string requestId, string dialect, string model, int status, string outcome, string? teamId, string? keyId,
        double? ttftMs, double durationMs, int tokensIn, int tokensOut, string? errorCode)
    {
        _requestId = requestId;
        _dialect = dialect;
        _model = model;
        _status = status;
        _outcome = outcome;
        _teamId = teamId;
        _keyId = keyId;
        _ttftMs = ttftMs;
        _durationMs = durationMs;
        _tokensIn = tokensIn;
        _tokensOut = tokensOut;
        _errorCode = errorCode;
    }

    public int Count => 13;

    public KeyValuePair<string, object?> this[int index] => index switch
    {
        0 => new("RequestId", _requestId),
        1 => new("Dialect", _dialect),
        2 => new("Model", _model),
        3 => new("Status", _status),
        4 => new("Outcome", _outcome),
        5 => new("TeamId", _teamId),
        6 => new("KeyId", _keyId),
        7 => new("TtftMs", _ttftMs),
        8 => new("DurationMs", _durationMs),
        9 => new("TokensIn", _tokensIn),
        10 => new("TokensOut", _tokensOut),
        11 => new("ErrorCode", _errorCode),
        12 => new("{OriginalFormat}", Template),
        _ => throw new IndexOutOfRangeException(nameof(index)),
    };

    /// <summary>Writes the message into <paramref name="destination"/>; false (nothing usable written) when it does not fit.</summary>
    public bool TryFormat(Span<char> destination, out int charsWritten) =>
        destination.TryWrite(CultureInfo.InvariantCulture,
            $"{_requestId} {_dialect} model={_model} status={_status} outcome={_outcome} team={_teamId} key={_keyId} ttft_ms={_ttftMs} duration_ms={_durationMs} tokens_in={_tokensIn} tokens_out={_tokensOut} error={_errorCode}",
            out charsWritten);

    /// <summary>The message, as the generated state wrote it (invariant culture, absent values empty).</summary>
    public override string ToString()
    {
        // Ids and names are bounded (the model is cut to 100 characters), so this rarely needs more than one try.
        var length = 512;
        while (true)
        {
            var buffer = ArrayPool<char>.Shared.Rent(length);
            try
            {
                if (TryFormat(buffer, out var written))
                {
                    return new string(buffer, 0, written);
                }
            }
            finally
            {
                ArrayPool<char>.Shared.Return(buffer);
            }

            length *= 2;
        }
    }

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        for (var i = 0; i < Count; i++)
        {
            yield return this[i];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
