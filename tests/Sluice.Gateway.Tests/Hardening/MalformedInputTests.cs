using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Storage;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// Strings no JSON reader should have accepted (a lone surrogate escape, invalid UTF-8, a bad property name) in every JSON
/// endpoint of every dialect: a 400 in the endpoint's error shape naming the field, and nothing stored. Before, reading
/// such a string threw inside the handler: an empty 500 and a stack trace.
/// </summary>
public sealed class MalformedInputTests : IAsyncLifetime
{
    private const string JsonInputCode = Protocol.JsonInput.InvalidTextCode;
    private readonly SqliteDatabases _databases = new();
    private TenancyHost _host = null!;
    private string _teamId = "";
    private string _jobId = "";

    public async Task InitializeAsync()
    {
        _host = await TenancyHost.StartAsync(await _databases.CreateAsync());
        (_teamId, _) = await _host.NewTeamAsync(100);
        var job = await TenancyHost.PostAsync(_host.Admin, "api/jobs/create", $$"""{"team_id": "{{_teamId}}"}""");
        _jobId = job.AssertStatus(HttpStatusCode.OK).Json.GetProperty("job_id").GetString()!;
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _databases.DisposeAsync();
    }

    /// <summary>Method, path, body (the bad string goes where <c>@@</c> is), dialect, the field the error must name.</summary>
    public static TheoryData<string, string, string, string, string> Endpoints() => new()
    {
        { "POST", "v1/chat/completions", """{"model": "sim-fast", "messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "a@@"}]}""", "openai", "messages[1].content" },
        { "POST", "v1/messages", """{"model": "sim-fast", "max_tokens": 5, "messages": [{"role": "user", "content": "@@"}]}""", "anthropic", "messages[0].content" },
        { "POST", "v1/messages/count_tokens", """{"model": "sim-fast", "system": "@@", "messages": [{"role": "user", "content": "hi"}]}""", "anthropic", "system" },
        { "POST", "api/chat", """{"model": "sim-fast", "messages": [{"role": "user", "content": "@@"}]}""", "ollama", "messages[0].content" },
        { "POST", "api/generate", """{"model": "sim-fast", "prompt": "@@"}""", "ollama", "prompt" },
        { "POST", "api/show", """{"model": "@@"}""", "ollama", "model" },
        { "POST", "api/llm/chat/stream", """{"messages": [{"role": "user", "content": "@@"}]}""", "openai", "messages[0].content" },
        { "POST", "api/llm/chat/session/stream", """{"message": "@@"}""", "openai", "message" },
        { "POST", "api/sessions", """{"title": "@@"}""", "openai", "title" },
        { "POST", "api/jobs/create", """{"team_id": "{team}", "job_type": "@@"}""", "openai", "job_type" },
        { "POST", "api/jobs/{job}/llm-call", """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "@@"}]}""", "openai", "messages[0].content" },
        { "POST", "api/jobs/{job}/llm-call-stream", """{"model_group": "@@", "messages": [{"role": "user", "content": "hi"}]}""", "openai", "model_group" },
        { "POST", "api/jobs/{job}/complete", """{"status": "failed", "error_message": "@@"}""", "openai", "error_message" },
        { "POST", "api/organizations/create", """{"name": "@@"}""", "openai", "name" },
        { "POST", "api/model-groups/create", """{"group_name": "g", "models": [{"model_name": "@@"}]}""", "openai", "models[0].model_name" },
        { "POST", "api/teams/create", """{"organization_id": "org_x", "team_alias": "@@"}""", "openai", "team_alias" },
        { "PUT", "api/teams/{team}/model-groups", """{"model_groups": ["sim-fast", "@@"]}""", "openai", "model_groups[1]" },
        { "PUT", "api/teams/{team}/limits", """{"rpm_limit": 5, "note": {"deep": ["@@"]}}""", "openai", "note.deep[0]" },
        { "POST", "api/teams/{team}/keys", """{"key_alias": "@@"}""", "openai", "key_alias" },
        { "POST", "api/credits/teams/{team}/add", """{"credits_amount": 1, "reason": "@@"}""", "openai", "reason" },
        { "POST", "api/credits/teams/{team}/check", """{"credits_required": 1, "x": "@@"}""", "openai", "x" },
    };

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task A_lone_surrogate_escape_is_a_400_naming_the_field(string method, string path, string body, string dialect, string field)
    {
        var before = await CountsAsync();
        var response = await SendAsync(method, path, Encoding.UTF8.GetBytes(body.Replace("@@", "x\\ud800y", StringComparison.Ordinal)));
        AssertRefused(response, dialect, field, "surrogate");
        Assert.Equal(before, await CountsAsync());
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task Invalid_UTF8_in_a_string_is_a_400_naming_the_field(string method, string path, string body, string dialect, string field)
    {
        var before = await CountsAsync();
        var parts = body.Split("@@");
        byte[] bytes = [.. Encoding.UTF8.GetBytes(parts[0]), 0x61, 0xC3, 0x28, 0xFF, .. Encoding.UTF8.GetBytes(parts[1])];
        var response = await SendAsync(method, path, bytes);
        AssertRefused(response, dialect, field, "UTF-8");
        Assert.Equal(before, await CountsAsync());
    }

    [Fact]
    public async Task A_lone_surrogate_in_a_property_name_is_a_400_too()
    {
        var response = await SendAsync("POST", "v1/chat/completions", Encoding.UTF8.GetBytes("""{"model": "sim-fast", "messages": [{"role": "user", "content": "hi", "\udc00": 1}]}"""));
        AssertRefused(response, "openai", "messages[0]", "surrogate");
    }

    [Fact]
    public async Task A_surrogate_pair_is_text_like_any_other()
    {
        var response = await SendAsync("POST", "v1/chat/completions", Encoding.UTF8.GetBytes("""{"model": "sim-fast", "max_tokens": 3, "messages": [{"role": "user", "content": "smile \ud83d\ude00"}]}"""));
        Assert.Equal(HttpStatusCode.OK, response.Status);
    }

    [Fact]
    public async Task A_job_type_that_is_not_a_string_is_one_JSON_400_and_no_job()
    {
        var jobs = (await _host.Store.ListJobsAsync(_teamId, 100, 0, CancellationToken.None)).Count;
        var response = await SendAsync("POST", "api/jobs/create", Encoding.UTF8.GetBytes($$"""{"team_id": "{{_teamId}}", "job_type": 42}"""));
        response.AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "invalid_type");
        Assert.Equal("job_type", response.Error.GetProperty("param").GetString());

        // Exactly one JSON document: nothing was written before the error.
        using (JsonDocument.Parse(response.Body))
        {
        }

        Assert.Equal(jobs, (await _host.Store.ListJobsAsync(_teamId, 100, 0, CancellationToken.None)).Count);
    }

    [Theory]
    [InlineData("v1/chat/completions", "openai")]
    [InlineData("api/jobs/create", "openai")]
    [InlineData("v1/messages", "anthropic")]
    [InlineData("api/chat", "ollama")]
    public async Task A_chunk_size_that_overflows_is_a_400_in_the_dialect(string path, string dialect)
    {
        var request = RawHttp.Build(
            [
                $"POST /{path} HTTP/1.1",
                "Host: localhost",
                $"Authorization: Bearer {TenancyHost.MasterKey}",
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            ],
            Encoding.ASCII.GetBytes("FFFFFFFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n"));
        var response = await RawHttp.SendAsync(_host.BaseAddress, request);
        Assert.NotNull(response);
        Assert.Equal(400, response.Status);
        AssertShape(JsonDocument.Parse(response.Body).RootElement, dialect);
    }

    [Theory]
    [InlineData("v1/chat/completions", "openai", "gzip")]
    [InlineData("api/jobs/create", "openai", "br")]
    [InlineData("v1/messages", "anthropic", "gzip")]
    [InlineData("api/chat", "ollama", "deflate")]
    public async Task A_compressed_body_is_a_415_saying_to_send_it_uncompressed_not_invalid_json(string path, string dialect, string encoding)
    {
        using var content = new ByteArrayContent([0x1F, 0x8B, 0x08, 0x00]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        content.Headers.ContentEncoding.Add(encoding);
        using var response = await _host.Admin.PostAsync(path, content);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        var root = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        AssertShape(root, dialect);
        Assert.Contains("uncompressed", root.ToString(), StringComparison.Ordinal);

        // "identity" is no encoding: the body is read as it is.
        using var plain = new StringContent("""{"model": "sim-fast", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}""", Encoding.UTF8, "application/json");
        plain.Headers.ContentEncoding.Add("identity");
        using var ok = await _host.Admin.PostAsync("v1/chat/completions", plain);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    private static void AssertRefused(ApiResponse response, string dialect, string field, string problem)
    {
        Assert.True(response.Status == HttpStatusCode.BadRequest, $"Expected 400, got {(int)response.Status}: {response.Body}");
        var root = response.Json;
        AssertShape(root, dialect);
        var message = dialect switch
        {
            "openai" => root.GetProperty("error").GetProperty("message").GetString()!,
            "anthropic" => root.GetProperty("error").GetProperty("message").GetString()!,
            _ => root.GetProperty("error").GetString()!,
        };
        Assert.Contains(field, message, StringComparison.Ordinal);
        Assert.Contains(problem, message, StringComparison.Ordinal);
        if (dialect == "openai")
        {
            Assert.Equal(field, root.GetProperty("error").GetProperty("param").GetString());
            Assert.Equal(JsonInputCode, root.GetProperty("error").GetProperty("code").GetString());
        }
    }

    internal static void AssertShape(JsonElement root, string dialect)
    {
        switch (dialect)
        {
            case "openai":
                Assert.False(string.IsNullOrWhiteSpace(root.GetProperty("error").GetProperty("message").GetString()));
                Assert.False(string.IsNullOrWhiteSpace(root.GetProperty("error").GetProperty("type").GetString()));
                break;
            case "anthropic":
                Assert.Equal("error", root.GetProperty("type").GetString());
                Assert.False(string.IsNullOrWhiteSpace(root.GetProperty("error").GetProperty("type").GetString()));
                Assert.False(string.IsNullOrWhiteSpace(root.GetProperty("error").GetProperty("message").GetString()));
                break;
            default:
                Assert.Equal(JsonValueKind.String, root.GetProperty("error").ValueKind);
                Assert.False(string.IsNullOrWhiteSpace(root.GetProperty("error").GetString()));
                break;
        }
    }

    private async Task<ApiResponse> SendAsync(string method, string path, byte[] body)
    {
        path = path.Replace("{team}", _teamId, StringComparison.Ordinal).Replace("{job}", _jobId, StringComparison.Ordinal);
        using var content = new ByteArrayContent(Replace(body));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = content };
        using var response = await _host.Admin.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return new ApiResponse(response.StatusCode, text, response.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => string.Join(",", h.Value)));
    }

    // "{team}" inside a body.
    private byte[] Replace(byte[] body) =>
        [.. Encoding.Latin1.GetBytes(Encoding.Latin1.GetString(body).Replace("{team}", _teamId, StringComparison.Ordinal))];

    private async Task<(int Jobs, int Sessions, int Groups, int Keys)> CountsAsync()
    {
        var store = _host.Store;
        return (
            (await store.ListJobsAsync(_teamId, 1000, 0, CancellationToken.None)).Count,
            (await store.ListSessionsAsync(SessionOwners.Operator, 1000, 0, CancellationToken.None)).Count,
            (await store.ListModelGroupsAsync(CancellationToken.None)).Count,
            (await store.ListKeysAsync(_teamId, CancellationToken.None)).Count);
    }
}
