using System.Net;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Storage;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// A request the model refuses at once (an answer longer than it writes, a conversation over its context) is refused
/// before the call is admitted or its stage stores anything: no new session, no session message, no job call, no usage.
/// </summary>
public sealed class RefusedCallTests : IAsyncLifetime
{
    private readonly SqliteDatabases _databases = new();
    private TenancyHost _host = null!;

    public async Task InitializeAsync() => _host = await StartAsync(await _databases.CreateAsync());

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _databases.DisposeAsync();
    }

    [Fact]
    public async Task A_session_turn_the_model_refuses_stores_no_session()
    {
        // An answer larger than sim-fast can write (or its context can hold) is refused by the model itself.
        var refused = await PostAsync(_host.Admin, "api/llm/chat/session/stream", """{"message": "Tell me about rivers", "model": "sim-fast", "max_tokens": 100000}""");
        refused.AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        Assert.Contains(refused.Error.GetProperty("param").GetString(), new[] { "max_tokens", "message" });
        Assert.Empty(await _host.Store.ListSessionsAsync(SessionOwners.Operator, 10, 0, CancellationToken.None));
    }

    [Fact]
    public async Task A_job_call_the_model_refuses_is_not_recorded_and_the_job_stays_billable()
    {
        var (teamId, key) = await _host.NewTeamAsync(3);
        using var team = _host.NewClient(key);
        var job = (await PostAsync(team, "api/jobs/create")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("job_id").GetString()!;
        (await PostAsync(team, $"api/jobs/{job}/llm-call", """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}"""))
            .AssertError(HttpStatusCode.BadRequest, "invalid_request_error");

        Assert.Empty((await _host.Store.GetJobAsync(teamId, job, CancellationToken.None))!.Calls);
        await _host.DrainLedgerAsync();
        Assert.Empty(await _host.Store.ListUsageAsync(teamId, 10, 0, CancellationToken.None));
        var completed = (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.True(completed.GetProperty("costs").GetProperty("credit_applied").GetBoolean());
    }
}
