namespace Sluice.Client.Internal;

/// <summary>The URLs derived from <see cref="SluiceClientOptions.Endpoint"/>.</summary>
internal sealed class SluiceEndpoints
{
    private readonly string _apiBase;
    private readonly string _root;

    public SluiceEndpoints(Uri endpoint)
    {
        var left = endpoint.GetLeftPart(UriPartial.Authority);
        var path = endpoint.AbsolutePath.TrimEnd('/');
        if (path.EndsWith("/chat/completions", StringComparison.OrdinalIgnoreCase))
        {
            // Accept the full chat URL too (what some tools call "the endpoint").
            path = path[..^"/chat/completions".Length];
        }

        // A bare address is a Sluice gateway (or any server serving /v1); a path is an OpenAI-style API base.
        _apiBase = left + (path.Length == 0 ? "/v1" : path);
        _root = left + (path.EndsWith("/v1", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path);
        Root = new Uri(_root + "/");
    }

    /// <summary>The server root, e.g. <c>http://127.0.0.1:8080/</c>.</summary>
    public Uri Root { get; }

    public Uri ChatCompletions => new(_apiBase + "/chat/completions");

    public Uri Models => new(_apiBase + "/models");

    public Uri Stream(string id) => new(_apiBase + "/streams/" + Uri.EscapeDataString(id));

    /// <summary>A path under the root, e.g. <c>/api/jobs/create</c>.</summary>
    public Uri Api(string path) => new(_root + path);
}
