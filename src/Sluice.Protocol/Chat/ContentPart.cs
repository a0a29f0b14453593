using System.Globalization;

namespace Sluice.Protocol.Chat;

/// <summary>What a content part is.</summary>
public enum ContentPartKind
{
    /// <summary>Text (also in <see cref="ChatMessage.Content"/>, joined with the message's other text parts).</summary>
    Text,

    /// <summary>An image (PNG, JPEG, GIF, WebP, …).</summary>
    Image,

    /// <summary>A document: a PDF (or other file) as bytes, a URL or a provider file id, or plain text.</summary>
    Document,
}

/// <summary>
/// One part of a message's content, in the order the client sent it: text, or an image or document given inline
/// (base64 <see cref="Data"/> with its <see cref="MediaType"/>), by <see cref="Url"/>, by a provider's
/// <see cref="FileId"/>, or — for plain-text documents — as <see cref="Text"/>. Dialects parse their own shapes into
/// these (OpenAI <c>image_url</c>/<c>file</c>, Anthropic <c>image</c>/<c>document</c>, Ollama <c>images</c>) and
/// upstream adapters write them in theirs.
/// </summary>
public sealed record ContentPart
{
    /// <summary>Text, image or document.</summary>
    public required ContentPartKind Kind { get; init; }

    /// <summary>The text of a text part, or of a plain-text document.</summary>
    public string? Text { get; init; }

    /// <summary>The media type, e.g. <c>image/png</c>, <c>application/pdf</c>, <c>text/plain</c> (null when unknown, e.g. for a URL).</summary>
    public string? MediaType { get; init; }

    /// <summary>The bytes, base64-encoded (no <c>data:</c> prefix), for inline parts.</summary>
    public string? Data { get; init; }

    /// <summary>An http(s) URL the provider fetches the part from.</summary>
    public string? Url { get; init; }

    /// <summary>A file id of the provider the client uploaded it to (OpenAI <c>file_id</c>); only that provider knows it.</summary>
    public string? FileId { get; init; }

    /// <summary>The file name (OpenAI <c>file.filename</c>) or document title (Anthropic <c>title</c>).</summary>
    public string? Filename { get; init; }

    /// <summary>OpenAI's image <c>detail</c> (<c>auto</c>, <c>low</c>, <c>high</c>), passed to OpenAI-compatible upstreams.</summary>
    public string? Detail { get; init; }

    /// <summary>The decoded size in bytes of <see cref="Data"/> (or the length of a plain-text document), for limits and estimates.</summary>
    public int ByteCount { get; init; }

    /// <summary>Where the part was in the client's request (e.g. <c>messages[0].content[1]</c>), named in errors.</summary>
    public string? Param { get; init; }

    /// <summary>Whether this is an image or a document rather than text.</summary>
    public bool IsAttachment => Kind != ContentPartKind.Text;

    /// <summary>A text part.</summary>
    public static ContentPart FromText(string text) => new() { Kind = ContentPartKind.Text, Text = text };

    /// <summary>
    /// Prompt tokens assumed for the part where a backend does not count (admission, estimates, simulated models): a
    /// text part's tokens; 85 per image (the base cost of an image at OpenAI's low detail); a document's text, or one
    /// token per 64 bytes of a binary document (at least 85). Real providers count differently, and report their counts.
    /// </summary>
    public int EstimatedTokens => Kind switch
    {
        ContentPartKind.Text => TokenCounter.Count(Text),
        ContentPartKind.Image => 85,
        _ when Text is not null => TokenCounter.Count(Text),
        _ => Math.Max(85, ByteCount / 64),
    };

    /// <summary>A short description for messages: <c>image (image/png, 12 KB)</c>, <c>document by URL</c>.</summary>
    public string Describe()
    {
        var what = Kind == ContentPartKind.Image ? "image" : Kind == ContentPartKind.Document ? "document" : "text";
        if (Url is not null)
        {
            return what + " by URL";
        }

        if (FileId is not null)
        {
            return $"{what} by file id \"{FileId}\"";
        }

        var size = ByteCount >= 1024
            ? (ByteCount / 1024.0).ToString("0.#", CultureInfo.InvariantCulture) + " KB"
            : ByteCount.ToString(CultureInfo.InvariantCulture) + " bytes";
        return $"{what} ({MediaType ?? "unknown type"}, {size})";
    }
}
