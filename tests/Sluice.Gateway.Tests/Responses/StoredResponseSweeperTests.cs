using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Responses;
using Sluice.Gateway.Tenancy;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Storage;

namespace Sluice.Gateway.Tests.Responses;

/// <summary>
/// Stored responses past <c>Responses:StoreDays</c> are deleted by a sweep over every team — also a team that stopped
/// storing, which the per-store count check never reaches again: a minute after start, then every hour.
/// </summary>
public sealed class StoredResponseSweeperTests : IAsyncLifetime
{
    private static readonly TimeSpan Days30 = TimeSpan.FromDays(30);
    private readonly SqliteDatabases _databases = new();
    private static readonly DateTimeOffset Start = DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000);
    private readonly FakeTimeProvider _time = new(Start);
    private TenancyRuntime _tenancy = null!;

    public async Task InitializeAsync()
    {
        _tenancy = new TenancyRuntime(new GatewayOptions { Store = await _databases.CreateAsync() }, _time, NullLogger<TenancyRuntime>.Instance);
        await _tenancy.OpenAsync(CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _tenancy.DisposeAsync();
        await _databases.DisposeAsync();
    }

    [Fact]
    public async Task Every_team_s_expired_responses_go_a_minute_after_start_and_then_hourly()
    {
        await SaveAsync("team_quiet", "resp_old", age: Days30 + TimeSpan.FromDays(1));
        await SaveAsync("team_busy", "resp_old_busy", age: Days30 + TimeSpan.FromSeconds(1));
        await SaveAsync("team_busy", "resp_recent", age: TimeSpan.FromDays(29));
        using var sweeper = new StoredResponseSweeper(new StoredResponseRetention(10_000, Days30), _tenancy, _time, NullLogger<StoredResponseSweeper>.Instance);
        await sweeper.StartAsync(CancellationToken.None);

        _time.Advance(TimeSpan.FromSeconds(59));
        await Task.Delay(100);
        Assert.True(await ExistsAsync("team_quiet", "resp_old"), "nothing is swept before the first minute");

        await AdvanceUntilGoneAsync("team_quiet", "resp_old", TimeSpan.FromSeconds(1));
        await WaitUntilGoneAsync("team_busy", "resp_old_busy");
        Assert.True(await ExistsAsync("team_busy", "resp_recent"));

        // The recent one expires a day after start; the hourly sweeps take it within the hour after.
        _time.Advance(Start + TimeSpan.FromDays(1) - TimeSpan.FromMinutes(5) - _time.GetUtcNow());
        await Task.Delay(200);
        Assert.True(await ExistsAsync("team_busy", "resp_recent"));
        await AdvanceUntilGoneAsync("team_busy", "resp_recent", TimeSpan.FromMinutes(5));
        await sweeper.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Without_a_retention_time_nothing_is_swept()
    {
        await SaveAsync("team_a", "resp_old", age: TimeSpan.FromDays(400));
        using var sweeper = new StoredResponseSweeper(new StoredResponseRetention(10_000, keepFor: null), _tenancy, _time, NullLogger<StoredResponseSweeper>.Instance);
        await sweeper.StartAsync(CancellationToken.None);
        _time.Advance(TimeSpan.FromDays(2));
        await Task.Delay(300);
        Assert.True(await ExistsAsync("team_a", "resp_old"));
        await sweeper.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task A_gateway_runs_the_sweep_as_a_hosted_service()
    {
        await using var host = await TenancyHost.StartAsync(await _databases.CreateAsync());
        Assert.Contains(host.Gateway.GetRequiredService<IEnumerable<IHostedService>>(), s => s is StoredResponseSweeper);
    }

    private Task SaveAsync(string owner, string id, TimeSpan age) => _tenancy.Store.SaveResponseAsync(
        new StoredResponse(id, owner, null, "sim-fast", null, """{"id":"x","output":[]}""", "[]", _time.GetUtcNow() - age), CancellationToken.None);

    private async Task<bool> ExistsAsync(string owner, string id) => await _tenancy.Store.GetResponseAsync(owner, id, CancellationToken.None) is not null;

    /// <summary>
    /// Moves the clock on by <paramref name="step"/> until the response is gone: the sweeper arms its timer on its own
    /// thread, possibly after an advance, so one exact advance could fall before the timer exists.
    /// </summary>
    private async Task AdvanceUntilGoneAsync(string owner, string id, TimeSpan step)
    {
        for (var i = 0; i < 100 && await ExistsAsync(owner, id); i++)
        {
            _time.Advance(step);
            await Task.Delay(50);
        }

        await WaitUntilGoneAsync(owner, id);
    }

    private async Task WaitUntilGoneAsync(string owner, string id)
    {
        for (var i = 0; i < 200 && await ExistsAsync(owner, id); i++)
        {
            await Task.Delay(25);
        }

        Assert.False(await ExistsAsync(owner, id), $"{id} of {owner} is still stored");
    }
}
