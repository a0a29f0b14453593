using System.Globalization;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.AI;
using Sluice.Client;
using Sluice.Client.Sessions;
using Sluice.Protocol;

namespace Sluice.Cli.Client;

/// <summary>
/// <c>sluice chat</c>'s view of a gateway, on <see cref="SluiceChatClient"/> (Sluice.Client): the SDK does the HTTP,
/// the per-phase time limits, retries before the first token and stream resume; this adapter turns its updates into
/// <see cref="ChatStreamUpdate"/>s and its typed errors into <see cref="ChatClientException"/>s whose messages name
/// the CLI's options and config keys. Cancelling the caller's token surfaces as <see cref="OperationCanceledException"/>.
/// </summary>
internal sealed class ChatStreamClient : IDisposable
{
    /// <summary>How long Ctrl+C waits for the gateway to confirm it stopped the generation.</summary>
    internal static readonly TimeSpan CancelWait = TimeSpan.FromSeconds(2);

    private readonly ChatClientSettings _settings;
    private readonly IChatClient _client;
    private readonly bool _sessions;
    private readonly StreamIdTrace _trace;
    private readonly HttpClient _cancelHttp;

    /// <summary>Creates the client and its HTTP connection pool.</summary>
    /// <param name="settings">Where and how to connect.</param>
    /// <param name="trace">Sees every raw request and event (<c>--debug</c>), or null.</param>
    /// <param name="useSessions">
    /// Turns go to a stored session on the gateway (<c>--session</c>): only the newest message is sent, the gateway keeps
    /// the history; <see cref="SessionId"/> names the session (null: the first turn creates one).
    /// </param>
    /// <exception cref="ChatClientConfigException">The URL in <paramref name="settings"/> is not usable.</exception>
    public ChatStreamClient(ChatClientSettings settings, ISluiceTrace? trace = null, bool useSessions = false)
    {
        ArgumentNullException.ThrowIfNull(settings);
        _settings = settings;
        Endpoint = settings.ResolveEndpoint();
        _trace = new StreamIdTrace(trace);
        _cancelHttp = new HttpClient { Timeout = CancelWait };
        if (!string.IsNullOrEmpty(settings.ApiKey))
        {
            _cancelHttp.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", settings.ApiKey);
        }

        var options = new SluiceClientOptions
        {
            Endpoint = Endpoint,
            ApiKey = settings.ApiKey,
            ConnectTimeout = settings.ConnectTimeout,
            FirstTokenTimeout = settings.FirstTokenTimeout,
            IdleTimeout = settings.IdleTimeout,
            TotalTimeout = settings.TotalTimeout,
            Trace = _trace,
        };
        _sessions = useSessions;
        _client = useSessions ? new SessionsChatClient(new SluiceSessionsClient(options)) : new SluiceChatClient(options);
    }

    /// <summary>The chat-completions URL requests go to.</summary>
    public Uri Endpoint { get; }

    /// <summary>With sessions: the session turns go to (set by the first turn when it created one).</summary>
    public string? SessionId { get; set; }

    /// <summary>Sends <paramref name="request"/> and yields the answer as it arrives.</summary>
    /// <exception cref="ChatClientException">The request failed; the kind says how.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async IAsyncEnumerable<ChatStreamUpdate> StreamAsync(
        ChatStreamRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var messages = request.Messages.Select(turn => new ChatMessage(new ChatRole(turn.Role), turn.Content)).ToList();
        var options = new ChatOptions
        {
            ModelId = request.Model,
            MaxOutputTokens = request.MaxTokens,
            Temperature = (float?)request.Temperature,
            Seed = request.Seed,
            ConversationId = _sessions ? SessionId : null,
        };
        if (request.Metadata is { Count: > 0 } metadata)
        {
            options.AdditionalProperties = new AdditionalPropertiesDictionary { ["metadata"] = metadata };
        }

        _trace.Reset();
        var updates = _client.GetStreamingResponseAsync(messages, options, cancellationToken).GetAsyncEnumerator(cancellationToken);
        await using (updates.ConfigureAwait(false))
        {
            var modelSent = false;
            var sessionSent = false;
            while (await MoveNextAsync(updates, cancellationToken).ConfigureAwait(false))
            {
                var update = updates.Current;
                if (_sessions && !sessionSent && update.ConversationId is { } session)
                {
                    sessionSent = true;
                    SessionId = session;
                    yield return new SessionUpdate(session);
                }

                if (update.ModelId is { } model && !modelSent)
                {
                    modelSent = true;
                    yield return new ModelUpdate(model);
                }

                if (update.Text.Length > 0)
                {
                    yield return new ContentUpdate(update.Text);
                }

                if (update.FinishReason is { } finish)
                {
                    yield return new FinishUpdate(finish.Value);
                }

                foreach (var usage in update.Contents.OfType<UsageContent>())
                {
                    yield return new UsageUpdate((int)(usage.Details.InputTokenCount ?? 0), (int)(usage.Details.OutputTokenCount ?? 0));
                }
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _client.Dispose();
        _cancelHttp.Dispose();
    }

    /// <summary>
    /// Cancels the current stream's generation on the gateway (<c>DELETE /v1/streams/{id}</c>) and waits for the
    /// answer, at most <see cref="CancelWait"/>. Sluice.Client sends the same request when the caller cancels, but
    /// without waiting: a process that exits right after can lose it, and the gateway then finishes (and bills) an
    /// answer nobody reads. Returns whether the gateway confirmed.
    /// </summary>
    public async Task<bool> CancelOnServerAsync()
    {
        if (_trace.StreamId is not { } id)
        {
            return false; // no stream id yet: the gateway stops a stream whose client left before learning it
        }

        var root = Endpoint.AbsolutePath;
        var cut = root.LastIndexOf("/chat/completions", StringComparison.OrdinalIgnoreCase);
        var v1 = cut >= 0 ? root[..cut] : "/v1";
        var url = new UriBuilder(Endpoint) { Path = $"{v1}/streams/{Uri.EscapeDataString(id)}", Query = string.Empty }.Uri;
        try
        {
            using var response = await _cancelHttp.DeleteAsync(url).ConfigureAwait(false);

            // 404: already finished, or already cancelled by Sluice.Client's own request — nothing left running.
            return response.IsSuccessStatusCode || response.StatusCode == System.Net.HttpStatusCode.NotFound;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return false; // best effort within the bound: the gateway's grace period ends the stream anyway
        }
    }

    /// <summary>The sessions client as an <see cref="IChatClient"/> that also owns it.</summary>
    private sealed class SessionsChatClient(SluiceSessionsClient sessions) : IChatClient
    {
        private readonly IChatClient _chat = sessions.AsChatClient();

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            _chat.GetResponseAsync(messages, options, cancellationToken);

        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
            IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            _chat.GetStreamingResponseAsync(messages, options, cancellationToken);

        public object? GetService(Type serviceType, object? serviceKey = null) => _chat.GetService(serviceType, serviceKey);

        public void Dispose() => sessions.Dispose();
    }

    private async ValueTask<bool> MoveNextAsync(IAsyncEnumerator<ChatResponseUpdate> updates, CancellationToken cancellationToken)
    {
        try
        {
            return await updates.MoveNextAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await CancelOnServerAsync().ConfigureAwait(false);
            throw;
        }
        catch (SluiceException ex)
        {
            throw Translate(ex);
        }
    }

    /// <summary>The SDK's error as the CLI reports it: same class, messages that name --url and the config keys.</summary>
    private ChatClientException Translate(SluiceException ex)
    {
        var details = ex.Details;
        var error = details.Message is null && details.Code is null
            ? null
            : new ErrorInfo(details.Message ?? string.Empty, details.Type ?? ErrorTypes.Server, details.Param, details.Code);
        var retryAfter = ex switch
        {
            SluiceRateLimitException rate => rate.RetryAfter,
            SluiceServerException server => server.RetryAfter,
            _ => null,
        };

        switch (ex)
        {
            case SluiceTimeoutException timeout:
                return new ChatClientException(ChatFailureKind.Timeout, DescribeTimeout(timeout), details.StatusCode, error, inner: ex);
            case SluiceConnectionException connection:
                return DescribeConnectFailure(connection);
            case SluiceStreamException:
                return new ChatClientException(ChatFailureKind.MidStream, CliMessages.FromClient(ex.Message), details.StatusCode, error, inner: ex);
        }

        var status = details.StatusCode ?? 0;
        if (status is < 300)
        {
            return new ChatClientException(
                ChatFailureKind.Server,
                CliMessages.FromClient(ex.Message),
                details.StatusCode,
                error,
                inner: ex);
        }

        var kind = status is >= 400 and < 500 ? ChatFailureKind.Client : ChatFailureKind.Server;
        return new ChatClientException(kind, DescribeHttpError(status, error, details.Message, retryAfter), status, error, retryAfter, ex);
    }

    private string DescribeTimeout(SluiceTimeoutException timeout) => timeout.Kind switch
    {
        SluiceTimeoutKind.Total =>
            $"The request took longer than {ChatClientSettings.Describe(_settings.TotalTimeout)} (TotalTimeoutSeconds). Lower --max-tokens, or raise TotalTimeoutSeconds in the client config.",
        SluiceTimeoutKind.Idle =>
            $"The stream went silent for {ChatClientSettings.Describe(_settings.IdleTimeout)} (IdleTimeoutSeconds); the answer is incomplete. Retry, or raise IdleTimeoutSeconds in the client config.",
        SluiceTimeoutKind.FirstToken =>
            $"No token arrived within {ChatClientSettings.Describe(_settings.FirstTokenTimeout)} (FirstTokenTimeoutSeconds). The model may be busy: retry, or raise FirstTokenTimeoutSeconds in the client config.",
        SluiceTimeoutKind.Connect =>
            $"Connecting to {Endpoint.Authority} took longer than {ChatClientSettings.Describe(_settings.ConnectTimeout)} (ConnectTimeoutSeconds). Check --url and that the gateway is reachable.",
        _ => CliMessages.FromClient(timeout.Message),
    };

    private ChatClientException DescribeConnectFailure(SluiceConnectionException ex)
    {
        var authority = Endpoint.Authority;
        var http = ex.InnerException as HttpRequestException;
        var socket = http?.InnerException as SocketException;
        var message = http?.HttpRequestError switch
        {
            _ when socket?.SocketErrorCode == SocketError.ConnectionRefused =>
                $"Cannot connect to {authority}: connection refused. Is the gateway running? Start it with 'sluice serve', or pass --url with the right address.",
            HttpRequestError.NameResolutionError =>
                $"Cannot resolve the host '{Endpoint.Host}'. Check the address passed to --url.",
            HttpRequestError.SecureConnectionError =>
                $"The TLS handshake with {authority} failed ({http.Message}). Check http:// versus https:// in --url.",
            HttpRequestError.ResponseEnded =>
                $"{authority} closed the connection without answering. Check that --url points at a Sluice or OpenAI-compatible gateway.",
            _ => $"Cannot reach {authority} ({http?.Message ?? ex.Message}). Check --url and that the gateway is running.",
        };
        var kind = http?.HttpRequestError == HttpRequestError.ResponseEnded ? ChatFailureKind.Server : ChatFailureKind.Connection;
        return new ChatClientException(kind, message, inner: ex);
    }

    private static string DescribeHttpError(int status, ErrorInfo? error, string? body, TimeSpan? retryAfter)
    {
        var text = new StringBuilder();
        text.Append(status is >= 400 and < 500 ? "The server rejected the request" : "The server failed")
            .Append(" (HTTP ").Append(status.ToString(CultureInfo.InvariantCulture));
        if (error?.Code is { } code)
        {
            text.Append(", ").Append(code);
        }

        if (error?.Param is { } param)
        {
            text.Append(", param '").Append(param).Append('\'');
        }

        text.Append("): ");
        var message = error?.Message ?? body;
        text.Append(string.IsNullOrWhiteSpace(message) ? "no error details." : Sentences.Join(message));

        // The server's message usually says what to do; add the generic next step only where it does not.
        var saysWhatToDo = message is not null
            && (message.Contains("retry", StringComparison.OrdinalIgnoreCase) || message.Contains("restart", StringComparison.OrdinalIgnoreCase));
        var hint = status switch
        {
            >= 500 or 429 when saysWhatToDo && retryAfter is null => string.Empty,
            401 or 403 when error?.Type is null => " Pass --api-key or set SLUICE_API_KEY.",
            429 or >= 500 when retryAfter is { } delay => $" Retry in {Math.Max(1, Math.Ceiling(delay.TotalSeconds)).ToString(CultureInfo.InvariantCulture)} s.",
            429 => " Wait a moment and retry.",
            >= 500 => " Retry in a moment; if it keeps failing, check the gateway's log.",
            _ => string.Empty,
        };
        return text.Append(hint).ToString();
    }
}
