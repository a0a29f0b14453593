using System.Net;
using System.Text.Json;
using Sluice.Gateway.Http;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Protocol.Sse;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Streams;

/// <summary>
/// Resumable streams belong to the team that started them: another team's key gets the same 404 as for an unknown id
/// on resume, replay and cancel; the owner and the master key get the stream.
/// </summary>
public sealed class OwnerScopedStreamTests : TenancyTestBase
{
    private const string Long = """{"model": "sim-paced", "prompt": "Tell me a long story about rivers", "stream": true, "max_tokens": 400}""";

    protected override TestDatabases NewDatabases() => new SqliteDatabases();

    [Fact]
    public async Task Another_teams_key_gets_404_on_resume_replay_and_cancel_like_an_unknown_id()
    {
        var (_, ownerKey) = await Host.NewTeamAsync(10);
        var (_, otherKey) = await Host.NewTeamAsync(10);
        using var owner = Host.NewClient(ownerKey);
        using var other = Host.NewClient(otherKey);
        var (response, streamId) = await StartAsync(owner);
        using (response)
        {
            var unknown = await GetAsync(other, "v1/streams/strm_0000000000000000000000000000000a");
            var resumed = await GetAsync(other, $"v1/streams/{streamId}");
            var replayed = await GetAsync(other, $"v1/streams/{streamId}?after=1");
            var cancelled = await TenancyHost.SendAsync(other, HttpMethod.Delete, $"v1/streams/{streamId}");
            foreach (var refused in new[] { resumed, replayed, cancelled })
            {
                refused.AssertError(HttpStatusCode.NotFound, "invalid_request_error", "stream_not_found");

                // Word for word the unknown id's answer, but for the id itself: nothing tells the stream exists.
                Assert.Equal(
                    unknown.Error.GetProperty("message").GetString()!.Replace("strm_0000000000000000000000000000000a", streamId, StringComparison.Ordinal),
                    refused.Error.GetProperty("message").GetString());
            }

            // The generation went on: the owner's answer is whole.
            var events = await SseTestClient.ReadAllAsync(response);
            Assert.True(events[^1].IsDone);
        }
    }

    [Fact]
    public async Task The_owner_and_the_master_key_can_resume_and_cancel()
    {
        var (_, ownerKey) = await Host.NewTeamAsync(10);
        using var owner = Host.NewClient(ownerKey);
        var (response, streamId) = await StartAsync(owner);
        using (response)
        {
            using var resumed = await owner.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{streamId}?after=1"), HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);

            var cancelled = await TenancyHost.SendAsync(Host.Admin, HttpMethod.Delete, $"v1/streams/{streamId}");
            cancelled.AssertStatus(HttpStatusCode.OK);
            Assert.True(cancelled.Json.GetProperty("cancelled").GetBoolean());

            // The owner's stream ends with the cancellation frame, and so does the resumed copy.
            var events = await SseTestClient.ReadAllAsync(response);
            Assert.Contains("stream_cancelled", events[^1].DataText, StringComparison.Ordinal);
            var copy = await SseTestClient.ReadAllAsync(resumed);
            Assert.Contains("stream_cancelled", copy[^1].DataText, StringComparison.Ordinal);
        }

        // Finished: the master key may replay it too.
        var replay = await GetAsync(Host.Admin, $"v1/streams/{streamId}");
        replay.AssertStatus(HttpStatusCode.OK);
    }

    private static async Task<(HttpResponseMessage Response, string StreamId)> StartAsync(HttpClient client)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = TenancyHost.Json(Long) };
        request.Headers.Add("x-sluice-resume", "on");
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (response, Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader)));
    }

    private static Task<ApiResponse> GetAsync(HttpClient client, string path) => TenancyHost.GetAsync(client, path);
}
