using Sluice.Gateway.Sessions;
using Sluice.Protocol;
using Sluice.Storage;

namespace Sluice.Gateway.Tests.Sessions;

/// <summary>The prompt of a session turn: what is kept, what is left out, and what is refused.</summary>
public sealed class SessionContextTests
{
    private static ChatSession Session(int budget, params (string Role, string Content, bool Truncated)[] messages) => new()
    {
        Id = "sess_1",
        Owner = "team",
        MaxContextTokens = budget,
        MessageCount = messages.Length,
        CreatedAt = DateTimeOffset.UnixEpoch,
        UpdatedAt = DateTimeOffset.UnixEpoch,
        Messages = [.. messages.Select((m, i) => new SessionMessage(i + 1, "sess_1", m.Role, m.Content, m.Truncated, null, null, null, null, DateTimeOffset.UnixEpoch))],
    };

    private static string Words(int count, string word = "river") => string.Join(' ', Enumerable.Repeat(word, count));

    [Fact]
    public void Everything_fits_so_everything_is_sent_in_order()
    {
        var session = Session(4096, ("user", "one", false), ("assistant", "two", false));
        var (messages, dropped) = SessionContext.Build(session, "Be kind.", "three", 100);
        Assert.Equal(0, dropped);
        Assert.Equal(["system", "user", "assistant", "user"], messages.Select(m => m.Role));
        Assert.Equal(["Be kind.", "one", "two", "three"], messages.Select(m => m.Content));
    }

    [Fact]
    public void Oldest_turns_go_first_the_system_prompt_and_new_message_stay_and_the_prompt_fits()
    {
        var session = Session(
            300,
            ("user", Words(60, "alpha"), false), ("assistant", Words(60, "beta"), false),
            ("user", Words(60, "gamma"), false), ("assistant", Words(60, "delta"), false));
        var (messages, dropped) = SessionContext.Build(session, "System rules.", "newest", 100);
        Assert.Equal(2, dropped);
        Assert.Equal("System rules.", messages[0].Content);
        Assert.Equal("newest", messages[^1].Content);
        Assert.DoesNotContain(messages, m => m.Content!.Contains("alpha", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Content!.Contains("delta", StringComparison.Ordinal));
        Assert.True(TokenCounter.CountPrompt(messages) + 100 <= 300);
    }

    [Fact]
    public void A_reply_whose_question_was_left_out_goes_too()
    {
        // Room for the last reply but not for its question: the prompt must not start with an orphaned answer.
        var session = Session(200, ("user", Words(70, "question"), false), ("assistant", Words(20, "answer"), false));
        var (messages, dropped) = SessionContext.Build(session, string.Empty, "next", 100);
        Assert.Equal(2, dropped);
        Assert.Equal(["user"], messages.Select(m => m.Role));
    }

    [Fact]
    public void Empty_interrupted_replies_are_not_sent_and_not_counted_as_trimmed()
    {
        var session = Session(4096, ("user", "one", false), ("assistant", string.Empty, true), ("user", "again", false), ("assistant", "partial", true));
        var (messages, dropped) = SessionContext.Build(session, string.Empty, "go on", null);
        Assert.Equal(0, dropped);
        Assert.Equal(["one", "again", "partial", "go on"], messages.Select(m => m.Content));
    }

    [Fact]
    public void A_message_that_cannot_fit_alone_is_refused_naming_it()
    {
        var session = Session(100);
        var error = Assert.Throws<ChatException>(() => SessionContext.Build(session, "rules", Words(80), 50));
        Assert.Equal(400, error.StatusCode);
        Assert.Equal("message", error.Error.Param);
        Assert.Equal("context_length_exceeded", error.Error.Code);
    }
}
