using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Protocol;
using Sluice.Providers;
using Sluice.Providers.Routing;

namespace Sluice.Gateway.Observability;

/// <summary>
/// What the call pipeline reports about each call, in one place for every entry point: the gateway span, the metrics of
/// <see cref="GatewayMetrics"/> and the access log line. The pipeline calls <see cref="Begin"/> when a call arrives and
/// exactly one of <see cref="Refused"/>, <see cref="Left"/> or <see cref="RelayEnded"/> when it ends (or
/// <see cref="EnsureEnded"/> if it broke unexpectedly).
/// </summary>
/// <remarks>
/// The gateway span (<c>gateway.call</c>, shown as <c>gateway chat {model}</c>) is current for the whole call, so the
/// upstream span (<see cref="ProviderTelemetry"/>) is its child and an incoming <c>traceparent</c> (through ASP.NET Core's
/// server span) its parent. Nothing here allocates when tracing and the access log are off: tags are built in
/// <see cref="TagList"/> structs and the log is source-generated (level checked first).
/// </remarks>
internal sealed partial class CallTelemetry
{
    /// <summary>The <see cref="ActivitySource"/> name of the gateway spans.</summary>
    public const string ActivitySourceName = "Sluice.Gateway";

    private static readonly ActivitySource Source = new(ActivitySourceName);
    private static readonly string[] StatusTexts = [.. Enumerable.Range(0, 600).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    private readonly GatewayMetrics _metrics;
    private readonly ILogger _accessLog;
    private readonly bool _teamLabels;
    private readonly bool _includePrompts;
    private readonly TimeProvider _time;

    public CallTelemetry(GatewayMetrics metrics, GatewayOptions options, ILoggerFactory loggers, TimeProvider time)
    {
        _time = time;
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggers);
        _metrics = metrics;
        _accessLog = loggers.CreateLogger("Sluice.AccessLog");
        _teamLabels = options.Observability.Metrics.TeamLabels;
        _includePrompts = options.Observability.AccessLog.IncludePrompts;
    }

    public GatewayMetrics Metrics => _metrics;

    /// <summary>The call arrived: starts its span (when anyone listens).</summary>
    public static void Begin(ChatCall call)
    {
        if (!Source.HasListeners())
        {
            return;
        }

        var activity = Source.StartActivity("gateway.call", ActivityKind.Internal);
        if (activity is null)
        {
            return;
        }

        call.Activity = activity;
        if (activity.IsAllDataRequested)
        {
            activity.SetTag("gen_ai.operation.name", "chat");
            activity.SetTag("sluice.request_id", call.RequestId);
            activity.SetTag("sluice.dialect", call.Dialect.Name);
        }
    }

    /// <summary>The call was refused before the model ran (400, 401, 403, 404, 429, 503…).</summary>
    public void Refused(ChatCall call, ChatException error)
    {
        if (error.StatusCode == 429)
        {
            var tags = new TagList { { "reason", error.Error.Code ?? "rate_limited" } };
            AddTeam(ref tags, call);
            _metrics.RateLimitRejections.Add(1, tags);
        }

        End(call, error.StatusCode, "refused", null, error.Error.Code ?? error.Error.Type);
    }

    /// <summary>The client left before the model was called.</summary>
    public void Left(ChatCall call) => End(call, 499, "abandoned", null, null);

    /// <summary>The relay is about to run the call.</summary>
    public void RelayStarted(ChatCall call) => _metrics.ActiveStreams.Add(1, new KeyValuePair<string, object?>("dialect", call.Dialect.Name));

    /// <summary>Answer tokens reached the client <paramref name="gap"/> after the previous ones.</summary>
    public void Delivered(ChatCall call, TimeSpan gap) =>
        _metrics.InterTokenGap.Record(gap.TotalSeconds, new KeyValuePair<string, object?>("model", ModelOf(call)));

    /// <summary>
    /// The relay ended: <paramref name="status"/> is what the client got (200 once the answer started, else the error's
    /// status; 499 for a client that left before anything was sent); <paramref name="backendFailure"/> is the failure
    /// that came from the backend (counted as an upstream error), null otherwise.
    /// </summary>
    public void RelayEnded(ChatCall call, UsageRecord record, int status, Exception? backendFailure)
    {
        var model = ModelOf(call);
        _metrics.ActiveStreams.Add(-1, new KeyValuePair<string, object?>("dialect", call.Dialect.Name));
        if (record.TimeToFirstToken is { } ttft)
        {
            _metrics.TimeToFirstToken.Record(ttft.TotalSeconds, new("model", model), new("dialect", call.Dialect.Name));
        }

        var input = new TagList { { "model", model }, { "direction", "input" } };
        AddTeam(ref input, call);
        _metrics.Tokens.Add(record.PromptTokens, input);
        var output = new TagList { { "model", model }, { "direction", "output" } };
        AddTeam(ref output, call);
        _metrics.Tokens.Add(record.CompletionTokens, output);
        if (backendFailure is not null)
        {
            _metrics.UpstreamErrors.Add(1, new("model", model), new("kind", ProviderTelemetry.ErrorKind(backendFailure)));
        }

        var outcome = record.Status switch
        {
            UsageStatus.Completed => "completed",
            UsageStatus.Failed => "failed",
            _ => "abandoned",
        };
        if (call.Activity is { IsAllDataRequested: true } activity)
        {
            activity.SetTag("gen_ai.usage.input_tokens", record.PromptTokens);
            activity.SetTag("gen_ai.usage.output_tokens", record.CompletionTokens);
            if (record.TimeToFirstToken is { } first)
            {
                activity.SetTag("sluice.time_to_first_token_ms", Math.Round(first.TotalMilliseconds, 3));
            }
        }

        End(call, status, outcome, record, record.ErrorCode);
    }

    /// <summary>Closes a call that ended without <see cref="Refused"/>, <see cref="Left"/> or <see cref="RelayEnded"/> (an unexpected failure).</summary>
    public void EnsureEnded(ChatCall call)
    {
        if (!call.TelemetryEnded)
        {
            End(call, 500, "failed", null, "internal_error");
        }
    }

    /// <summary>A retry or fallback before the first token (the failed attempt is an upstream error).</summary>
    public void Retried(RetryNotice notice)
    {
        ArgumentNullException.ThrowIfNull(notice);
        _metrics.UpstreamErrors.Add(1, new("model", notice.Failed), new("kind", notice.Kind));
        if (notice.IsRetry)
        {
            _metrics.Retries.Add(1, new KeyValuePair<string, object?>("model", notice.Failed));
        }
        else
        {
            _metrics.Fallbacks.Add(1, new("from", notice.Failed), new("to", notice.Next));
        }
    }

    /// <summary>Credits were charged to a team.</summary>
    public void CreditsCharged(string teamId, long credits)
    {
        var tags = default(TagList);
        if (_teamLabels)
        {
            tags.Add("team", teamId);
        }

        _metrics.CreditsCharged.Add(credits, tags);
    }

    /// <summary>A kept stream was read again (<c>resume</c> or <c>replay</c>).</summary>
    public void Resumed(string kind) => _metrics.Resumes.Add(1, new KeyValuePair<string, object?>("kind", kind));

    /// <summary>A keep-alive frame went out.</summary>
    public void Pinged() => _metrics.Pings.Add(1);

    /// <summary>A stream was dropped because its client stopped reading.</summary>
    public void SlowClientDropped(string transport) => _metrics.SlowClientDrops.Add(1, new KeyValuePair<string, object?>("transport", transport));

    /// <summary>A request was refused by the key check before any call began.</summary>
    public void AuthFailed(int status) => _metrics.AuthFailures.Add(1, new KeyValuePair<string, object?>("status", StatusText(status)));

    private static string StatusText(int status) => (uint)status < (uint)StatusTexts.Length ? StatusTexts[status] : "other";

    /// <summary>The bounded model label: the resolved model's name, empty when the name did not resolve.</summary>
    private static string ModelOf(ChatCall call) => call.IsResolved ? call.Model.Name : string.Empty;

    private void AddTeam(ref TagList tags, ChatCall call)
    {
        if (_teamLabels)
        {
            tags.Add("team", call.BillingTeamId ?? string.Empty);
        }
    }

    private void End(ChatCall call, int status, string outcome, UsageRecord? record, string? errorCode)
    {
        if (call.TelemetryEnded)
        {
            return;
        }

        call.TelemetryEnded = true;
        var model = ModelOf(call);
        var statusText = StatusText(status);
        var tags = new TagList { { "model", model }, { "dialect", call.Dialect.Name } };
        AddTeam(ref tags, call);
        tags.Add("status", statusText);
        tags.Add("outcome", outcome);
        _metrics.Requests.Add(1, tags);
        var duration = record?.Duration ?? _time.GetElapsedTime(call.StartTimestamp);
        _metrics.Duration.Record(duration.TotalSeconds, new("model", model), new("dialect", call.Dialect.Name), new("outcome", outcome));

        if (_accessLog.IsEnabled(LogLevel.Information))
        {
            WriteAccessLog(call, status, outcome, record, errorCode, duration);
        }

        if (call.Activity is { } activity)
        {
            if (activity.IsAllDataRequested)
            {
                activity.DisplayName = model.Length > 0 ? "gateway chat " + model : "gateway chat";
                activity.SetTag("gen_ai.request.model", model.Length > 0 ? model : null);
                activity.SetTag("sluice.status", status);
                activity.SetTag("sluice.outcome", outcome);
                if (call.BillingTeamId is { } team)
                {
                    activity.SetTag("sluice.team_id", team);
                }

                if (errorCode is not null)
                {
                    activity.SetTag("error.type", errorCode);
                }
            }

            if (outcome == "failed" || status >= 500)
            {
                activity.SetStatus(ActivityStatusCode.Error, errorCode);
            }

            activity.Stop();
        }
    }

    private void WriteAccessLog(ChatCall call, int status, string outcome, UsageRecord? record, string? errorCode, TimeSpan duration)
    {
        var model = call.IsResolved ? call.Model.Name : LogText.Clean(call.RequestedModel, 100)!;
        var ttft = record?.TimeToFirstToken is { } first ? Math.Round(first.TotalMilliseconds, 3) : (double?)null;
        var durationMs = Math.Round(duration.TotalMilliseconds, 3);
        var team = call.BillingTeamId ?? call.Caller.TeamId;
        var key = call.Caller.Key?.Id;
        if (_includePrompts)
        {
            var prompt = call.IsParsed ? LogText.Clean(call.Request.LastUserText, 1_000) ?? string.Empty : string.Empty;
            LogCallWithPrompt(_accessLog, call.RequestId, call.Dialect.Name, model, status, outcome, team, key, ttft, durationMs,
                record?.PromptTokens ?? 0, record?.CompletionTokens ?? 0, errorCode, prompt);
        }
        else
        {
            // Not a [LoggerMessage] method: AccessLogLine lets the console log write the message without a string per call.
            _accessLog.Log(LogLevel.Information, AccessLogLine.Event, new AccessLogLine(call.RequestId, call.Dialect.Name, model, status, outcome,
                team, key, ttft, durationMs, record?.PromptTokens ?? 0, record?.CompletionTokens ?? 0, errorCode), null, AccessLogLine.Format);
        }
    }

    [LoggerMessage(EventId = 2, EventName = "CallWithPrompt", Level = LogLevel.Information,
        Message = "{RequestId} {Dialect} model={Model} status={Status} outcome={Outcome} team={TeamId} key={KeyId} ttft_ms={TtftMs} duration_ms={DurationMs} tokens_in={TokensIn} tokens_out={TokensOut} error={ErrorCode} prompt={Prompt}")]
    private static partial void LogCallWithPrompt(ILogger logger, string requestId, string dialect, string model, int status, string outcome, string? teamId, string? keyId,
        double? ttftMs, double durationMs, int tokensIn, int tokensOut, string? errorCode, string prompt);
}
