namespace Sluice.Storage;

/// <summary>
/// A stored Responses API response (<c>store: true</c>): the response object as the client received it, and the
/// conversation up to and including it as Responses input items, so a later request can continue it with
/// <c>previous_response_id</c>.
/// </summary>
/// <param name="Id">The response id the client saw (<c>resp_…</c>; an upstream's own id when its events were passed through).</param>
/// <param name="Owner">Who may read it: a team id, or <see cref="SessionOwners.Operator"/>.</param>
/// <param name="KeyId">The virtual key that created it, if any.</param>
/// <param name="Model">The model that answered.</param>
/// <param name="PreviousResponseId">The response it continued, if any.</param>
/// <param name="ResponseJson">The response object's JSON.</param>
/// <param name="ConversationJson">The whole conversation as a JSON array of Responses input items (input, then output).</param>
/// <param name="CreatedAt">When it was stored.</param>
public sealed record StoredResponse(
    string Id,
    string Owner,
    string? KeyId,
    string Model,
    string? PreviousResponseId,
    string ResponseJson,
    string ConversationJson,
    DateTimeOffset CreatedAt);

/// <summary>Stored Responses API responses, owner-scoped: another owner's response reads as missing.</summary>
public interface IResponseStore
{
    /// <summary>Stores a response (its id must be new).</summary>
    Task SaveResponseAsync(StoredResponse response, CancellationToken cancellationToken);

    /// <summary>The response <paramref name="id"/> of <paramref name="owner"/>, or null (missing, or another owner's).</summary>
    Task<StoredResponse?> GetResponseAsync(string owner, string id, CancellationToken cancellationToken);

    /// <summary>Deletes the response; false when <paramref name="owner"/> has no such response.</summary>
    Task<bool> DeleteResponseAsync(string owner, string id, CancellationToken cancellationToken);

    /// <summary>
    /// Deletes <paramref name="owner"/>'s oldest responses beyond its newest <paramref name="keep"/> (by time, then id);
    /// returns how many were deleted.
    /// </summary>
    Task<int> TrimResponsesAsync(string owner, int keep, CancellationToken cancellationToken);

    /// <summary>
    /// Deletes every owner's responses stored before <paramref name="olderThan"/> — also of owners that no longer store
    /// any, whose own trims never run — owner by owner; returns how many were deleted.
    /// </summary>
    Task<int> DeleteExpiredResponsesAsync(DateTimeOffset olderThan, CancellationToken cancellationToken);
}
