using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Sluice.Cli.Client;

namespace Sluice.Cli.Commands.Chat;

/// <summary>How one request went.</summary>
internal enum ChatOutcome
{
    /// <summary>The answer arrived whole.</summary>
    Completed,

    /// <summary>Ctrl+C stopped it.</summary>
    Cancelled,

    /// <summary>It failed; see <see cref="ChatStats.Error"/>.</summary>
    Failed,
}

/// <summary>
/// Measures one streamed answer: tokens (the server's usage when it reports one, else the number of text
/// deltas), time to first token, duration and generation speed.
/// </summary>
internal sealed class ChatStats
{
    private static readonly JsonWriterOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly long _start = Stopwatch.GetTimestamp();
    private long _firstToken;
    private long _end;

    public string? Model { get; set; }

    public int Deltas { get; private set; }

    public UsageUpdate? Usage { get; set; }

    public string? FinishReason { get; set; }

    /// <summary>The stored session the turn went to (<c>--session</c>), if any.</summary>
    public string? SessionId { get; set; }

    public ChatOutcome Outcome { get; private set; } = ChatOutcome.Completed;

    public ChatClientException? Error { get; private set; }

    /// <summary>Completion tokens: the server's count when it sent usage, otherwise the deltas seen.</summary>
    public int Tokens => Usage?.CompletionTokens ?? Deltas;

    public bool TokensFromUsage => Usage is not null;

    public TimeSpan? TimeToFirstToken => _firstToken == 0 ? null : Stopwatch.GetElapsedTime(_start, _firstToken);

    public TimeSpan Duration => Stopwatch.GetElapsedTime(_start, _end == 0 ? Stopwatch.GetTimestamp() : _end);

    /// <summary>Generation speed after the first token: (tokens − 1) over the time from first token to the end.</summary>
    public double? TokensPerSecond
    {
        get
        {
            if (_firstToken == 0 || Tokens < 2)
            {
                return null;
            }

            var generating = Stopwatch.GetElapsedTime(_firstToken, _end == 0 ? Stopwatch.GetTimestamp() : _end).TotalSeconds;
            return generating > 0 ? (Tokens - 1) / generating : null;
        }
    }

    /// <summary>
    /// The overall rate: tokens over the whole time from sending the request to the end, waiting for the first token
    /// included — what a user waiting for the answer experiences (the other figure is the model's generation speed).
    /// </summary>
    public double? OverallTokensPerSecond
    {
        get
        {
            if (_firstToken == 0 || Tokens < 1)
            {
                return null;
            }

            var total = Duration.TotalSeconds;
            return total > 0 ? Tokens / total : null;
        }
    }

    public void DeltaArrived()
    {
        if (_firstToken == 0)
        {
            _firstToken = Stopwatch.GetTimestamp();
        }

        Deltas++;
    }

    public void Complete() => Stop(ChatOutcome.Completed, null);

    public void Cancel() => Stop(ChatOutcome.Cancelled, null);

    public void Fail(ChatClientException error) => Stop(ChatOutcome.Failed, error);

    /// <summary>
    /// One line for people, e.g.
    /// <c>[sim-realistic] 300 tokens · first token 312 ms · 6.95 s · 45.2 tokens/s after first token · 43.2 tokens/s overall</c>.
    /// </summary>
    public string ToText()
    {
        var text = new StringBuilder(128);
        if (Model is not null)
        {
            text.Append('[').Append(Model).Append("] ");
        }

        text.Append(Outcome switch
        {
            ChatOutcome.Cancelled => "cancelled after ",
            ChatOutcome.Failed => "failed after ",
            _ => string.Empty,
        });
        text.Append(Tokens.ToString(CultureInfo.InvariantCulture)).Append(Tokens == 1 ? " token" : " tokens");
        if (!TokensFromUsage)
        {
            text.Append(" (counted)");
        }

        text.Append(" · first token ").Append(TimeToFirstToken is { } ttft ? FormatDuration(ttft) : "none");
        text.Append(" · ").Append(FormatDuration(Duration));
        if (TokensPerSecond is { } rate)
        {
            text.Append(" · ").Append(rate.ToString("0.0", CultureInfo.InvariantCulture)).Append(" tokens/s after first token");
        }

        if (OverallTokensPerSecond is { } overall)
        {
            text.Append(" · ").Append(overall.ToString("0.0", CultureInfo.InvariantCulture)).Append(" tokens/s overall");
        }

        if (FinishReason is "length")
        {
            text.Append(" · stopped at max tokens");
        }

        if (SessionId is not null)
        {
            text.Append(" · session ").Append(SessionId);
        }

        return text.ToString();
    }

    /// <summary>One JSON object (for <c>--json</c>); includes the error when the request failed.</summary>
    public string ToJson()
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, JsonOptions))
        {
            json.WriteStartObject();
            json.WriteString("status", Outcome switch
            {
                ChatOutcome.Cancelled => "cancelled",
                ChatOutcome.Failed => "failed",
                _ => "completed",
            });
            WriteStringOrNull(json, "model", Model);
            json.WriteNumber("tokens", Tokens);
            json.WriteString("tokens_source", TokensFromUsage ? "usage" : "deltas");
            json.WriteNumber("deltas", Deltas);
            if (Usage is { } usage)
            {
                json.WriteNumber("prompt_tokens", usage.PromptTokens);
            }
            else
            {
                json.WriteNull("prompt_tokens");
            }

            WriteNumberOrNull(json, "time_to_first_token_ms", TimeToFirstToken?.TotalMilliseconds);
            json.WriteNumber("duration_ms", Math.Round(Duration.TotalMilliseconds, 3));
            WriteNumberOrNull(json, "tokens_per_second", TokensPerSecond);
            WriteNumberOrNull(json, "overall_tokens_per_second", OverallTokensPerSecond);
            WriteStringOrNull(json, "finish_reason", FinishReason);
            if (SessionId is not null)
            {
                json.WriteString("session_id", SessionId);
            }

            if (Error is { } error)
            {
                json.WriteStartObject("error");
                json.WriteString("kind", KindName(error.Kind));
                if (error.StatusCode is { } status)
                {
                    json.WriteNumber("http_status", status);
                }
                else
                {
                    json.WriteNull("http_status");
                }

                WriteStringOrNull(json, "code", error.Error?.Code);
                WriteStringOrNull(json, "param", error.Error?.Param);
                json.WriteString("message", error.Message);
                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static string KindName(ChatFailureKind kind) => kind switch
    {
        ChatFailureKind.Connection => "connection",
        ChatFailureKind.Client => "client_error",
        ChatFailureKind.Server => "server_error",
        ChatFailureKind.MidStream => "mid_stream",
        _ => "timeout",
    };

    private static string FormatDuration(TimeSpan duration) => duration.TotalMilliseconds < 1000
        ? duration.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture) + " ms"
        : duration.TotalSeconds.ToString("0.00", CultureInfo.InvariantCulture) + " s";

    private static void WriteStringOrNull(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, value);
        }
    }

    private static void WriteNumberOrNull(Utf8JsonWriter json, string name, double? value)
    {
        if (value is { } number)
        {
            json.WriteNumber(name, Math.Round(number, 3));
        }
        else
        {
            json.WriteNull(name);
        }
    }

    private void Stop(ChatOutcome outcome, ChatClientException? error)
    {
        if (_end == 0)
        {
            _end = Stopwatch.GetTimestamp();
        }

        Outcome = outcome;
        Error = error;
    }
}
