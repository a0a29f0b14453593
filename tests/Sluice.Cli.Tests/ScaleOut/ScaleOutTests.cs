using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Sluice.Protocol.Sse;
using Sluice.Testing;

namespace Sluice.Cli.Tests.ScaleOut;

/// <summary>
/// Scale-out for real: three <c>sluice serve</c> processes on one PostgreSQL, nginx round-robin in front
/// (<see cref="ClusterFixture"/>). Resume, replay and cancel work on any instance; keys, groups and limits changed on one
/// take effect on all through change notifications (well inside the cache time); a draining instance finishes its streams and ends the rest with a clear error.
/// </summary>
public sealed partial class ScaleOutTests(ClusterFixture cluster) : IClassFixture<ClusterFixture>
{
    // The instances run with a 60 s key/team cache, so a change seen on another instance well inside that was dropped by
    // the change notification — which is what these tests prove. How fast (a few ms on a quiet machine) is not a test's
    // to assert: under the full parallel test run on two cores a notification once took over a second to be acted on.
    private static readonly TimeSpan CoherenceBound = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Three_instances_started_at_once_on_an_empty_database_migrate_once_without_errors()
    {
        var applied = cluster.FirstStartLogs.Select(log => int.Parse(Applied().Match(log).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(new[] { 0, 0, 8 }, applied.Order());
        Assert.All(cluster.FirstStartLogs, log =>
        {
            Assert.Contains("Sluice listening on", log, StringComparison.Ordinal);
            Assert.DoesNotContain("fail:", log, StringComparison.Ordinal);
            Assert.DoesNotContain("crit:", log, StringComparison.Ordinal);
            Assert.DoesNotContain("Exception", log, StringComparison.Ordinal);
        });
        Assert.Equal(8, (await cluster.QueryAsync("SELECT version FROM schema_migrations")).Count);
        // Every instance registered (a test may have killed one since: its stale row stays until it is pruned).
        var live = await cluster.QueryAsync("SELECT id FROM gateway_instances WHERE heartbeat_at_ms > (EXTRACT(EPOCH FROM now()) * 1000 - 10000)");
        Assert.Equal(ClusterFixture.Size, live.Count);
    }

    [Fact]
    public async Task Streams_through_the_balancer_arrive_chunk_by_chunk()
    {
        using var client = ClusterFixture.Client(cluster.Balancer);
        using var response = await StreamAsync(client, """
            {"model": "sim-realistic", "prompt": "Tell me about lighthouses", "max_tokens": 20, "stream": true,
             "metadata": {"sim_stall_ms": "3000", "sim_stall_after_tokens": "5"} }
            """);
        var events = await ReadTimedAsync(response);

        // The model pauses 3 s after its fifth token. Through a streaming proxy the first tokens arrive before the
        // pause; a buffering one hands everything over after it, in one moment. Timing the pause rather than the whole
        // answer keeps a loaded machine (CI runs beside other work) from clumping a paced stream into a false alarm; the
        // pause is twice the 1 s judged, because a loaded machine can deliver the fifth token late, shortening the gap
        // the client sees (a 1.5 s pause was once seen as 984 ms).
        var content = events.Where(e => !e.Event.IsComment && !e.Event.IsDone).ToList();
        Assert.True(content.Count >= 10, $"{content.Count} events");
        var gaps = content.Zip(content.Skip(1), (a, b) => b.At - a.At).ToList();
        var pause = gaps.IndexOf(gaps.Max());
        Assert.True(gaps[pause] > TimeSpan.FromSeconds(1), $"no pause between events (longest gap {gaps[pause].TotalMilliseconds:F0} ms): buffered");
        Assert.True(pause + 1 >= 4, $"only {pause + 1} events before the pause: buffered");
        Assert.True(events[^1].Event.IsDone);
    }

    [Fact]
    public async Task Pings_keep_a_silent_stream_open_past_the_proxys_read_timeout()
    {
        using var client = ClusterFixture.Client(cluster.Balancer);
        var silence = NginxProcess.ReadTimeout + TimeSpan.FromSeconds(2);
        using var response = await StreamAsync(client, $$"""
            {"model": "sim-fast", "prompt": "Tell me about rivers", "max_tokens": 6, "stream": true,
             "metadata": {"sim_stall_ms": "{{(int)silence.TotalMilliseconds}}", "sim_stall_after_tokens": "2"} }
            """);
        var events = await ReadTimedAsync(response);

        Assert.True(events[^1].Event.IsDone, "the stream was cut: " + string.Join(" | ", events.Select(e => e.Event.DataText)));
        Assert.True(events.Count(e => e.Event.IsComment && !e.Event.DataText.Contains("sluice-stream-id", StringComparison.Ordinal)) >= 3, "no pings during the silence");
        Assert.True(events[^1].At > NginxProcess.ReadTimeout + TimeSpan.FromSeconds(1), $"the stream lasted {events[^1].At.TotalSeconds:F1} s only");
    }

    [Fact]
    public async Task A_client_that_resumes_through_the_balancer_on_another_instance_gets_the_rest_without_loss_or_repetition()
    {
        var (_, key) = await ClusterFixture.NewTeamAsync(cluster.Balancer, 100);
        using var client = ClusterFixture.Client(cluster.Balancer, key);
        string id;
        long last;
        var before = new StringBuilder();
        using (var response = await StreamAsync(client, """{"model": "sim-realistic", "prompt": "Tell me about harbours", "max_tokens": 80, "stream": true}""", resume: true))
        {
            id = response.Headers.GetValues("x-sluice-stream-id").Single();
            (last, _) = await ReadSomeAsync(response, 5, before);

            // The connection drops here.
        }

        var owner = await cluster.OwnerOfAsync(id);
        var after = new StringBuilder();
        var forwarded = false;
        for (var attempt = 0; attempt < 6 && !forwarded; attempt++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("v1/streams/" + id, UriKind.Relative));
            request.Headers.Add("Last-Event-ID", last.ToString(System.Globalization.CultureInfo.InvariantCulture));
            using var resumed = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);

            // Round robin: a resume that reached the owner itself is dropped again, until one lands on another instance.
            forwarded = resumed.Headers.Contains("x-sluice-forwarded-by");
            if (forwarded)
            {
                var events = (await ReadTimedAsync(resumed)).Where(e => !e.Event.IsComment).ToList();
                Assert.Equal((last + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), events[0].Event.LastEventId);
                Assert.True(events[^1].Event.IsDone);
                AppendText(after, events.Select(e => e.Event));
            }
        }

        Assert.True(forwarded, $"no resume reached an instance other than the owner ({owner})");

        // The whole answer, replayed through the balancer (whichever instance), is exactly both parts.
        using var replay = await client.GetAsync(new Uri("v1/streams/" + id, UriKind.Relative), HttpCompletionOption.ResponseHeadersRead);
        var whole = new StringBuilder();
        AppendText(whole, (await ReadTimedAsync(replay)).Select(e => e.Event));
        Assert.Equal(whole.ToString(), before.ToString() + after);
        Assert.True(whole.Length > 100);
    }

    [Fact]
    public async Task Delete_on_another_instance_stops_the_generation_at_once()
    {
        var (_, key) = await ClusterFixture.NewTeamAsync(cluster.Balancer, 100);
        using var client = ClusterFixture.Client(cluster.Balancer, key);
        using var response = await StreamAsync(client, """{"model": "sim-realistic", "prompt": "Tell me about canals", "max_tokens": 2000, "stream": true}""", resume: true);
        var id = response.Headers.GetValues("x-sluice-stream-id").Single();
        var owner = await cluster.OwnerOfAsync(id);
        await using var body = await response.Content.ReadAsStreamAsync();
        var reader = SseReader.ReadAsync(body, surfaceComments: false).GetAsyncEnumerator();
        for (var i = 0; i < 3; i++)
        {
            Assert.True(await reader.MoveNextAsync());
        }

        using var other = ClusterFixture.Client(cluster.Direct((owner + 1) % ClusterFixture.Size), key);

        // The other instance has seen this key before (its key cache and connection are warm): what is measured is the
        // forwarding and the cancel, not a first PostgreSQL lookup on a loaded machine.
        using (var warm = await other.GetAsync(new Uri("v1/models", UriKind.Relative)))
        {
            Assert.Equal(HttpStatusCode.OK, warm.StatusCode);
        }

        var sent = Stopwatch.GetTimestamp();
        using var cancel = await other.DeleteAsync(new Uri("v1/streams/" + id, UriKind.Relative));
        var answered = Stopwatch.GetElapsedTime(sent);
        var json = JsonDocument.Parse(await cancel.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
        Assert.True(json.GetProperty("cancelled").GetBoolean());
        Assert.True(cancel.Headers.Contains("x-sluice-forwarded-by"), "the DELETE was not forwarded to the owner");

        // The original connection ends with the cancellation frame, moments after the DELETE.
        string? code = null;
        while (await reader.MoveNextAsync())
        {
            if (reader.Current.DataText.Contains("\"error\"", StringComparison.Ordinal))
            {
                code = reader.Current.Json().GetProperty("error").GetProperty("code").GetString();
            }
        }

        var ended = Stopwatch.GetElapsedTime(sent);
        Assert.Equal("stream_cancelled", code);

        // Loose bounds (a shared 2-core machine): the owner cancelled by the time the DELETE was answered, so the stream
        // ends right after that answer; the forwarded DELETE itself is one hop.
        Assert.True(ended - answered < TimeSpan.FromSeconds(1), $"the stream ended {ended.TotalMilliseconds:F0} ms after the DELETE (answered in {answered.TotalMilliseconds:F0} ms)");
        Assert.True(answered < TimeSpan.FromSeconds(5), $"the forwarded DELETE took {answered.TotalMilliseconds:F0} ms");
    }

    [Fact]
    public async Task Another_teams_key_gets_the_unknown_stream_404_on_every_instance()
    {
        var (_, key) = await ClusterFixture.NewTeamAsync(cluster.Balancer, 100);
        var (_, otherKey) = await ClusterFixture.NewTeamAsync(cluster.Balancer, 100);
        using var owner = ClusterFixture.Client(cluster.Direct(0), key);
        using var response = await StreamAsync(owner, """{"model": "sim-fast", "prompt": "Tell me about bridges", "max_tokens": 10, "stream": true}""");
        var id = response.Headers.GetValues("x-sluice-stream-id").Single();
        await ReadTimedAsync(response);

        for (var i = 1; i < ClusterFixture.Size; i++)
        {
            using var stranger = ClusterFixture.Client(cluster.Direct(i), otherKey);
            using var resume = await stranger.GetAsync(new Uri("v1/streams/" + id, UriKind.Relative));
            Assert.Equal(HttpStatusCode.NotFound, resume.StatusCode);
            Assert.Contains("stream_not_found", await resume.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            using var cancel = await stranger.DeleteAsync(new Uri("v1/streams/" + id, UriKind.Relative));
            Assert.Equal(HttpStatusCode.NotFound, cancel.StatusCode);

            using var self = ClusterFixture.Client(cluster.Direct(i), key);
            using var replay = await self.GetAsync(new Uri("v1/streams/" + id, UriKind.Relative));
            Assert.Equal(HttpStatusCode.OK, replay.StatusCode);
            Assert.Contains("[DONE]", await replay.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_key_revoked_on_one_instance_is_refused_on_every_instance_by_notification()
    {
        var (teamId, key) = await ClusterFixture.NewTeamAsync(cluster.Direct(0), 100);
        var clients = Enumerable.Range(0, ClusterFixture.Size).Select(i => ClusterFixture.Client(cluster.Direct(i), key)).ToList();
        foreach (var c in clients)
        {
            // Every instance has the key cached (for 60 s: only a notification can make it forget).
            Assert.Equal(200, (await ClusterFixture.ChatAsync(c)).Status);
        }

        using var admin = ClusterFixture.Client(cluster.Direct(0));
        var keyId = JsonDocument.Parse(await admin.GetStringAsync(new Uri($"api/teams/{teamId}/keys", UriKind.Relative))).RootElement.GetProperty("keys")[0].GetProperty("key_id").GetString();
        await ClusterFixture.PostJsonAsync(admin, $"api/teams/{teamId}/keys/{keyId}/revoke", "{}");

        var took = await Task.WhenAll(clients.Skip(1).Select(c => ClusterFixture.WaitUntilAsync(
            async () => (await ClusterFixture.ChatAsync(c)).Status == 401, CoherenceBound, "the revoked key refused")));
        Assert.All(took, t => Assert.True(t < CoherenceBound));
        clients.ForEach(c => c.Dispose());
    }

    [Fact]
    public async Task A_model_group_created_on_one_instance_is_callable_on_every_instance_by_notification()
    {
        var name = "group-" + Guid.NewGuid().ToString("N")[..8];
        var clients = Enumerable.Range(0, ClusterFixture.Size).Select(i => ClusterFixture.Client(cluster.Direct(i))).ToList();
        foreach (var c in clients.Skip(1))
        {
            // The unknown name is remembered as a miss.
            Assert.Equal(404, (await ClusterFixture.ChatAsync(c, name)).Status);
        }

        await ClusterFixture.PostJsonAsync(clients[0], "api/model-groups/create", $$"""{"group_name": "{{name}}", "models": ["sim-fast"]}""");
        await Task.WhenAll(clients.Skip(1).Select(c => ClusterFixture.WaitUntilAsync(
            async () => (await ClusterFixture.ChatAsync(c, name)).Status == 200, CoherenceBound, "the new group callable")));
        clients.ForEach(c => c.Dispose());
    }

    [Fact]
    public async Task Team_limits_changed_on_one_instance_apply_on_every_instance_by_notification()
    {
        var (teamId, key) = await ClusterFixture.NewTeamAsync(cluster.Direct(0), 100);
        using var viaSecond = ClusterFixture.Client(cluster.Direct(1), key);
        Assert.Equal(200, (await ClusterFixture.ChatAsync(viaSecond)).Status);
        using var admin = ClusterFixture.Client(cluster.Direct(0));
        await ClusterFixture.PostJsonAsync(admin, $"api/teams/{teamId}/limits", """{"rpm_limit": 1}""", HttpMethod.Put);

        // One more request fits in the new limit's window, then the second instance refuses.
        await ClusterFixture.WaitUntilAsync(async () => (await ClusterFixture.ChatAsync(viaSecond)).Status == 429, CoherenceBound, "the new limit applied");
    }

    [Fact]
    public async Task A_draining_instance_goes_unready_finishes_running_streams_and_ends_the_rest_with_a_shutdown_error()
    {
        const int Draining = 2;
        var (teamId, key) = await ClusterFixture.NewTeamAsync(cluster.Balancer, 100);
        using var direct = ClusterFixture.Client(cluster.Direct(Draining), key);
        using var shortOne = await StreamAsync(direct, """{"model": "sim-realistic", "prompt": "Tell me about ferries", "max_tokens": 40, "stream": true}""");
        using var longOne = await StreamAsync(direct, """{"model": "sim-realistic", "prompt": "Tell me about tides", "max_tokens": 3000, "stream": true}""");
        var shortRead = ReadTimedAsync(shortOne);
        var longRead = ReadTimedAsync(longOne);
        await Task.Delay(300);

        var instance = cluster.Instances[Draining];
        var sigterm = Stopwatch.GetTimestamp();
        await instance.TerminateAsync();
        using var probe = ClusterFixture.Client(cluster.Direct(Draining), key: null);
        await ClusterFixture.WaitUntilAsync(
            async () => (await probe.GetAsync(new Uri("health/ready", UriKind.Relative))).StatusCode == HttpStatusCode.ServiceUnavailable,
            TimeSpan.FromSeconds(2), "/health/ready 503");
        Assert.Equal(HttpStatusCode.OK, (await probe.GetAsync(new Uri("health/live", UriKind.Relative))).StatusCode);

        // New work: refused here (retryable), and through the balancer it goes to the other instances.
        var refused = await ClusterFixture.ChatAsync(direct);
        Assert.Equal(503, refused.Status);
        Assert.Contains("gateway_shutting_down", refused.Body, StringComparison.Ordinal);
        using var balanced = ClusterFixture.Client(cluster.Balancer, key);
        for (var i = 0; i < 6; i++)
        {
            Assert.Equal(200, (await ClusterFixture.ChatAsync(balanced)).Status);
        }

        // The short answer finishes; the long one ends at the grace with an error that says why.
        var shortEvents = await shortRead;
        Assert.True(shortEvents[^1].Event.IsDone);
        var longEvents = (await longRead).Where(e => !e.Event.IsComment).ToList();
        var error = longEvents[^1].Event.Json().GetProperty("error");
        Assert.Equal("gateway_shutting_down", error.GetProperty("code").GetString());
        Assert.Contains("Send the request again", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        var cut = Stopwatch.GetElapsedTime(sigterm);
        Assert.InRange(cut.TotalSeconds, ClusterFixture.GraceSeconds - 0.5, ClusterFixture.GraceSeconds + 3);

        Assert.Equal(0, await instance.Process.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains("Shutting down: draining", instance.Log, StringComparison.Ordinal);
        // Once: `sluice serve` disposes the gateway after the host's own stop, which must not drain (and log) again.
        Assert.Single(instance.Log.Split('\n'), l => l.Contains("Shutdown: drained", StringComparison.Ordinal));

        // Both answers are in the shared ledger: one completed, one failed with the shutdown.
        var usage = await cluster.QueryAsync($"SELECT status FROM usage_records WHERE team_id = '{teamId}' AND completion_tokens > 4 ORDER BY id");
        Assert.Equal(new[] { "completed", "failed" }, usage.Select(r => (string)r[0]!).Order());

        await cluster.RestartAsync(Draining);
    }

    [Fact]
    public async Task An_owner_that_dies_ends_a_forwarded_stream_with_a_clear_error_not_a_hang()
    {
        const int Owner = 1;
        var (_, key) = await ClusterFixture.NewTeamAsync(cluster.Balancer, 100);
        using var ownerClient = ClusterFixture.Client(cluster.Direct(Owner), key);
        string id;
        long last;
        using (var response = await StreamAsync(ownerClient, """{"model": "sim-realistic", "prompt": "Tell me about locks", "max_tokens": 3000, "stream": true}""", resume: true))
        {
            id = response.Headers.GetValues("x-sluice-stream-id").Single();
            (last, _) = await ReadSomeAsync(response, 3, new StringBuilder());
        }

        using var other = ClusterFixture.Client(cluster.Direct(0), key);
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("v1/streams/" + id, UriKind.Relative));
        request.Headers.Add("Last-Event-ID", last.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var resumed = await other.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
        var reading = ReadTimedAsync(resumed);
        await Task.Delay(500);

        using (var process = Process.GetProcessById(cluster.Instances[Owner].Process.Id))
        {
            process.Kill();
        }

        var killed = Stopwatch.GetTimestamp();
        var events = (await reading.WaitAsync(TimeSpan.FromSeconds(15))).Where(e => !e.Event.IsComment).ToList();
        Assert.True(Stopwatch.GetElapsedTime(killed) < TimeSpan.FromSeconds(5));
        Assert.Equal("stream_owner_lost", events[^1].Event.Json().GetProperty("error").GetProperty("code").GetString());

        // A later resume anywhere says the instance is gone.
        using var again = await other.GetAsync(new Uri("v1/streams/" + id, UriKind.Relative));
        Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
        Assert.Contains("has stopped or is unreachable", await again.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        await cluster.RestartAsync(Owner);
    }

    private static async Task<HttpResponseMessage> StreamAsync(HttpClient client, string json, bool resume = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("v1/chat/completions", UriKind.Relative))
        {
            Content = new StringContent(json, Encoding.UTF8, "application/json"),
        };
        if (resume)
        {
            request.Headers.Add("x-sluice-resume", "on");
        }

        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return response;
    }

    private static async Task<List<(SseEvent Event, TimeSpan At)>> ReadTimedAsync(HttpResponseMessage response)
    {
        var started = Stopwatch.GetTimestamp();
        await using var body = await response.Content.ReadAsStreamAsync();
        var events = new List<(SseEvent, TimeSpan)>();
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await foreach (var e in SseReader.ReadAsync(body, surfaceComments: true, limit.Token))
        {
            events.Add((e, Stopwatch.GetElapsedTime(started)));
        }

        return events;
    }

    /// <summary>Reads <paramref name="count"/> content events; their text goes to <paramref name="text"/>; the last id.</summary>
    private static async Task<(long Last, int Read)> ReadSomeAsync(HttpResponseMessage response, int count, StringBuilder text)
    {
        await using var body = await response.Content.ReadAsStreamAsync();
        var read = 0;
        long last = 0;
        await foreach (var e in SseReader.ReadAsync(body, surfaceComments: false))
        {
            last = long.Parse(e.LastEventId!, System.Globalization.CultureInfo.InvariantCulture);
            AppendText(text, [e]);
            if (++read == count)
            {
                break;
            }
        }

        return (last, read);
    }

    private static void AppendText(StringBuilder text, IEnumerable<SseEvent> events)
    {
        foreach (var e in events)
        {
            if (e.IsComment || e.IsDone || !e.DataText.StartsWith('{'))
            {
                continue;
            }

            var json = e.Json();
            if (json.TryGetProperty("choices", out var choices) && choices.GetArrayLength() > 0
                && choices[0].TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
            {
                text.Append(content.GetString());
            }
        }
    }

    [GeneratedRegex(@"(\d+) migration\(s\) applied at this start")]
    private static partial Regex Applied();
}
