using System.Buffers.Text;

namespace Sluice.Protocol.Chat;

/// <summary>
/// What the request parsers share about image and document parts: data URLs, base64 checks, media types and the
/// limits on their number and size (<see cref="ChatRequestLimits.MaxAttachments"/>,
/// <see cref="ChatRequestLimits.MaxAttachmentBytes"/>). Every refusal is a 400 naming the part.
/// </summary>
public static class ContentParts
{
    /// <summary>The image media types every provider that takes images accepts.</summary>
    public static IReadOnlyList<string> ImageMediaTypes { get; } = ["image/png", "image/jpeg", "image/gif", "image/webp"];

    /// <summary>The image and document parts of a request, in order.</summary>
    public static IEnumerable<ContentPart> Attachments(this ChatRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        foreach (var message in request.Messages)
        {
            if (message.Parts is not { } parts)
            {
                continue;
            }

            foreach (var part in parts)
            {
                if (part.IsAttachment)
                {
                    yield return part;
                }
            }
        }
    }

    /// <summary>Whether the request has any image or document part.</summary>
    public static bool HasAttachments(this ChatRequest request) => request.Attachments().Any();

    /// <summary>The first image or document part of a message, or null.</summary>
    public static ContentPart? FirstAttachment(this ChatMessage message) =>
        message?.Parts?.FirstOrDefault(p => p.IsAttachment);

    /// <summary>The text of the message's parts joined with <paramref name="separator"/> (its <see cref="ChatMessage.Content"/>).</summary>
    public static string JoinText(IEnumerable<ContentPart> parts, string separator) =>
        string.Join(separator, parts.Where(p => p.Kind == ContentPartKind.Text).Select(p => p.Text));

    /// <summary>
    /// Reads a <c>data:</c> URL (<c>data:image/png;base64,iVBOR…</c>) into its media type and base64 data, checked.
    /// </summary>
    /// <param name="url">The URL.</param>
    /// <param name="param">The parameter it came in, for errors.</param>
    /// <param name="limits">The size limit.</param>
    /// <param name="mediaType">The media type (lower case).</param>
    /// <param name="data">The base64 data.</param>
    /// <param name="byteCount">The decoded size.</param>
    /// <returns>False when <paramref name="url"/> is not a data URL.</returns>
    public static bool TryReadDataUrl(string url, string param, ChatRequestLimits limits, out string mediaType, out string data, out int byteCount)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(limits);
        mediaType = string.Empty;
        data = string.Empty;
        byteCount = 0;
        if (!url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        var comma = url.IndexOf(',', StringComparison.Ordinal);
        var header = comma < 0 ? string.Empty : url[5..comma];
        if (comma < 0 || !header.EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
        {
            throw ChatException.BadRequest(
                $"{param} is a data URL without base64 data; send \"data:<media type>;base64,<data>\", e.g. data:image/png;base64,iVBORw0….",
                param, "invalid_value");
        }

        mediaType = header[..^7].ToLowerInvariant();
        if (mediaType.Length == 0)
        {
            throw ChatException.BadRequest(
                $"{param} is a data URL without a media type; send \"data:image/png;base64,…\" (or the right type for the file).",
                param, "invalid_value");
        }

        data = url[(comma + 1)..];
        byteCount = CheckBase64(data, param, limits);
        return true;
    }

    /// <summary>Checks base64 data against the size limit; returns its decoded size.</summary>
    /// <exception cref="ChatException">Not base64, empty, or above <see cref="ChatRequestLimits.MaxAttachmentBytes"/>.</exception>
    public static int CheckBase64(string data, string param, ChatRequestLimits limits)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(limits);
        if (data.Length == 0 || !Base64.IsValid(data.AsSpan(), out var decoded))
        {
            throw ChatException.BadRequest(
                $"{param} is not valid base64 data. Encode the file's bytes with standard base64 (no line breaks, no URL-safe alphabet).",
                param, "invalid_value");
        }

        CheckSize(decoded, param, limits);
        return decoded;
    }

    /// <summary>Refuses a part above <see cref="ChatRequestLimits.MaxAttachmentBytes"/>.</summary>
    public static void CheckSize(int byteCount, string param, ChatRequestLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        if (byteCount > limits.MaxAttachmentBytes)
        {
            throw ChatException.BadRequest(
                $"{param} is {byteCount} bytes; the limit is {limits.MaxAttachmentBytes} bytes per image or document (Limits:MaxAttachmentBytes). Send a smaller file, or a URL.",
                param, "attachment_too_large");
        }
    }

    /// <summary>Checks an http(s) URL; returns it.</summary>
    public static string CheckUrl(string url, string param)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw ChatException.BadRequest(
                $"{param} must be an http(s) URL or a data URL (data:<media type>;base64,…).",
                param, "invalid_value");
        }

        return url;
    }

    /// <summary>Refuses a media type that is not an image every provider takes.</summary>
    public static void CheckImageType(string mediaType, string param)
    {
        if (!ImageMediaTypes.Contains(mediaType, StringComparer.OrdinalIgnoreCase))
        {
            throw ChatException.BadRequest(
                $"{param} has media type \"{mediaType}\"; images must be {string.Join(", ", ImageMediaTypes)}.",
                param, "unsupported_value");
        }
    }

    /// <summary>
    /// The image type of base64 data from its first bytes (PNG, JPEG, GIF, WebP), for dialects that send images without
    /// one (Ollama); null when it is none of these.
    /// </summary>
    public static string? SniffImageType(string base64)
    {
        ArgumentNullException.ThrowIfNull(base64);
        Span<byte> head = stackalloc byte[12];
        var prefix = base64.Length >= 16 ? base64[..16] : base64;
        if (!Convert.TryFromBase64String(prefix, head, out var written))
        {
            return null;
        }

        head = head[..written];
        return head switch
        {
            [0x89, (byte)'P', (byte)'N', (byte)'G', ..] => "image/png",
            [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
            [(byte)'G', (byte)'I', (byte)'F', (byte)'8', ..] => "image/gif",
            [(byte)'R', (byte)'I', (byte)'F', (byte)'F', _, _, _, _, (byte)'W', (byte)'E', (byte)'B', (byte)'P', ..] => "image/webp",
            _ => null,
        };
    }

    /// <summary>The media type a URL's file extension suggests (for providers that need one with a URL), or null.</summary>
    public static string? MediaTypeFromUrl(string url)
    {
        ArgumentNullException.ThrowIfNull(url);
        var path = Uri.TryCreate(url, UriKind.Absolute, out var uri) ? uri.AbsolutePath : url;
        return Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".png" => "image/png",
            ".jpg" or ".jpeg" => "image/jpeg",
            ".gif" => "image/gif",
            ".webp" => "image/webp",
            ".pdf" => "application/pdf",
            ".txt" => "text/plain",
            _ => null,
        };
    }

    /// <summary>
    /// Counts image and document parts across one request and refuses the one past
    /// <see cref="ChatRequestLimits.MaxAttachments"/>.
    /// </summary>
    public sealed class Counter(ChatRequestLimits limits)
    {
        private int _count;

        /// <summary>Counts one more part at <paramref name="param"/>.</summary>
        public void Add(string param)
        {
            if (++_count > limits.MaxAttachments)
            {
                throw ChatException.BadRequest(
                    $"{param} is image or document number {_count}; the limit is {limits.MaxAttachments} per request (Limits:MaxAttachments). Send fewer, or split the request.",
                    param, "too_many_attachments");
            }
        }
    }
}
