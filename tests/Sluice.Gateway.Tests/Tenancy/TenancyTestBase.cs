namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>
/// One gateway with a master key on a fresh database per test. Subclasses pick the database kind, so every
/// test of a derived class runs on SQLite and on PostgreSQL.
/// </summary>
public abstract class TenancyTestBase : IAsyncLifetime
{
    private readonly List<TenancyHost> _hosts = [];
    private TestDatabases _databases = null!;

    /// <summary>The clock of every gateway in the test (the system clock, shifted when a test moves it).</summary>
    protected ShiftedTime Time { get; } = new();

    protected string StoreConnection { get; private set; } = "";

    protected TenancyHost Host { get; private set; } = null!;

    protected abstract TestDatabases NewDatabases();

    public virtual async Task InitializeAsync()
    {
        _databases = NewDatabases();
        StoreConnection = await _databases.CreateAsync();
        Host = await StartGatewayAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var host in _hosts)
        {
            await host.DisposeAsync();
        }

        await _databases.DisposeAsync();
    }

    /// <summary>Starts another gateway on this test's database (stopped when the test ends, unless stopped before).</summary>
    protected async Task<TenancyHost> StartGatewayAsync(string? masterKey = TenancyHost.MasterKey, Action<Hosting.GatewayOptions>? configure = null)
    {
        var host = await TenancyHost.StartAsync(StoreConnection, masterKey, Time, configure);
        _hosts.Add(host);
        return host;
    }

    /// <summary>Stops a gateway now (e.g. to restart on the same database).</summary>
    protected async Task StopAsync(TenancyHost host)
    {
        _hosts.Remove(host);
        await host.DisposeAsync();
    }

    /// <summary>Replaces <see cref="Host"/> with a gateway started on the same database.</summary>
    protected async Task RestartAsync()
    {
        await StopAsync(Host);
        Host = await StartGatewayAsync();
    }
}
