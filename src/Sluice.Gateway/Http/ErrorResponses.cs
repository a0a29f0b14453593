using System.Globalization;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;

namespace Sluice.Gateway.Http;

/// <summary>Writes HTTP error responses in a dialect's shape (OpenAI unless told otherwise).</summary>
internal static class ErrorResponses
{
    public static Task WriteAsync(HttpContext context, ChatException error, ErrorDialect? dialect = null) =>
        WriteAsync(context, error.StatusCode, error.Error, error.RetryAfter, dialect);

    public static async Task WriteAsync(HttpContext context, int statusCode, ErrorInfo error, TimeSpan? retryAfter = null, ErrorDialect? dialect = null)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            return;
        }

        dialect ??= ErrorDialect.OpenAI;
        response.StatusCode = dialect.StatusFor(statusCode, error);
        response.ContentType = "application/json";
        if (retryAfter is { } delay)
        {
            response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(delay.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        }

        dialect.WriteBody(response.BodyWriter, statusCode, error);
        await response.BodyWriter.FlushAsync(context.RequestAborted);
    }
}
