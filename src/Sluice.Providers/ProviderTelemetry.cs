using System.Diagnostics;
using System.Net.Sockets;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Providers;

/// <summary>
/// Tracing of upstream calls: one CLIENT span per request to a provider (<c>chat {model}</c>, attributes after the
/// OpenTelemetry GenAI semantic conventions), and the one classification of backend failures into a small, fixed set
/// of kinds for metrics and logs.
/// </summary>
/// <remarks>
/// The span is current while the request is sent, so <see cref="HttpClient"/> propagates its W3C <c>traceparent</c> to
/// the upstream. When nothing listens to <see cref="ActivitySourceName"/> no span is made and the stream is not wrapped.
/// </remarks>
public static class ProviderTelemetry
{
    /// <summary>The <see cref="ActivitySource"/> name of the upstream spans.</summary>
    public const string ActivitySourceName = "Sluice.Providers";

    internal static readonly ActivitySource Source = new(ActivitySourceName);

    /// <summary>
    /// The kind of a backend failure, one of a fixed set (metric labels must stay bounded whatever an upstream
    /// sends): <c>unreachable</c>, <c>timeout</c>, <c>connection_lost</c>, <c>malformed</c>, <c>truncated</c>,
    /// <c>redirect</c>, <c>rate_limited</c>, <c>auth</c>, <c>bad_request</c>, <c>server_error</c>, <c>stream_error</c>,
    /// <c>cancelled</c>, <c>internal</c>.
    /// </summary>
    public static string ErrorKind(Exception exception) => exception switch
    {
        ChatException chat => ErrorKind(chat.StatusCode, chat.Error.Code),
        HttpRequestException or SocketException or IOException => "unreachable",
        TimeoutException => "timeout",
        OperationCanceledException => "cancelled",
        _ => "internal",
    };

    /// <summary>The kind of a failure given as a status and error code (see <see cref="ErrorKind(Exception)"/>).</summary>
    public static string ErrorKind(int status, string? code) => code switch
    {
        "upstream_unreachable" => "unreachable",
        "upstream_timeout" => "timeout",
        "upstream_connection_lost" => "connection_lost",
        "upstream_malformed" => "malformed",
        "upstream_truncated" => "truncated",
        "upstream_redirect" => "redirect",
        "upstream_error" => "stream_error",
        _ => status switch
        {
            408 or 504 => "timeout",
            429 => "rate_limited",
            401 or 403 => "auth",
            >= 500 => "server_error",
            >= 400 => "bad_request",
            _ => "internal",
        },
    };

    /// <summary>Starts the upstream span (null when nobody listens); it becomes the current activity.</summary>
    internal static Activity? StartUpstream(string provider, string model, Uri endpoint, ChatRequest request)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        var activity = Source.StartActivity("chat " + model, ActivityKind.Client);
        if (activity is null || !activity.IsAllDataRequested)
        {
            return activity;
        }

        activity.SetTag("gen_ai.operation.name", "chat");
        activity.SetTag("gen_ai.provider.name", provider);
        activity.SetTag("gen_ai.request.model", model);
        activity.SetTag("server.address", endpoint.Host);
        activity.SetTag("server.port", endpoint.Port);
        if (request.MaxTokens is { } maxTokens)
        {
            activity.SetTag("gen_ai.request.max_tokens", maxTokens);
        }

        if (request.Temperature is { } temperature)
        {
            activity.SetTag("gen_ai.request.temperature", temperature);
        }

        if (request.TopP is { } topP)
        {
            activity.SetTag("gen_ai.request.top_p", topP);
        }

        return activity;
    }

    /// <summary>Notes what an event tells about the answer (usage, finish reason).</summary>
    internal static void Observe(Activity activity, ChatStreamEvent streamEvent)
    {
        switch (streamEvent)
        {
            case OpenAIChunkBatch batch:
                for (var i = 0; i < batch.Count; i++)
                {
                    if (batch.EventsAt(i) is { } decoded)
                    {
                        foreach (var inner in decoded)
                        {
                            Observe(activity, inner);
                        }
                    }
                }

                break;
            case OpenAIChunkEvent { IsDecoded: true } chunk:
                foreach (var inner in chunk.Events)
                {
                    Observe(activity, inner);
                }

                break;
            case UsageEvent usage:
                activity.SetTag("gen_ai.usage.input_tokens", usage.Usage.PromptTokens);
                activity.SetTag("gen_ai.usage.output_tokens", usage.Usage.CompletionTokens);
                break;
            case FinishEvent finish when finish.ChoiceIndex == 0:
                activity.SetTag("gen_ai.response.finish_reasons", new[] { finish.Reason });
                break;
            case ErrorEvent error:
                activity.SetTag("error.type", ErrorKind(502, error.Error.Code));
                activity.SetStatus(ActivityStatusCode.Error, error.Error.Code ?? error.Error.Type);
                break;
        }
    }

    /// <summary>Marks the span failed.</summary>
    internal static void Fail(Activity activity, Exception exception)
    {
        var kind = ErrorKind(exception);
        activity.SetTag("error.type", kind);
        activity.SetStatus(ActivityStatusCode.Error, exception is ChatException chat ? chat.Error.Code ?? chat.Error.Type : kind);
    }
}
