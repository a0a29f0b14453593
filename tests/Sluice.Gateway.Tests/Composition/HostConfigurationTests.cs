using Microsoft.Extensions.Configuration;
using Sluice.Gateway.Hosting;
using Sluice.Providers.Simulation;
using Xunit;

namespace Sluice.Gateway.Tests.Composition;

/// <summary>What the ASP.NET Core host adds on its own, and Sluice turns off.</summary>
public sealed class HostConfigurationTests
{
    [Fact]
    public async Task No_configuration_file_is_watched_for_changes()
    {
        // A reloading appsettings.json watches the working directory tree, data directory included: every SQLite
        // write woke a watcher thread that stat'ed the file.
        var options = new GatewayOptions
        {
            Port = 0,
            DataDirectory = Path.Combine(Path.GetTempPath(), "sluice-host-" + Guid.NewGuid().ToString("N")),
            Models = [.. BuiltInModels.All],
        };
        await using var app = await SluiceGateway.BuildAsync(options);

        var files = ((IConfigurationRoot)app.Configuration).Providers.OfType<FileConfigurationProvider>().ToList();
        Assert.NotEmpty(files);
        Assert.All(files, file => Assert.False(file.Source.ReloadOnChange, $"{file.Source.Path} is reloaded on change"));
    }
}
