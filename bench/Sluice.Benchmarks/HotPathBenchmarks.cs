using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;

namespace Sluice.Benchmarks;

/// <summary>What the gateway does per token and per request, with allocations.</summary>
[MemoryDiagnoser]
public class HotPathBenchmarks
{
    private readonly ArrayBufferWriter<byte> _output = new(64 * 1024);
    private readonly OpenAIChunkWriter _writer = new("chatcmpl-0123456789abcdef0123456789abcdef", 1_700_000_000, "sim-fast");
    private readonly TextDeltaEvent _delta = new(" streaming");
    private readonly List<SseEvent> _events = new(256);
    private byte[] _stream = [];
    private byte[] _request = [];
    private byte[] _largeRequest = [];

    [GlobalSetup]
    public void Setup()
    {
        var writer = new OpenAIChunkWriter("chatcmpl-x", 1_700_000_000, "gpt-4o");
        var buffer = new ArrayBufferWriter<byte>();
        for (var i = 0; i < 200; i++)
        {
            writer.WriteEvent(buffer, i + 1, new TextDeltaEvent(" token" + i));
        }

        _stream = buffer.WrittenSpan.ToArray();
        _request = Encoding.UTF8.GetBytes(
            """{"model":"sim-fast","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Tell me about the history of bridges in Paris, briefly."}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":256,"temperature":0.7}""");

        // A long conversation (~120 KB, 40 turns of ~3 KB, some non-ASCII text): what a chat client sends late in a session.
        var turn = string.Concat(Enumerable.Repeat("Le pont Neuf, achevé en 1607, est le plus ancien pont de Paris. ", 46));
        var messages = string.Join(",", Enumerable.Range(0, 40).Select(i => $$"""{"role":"{{(i % 2 == 0 ? "user" : "assistant")}}","content":"{{turn}}"}"""));
        _largeRequest = Encoding.UTF8.GetBytes($$"""{"model":"sim-fast","messages":[{{messages}}],"stream":true,"max_tokens":256}""");
    }

    /// <summary>One text delta → one SSE frame (id line + chunk JSON).</summary>
    [Benchmark]
    public int WriteTextChunk()
    {
        _output.ResetWrittenCount();
        _writer.WriteEvent(_output, 42, _delta);
        return _output.WrittenCount;
    }

    /// <summary>Parsing 200 upstream chunk frames (what an OpenAI-compatible adapter reads).</summary>
    [Benchmark]
    public int ParseSseStream()
    {
        _events.Clear();
        var parser = new SseParser();
        parser.Feed(_stream, _events);
        return _events.Count;
    }

    /// <summary>Parsing and validating a typical request body.</summary>
    [Benchmark]
    public int ParseRequest() => ChatRequestParser.Parse(_request).Messages.Count;

    /// <summary>Parsing and validating a long conversation (~120 KB).</summary>
    [Benchmark]
    public int ParseLargeRequest() => ChatRequestParser.Parse(_largeRequest).Messages.Count;
}
