using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using Sluice.Protocol;

namespace Sluice.Gateway.Http;

/// <summary>Reads a request body into memory, refusing bodies over the configured limit with a 413.</summary>
internal static class RequestBody
{
    public static async ValueTask<ReadOnlyMemory<byte>> ReadAsync(HttpRequest request, long limit, CancellationToken cancellationToken)
    {
        if (request.ContentLength > limit)
        {
            throw TooLarge(limit);
        }

        // A compressed body would otherwise be refused as "not valid JSON" at its first byte, which names the wrong cause.
        if (request.Headers.ContentEncoding is { Count: > 0 } encoding && !string.Equals(encoding.ToString(), "identity", StringComparison.OrdinalIgnoreCase))
        {
            throw new ChatException(StatusCodes.Status415UnsupportedMediaType, new ErrorInfo(
                $"Content-Encoding '{encoding}' is not supported for request bodies: send the JSON uncompressed (no Content-Encoding header).",
                ErrorTypes.InvalidRequest, null, "unsupported_content_encoding"));
        }

        var reader = request.BodyReader;
        RequestBodyBudget.Lease? held = null;
        while (true)
        {
            ReadResult result;
            try
            {
                result = await reader.ReadAsync(cancellationToken);
            }
            catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                throw TooLarge(limit);
            }
            catch (BadHttpRequestException ex)
            {
                // Bad framing (e.g. a bad chunk size): the client's fault, said in its terms, never a 500.
                throw InvalidBody(ex.StatusCode is >= 400 and < 500 ? ex.StatusCode : StatusCodes.Status400BadRequest, ex);
            }
            catch (IOException ex) when (!cancellationToken.IsCancellationRequested)
            {
                // Kestrel reports a chunk size too large for 64 bits as an IOException ("Bad chunk size data"), not as a bad
                // request; the connection is still there, so it is the body's framing, not a vanished client.
                throw InvalidBody(StatusCodes.Status400BadRequest, ex);
            }

            var buffer = result.Buffer;
            if (buffer.Length > limit)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                throw TooLarge(limit);
            }

            if (buffer.Length > RequestBodyBudget.FreeBytes)
            {
                // A large body counts against its caller's share of request bytes held at once.
                held ??= request.HttpContext.RequestServices.GetService(typeof(RequestBodyBudget)) is RequestBodyBudget budget
                    ? budget.Open(request.HttpContext)
                    : null;
                try
                {
                    held?.GrowTo(buffer.Length);
                }
                catch (ChatException)
                {
                    // The rest of the body is not read: the connection closes after the answer instead of Kestrel draining
                    // (and holding) what the client still sends.
                    reader.AdvanceTo(buffer.End);
                    await reader.CompleteAsync();
                    request.HttpContext.Response.Headers.Connection = "close";
                    throw;
                }
            }

            if (result.IsCompleted)
            {
                var bytes = buffer.ToArray();
                reader.AdvanceTo(buffer.End);
                return bytes;
            }

            // Keep everything buffered until the body is complete.
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static ChatException InvalidBody(int status, Exception ex) => new(
        status,
        new ErrorInfo(
            $"The request body could not be read: {ex.Message.TrimEnd('.')}. Send a well-formed body (Content-Length or valid chunked encoding).",
            ErrorTypes.InvalidRequest, null, "invalid_body"),
        inner: ex);

    private static ChatException TooLarge(long limit) => new(
        StatusCodes.Status413PayloadTooLarge,
        new ErrorInfo(
            $"The request body is larger than {limit} bytes. Send a shorter conversation or raise Limits:MaxRequestBodyBytes.",
            ErrorTypes.InvalidRequest, null, "request_too_large"));
}
