using System.Text;
using System.Text.Json;
using Sluice.Protocol.Sse;
using Sluice.Testing;
using static Sluice.Protocol.Tests.SseTestHelpers;

namespace Sluice.Protocol.Tests;

/// <summary>Parses every recorded provider stream under the shared fixtures folder.</summary>
public sealed class SseFixtureTests
{
    public static TheoryData<string> AllFixtures() => Files("*");

    public static TheoryData<string> OpenAIFixtures() => Files("openai");

    public static TheoryData<string> AnthropicFixtures() => Files("anthropic");

    public static TheoryData<string> GeminiFixtures() => Files("gemini");

    [Fact]
    public void Fixture_folders_are_present_and_not_empty()
    {
        Assert.True(FileList("openai").Count >= 10);
        Assert.True(FileList("anthropic").Count >= 5);
        Assert.True(FileList("gemini").Count >= 20);
    }

    [Theory]
    [MemberData(nameof(AllFixtures))]
    public void Every_fixture_parses_to_the_events_an_independent_line_count_predicts(string relative)
    {
        var bytes = Fixtures.Read(relative);

        var events = ParseWhole(bytes);

        Assert.Equal(ExpectedEventCount(bytes), events.Count);
    }

    [Theory]
    [MemberData(nameof(AllFixtures))]
    public async Task Every_fixture_gives_the_same_events_byte_by_byte_and_through_the_reader(string relative)
    {
        var bytes = Fixtures.Read(relative);
        var whole = Describe(ParseWhole(bytes, surfaceComments: true));

        Assert.Equal(whole, Describe(ParseByteByByte(bytes, surfaceComments: true)));
        Assert.Equal(whole, Describe(await ReadThroughReaderAsync(Fixtures.PathOf(relative))));
    }

    [Theory]
    [MemberData(nameof(OpenAIFixtures))]
    public void OpenAI_fixtures_end_with_DONE_and_every_other_frame_is_a_chunk(string relative)
    {
        var events = ParseWhole(Fixtures.Read(relative));

        Assert.True(events.Count >= 3, $"{relative}: only {events.Count} events");
        Assert.True(events[^1].IsDone, $"{relative} does not end with [DONE]");
        Assert.Single(events, e => e.IsDone);

        string? id = null;
        foreach (var e in events.SkipLast(1))
        {
            Assert.Null(e.EventType);
            using var document = JsonDocument.Parse(e.Data);
            var root = document.RootElement;
            Assert.Equal("chat.completion.chunk", root.GetProperty("object").GetString());
            id ??= root.GetProperty("id").GetString();
            Assert.Equal(id, root.GetProperty("id").GetString());
            Assert.Equal(JsonValueKind.Array, root.GetProperty("choices").ValueKind);
        }

        // The recordings asked for usage: the last chunk before [DONE] has it and no choices.
        using var last = JsonDocument.Parse(events[^2].Data);
        Assert.Equal(0, last.RootElement.GetProperty("choices").GetArrayLength());
        Assert.True(last.RootElement.GetProperty("usage").GetProperty("total_tokens").GetInt32() > 0);
    }

    [Fact]
    public void OpenAI_text_fixture_content_reassembles_to_readable_text()
    {
        var events = ParseWhole(Fixtures.Read("openai/text-long.sse"));
        var text = new StringBuilder();
        string? finish = null;
        foreach (var e in events.Where(e => !e.IsDone))
        {
            using var document = JsonDocument.Parse(e.Data);
            foreach (var choice in document.RootElement.GetProperty("choices").EnumerateArray())
            {
                if (choice.GetProperty("delta").TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                {
                    text.Append(content.GetString());
                }

                if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String)
                {
                    finish = choice.GetProperty("finish_reason").GetString();
                }
            }
        }

        Assert.True(text.Length > 500, $"only {text.Length} characters");
        Assert.Equal("stop", finish);
    }

    [Fact]
    public void OpenAI_three_choices_fixture_has_three_choice_indexes()
    {
        var indexes = new HashSet<int>();
        foreach (var e in ParseWhole(Fixtures.Read("openai/three-choices.sse")).Where(e => !e.IsDone))
        {
            using var document = JsonDocument.Parse(e.Data);
            foreach (var choice in document.RootElement.GetProperty("choices").EnumerateArray())
            {
                indexes.Add(choice.GetProperty("index").GetInt32());
            }
        }

        Assert.Equal([0, 1, 2], indexes.Order());
    }

    [Theory]
    [MemberData(nameof(AnthropicFixtures))]
    public void Anthropic_fixtures_have_typed_events_matching_their_json_type(string relative)
    {
        var events = ParseWhole(Fixtures.Read(relative));

        Assert.NotEmpty(events);
        Assert.Equal("message_start", events[0].EventType);
        foreach (var e in events)
        {
            Assert.NotNull(e.EventType);
            using var document = JsonDocument.Parse(e.Data);
            Assert.Equal(e.EventType, document.RootElement.GetProperty("type").GetString());
        }

        // The recordings end "data: {message_stop}" without the closing blank line, so per the SSE rules that
        // unfinished event is dropped and message_delta (with the stop reason) is the last one dispatched.
        Assert.Equal("message_delta", events[^1].EventType);
        var lastLine = Encoding.UTF8.GetString(Fixtures.Read(relative)).TrimEnd().Split('\n')[^1];
        Assert.StartsWith("data: {\"type\":\"message_stop\"", lastLine, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(GeminiFixtures))]
    public void Gemini_fixtures_parse_the_same_with_CRLF_turned_into_LF_or_CR(string relative)
    {
        var bytes = Fixtures.Read(relative);
        var text = Encoding.UTF8.GetString(bytes);
        var asLf = Encoding.UTF8.GetBytes(text.Replace("\r\n", "\n", StringComparison.Ordinal));
        var asCr = Encoding.UTF8.GetBytes(text.Replace("\r\n", "\r", StringComparison.Ordinal).Replace("\n", "\r", StringComparison.Ordinal));

        var original = Describe(ParseWhole(bytes));

        Assert.Equal(original, Describe(ParseWhole(asLf)));
        Assert.Equal(original, Describe(ParseWhole(asCr)));
        Assert.Equal(ExpectedEventCount(asLf), original.Count);
    }

    [Fact]
    public void Gemini_CRLF_fixtures_exist_and_yield_events()
    {
        var crlf = FileList("gemini").Where(f => Fixtures.Read(f).AsSpan().IndexOf("\r\n"u8) >= 0).ToList();

        Assert.True(crlf.Count >= 10, $"only {crlf.Count} CRLF fixtures");
        var long_ = ParseWhole(Fixtures.Read("gemini/googleai/streaming-success-basic-reply-long.sse"));
        Assert.Equal(36, long_.Count);
        Assert.All(long_, e => JsonDocument.Parse(e.Data).Dispose());
    }

    [Theory]
    [MemberData(nameof(GeminiFixtures))]
    public void Gemini_success_fixtures_carry_candidates_json(string relative)
    {
        if (!relative.Contains("streaming-success", StringComparison.Ordinal))
        {
            // Failure recordings include deliberately invalid JSON and bare error bodies; counting covers them.
            Assert.Equal(ExpectedEventCount(Fixtures.Read(relative)), ParseWhole(Fixtures.Read(relative)).Count);
            return;
        }

        var events = ParseWhole(Fixtures.Read(relative));
        Assert.NotEmpty(events);
        foreach (var e in events)
        {
            using var document = JsonDocument.Parse(e.Data);
            Assert.Equal(JsonValueKind.Object, document.RootElement.ValueKind);
        }
    }

    private static async Task<List<SseEvent>> ReadThroughReaderAsync(string path)
    {
        await using var stream = File.OpenRead(path);
        var events = new List<SseEvent>();
        await foreach (var e in SseReader.ReadAsync(stream, surfaceComments: true))
        {
            events.Add(e);
        }

        return events;
    }

    /// <summary>
    /// An independent, deliberately naive oracle: normalise line ends, then count blank lines that close a
    /// block containing at least one <c>data</c> field (a line that is "data" or starts with "data:").
    /// </summary>
    private static int ExpectedEventCount(byte[] bytes)
    {
        var text = Encoding.UTF8.GetString(bytes).TrimStart('\uFEFF')
            .Replace("\r\n", "\n", StringComparison.Ordinal)
            .Replace('\r', '\n');
        var count = 0;
        var hasData = false;
        var lines = text.Split('\n');
        // The last element is what follows the final line end: an unterminated line, never a blank line.
        for (var i = 0; i < lines.Length - 1; i++)
        {
            var line = lines[i];
            if (line.Length == 0)
            {
                count += hasData ? 1 : 0;
                hasData = false;
            }
            else if (line == "data" || line.StartsWith("data:", StringComparison.Ordinal))
            {
                hasData = true;
            }
        }

        return count;
    }

    private static TheoryData<string> Files(string folder)
    {
        var data = new TheoryData<string>();
        foreach (var file in FileList(folder))
        {
            data.Add(file);
        }

        return data;
    }

    private static List<string> FileList(string folder)
    {
        var root = Fixtures.Directory;
        var search = folder == "*" ? root : Path.Combine(root, folder);
        return Directory.EnumerateFiles(search, "*.sse", SearchOption.AllDirectories)
            .Select(file => Path.GetRelativePath(root, file).Replace('\\', '/'))
            .Order(StringComparer.Ordinal)
            .ToList();
    }
}
