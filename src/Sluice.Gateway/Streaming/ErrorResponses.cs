using System.Globalization;
using Microsoft.AspNetCore.Http;
using Sluice.Protocol;
using Sluice.Protocol.OpenAI;

namespace Sluice.Gateway.Streaming;

/// <summary>Writes OpenAI-style HTTP error responses.</summary>
internal static class ErrorResponses
{
    public static Task WriteAsync(HttpContext context, ChatException error) =>
        WriteAsync(context, error.StatusCode, error.Error, error.RetryAfter);

    public static async Task WriteAsync(HttpContext context, int statusCode, ErrorInfo error, TimeSpan? retryAfter = null)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            return;
        }

        response.StatusCode = statusCode;
        response.ContentType = "application/json";
        if (retryAfter is { } delay)
        {
            response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(delay.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        }

        OpenAIErrorWriter.Write(response.BodyWriter, error);
        await response.BodyWriter.FlushAsync(context.RequestAborted);
    }
}
