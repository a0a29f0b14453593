using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Sluice.Samples;
using Sluice.Samples.Examples;

namespace Sluice.Client.Tests;

/// <summary>Each of the ten samples against the simulated models of an in-process gateway.</summary>
[Collection(GatewayCollection.Name)]
public sealed class SampleTests(GatewayFixture gateway)
{
    private readonly StringWriter _output = new();

    [Fact]
    public async Task Basic_streaming_prints_the_answer_as_it_streams()
    {
        var expected = await gateway.CompleteAsync("sim-fast", "Explain how rivers shape valleys", 60, 1);

        var text = await BasicStreaming.RunAsync(Context(seed: 1));

        Assert.Equal(expected, text);
        Assert.Equal(expected + Environment.NewLine, _output.ToString());
    }

    [Fact]
    public async Task Accumulating_keeps_the_whole_text_with_finish_reason_and_usage()
    {
        var expected = await gateway.CompleteAsync("sim-fast", "Write a short note about lakes", 50, 2);

        var response = await AccumulateFullText.RunAsync(Context(seed: 2));

        Assert.Equal(expected, response.Text);
        Assert.StartsWith($"Full answer ({expected.Length} chars, finish: length, 50 tokens):", _output.ToString(), StringComparison.Ordinal);
        Assert.Contains(expected, _output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Interactive_chat_keeps_the_history_and_stops_at_exit()
    {
        var first = await gateway.CompleteAsync("sim-fast", "Tell me about rivers", 40, 3);

        var session = await InteractiveChat.RunAsync(Context(seed: 3, input: "Tell me about rivers\n\nAnd lakes\n/exit\nNever sent\n"));

        Assert.Equal(["Tell me about rivers", first, "And lakes"], session.History.Take(3).Select(m => m.Text));
        Assert.Equal(4, session.History.Count);
        Assert.Contains(first, _output.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain(session.History, m => m.Text == "Never sent");
    }

    [Fact]
    public async Task System_prompt_is_sent_first()
    {
        var trace = new RecordingTrace();

        var answer = await SystemPrompt.RunAsync(Context(configure: o => o.Trace = trace));

        var messages = trace.LastPayload().GetProperty("messages");
        Assert.Equal("system", messages[0].GetProperty("role").GetString());
        Assert.Equal(SystemPrompt.Prompt, messages[0].GetProperty("content").GetString());
        Assert.False(string.IsNullOrWhiteSpace(answer));
    }

    [Fact]
    public async Task Multi_document_analysis_streams_each_document_then_a_synthesis_built_from_them()
    {
        var trace = new RecordingTrace();

        var (analyses, synthesis) = await MultiDocumentAnalysis.RunAsync(Context(seed: 5, configure: o => o.Trace = trace));

        Assert.Equal(3, analyses.Count);
        Assert.All(analyses, a => Assert.False(string.IsNullOrWhiteSpace(a)));
        Assert.False(string.IsNullOrWhiteSpace(synthesis));
        Assert.Equal(4, trace.Requests.Count);
        var last = trace.LastPayload().GetProperty("messages")[0].GetProperty("content").GetString()!;
        Assert.All(analyses, a => Assert.Contains(a, last, StringComparison.Ordinal));
        Assert.Contains("## Synthesis", _output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Progress_statistics_count_every_chunk_and_character()
    {
        var expected = await gateway.CompleteAsync("sim-fast", "Describe the water cycle in detail", 80, 6);

        var stats = await ProgressStatistics.RunAsync(Context(seed: 6));

        Assert.Equal(80, stats.Chunks);
        Assert.Equal(expected.Length, stats.Characters);
        Assert.True(stats.TimeToFirstChunk <= stats.Elapsed);
        var lines = _output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(8, lines.Count(l => l.StartsWith("[progress] ", StringComparison.Ordinal)));
        Assert.StartsWith($"[done] 80 chunks, {expected.Length} chars, ", lines[^1], StringComparison.Ordinal);
        Assert.Contains("chars/s, first chunk after ", lines[^1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Error_handling_reports_insufficient_credits_from_a_403()
    {
        await using var server = await ScriptedServer.StartAsync(app => app.MapPost("/v1/chat/completions", () =>
            Results.Json(new { error = new { message = "Team acme has no credits left.", type = "permission_error", code = "insufficient_credits" } }, statusCode: 403)));

        var outcome = await ErrorHandling.RunAsync(new SampleContext { Endpoint = server.Url, Output = _output });

        Assert.Equal(ErrorHandlingOutcome.OutOfCredits, outcome);
        Assert.StartsWith("Out of credits: Team acme has no credits left.", _output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Error_handling_waits_out_a_429_and_then_answers()
    {
        var outcome = await ErrorHandling.RunAsync(Context(model: GatewayFixture.FlakySampleModel));

        Assert.Equal(ErrorHandlingOutcome.Answered, outcome);
        var lines = _output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("Rate limited; retrying in 1 s.", lines[0]);
        Assert.False(string.IsNullOrWhiteSpace(lines[1]));
    }

    [Fact]
    public async Task Error_handling_reports_a_timeout()
    {
        var outcome = await ErrorHandling.RunAsync(Context(
            metadata: new Dictionary<string, string> { ["sim_stall_ms"] = "20000" },
            configure: o => o.FirstTokenTimeout = TimeSpan.FromMilliseconds(300)));

        Assert.Equal(ErrorHandlingOutcome.TimedOut, outcome);
        Assert.StartsWith("Timed out (FirstToken)", _output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Concurrent_streams_interleave_and_each_answer_is_the_one_asked_for()
    {
        var expected = await Task.WhenAll(ConcurrentStreams.Questions.Select(q => gateway.CompleteAsync(GatewayFixture.BriskModel, q, 30, 8)));

        var (answers, arrivals) = await ConcurrentStreams.RunAsync(Context(seed: 8, model: GatewayFixture.BriskModel));

        Assert.Equal(expected, answers);
        Assert.Equal(90, arrivals.Count);

        // Every stream delivered a chunk before every other stream finished: they ran side by side.
        for (var a = 0; a < 3; a++)
        {
            for (var b = 0; b < 3; b++)
            {
                Assert.True(arrivals.ToList().IndexOf(a) < arrivals.ToList().LastIndexOf(b), $"stream {a} started after stream {b} ended");
            }
        }
    }

    [Fact]
    public async Task Streaming_to_a_file_flushes_each_chunk_as_it_arrives()
    {
        var expected = await gateway.CompleteAsync(GatewayFixture.BriskModel, "Write a report on river pollution", 60, 9);
        var path = Path.Combine(Path.GetTempPath(), $"sluice-sample-{Guid.NewGuid():N}.txt");
        try
        {
            var run = StreamToFile.RunAsync(Context(seed: 9, model: GatewayFixture.BriskModel), path);
            var observed = new SortedSet<long>();
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            while (!run.IsCompleted)
            {
                if (File.Exists(path))
                {
                    observed.Add(new FileInfo(path).Length);
                }

                await Task.Delay(5, deadline.Token);
            }

            var chunks = await run;
            var content = await File.ReadAllTextAsync(path);

            Assert.Equal(60, chunks);
            Assert.Equal(expected, content);

            // While the answer streamed (60 tokens at 50 tokens/s), the file already held part of it.
            Assert.Contains(observed, length => length > 0 && length < content.Length);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Total_timeout_keeps_the_partial_answer()
    {
        var (text, timedOut) = await TotalTimeout.RunAsync(Context(model: GatewayFixture.BriskModel, configure: o => o.TotalTimeout = TimeSpan.FromMilliseconds(600)));

        Assert.True(timedOut);
        Assert.False(string.IsNullOrEmpty(text));
        Assert.Contains("[deadline reached after ", _output.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(ErrorSimulation.RateLimit, ErrorHandlingOutcome.Answered, "Rate limited; retrying in 1 s.")]
    [InlineData(ErrorSimulation.RateLimitTwice, ErrorHandlingOutcome.RateLimited, "Rate limited; retrying in 1 s.")]
    [InlineData(ErrorSimulation.Timeout, ErrorHandlingOutcome.TimedOut, "Timed out (FirstToken)")]
    [InlineData(ErrorSimulation.MidStream, ErrorHandlingOutcome.Interrupted, "The answer broke off: ")]
    public async Task Error_handling_triggers_each_failure_on_the_simulated_models(ErrorSimulation simulate, ErrorHandlingOutcome expected, string firstLine)
    {
        var outcome = await ErrorHandling.RunAsync(Context(), simulate);

        Assert.Equal(expected, outcome);
        Assert.StartsWith(firstLine, _output.ToString(), StringComparison.Ordinal);
        if (simulate == ErrorSimulation.RateLimitTwice)
        {
            Assert.Contains("Still rate limited", _output.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Streaming_to_a_file_defaults_to_a_new_file_in_the_temp_directory()
    {
        var first = StreamToFile.DefaultPath();

        Assert.StartsWith(Path.GetTempPath(), first, StringComparison.Ordinal);
        Assert.NotEqual(first, StreamToFile.DefaultPath());
        Assert.False(File.Exists(first));
    }

    private SampleContext Context(
        long? seed = null,
        string model = "sim-fast",
        string input = "",
        IReadOnlyDictionary<string, string>? metadata = null,
        Action<SluiceClientOptions>? configure = null) => new()
        {
            Endpoint = gateway.Url,
            Model = model,
            Seed = seed,
            Output = _output,
            Input = new StringReader(input),
            Metadata = metadata,
            ConfigureClient = configure,
        };
}
