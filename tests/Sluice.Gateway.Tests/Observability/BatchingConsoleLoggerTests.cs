using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Observability;
using Xunit;

namespace Sluice.Gateway.Tests.Observability;

/// <summary>
/// The batching console log: Microsoft's formatter output unchanged, every line whole and in order per thread, far
/// fewer writes than lines under load, a lone line written at once, and a bounded queue that counts what it drops.
/// </summary>
public sealed class BatchingConsoleLoggerTests
{
    // The formatters exactly as the gateway registers them (simple single-line, or JSON).
    private static ConsoleFormatter Formatter(string format)
    {
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddSluiceLogging(null, new ObservabilityOptions { LogFormat = format }));
        var provider = services.BuildServiceProvider();
        Assert.DoesNotContain(provider.GetServices<ILoggerProvider>(), p => p is ConsoleLoggerProvider);
        Assert.Single(provider.GetServices<ILoggerProvider>(), p => p is BatchingConsoleLoggerProvider);
        return provider.GetServices<ConsoleFormatter>().Single(f => f.Name == (format == "json" ? ConsoleFormatterNames.Json : ConsoleFormatterNames.Simple));
    }

    [Fact]
    public async Task Lines_from_many_threads_arrive_whole_and_in_order_in_far_fewer_writes_than_lines()
    {
        var output = new RecordingStream();
        var provider = new BatchingConsoleLoggerProvider(Formatter("simple"), output);
        const int threads = 4, perThread = 2_000;
        await Task.WhenAll(Enumerable.Range(0, threads).Select(t => Task.Run(() =>
        {
            var log = provider.CreateLogger("Sluice.AccessLog");
            for (var i = 0; i < perThread; i++)
            {
                log.LogInformation(1, "thread {Thread} line {Line} ünïcode", t, i);
            }
        })));
        provider.Dispose();

        var lines = output.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(threads * perThread, lines.Length);
        for (var t = 0; t < threads; t++)
        {
            var mine = lines.Where(l => l.Contains($"thread {t} line ", StringComparison.Ordinal)).ToList();
            Assert.Equal(perThread, mine.Count);
            for (var i = 0; i < perThread; i++)
            {
                // Microsoft's simple single-line format, unchanged: "HH:mm:ss info: Category[id] message".
                Assert.Matches(@"^\d\d:\d\d:\d\d info: Sluice\.AccessLog\[1\] thread \d line \d+ ünïcode$", mine[i]);
                Assert.EndsWith($"thread {t} line {i} ünïcode", mine[i], StringComparison.Ordinal);
            }
        }

        Assert.InRange(output.Writes, 1, (threads * perThread) / 20);
    }

    [Fact]
    public async Task Reused_line_buffers_never_mix_lines_and_lines_longer_than_a_buffer_arrive_whole()
    {
        // Lines are copied into pooled buffers that the writer hands back once written: a buffer reused too early, or a
        // long line cut to the pooled size, would show up here as a line with another's text or a missing tail.
        var output = new RecordingStream();
        var provider = new BatchingConsoleLoggerProvider(Formatter("simple"), output);
        const int threads = 3, perThread = 1_500;
        await Task.WhenAll(Enumerable.Range(0, threads).Select(t => Task.Run(() =>
        {
            var log = provider.CreateLogger("Sluice.AccessLog");
            for (var i = 0; i < perThread; i++)
            {
                // Every 7th line is longer than a pooled buffer; the others vary in length so reused buffers hold stale tails.
                var padding = new string((char)('a' + t), i % 7 == 0 ? BatchingConsoleLoggerProvider.PooledLineChars + 300 + i : i % 50);
                log.LogInformation(1, "t{Thread} n{Line} {Padding} end", t, i, padding);
            }
        })));
        provider.Dispose();

        var lines = output.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(threads * perThread, lines.Length);
        for (var t = 0; t < threads; t++)
        {
            var mine = lines.Where(l => l.Contains($" t{t} n", StringComparison.Ordinal)).ToList();
            Assert.Equal(perThread, mine.Count);
            for (var i = 0; i < perThread; i++)
            {
                var padding = new string((char)('a' + t), i % 7 == 0 ? BatchingConsoleLoggerProvider.PooledLineChars + 300 + i : i % 50);
                Assert.EndsWith($"[1] t{t} n{i} {padding} end", mine[i], StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public void A_lone_line_is_written_without_waiting_for_more_or_for_disposal()
    {
        var output = new RecordingStream();
        using var provider = new BatchingConsoleLoggerProvider(Formatter("json"), output);
        provider.CreateLogger("Sluice").LogWarning(7, "the only line {Value}", 42);

        Assert.True(SpinWait.SpinUntil(() => output.Writes > 0, TimeSpan.FromSeconds(10)), "the line was written without more lines or disposal");

        var line = Assert.Single(output.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        using var json = System.Text.Json.JsonDocument.Parse(line);
        Assert.Equal("Warning", json.RootElement.GetProperty("LogLevel").GetString());
        Assert.Equal("the only line 42", json.RootElement.GetProperty("Message").GetString());
        Assert.Equal(42, json.RootElement.GetProperty("State").GetProperty("Value").GetInt32());
    }

    [Fact]
    public void A_blocked_output_holds_a_bounded_queue_and_the_dropped_lines_are_counted_once_it_moves()
    {
        using var gate = new ManualResetEventSlim();
        var output = new RecordingStream(gate);
        var provider = new BatchingConsoleLoggerProvider(Formatter("simple"), output, maxPendingChars: 10_000);
        var log = provider.CreateLogger("Sluice");

        // The first line wakes the writer, which then blocks in its write; ~100-char lines fill 10,000 chars quickly.
        log.LogInformation("first");
        Assert.True(SpinWait.SpinUntil(() => output.Blocked, TimeSpan.FromSeconds(10)), "the writer reached the blocked output");
        for (var i = 0; i < 1_000; i++)
        {
            log.LogInformation("queued line {Index} {Padding}", i, new string('x', 60));
        }

        gate.Set();
        provider.Dispose();
        var lines = output.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var kept = lines.Count(l => l.Contains("queued line", StringComparison.Ordinal));
        Assert.InRange(kept, 1, 200);
        var note = Assert.Single(lines, l => l.Contains("log line(s) dropped", StringComparison.Ordinal));
        Assert.Contains($"Sluice.Logging {1_000 - kept} log line(s) dropped", note, StringComparison.Ordinal);
    }

    /// <summary>Records what is written and how many writes it took; optionally blocks writes until a gate opens.</summary>
    public static TheoryData<string, string> AccessLines => new()
    {
        // format, model: an ordinary line, one with a line break (the formatter rewrites it: the ordinary path), one too
        // long for the placed message's stack buffer (the ordinary path again).
        { "simple", "gpt-4o" },
        { "simple", "two\nlines" },
        { "simple", new string('m', 600) },
        { "json", "gpt-4o" },
    };

    [Theory]
    [MemberData(nameof(AccessLines))]
    public void Access_log_lines_are_written_exactly_as_the_formatter_writes_them_with_their_message_string(string format, string model)
    {
        var formatter = Formatter(format);
        var output = new RecordingStream();
        var provider = new BatchingConsoleLoggerProvider(formatter, output);
        var lines = new[]
        {
            new AccessLogLine("req_1", "openai", model, 200, "completed", "team_a", "key_b", 12.345, 250.5, 7, 64, null),
            new AccessLogLine("req_2", "anthropic", model, 404, "rejected", null, null, null, 0.125, 0, 0, "model_not_found"),
        };
        var log = provider.CreateLogger("Sluice.AccessLog");
        foreach (var line in lines)
        {
            log.Log(LogLevel.Information, AccessLogLine.Event, line, null, AccessLogLine.Format);
        }

        provider.Dispose();

        // What Microsoft's formatter writes when handed the message string (the path every other line takes).
        var expected = new StringWriter();
        foreach (var line in lines)
        {
            formatter.Write(new LogEntry<AccessLogLine>(LogLevel.Information, "Sluice.AccessLog", AccessLogLine.Event, line, null, AccessLogLine.Format), null, expected);
        }

        // The timestamps may differ by a second: compared without them.
        static string[] Untimed(string text, string format) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => format == "json" ? System.Text.RegularExpressions.Regex.Replace(l, "\"Timestamp\":\"[^\"]*\"", "") : l[9..]).ToArray();
        var written = Untimed(output.Text, format);
        Assert.Equal(Untimed(expected.ToString(), format), written);
        Assert.Equal(2, written.Length);
        Assert.Contains(lines[0].ToString().Replace("\n", format == "json" ? "\\n" : " ", StringComparison.Ordinal)[..60], written[0], StringComparison.Ordinal);
    }

    [Fact]
    public void An_access_log_line_gives_the_generated_message_and_fields_and_costs_no_message_string_on_the_console()
    {
        var line = new AccessLogLine("req_1", "openai", "gpt-4o", 200, "completed", "team_a", null, 12.5, 250.25, 7, 64, null);
        Assert.Equal("req_1 openai model=gpt-4o status=200 outcome=completed team=team_a key= ttft_ms=12.5 duration_ms=250.25 tokens_in=7 tokens_out=64 error=",
            line.ToString());
        var fields = line.ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal(13, fields.Count);
        Assert.Equal(200, fields["Status"]);
        Assert.Equal(12.5, fields["TtftMs"]);
        Assert.Null(fields["KeyId"]);
        Assert.Equal(AccessLogLine.Template, fields["{OriginalFormat}"]);

        // Measured on the logging calls only, in batches the writer drains in between (so line buffers come back to the
        // pool, as they do under a steady load); the first batch warms the thread's writer and the pool. The least a
        // batch allocated per line is compared: the queue's growth, or a line buffer not yet back on a loaded machine,
        // lands in one batch, while the message string would be ~300 bytes on every line of every batch.
        var output = new RecordingStream();
        var provider = new BatchingConsoleLoggerProvider(Formatter("simple"), output);
        var log = provider.CreateLogger("Sluice.AccessLog");
        const int Batch = 100, Batches = 11;
        var perLine = double.MaxValue;
        for (var b = 0; b < Batches; b++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < Batch; i++)
            {
                log.Log(LogLevel.Information, AccessLogLine.Event, line, null, AccessLogLine.Format);
            }

            if (b > 0)
            {
                perLine = Math.Min(perLine, (GC.GetAllocatedBytesForCurrentThread() - before) / (double)Batch);
            }

            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (output.Text.Count(c => c == '\n') < (b + 1) * Batch && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(5);
            }
        }

        provider.Dispose();
        Assert.InRange(perLine, 0, 150);
        Assert.EndsWith(" info: Sluice.AccessLog[1] " + line.ToString(), output.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1], StringComparison.Ordinal);
    }

    private sealed class RecordingStream(ManualResetEventSlim? gate = null) : Stream
    {
        private readonly MemoryStream _bytes = new();
        private int _writes;
        private volatile bool _blocked;

        public int Writes => Volatile.Read(ref _writes);

        public bool Blocked => _blocked;

        public string Text
        {
            get
            {
                lock (_bytes)
                {
                    return Encoding.UTF8.GetString(_bytes.ToArray());
                }
            }
        }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count)
        {
            if (gate is not null && !gate.IsSet)
            {
                _blocked = true;
                gate.Wait(TimeSpan.FromSeconds(30));
            }

            lock (_bytes)
            {
                _bytes.Write(buffer, offset, count);
            }

            Interlocked.Increment(ref _writes);
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
