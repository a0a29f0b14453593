namespace Sluice.Storage;

/// <summary>
/// A model group created at run time (through the API): a name clients use instead of a model, served by its
/// models in priority order — the first that answers wins (fallback).
/// </summary>
/// <param name="Name">The name clients ask for; unique.</param>
/// <param name="DisplayName">A label for people, if any.</param>
/// <param name="Description">A sentence about its purpose, if any.</param>
/// <param name="Models">Member model names, highest priority first.</param>
/// <param name="CreatedAt">When it was created.</param>
public sealed record ModelGroup(string Name, string? DisplayName, string? Description, IReadOnlyList<string> Models, DateTimeOffset CreatedAt);

/// <summary>A model group to create.</summary>
/// <param name="Name">The name clients ask for; unique.</param>
/// <param name="Models">Member model names, highest priority first (at least one).</param>
/// <param name="DisplayName">A label for people.</param>
/// <param name="Description">A sentence about its purpose.</param>
public sealed record NewModelGroup(string Name, IReadOnlyList<string> Models, string? DisplayName = null, string? Description = null);
