using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Sluice.Cli.Client;
using Sluice.Cli.Commands.Admin;
using Sluice.Cli.Commands.Chat;
using Sluice.Protocol.Sse;

namespace Sluice.Cli.Commands;

/// <summary>
/// <c>sluice replay &lt;stream-id&gt;</c>: prints a stored (or still running) stream's text as it arrives from
/// <c>GET /v1/streams/{id}</c>; stats go to stderr like <c>sluice chat</c>.
/// </summary>
internal static class ReplayCommand
{
    private const string ErrorPrefix = "sluice replay: ";

    private const string Help = """
        Print a stream's answer again (GET /v1/streams/{id}): the text to stdout as it arrives, stats to stderr.
        A running stream is followed live to its end; a finished one stays replayable for a while (Streaming:ReplayTtlSeconds).
        The stream id is the x-sluice-stream-id header (or the ': sluice-stream-id' comment) of a streamed answer.

        Exit codes: 0 ok, 3 bad --url, 10 cannot connect, 11 rejected or stream expired (4xx), 12 server error (5xx), 13 the stream failed.

        Examples:
          sluice replay strm_0123abcd
          sluice replay strm_0123abcd --after 12        # only the events after id 12
          sluice replay strm_0123abcd --timed           # with the original timing
        """;

    public static Command Create()
    {
        var id = new Argument<string>("stream-id") { Description = "The stream id, e.g. strm_0123abcd." };
        var url = new Option<string?>("--url", "-u") { Description = $"Gateway address (default {ChatClientSettings.DefaultApiUrl})." };
        var after = new Option<long?>("--after") { Description = "Start after this event id (as Last-Event-ID); default: from the start." };
        var timed = new Option<bool>("--timed") { Description = "Replay with the original timing between events." };
        var apiKey = new Option<string?>("--api-key") { Description = $"API key, sent as a Bearer token (default: env {ChatClientSettings.ApiKeyEnvironmentVariable})." };
        var command = new Command("replay", Help) { id, url, after, timed, apiKey };
        command.SetAction((parse, cancellationToken) => RunAsync(
            parse.GetValue(id)!, parse.GetValue(url), parse.GetValue(after), parse.GetValue(timed), parse.GetValue(apiKey), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string id, string? url, long? after, bool timed, string? apiKey, CancellationToken cancellationToken)
    {
        using var output = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
        using var error = new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false)) { AutoFlush = true };
        var baseAddress = AdminHttp.TryParseBase(url ?? ChatClientSettings.DefaultApiUrl, out var urlError);
        if (baseAddress is null)
        {
            await error.WriteLineAsync(ErrorPrefix + urlError);
            return ExitCodes.Config;
        }

        var key = apiKey ?? (Environment.GetEnvironmentVariable(ChatClientSettings.ApiKeyEnvironmentVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : null);
        var query = new List<string>(2);
        if (after is { } n)
        {
            query.Add("after=" + n.ToString(CultureInfo.InvariantCulture));
        }

        if (timed)
        {
            query.Add("replay=timed");
        }

        var path = $"/v1/streams/{Uri.EscapeDataString(id)}{(query.Count == 0 ? string.Empty : "?" + string.Join('&', query))}";

        // A replay can follow a live stream for as long as it runs, so no overall timeout; Ctrl+C stops it.
        using var http = new AdminHttp(baseAddress, key, $"--api-key or env {ChatClientSettings.ApiKeyEnvironmentVariable}", Timeout.InfiniteTimeSpan);
        var stats = new ChatStats();
        try
        {
            using var response = await http.OpenStreamAsync(path, cancellationToken);
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            await foreach (var sseEvent in SseReader.ReadAsync(body, cancellationToken: cancellationToken))
            {
                if (sseEvent.IsComment || sseEvent.Data.IsEmpty)
                {
                    continue;
                }

                if (sseEvent.IsDone)
                {
                    break;
                }

                if (Apply(sseEvent, stats, output) is { } failure)
                {
                    await output.FlushAsync(cancellationToken);
                    await error.WriteLineAsync();
                    await error.WriteLineAsync(ErrorPrefix + $"the stream failed: {failure} The stored answer is incomplete; send the request again.");
                    return ExitCodes.MidStreamError;
                }

                await output.FlushAsync(cancellationToken);
            }
        }
        catch (AdminException ex)
        {
            var message = ex.Message.Contains("HTTP 404", StringComparison.Ordinal)
                ? $"stream '{id}' was not found: it has expired (finished streams are kept only briefly) or never existed. {ex.Message}"
                : ex.Message;
            await error.WriteLineAsync(ErrorPrefix + message);
            return ex.ExitCode;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            stats.Cancel();
            await output.FlushAsync(CancellationToken.None);
            await error.WriteLineAsync();
            await error.WriteLineAsync(stats.ToText());
            return ExitCodes.Cancelled;
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            await error.WriteLineAsync();
            await error.WriteLineAsync(ErrorPrefix + $"the connection broke during the replay ({ex.Message}). Run the same command with --after <last event id> to continue.");
            return ExitCodes.MidStreamError;
        }

        stats.Complete();
        await output.WriteLineAsync();
        await output.FlushAsync(cancellationToken);
        await error.WriteLineAsync(stats.ToText());
        return ExitCodes.Success;
    }

    /// <summary>Writes a chunk's text and records its model, usage and finish reason; returns the error message of an error event.</summary>
    private static string? Apply(SseEvent sseEvent, ChatStats stats, TextWriter output)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(sseEvent.Data);
        }
        catch (JsonException)
        {
            return null;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return null;
            }

            if (root.TryGetProperty("error", out var error))
            {
                return error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var message) ? message.GetString() : error.GetRawText();
            }

            if (root.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.String)
            {
                stats.Model ??= model.GetString();
            }

            if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object
                && usage.TryGetProperty("prompt_tokens", out var prompt) && usage.TryGetProperty("completion_tokens", out var completion))
            {
                stats.Usage = new UsageUpdate(prompt.GetInt32(), completion.GetInt32());
            }

            if (root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array)
            {
                foreach (var choice in choices.EnumerateArray())
                {
                    if (choice.TryGetProperty("delta", out var delta) && delta.ValueKind == JsonValueKind.Object
                        && delta.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String
                        && content.GetString() is { Length: > 0 } text)
                    {
                        output.Write(text);
                        stats.DeltaArrived();
                    }

                    if (choice.TryGetProperty("finish_reason", out var finish) && finish.ValueKind == JsonValueKind.String)
                    {
                        stats.FinishReason = finish.GetString();
                    }
                }
            }

            return null;
        }
    }
}
