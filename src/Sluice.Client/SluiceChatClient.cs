using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Sluice.Client.Internal;

namespace Sluice.Client;

/// <summary>
/// An <see cref="IChatClient"/> for a Sluice gateway or any OpenAI-compatible server (<c>POST /v1/chat/completions</c>
/// with <c>stream: true</c>). Answers stream as <see cref="ChatResponseUpdate"/>s: text as it arrives, tool calls
/// assembled into <see cref="FunctionCallContent"/>s, the finish reason, and usage as <see cref="UsageContent"/>.
/// </summary>
/// <remarks>
/// <para>Failures are typed (<see cref="SluiceException"/> subclasses) and carry the server's message, code, param and
/// request id. Time limits apply per phase (<see cref="SluiceClientOptions"/>): connect, first token, idle between
/// events, total. Connection failures, 408, 429 and 5xx are retried before the first token (honouring
/// <c>Retry-After</c>); a stream whose connection drops is resumed from the last event id when the server supports
/// it (Sluice's <c>x-sluice-stream-id</c>), so the caller sees one seamless stream.</para>
/// <para>Thread-safe: one instance (one connection pool) serves any number of concurrent calls.</para>
/// <para><see cref="ChatOptions.AdditionalProperties"/> entries are sent as extra top-level request fields, e.g.
/// <c>["metadata"] = new Dictionary&lt;string, string&gt; { ... }</c> or <c>["user"] = "alice"</c>.</para>
/// </remarks>
public sealed class SluiceChatClient : IChatClient
{
    private readonly SluiceTransport _transport;

    /// <summary>Creates a client.</summary>
    /// <param name="options">Where to connect and how patient to be (copied; later changes have no effect).</param>
    /// <param name="httpClient">
    /// An <see cref="HttpClient"/> to use (e.g. from <c>IHttpClientFactory</c>), not disposed by this client. Set its
    /// <c>Timeout</c> to <see cref="Timeout.InfiniteTimeSpan"/>: streams are bounded by the options' own limits.
    /// Null to let the client own one.
    /// </param>
    /// <exception cref="ArgumentException">An option is out of range.</exception>
    public SluiceChatClient(SluiceClientOptions options, HttpClient? httpClient = null)
    {
        _transport = new SluiceTransport(options, httpClient);
        Metadata = new ChatClientMetadata("sluice", _transport.Endpoints.Root, _transport.Options.DefaultModel);
    }

    /// <summary>Creates a client for <paramref name="endpoint"/> with default limits.</summary>
    /// <param name="endpoint">The server, e.g. <c>http://127.0.0.1:8080</c>.</param>
    /// <param name="apiKey">The API key, or null.</param>
    /// <param name="defaultModel">The model used when a call names none, or null for the server's default.</param>
    public SluiceChatClient(Uri endpoint, string? apiKey = null, string? defaultModel = null)
        : this(new SluiceClientOptions { Endpoint = endpoint, ApiKey = apiKey, DefaultModel = defaultModel })
    {
    }

    /// <summary>Provider name <c>sluice</c>, the server root and the default model.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <summary>The chat-completions URL requests go to.</summary>
    public Uri ChatCompletionsUrl => _transport.Endpoints.ChatCompletions;

    /// <summary>
    /// A handler with <see cref="SluiceClientOptions.ConnectTimeout"/> applied and a connection pool suited to long
    /// streams, for callers that build their own <see cref="HttpClient"/>.
    /// </summary>
    /// <param name="options">The options to take the connect timeout from.</param>
    public static SocketsHttpHandler CreateHttpHandler(SluiceClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return SluiceTransport.CreateHandler(options);
    }

    /// <summary>Streams the answer to <paramref name="messages"/>.</summary>
    /// <param name="messages">The conversation (text, function calls and function results).</param>
    /// <param name="options">Model, sampling, stop sequences, seed, tools and tool mode; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the call (the HTTP request is aborted at once).</param>
    /// <returns>The updates, as they arrive.</returns>
    /// <exception cref="SluiceException">The call failed; the subclass says how.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages,
        ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var payload = ChatRequestWriter.Write(messages, options, _transport.Options.DefaultModel, stream: true);
        await foreach (var update in UpdateAssembler.StreamAsync(_transport, _transport.Endpoints.ChatCompletions, payload, cancellationToken).ConfigureAwait(false))
        {
            yield return update;
        }
    }

    /// <summary>Gets the whole answer to <paramref name="messages"/> (streamed underneath, so every limit, retry and resume applies).</summary>
    /// <param name="messages">The conversation.</param>
    /// <param name="options">Model, sampling and tool options; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The answer, with its finish reason, model, id and usage.</returns>
    /// <exception cref="SluiceException">The call failed; the subclass says how.</exception>
    public Task<ChatResponse> GetResponseAsync(
        IEnumerable<ChatMessage> messages,
        ChatOptions? options = null,
        CancellationToken cancellationToken = default) =>
        GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    /// <summary>Lists the models the server offers (<c>GET /v1/models</c>).</summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The models, in the server's order.</returns>
    /// <exception cref="SluiceException">The call failed.</exception>
    public async Task<IReadOnlyList<SluiceModelInfo>> ListModelsAsync(CancellationToken cancellationToken = default)
    {
        using var document = await _transport.SendJsonAsync(HttpMethod.Get, _transport.Endpoints.Models, null, idempotent: true, cancellationToken).ConfigureAwait(false);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array)
        {
            throw new SluiceServerException(
                $"GET {_transport.Endpoints.Models} did not answer a model list ({{\"data\": [...]}}). Check that the address points at a Sluice or OpenAI-compatible server.");
        }

        var models = new List<SluiceModelInfo>(data.GetArrayLength());
        foreach (var model in data.EnumerateArray())
        {
            models.Add(SluiceModelInfo.FromJson(model));
        }

        return models;
    }

    /// <summary>Returns <see cref="Metadata"/> for <see cref="ChatClientMetadata"/>, this client for its own type, else null.</summary>
    /// <param name="serviceType">The type asked for.</param>
    /// <param name="serviceKey">A key; this client answers only unkeyed requests.</param>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        if (serviceType == typeof(ChatClientMetadata))
        {
            return Metadata;
        }

        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Releases the connection pool (when the client created it).</summary>
    public void Dispose() => _transport.Dispose();
}

/// <summary>One entry of <c>GET /v1/models</c>.</summary>
/// <param name="Id">The name to ask for.</param>
/// <param name="OwnedBy">Who serves it (Sluice: the provider kind).</param>
/// <param name="Created">When it was registered, if the server says.</param>
/// <param name="Description">A sentence about it (Sluice).</param>
/// <param name="ContextWindow">Longest prompt plus answer, in tokens (Sluice).</param>
/// <param name="MaxOutputTokens">Largest answer, in tokens (Sluice).</param>
public sealed record SluiceModelInfo(string Id, string? OwnedBy, DateTimeOffset? Created, string? Description, int? ContextWindow, int? MaxOutputTokens)
{
    internal static SluiceModelInfo FromJson(JsonElement model) => new(
        Json.String(model, "id") ?? string.Empty,
        Json.String(model, "owned_by"),
        Json.Long(model, "created") is { } created ? DateTimeOffset.FromUnixTimeSeconds(created) : null,
        Json.String(model, "description"),
        (int?)Json.Long(model, "context_window"),
        (int?)Json.Long(model, "max_output_tokens"));
}
