using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;

namespace Sluice.Providers.Upstream;

/// <summary>Reading helpers shared by the provider adapters.</summary>
internal static class UpstreamStreaming
{
    /// <summary>
    /// Opens the body of a response from <see cref="UpstreamTransport.SendAsync"/> for streaming. Synchronous: the
    /// handler's response content already holds its stream, and an async step here was one more state machine and a
    /// task per call (the caller awaits the send itself).
    /// </summary>
    public static UpstreamResponse Open(HttpResponseMessage response, UpstreamCall call, UpstreamTransport transport)
    {
        try
        {
            return new UpstreamResponse(response, response.Content.ReadAsStream(call.Token));
        }
        catch (Exception ex) when (IsTransportFailure(ex, call))
        {
            response.Dispose();
            throw Translate(ex, call, transport);
        }
    }

    /// <summary>Largest whole (non-streamed) answer read from an upstream, e.g. the vectors of a large embeddings batch.</summary>
    public const int MaxWholeAnswerBytes = 256 * 1024 * 1024;

    /// <summary>
    /// Sends <paramref name="body"/> and reads the whole JSON answer (embeddings, non-streamed completions), under the
    /// model's time limits: the first-token limit until the headers arrive, then the idle limit between reads. Errors
    /// are mapped like a stream's before its first event.
    /// </summary>
    public static async Task<byte[]> ExchangeAsync(
        UpstreamTransport transport, Uri uri, ReadOnlyMemory<byte> body, CancellationToken cancellationToken, KeyValuePair<string, string>? header = null)
    {
        using var call = new UpstreamCall(transport, cancellationToken);
        using var response = await transport.SendAsync(uri, body, call, "application/json", header).ConfigureAwait(false);
        call.MarkAnswerStarted();
        try
        {
            await using var stream = await response.Content.ReadAsStreamAsync(call.Token).ConfigureAwait(false);
            using var buffer = new MemoryStream();
            var chunk = new byte[16 * 1024];
            int read;
            while (true)
            {
                call.ReadStarting();
                try
                {
                    read = await stream.ReadAsync(chunk, call.Token).ConfigureAwait(false);
                }
                finally
                {
                    call.ReadEnded();
                }

                if (read == 0)
                {
                    break;
                }

                if (buffer.Length + read > MaxWholeAnswerBytes)
                {
                    throw transport.Malformed($"its answer is larger than {MaxWholeAnswerBytes} bytes; ask for fewer inputs per request");
                }

                buffer.Write(chunk, 0, read);
            }

            return buffer.ToArray();
        }
        catch (Exception ex) when (IsTransportFailure(ex, call))
        {
            throw Translate(ex, call, transport);
        }
    }

    /// <summary>
    /// The token count in a provider's counting answer (<c>{"input_tokens": 12}</c>, <c>{"totalTokens": 12}</c>): the
    /// non-negative integer <paramref name="property"/>; anything else is a malformed answer (502).
    /// </summary>
    public static int ReadTokenCount(byte[] answer, string property, UpstreamTransport transport)
    {
        try
        {
            using var document = JsonDocument.Parse(answer);
            if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty(property, out var count)
                && count.ValueKind == JsonValueKind.Number && count.TryGetInt32(out var tokens) && tokens >= 0)
            {
                return tokens;
            }
        }
        catch (JsonException ex)
        {
            throw transport.Malformed($"its token count answer is not valid JSON (\"{Excerpt(answer)}\")", ex);
        }

        throw transport.Malformed($"its token count answer has no {property} (\"{Excerpt(answer)}\")");
    }

    /// <summary>
    /// Reads the next upstream record, turning time-outs into 504s and broken connections or bad framing into
    /// 502s. Client cancellation stays an <see cref="OperationCanceledException"/>.
    /// </summary>
    /// <remarks>
    /// A record already in the read buffer (nearly every one of a fast upstream's answer: one read holds dozens) is
    /// returned without running an async method; only a read of the body goes through one.
    /// </remarks>
    public static ValueTask<bool> NextAsync(UpstreamEventReader reader, UpstreamCall call, UpstreamTransport transport)
    {
        ValueTask<bool> read;
        try
        {
            // The call's idle limit is told about each read by the reader itself (its Watch).
            read = reader.ReadAsync(call.Token);
        }
        catch (Exception ex) when (ex is UpstreamFormatException || IsTransportFailure(ex, call))
        {
            throw Translate(ex, call, transport);
        }

        return read.IsCompletedSuccessfully ? read : AwaitReadAsync(read, call, transport);
    }

    /// <remarks>
    /// Pooled: a paced stream's read waits for the next chunk (up to a second or more), so a fresh box per read lived
    /// long enough to be promoted at every collection (with 8,000 streams open, this method's and the reader's boxes
    /// were half of the ~3 MB each gen-0 collection promoted).
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<bool> AwaitReadAsync(ValueTask<bool> read, UpstreamCall call, UpstreamTransport transport)
    {
        try
        {
            return await read.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is UpstreamFormatException || IsTransportFailure(ex, call))
        {
            throw Translate(ex, call, transport);
        }
    }

    /// <summary>
    /// The error for a stream that ended without its end marker: the upstream's own error if it wrote one as
    /// plain JSON (Gemini does, mid-stream), otherwise "ended early".
    /// </summary>
    public static ChatException EndedEarly(UpstreamEventReader reader, UpstreamTransport transport, string marker) =>
        StrayError(reader, transport) ?? (reader.StrayText.IsEmpty
            ? transport.EndedEarly(marker)
            : transport.Malformed($"it sent lines that are not Server-Sent Events: \"{Excerpt(reader.StrayText)}\""));

    /// <summary>The upstream's error when the lines outside SSE events form a JSON error object; otherwise null.</summary>
    public static ChatException? StrayError(UpstreamEventReader reader, UpstreamTransport transport)
    {
        var stray = reader.StrayText.Trim(" \t\r\n"u8);
        if (stray.IsEmpty || stray[0] is not ((byte)'{' or (byte)'['))
        {
            return null;
        }

        var (message, code, status) = ErrorOf(stray);
        return message is null && code is null ? null : transport.StreamError(message, code, status);
    }

    /// <summary>Reads <c>{"error": …}</c> in OpenAI, Anthropic, Gemini or Ollama shape; all null when it is not one.</summary>
    public static (string? Message, string? Code, int? Status) ErrorOf(ReadOnlySpan<byte> json)
    {
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!reader.Read())
            {
                return (null, null, null);
            }

            if (reader.TokenType == JsonTokenType.StartArray && !reader.Read())
            {
                return (null, null, null);
            }

            if (reader.TokenType != JsonTokenType.StartObject)
            {
                return (null, null, null);
            }

            var depth = reader.CurrentDepth;
            while (reader.Read() && !(reader.TokenType == JsonTokenType.EndObject && reader.CurrentDepth == depth))
            {
                if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != depth + 1 || !reader.ValueTextEquals("error"u8))
                {
                    if (reader.TokenType == JsonTokenType.PropertyName)
                    {
                        reader.Read();
                        reader.Skip();
                    }

                    continue;
                }

                reader.Read();
                if (reader.TokenType == JsonTokenType.String)
                {
                    return (reader.GetString(), null, null);
                }

                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    return ("(no details)", null, null);
                }

                string? message = null;
                string? code = null;
                int? status = null;
                var errorDepth = reader.CurrentDepth;
                while (reader.Read() && !(reader.TokenType == JsonTokenType.EndObject && reader.CurrentDepth == errorDepth))
                {
                    if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != errorDepth + 1)
                    {
                        continue;
                    }

                    if (reader.ValueTextEquals("message"u8))
                    {
                        reader.Read();
                        message = reader.TokenType == JsonTokenType.String ? reader.GetString() : message;
                    }
                    else if (reader.ValueTextEquals("code"u8))
                    {
                        reader.Read();
                        if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var number))
                        {
                            status = number;
                        }
                        else if (reader.TokenType == JsonTokenType.String)
                        {
                            code ??= reader.GetString();
                        }
                    }
                    else if (reader.ValueTextEquals("status"u8) || reader.ValueTextEquals("type"u8))
                    {
                        reader.Read();
                        if (reader.TokenType == JsonTokenType.String)
                        {
                            code ??= reader.GetString();
                        }
                    }
                    else
                    {
                        reader.Read();
                        reader.Skip();
                    }
                }

                return (message ?? "(no message)", code, status);
            }
        }
        catch (JsonException)
        {
            // Not JSON after all: the caller reports the lines as they are.
        }

        return (null, null, null);
    }

    /// <summary>Rejects <c>n</c> &gt; 1 for providers that answer once per request.</summary>
    public static void RequireSingleChoice(ChatRequest request, UpstreamTransport transport)
    {
        if (request.N > 1)
        {
            throw ChatException.BadRequest(
                $"Model \"{transport.Options.Name}\" ({transport.ProviderLabel}) writes one answer per request (n = {request.N}). Send n = 1, or several requests.",
                "n", "unsupported_value");
        }
    }

    /// <summary>A short, printable excerpt of upstream bytes for error messages.</summary>
    public static string Excerpt(ReadOnlySpan<byte> bytes)
    {
        var text = Encoding.UTF8.GetString(bytes[..Math.Min(bytes.Length, 160)]).ReplaceLineEndings(" ").Trim();
        return bytes.Length > 160 ? text + "…" : text;
    }

    /// <summary>A new tool-call id for providers that send none (<c>call_</c> + 24 letters and digits, like OpenAI's).</summary>
    public static string NewToolCallId() => "call_" + Random.Shared.GetString("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 24);

    private static bool IsTransportFailure(Exception ex, UpstreamCall call) =>
        ex is IOException or HttpRequestException or ObjectDisposedException
        || (ex is OperationCanceledException && call.TimedOut);

    private static Exception Translate(Exception ex, UpstreamCall call, UpstreamTransport transport)
    {
        if (ex is UpstreamFormatException format)
        {
            return transport.Malformed(format.Message, format);
        }

        if (call.TimedOut)
        {
            return call.TimeoutError();
        }

        return call.Token.IsCancellationRequested ? new OperationCanceledException(call.Token) : transport.Broken(ex);
    }
}
