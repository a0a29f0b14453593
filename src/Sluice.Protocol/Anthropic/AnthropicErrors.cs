using System.Buffers;
using System.Text.Json;
using Sluice.Protocol.OpenAI;

namespace Sluice.Protocol.Anthropic;

/// <summary>Anthropic's error types (the <c>error.type</c> of its error body).</summary>
public static class AnthropicErrorTypes
{
    /// <summary>400: the request is malformed.</summary>
    public const string InvalidRequest = "invalid_request_error";

    /// <summary>401: bad or missing API key.</summary>
    public const string Authentication = "authentication_error";

    /// <summary>402: a billing problem.</summary>
    public const string Billing = "billing_error";

    /// <summary>403: the key may not do this.</summary>
    public const string Permission = "permission_error";

    /// <summary>404: no such model or resource.</summary>
    public const string NotFound = "not_found_error";

    /// <summary>413: the request is too large.</summary>
    public const string RequestTooLarge = "request_too_large";

    /// <summary>429: too many requests.</summary>
    public const string RateLimit = "rate_limit_error";

    /// <summary>500: an unexpected server error.</summary>
    public const string Api = "api_error";

    /// <summary>504: the request timed out.</summary>
    public const string Timeout = "timeout_error";

    /// <summary>529: the service is overloaded; retry later.</summary>
    public const string Overloaded = "overloaded_error";

    /// <summary>Whether <paramref name="type"/> is one of Anthropic's error types.</summary>
    public static bool IsKnown(string? type) => type is InvalidRequest or Authentication or Billing or Permission or NotFound
        or RequestTooLarge or RateLimit or Api or Timeout or Overloaded;
}

/// <summary>
/// Translates Sluice's (OpenAI-shaped) errors to Anthropic's error body
/// <c>{"type": "error", "error": {"type", "message"}}</c> and status codes.
/// </summary>
public static class AnthropicErrors
{
    /// <summary>Anthropic's status for an overloaded service (clients retry it).</summary>
    public const int OverloadedStatus = 529;

    /// <summary>The Anthropic status and error type for an error Sluice would answer with <paramref name="status"/>.</summary>
    /// <remarks>
    /// An error that already carries an Anthropic type as its code (an Anthropic upstream's own error) keeps it.
    /// 503 becomes 529 <c>overloaded_error</c>, which is how Anthropic clients recognise "busy, retry later".
    /// </remarks>
    public static (int Status, string Type) Classify(int status, ErrorInfo error)
    {
        ArgumentNullException.ThrowIfNull(error);
        if (AnthropicErrorTypes.IsKnown(error.Code))
        {
            return error.Code == AnthropicErrorTypes.Overloaded ? (OverloadedStatus, error.Code!) : (status, error.Code!);
        }

        return status switch
        {
            401 => (status, AnthropicErrorTypes.Authentication),
            402 => (status, AnthropicErrorTypes.Billing),
            403 => (status, AnthropicErrorTypes.Permission),
            404 => (status, AnthropicErrorTypes.NotFound),
            413 => (status, AnthropicErrorTypes.RequestTooLarge),
            429 => (status, AnthropicErrorTypes.RateLimit),
            408 or 504 => (status, AnthropicErrorTypes.Timeout),
            503 or OverloadedStatus => (OverloadedStatus, AnthropicErrorTypes.Overloaded),
            < 500 => (status, AnthropicErrorTypes.InvalidRequest),
            _ when error.Type == ErrorTypes.Timeout => (504, AnthropicErrorTypes.Timeout),
            _ => (status, AnthropicErrorTypes.Api),
        };
    }

    /// <summary>The Anthropic error type for an error that has no HTTP status (one reported inside a stream).</summary>
    public static string TypeOf(ErrorInfo error)
    {
        ArgumentNullException.ThrowIfNull(error);
        if (AnthropicErrorTypes.IsKnown(error.Code))
        {
            return error.Code!;
        }

        return error.Type switch
        {
            ErrorTypes.InvalidRequest => AnthropicErrorTypes.InvalidRequest,
            ErrorTypes.Authentication => AnthropicErrorTypes.Authentication,
            ErrorTypes.Permission => AnthropicErrorTypes.Permission,
            ErrorTypes.RateLimit => AnthropicErrorTypes.RateLimit,
            ErrorTypes.Timeout => AnthropicErrorTypes.Timeout,
            _ => AnthropicErrorTypes.Api,
        };
    }

    /// <summary>Writes <c>{"type": "error", "error": {"type": …, "message": …}}</c>.</summary>
    public static void Write(Utf8JsonWriter json, string type, string message)
    {
        ArgumentNullException.ThrowIfNull(json);
        json.WriteStartObject();
        json.WriteString("type"u8, "error"u8);
        json.WriteStartObject("error"u8);
        json.WriteString("type"u8, type);
        json.WriteString("message"u8, message);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>Writes the error body as UTF-8 JSON into <paramref name="output"/>.</summary>
    public static void Write(IBufferWriter<byte> output, string type, string message)
    {
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        Write(json, type, message);
    }
}
