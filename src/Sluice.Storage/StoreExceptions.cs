namespace Sluice.Storage;

/// <summary>Base of the store's own failures; the HTTP layer maps each subclass to a status.</summary>
public abstract class StoreException : Exception
{
    /// <summary>Creates the exception.</summary>
    protected StoreException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>The object does not exist, or belongs to another team (HTTP 404).</summary>
public sealed class StoreNotFoundException : StoreException
{
    /// <summary>Creates the exception for <paramref name="kind"/> <paramref name="id"/>.</summary>
    public StoreNotFoundException(string kind, string id)
        : base($"No {kind} '{id}' was found for this caller; check the id (objects of other teams are not visible).")
    {
        Kind = kind;
        Id = id;
    }

    /// <summary>What was looked for: <c>organization</c>, <c>team</c>, <c>key</c> or <c>job</c>.</summary>
    public string Kind { get; }

    /// <summary>The id looked for.</summary>
    public string Id { get; }
}

/// <summary>The change conflicts with what is stored, e.g. a duplicate name or a finished job (HTTP 409).</summary>
public sealed class StoreConflictException : StoreException
{
    /// <summary>Creates the exception.</summary>
    public StoreConflictException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>The owner holds as many sessions as it may (<see cref="NewChatSession.MaxSessionsPerOwner"/>; HTTP 409).</summary>
public sealed class SessionLimitException : StoreException
{
    /// <summary>Creates the exception.</summary>
    public SessionLimitException(string owner, int limit)
        : base($"'{owner}' holds {limit} sessions, the most it may keep; delete old ones to start another.")
    {
        Owner = owner;
        Limit = limit;
    }

    /// <summary>The owner.</summary>
    public string Owner { get; }

    /// <summary>The most sessions it may keep.</summary>
    public int Limit { get; }
}

/// <summary>The session holds as many messages as a session may (HTTP 409): start a new one.</summary>
public sealed class SessionFullException : StoreException
{
    /// <summary>Creates the exception.</summary>
    public SessionFullException(string sessionId, long messages, int limit)
        : base($"Session '{sessionId}' holds {messages} messages, the most a session may keep ({limit}); start a new session.")
    {
        SessionId = sessionId;
        Messages = messages;
        Limit = limit;
    }

    /// <summary>The session.</summary>
    public string SessionId { get; }

    /// <summary>Messages it holds.</summary>
    public long Messages { get; }

    /// <summary>The most a session may hold.</summary>
    public int Limit { get; }
}

/// <summary>The team has too few credits for this (HTTP 402 or 403).</summary>
public sealed class InsufficientCreditsException : StoreException
{
    /// <summary>Creates the exception.</summary>
    public InsufficientCreditsException(string teamId, long balance, long required)
        : base($"Team '{teamId}' has {balance} credit(s) and needs {required}; add credits to the team and try again.")
    {
        TeamId = teamId;
        Balance = balance;
        Required = required;
    }

    /// <summary>The team.</summary>
    public string TeamId { get; }

    /// <summary>Its balance when the operation was refused.</summary>
    public long Balance { get; }

    /// <summary>The credits the operation needed.</summary>
    public long Required { get; }

    /// <summary>Open jobs holding the team's credits when a new job was refused (0 for other refusals).</summary>
    public long OpenJobs { get; init; }
}

/// <summary>The <c>Store</c> connection string cannot be used, or the database schema is not one this build knows.</summary>
public sealed class StoreConfigurationException : StoreException
{
    /// <summary>Creates the exception.</summary>
    public StoreConfigurationException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
