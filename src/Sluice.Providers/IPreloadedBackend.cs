namespace Sluice.Providers;

/// <summary>
/// A backend with slow work to do before it can answer — a local model's weights to map and read. Hosts call
/// <see cref="ModelCatalog.PreloadAsync"/> at start-up, before they accept calls, so the first request does not pay for
/// it and a model that cannot load stops the start with a message naming it.
/// </summary>
public interface IPreloadedBackend
{
    /// <summary>Whether <see cref="PreloadAsync"/> has completed.</summary>
    bool IsLoaded { get; }

    /// <summary>Does the work; reports progress as sentences for the log.</summary>
    /// <param name="report">Told what is happening, for people (e.g. "read 256 of 1024 MiB of weights (25 %)").</param>
    /// <param name="cancellationToken">Stops waiting; the work in progress may finish first.</param>
    /// <exception cref="ModelConfigurationException">The backend cannot work; the message names the model, the file and what to do.</exception>
    Task PreloadAsync(Action<string> report, CancellationToken cancellationToken);
}
