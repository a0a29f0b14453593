using System.Buffers;
using System.Text.Json;
using Sluice.Mqtt;
using Sluice.Protocol;
using Sluice.Protocol.Chat;

namespace Sluice.Gateway.Mqtt;

/// <summary>A request message, validated: where to answer, and the chat request itself.</summary>
/// <param name="Id">The client's id, echoed in every answer message.</param>
/// <param name="ReplyTopic">Where the answer goes.</param>
/// <param name="ApiKey">The <c>api_key</c>, for the authentication hook.</param>
/// <param name="Stream">Whether the answer is streamed as chunks (the default) or sent as one message.</param>
/// <param name="Chat">The chat request, parsed by <see cref="ChatRequestParser"/> (empty for a cancel).</param>
/// <param name="Cancel">True for <c>{"id", "cancel": true}</c>: stop the running request with this id.</param>
internal sealed record MqttRequest(string Id, string ReplyTopic, string? ApiKey, bool Stream, ChatRequest Chat, bool Cancel = false);

/// <summary>
/// A request that cannot run. <see cref="ReplyTopic"/> is where the error goes, or null when the message gave no
/// usable address (then it is only logged).
/// </summary>
internal sealed class MqttRequestRejectedException(ErrorInfo error, string? id, string? replyTopic) : Exception(error.Message)
{
    public ErrorInfo Error { get; } = error;

    public string? Id { get; } = id;

    public string? ReplyTopic { get; } = replyTopic;
}

/// <summary>
/// Reads request messages: <c>{"id", "model", "messages" | "prompt", "max_tokens"?, "temperature"?, "tools"?, "stream"?,
/// "api_key"?, "reply_to"?}</c>, and cancels: <c>{"id", "cancel": true, "api_key"?}</c>. Everything except the MQTT envelope fields is OpenAI's request shape and goes
/// through <see cref="ChatRequestParser"/>; the envelope fields are removed first so they never reach an upstream.
/// </summary>
internal sealed class MqttRequestReader(MqttBridgeOptions options, ChatRequestLimits limits)
{
    /// <summary>Longest accepted id (it becomes a topic level and is echoed in every message).</summary>
    public const int MaxIdLength = 64;

    private const int MaxDepth = 64;
    private readonly string _requestFilter = options.RequestFilter;

    /// <exception cref="MqttRequestRejectedException">The message is not a request that can run.</exception>
    public MqttRequest Read(ReadOnlyMemory<byte> payload)
    {
        if (payload.Length > options.MaxRequestBytes)
        {
            var (id, replyTo) = ScanAddress(payload.Span[..options.MaxRequestBytes]);
            throw Reject(id, replyTo, new ErrorInfo(
                $"The request is {payload.Length} bytes; the limit is {options.MaxRequestBytes}. Send a shorter conversation or raise Mqtt:MaxRequestBytes.",
                ErrorTypes.InvalidRequest, null, "request_too_large"));
        }

        JsonDocument document;
        try
        {
            // Every string is checked here, so a lone surrogate or invalid UTF-8 is a refusal, not a failure later.
            document = JsonInput.Parse(
                payload, MaxDepth, "The request", "Publish one JSON object such as {\"id\": \"1\", \"model\": \"sim-fast\", \"prompt\": \"Hello\"}.");
        }
        catch (ChatException ex)
        {
            var (id, replyTo) = ScanAddress(payload.Span);
            throw Reject(id, replyTo, ex.Error);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Reject(null, null, new ErrorInfo("The request must be a JSON object.", ErrorTypes.InvalidRequest, null, "invalid_type"));
            }

            var id = ReadId(root, out var idError);
            var replyTopic = ReadReplyTo(root, out var replyError);
            if (idError is not null)
            {
                throw Reject(null, replyTopic, idError);
            }

            if (replyError is not null)
            {
                throw Reject(id, options.ResponseTopic(id!), replyError);
            }

            replyTopic ??= options.ResponseTopic(id!);
            var stream = true;
            if (root.TryGetProperty("stream", out var streamElement) && streamElement.ValueKind != JsonValueKind.Null)
            {
                stream = streamElement.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    _ => throw Reject(id, replyTopic, Invalid("stream must be a boolean (default true).", "stream", "invalid_type")),
                };
            }

            string? apiKey = null;
            if (root.TryGetProperty("api_key", out var keyElement) && keyElement.ValueKind != JsonValueKind.Null)
            {
                apiKey = keyElement.ValueKind == JsonValueKind.String
                    ? keyElement.GetString()
                    : throw Reject(id, replyTopic, Invalid("api_key must be a string.", "api_key", "invalid_type"));
            }

            if (root.TryGetProperty("cancel", out var cancel) && cancel.ValueKind != JsonValueKind.Null)
            {
                return cancel.ValueKind == JsonValueKind.True
                    ? new MqttRequest(id!, replyTopic, apiKey, stream, new ChatRequest { Model = string.Empty, Messages = [] }, Cancel: true)
                    : throw Reject(id, replyTopic, Invalid("cancel must be true (it stops the running request with this id).", "cancel", "invalid_type"));
            }

            if (!root.TryGetProperty("model", out var model) || model.ValueKind == JsonValueKind.Null
                || (model.ValueKind == JsonValueKind.String && model.GetString()!.Length == 0))
            {
                throw Reject(id, replyTopic, Invalid("model is required: name the model that should answer, e.g. \"model\": \"sim-fast\".", "model", "missing_required_parameter"));
            }

            ChatRequest chat;
            try
            {
                chat = Calls.CallDialect.OneAnswer(ChatRequestParser.Parse(ChatBody(root, stream), limits), "MQTT");
            }
            catch (ChatException ex)
            {
                throw Reject(id, replyTopic, ex.Error);
            }

            if (chat.N > 1)
            {
                throw Reject(id, replyTopic, Invalid("n must be 1 over MQTT: each request gets one answer.", "n", "unsupported_value"));
            }

            return new MqttRequest(id!, replyTopic, apiKey, stream, chat);
        }
    }

    /// <summary>
    /// Finds <c>id</c> and <c>reply_to</c> at the top level of a message that is too large or not valid JSON, reading
    /// as far as the JSON goes, so that even a broken request can be answered when its address is readable.
    /// </summary>
    internal (string? Id, string? ReplyTopic) ScanAddress(ReadOnlySpan<byte> payload)
    {
        string? id = null;
        string? replyTo = null;
        var reader = new Utf8JsonReader(payload, isFinalBlock: false, new JsonReaderState(new JsonReaderOptions { MaxDepth = 64 }));
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return (null, null);
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isId = reader.ValueTextEquals("id"u8);
                var isReplyTo = reader.ValueTextEquals("reply_to"u8);
                if (!reader.Read())
                {
                    break;
                }

                if (isId && reader.TokenType is JsonTokenType.String or JsonTokenType.Number)
                {
                    id = reader.TokenType == JsonTokenType.String ? reader.GetString() : System.Text.Encoding.UTF8.GetString(reader.ValueSpan);
                }
                else if (isReplyTo && reader.TokenType == JsonTokenType.String)
                {
                    replyTo = reader.GetString();
                }
                else if (!reader.TrySkip())
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // The JSON breaks here (or a string in it is not valid text); what was read before still counts.
        }

        var validId = id is not null && IdProblem(id) is null ? id : null;
        var validReply = replyTo is not null && ReplyToProblem(replyTo) is null ? replyTo : null;
        return (validId, validReply ?? (validId is null ? null : options.ResponseTopic(validId)));
    }

    private string? ReadId(JsonElement root, out ErrorInfo? error)
    {
        error = null;
        if (!root.TryGetProperty("id", out var element) || element.ValueKind == JsonValueKind.Null)
        {
            error = Invalid("id is required: give each request a short unique id (its answer goes to {prefix}/responses/{id}).", "id", "missing_required_parameter");
            return null;
        }

        // Numbers are accepted for small devices that count requests; they are echoed as strings.
        var id = element.ValueKind switch
        {
            JsonValueKind.String => element.GetString()!,
            JsonValueKind.Number => element.GetRawText(),
            _ => null,
        };
        if (id is null)
        {
            error = Invalid("id must be a string.", "id", "invalid_type");
            return null;
        }

        if (IdProblem(id) is { } problem)
        {
            error = Invalid(problem, "id", "invalid_value");
            return null;
        }

        return id;
    }

    private string? ReadReplyTo(JsonElement root, out ErrorInfo? error)
    {
        error = null;
        if (!root.TryGetProperty("reply_to", out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (element.ValueKind != JsonValueKind.String)
        {
            error = Invalid("reply_to must be a topic string.", "reply_to", "invalid_type");
            return null;
        }

        var topic = element.GetString()!;
        if (ReplyToProblem(topic) is { } problem)
        {
            error = Invalid(problem, "reply_to", "invalid_value");
            return null;
        }

        return topic;
    }

    private static string? IdProblem(string id) =>
        id.Length is 0 or > MaxIdLength || id.AsSpan().IndexOfAny('/', '+', '#') >= 0 || id.Any(char.IsControl)
            ? $"id must be 1–{MaxIdLength} printable characters without '/', '+' or '#' (it becomes the last level of the answer topic)."
            : null;

    private string? ReplyToProblem(string topic)
    {
        if (!MqttTopic.IsValidTopicName(topic))
        {
            return "reply_to must be a non-empty topic without '+' or '#'.";
        }

        // An answer published where requests are read would come back as a request.
        return MqttTopic.Matches(_requestFilter, topic) ? $"reply_to must not be under {options.Prefix}/requests/, where the bridge reads requests." : null;
    }

    /// <summary>The request without the MQTT envelope fields, with <c>stream</c> set, for <see cref="ChatRequestParser"/>.</summary>
    private static ReadOnlyMemory<byte> ChatBody(JsonElement root, bool stream)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            foreach (var property in root.EnumerateObject())
            {
                if (property.NameEquals("id"u8) || property.NameEquals("reply_to"u8) || property.NameEquals("api_key"u8) || property.NameEquals("stream"u8))
                {
                    continue;
                }

                property.WriteTo(json);
            }

            json.WriteBoolean("stream"u8, stream);
            json.WriteEndObject();
        }

        return buffer.WrittenMemory;
    }

    private static ErrorInfo Invalid(string message, string param, string code) => new(message, ErrorTypes.InvalidRequest, param, code);

    private static MqttRequestRejectedException Reject(string? id, string? replyTopic, ErrorInfo error) => new(error, id, replyTopic);
}
