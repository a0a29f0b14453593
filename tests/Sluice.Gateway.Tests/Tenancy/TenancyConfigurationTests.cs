using Sluice.Gateway.Hosting;

namespace Sluice.Gateway.Tests.Tenancy;

public sealed class TenancyConfigurationTests
{
    private static GatewayOptions Bind(Dictionary<string, string?> values) =>
        GatewayConfiguration.Bind(GatewayConfiguration.Build(Path.Combine(Sluice.Testing.Fixtures.RepositoryRoot, "sluice.example.json"), values));

    [Theory]
    [InlineData("/xdg/data", "/home/ana", "/xdg/data/sluice")]
    [InlineData("", "/home/ana", "/home/ana/.local/share/sluice")]
    [InlineData("relative/ignored", "/home/ana", "/home/ana/.local/share/sluice")]
    [InlineData("", "", "./data")]
    public void The_default_data_directory_follows_xdg_then_home(string xdg, string home, string expected)
    {
        var environment = new Dictionary<string, string?> { ["XDG_DATA_HOME"] = xdg, ["HOME"] = home };
        Assert.Equal(expected, GatewayOptions.DefaultDataDirectory(name => environment.GetValueOrDefault(name)));
    }

    [Fact]
    public void The_store_defaults_to_sqlite_in_the_data_directory_and_open_mode()
    {
        var options = Bind([]);
        Assert.Null(options.MasterKey);
        // The per-user data directory, not one under the working directory.
        Assert.Equal(GatewayOptions.DefaultDataDirectory(), options.DataDirectory);
        Assert.True(Path.IsPathRooted(options.DataDirectory), options.DataDirectory);
        Assert.Equal("sqlite:" + Path.Combine(options.DataDirectory, "sluice.db"), options.StoreConnectionString);
        Assert.Equal(5, options.Tenancy.KeyCacheSeconds);

        var moved = Bind(new() { ["DataDirectory"] = "/var/lib/sluice" });
        Assert.Equal("sqlite:/var/lib/sluice/sluice.db", moved.StoreConnectionString);
        var postgres = Bind(new() { ["Store"] = "Host=db;Database=sluice" });
        Assert.Equal("Host=db;Database=sluice", postgres.StoreConnectionString);
    }

    [Fact]
    public void The_master_key_comes_from_SLUICE_MASTER_KEY_or_MasterKey_and_must_be_long()
    {
        // SLUICE_MASTER_KEY reaches the configuration as MASTER_KEY (the SLUICE_ prefix is stripped).
        Assert.Equal("0123456789abcdef-env", Bind(new() { ["MASTER_KEY"] = " 0123456789abcdef-env\n" }).MasterKey);
        Assert.Equal("0123456789abcdef-cfg", Bind(new() { ["MasterKey"] = "0123456789abcdef-cfg", ["MASTER_KEY"] = "0123456789abcdef-env" }).MasterKey);
        Assert.Null(Bind(new() { ["MasterKey"] = "  " }).MasterKey);

        var tooShort = Assert.Throws<GatewayConfigurationException>(() => Bind(new() { ["MASTER_KEY"] = "secret" }));
        Assert.Contains("16 characters", tooShort.Message, StringComparison.Ordinal);
        Assert.Throws<GatewayConfigurationException>(() => Bind(new() { ["Tenancy:UsageQueueCapacity"] = "0" }));
    }

    [Fact]
    public async Task A_store_that_cannot_be_opened_stops_start_up_with_advice()
    {
        var bad = await Assert.ThrowsAsync<GatewayConfigurationException>(
            () => SluiceGateway.StartAsync(new GatewayOptions { Port = 0, Store = "mysql://nope" }, configureLogging: _ => { }));
        Assert.Contains("Store", bad.Message, StringComparison.Ordinal);
        Assert.Contains("sqlite:", bad.Message, StringComparison.Ordinal);

        var file = Path.GetTempFileName();
        try
        {
            // A file where the data directory should be: SQLite cannot create the database.
            var unwritable = await Assert.ThrowsAsync<GatewayConfigurationException>(
                () => SluiceGateway.StartAsync(new GatewayOptions { Port = 0, DataDirectory = Path.Combine(file, "sub") }, configureLogging: _ => { }));
            Assert.Contains("DataDirectory", unwritable.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
