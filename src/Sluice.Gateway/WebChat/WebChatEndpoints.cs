using System.Collections.Frozen;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Sluice.Gateway.Http;
using Microsoft.Net.Http.Headers;

namespace Sluice.Gateway.WebChat;

/// <summary>
/// Serves the web chat (plain HTML/CSS/JS embedded in this assembly) at <c>/</c> and <c>/webchat/…</c>. The files
/// are read once at start-up; each answer carries a strong ETag (304 on <c>If-None-Match</c>) and
/// <c>Cache-Control: no-cache</c>, so a browser revalidates cheaply and never runs a stale script after an upgrade.
/// Only these paths are served: every other non-API path keeps its JSON 404.
/// </summary>
internal sealed class WebChatEndpoints
{
    /// <summary>URL path → resource file name.</summary>
    private static readonly (string Path, string File)[] Routes =
    [
        ("/", "index.html"),
        ("/webchat/app.css", "app.css"),
        ("/webchat/app.js", "app.js"),
        ("/webchat/markdown.js", "markdown.js"),
    ];

    // The page needs nothing from elsewhere; the policy makes sure of it (and blocks injected scripts if the
    // Markdown renderer ever let one through).
    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    private readonly FrozenDictionary<string, Asset> _assets;

    public WebChatEndpoints()
    {
        var assembly = typeof(WebChatEndpoints).Assembly;
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (var (path, file) in Routes)
        {
            var name = "Sluice.Gateway.WebChat." + file;
            using var stream = assembly.GetManifestResourceStream(name)
                ?? throw new InvalidOperationException($"The web chat file '{name}' is not embedded in {assembly.GetName().Name}; rebuild the gateway.");
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            var bytes = copy.ToArray();
            var etag = "\"" + Convert.ToHexStringLower(SHA256.HashData(bytes).AsSpan(0, 12)) + "\"";
            assets[path] = new Asset(bytes, ContentTypeOf(file), etag);
        }

        _assets = assets.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>The paths served (for tests and docs).</summary>
    public static IEnumerable<string> Paths => Routes.Select(r => r.Path);

    public void Map(IEndpointRouteBuilder app)
    {
        foreach (var (path, _) in Routes)
        {
            var asset = _assets[path];

            // Outside the key guard: the page holds the key and sends it with each API call.
            app.MapMethods(path, [HttpMethods.Get, HttpMethods.Head], context => ServeAsync(context, asset)).WithPolicy(EndpointPolicy.Public);
        }
    }

    private static Task ServeAsync(HttpContext context, Asset asset)
    {
        var response = context.Response;
        var headers = response.Headers;
        headers.ETag = asset.ETag;
        headers.CacheControl = "no-cache";
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "no-referrer";
        if (asset.ContentType.StartsWith("text/html", StringComparison.Ordinal))
        {
            headers.ContentSecurityPolicy = ContentSecurityPolicy;
            headers.XFrameOptions = "DENY";
        }

        if (IsNotModified(context.Request, asset.ETag))
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return Task.CompletedTask;
        }

        response.ContentType = asset.ContentType;
        response.ContentLength = asset.Bytes.Length;
        return HttpMethods.IsHead(context.Request.Method)
            ? Task.CompletedTask
            : response.Body.WriteAsync(asset.Bytes, context.RequestAborted).AsTask();
    }

    private static bool IsNotModified(HttpRequest request, string etag)
    {
        var ifNoneMatch = request.Headers.IfNoneMatch;
        if (ifNoneMatch.Count == 0 || !EntityTagHeaderValue.TryParseList(ifNoneMatch, out var tags))
        {
            return false;
        }

        var ours = new EntityTagHeaderValue(etag);
        return tags.Any(t => t.Equals(EntityTagHeaderValue.Any) || t.Compare(ours, useStrongComparison: false));
    }

    private static string ContentTypeOf(string file) => Path.GetExtension(file) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        _ => "application/octet-stream",
    };

    private sealed record Asset(byte[] Bytes, string ContentType, string ETag);
}
