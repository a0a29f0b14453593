using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Storage;

namespace Sluice.Gateway.Tenancy;

/// <summary>
/// Owns the store for the life of the gateway: opens it (applying migrations) before the server accepts
/// requests, and closes it last, after the usage writer has flushed.
/// </summary>
internal sealed partial class TenancyRuntime(GatewayOptions options, TimeProvider time, ILogger<TenancyRuntime> logger) : IAsyncDisposable
{
    private ISluiceStore? _store;

    /// <summary>The store; available once <see cref="OpenAsync"/> has run.</summary>
    public ISluiceStore Store => _store ?? throw new InvalidOperationException("The store is not open yet.");

    /// <summary>The clock of the store (key expiry, rate windows).</summary>
    public TimeProvider Time { get; } = time;

    /// <summary>True when a master key is configured (otherwise: open local mode).</summary>
    public bool RequiresKeys => options.MasterKey is not null;

    public async Task OpenAsync(CancellationToken cancellationToken)
    {
        var connectionString = options.StoreConnectionString;
        try
        {
            _store = await SluiceStoreFactory.OpenAsync(connectionString, new SluiceStoreOptions { TimeProvider = Time, OpenJobLifetime = TimeSpan.FromHours(options.Tenancy.OpenJobHours) }, cancellationToken);
        }
        catch (StoreConfigurationException ex)
        {
            throw new GatewayConfigurationException($"Store: {ex.Message}");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw new GatewayConfigurationException(
                $"Store: the database could not be opened ({ex.GetType().Name}: {ex.Message}). Check the Store setting (SLUICE_Store), " +
                "that the PostgreSQL server is reachable, or that the DataDirectory is writable.");
        }

        LogStore(logger, _store.Description, _store.SchemaVersion, _store.MigrationsApplied);
        if (options.MasterKey is null)
        {
            LogOpenMode(logger);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_store is { } store)
        {
            _store = null;
            await store.DisposeAsync();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Store: {Store} (schema version {Version}; {Applied} migration(s) applied at this start)")]
    private static partial void LogStore(ILogger logger, string store, int version, int applied);

    [LoggerMessage(Level = LogLevel.Warning, Message =
        "OPEN LOCAL MODE — no master key is configured (SLUICE_MASTER_KEY or MasterKey). ANYONE WHO CAN REACH THIS PORT can call every " +
        "model and every /api admin endpoint without a key. Fine on a laptop; set a master key before exposing the gateway.")]
    private static partial void LogOpenMode(ILogger logger);
}
