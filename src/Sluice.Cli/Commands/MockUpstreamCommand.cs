using System.CommandLine;
using Sluice.Cli.Bench;

namespace Sluice.Cli.Commands;

/// <summary><c>sluice mock-upstream</c>: a loopback OpenAI-compatible server with fixed answers, for benchmarks.</summary>
internal static class MockUpstreamCommand
{
    public static Command Create()
    {
        var defaults = new MockUpstreamOptions();
        var host = new Option<string>("--host") { Description = "Address to listen on.", DefaultValueFactory = _ => defaults.Host };
        var port = new Option<int>("--port", "-p") { Description = "Port to listen on (0: any free port).", DefaultValueFactory = _ => defaults.Port };
        var chunks = new Option<int>("--chunks", "-k") { Description = "Content chunks per answer (one token each).", DefaultValueFactory = _ => defaults.Chunks };
        var chunkDelay = new Option<int>("--chunk-delay-ms") { Description = "Milliseconds between content chunks.", DefaultValueFactory = _ => defaults.ChunkDelayMs };
        var firstDelay = new Option<int>("--first-delay-ms") { Description = "Milliseconds before the first content chunk.", DefaultValueFactory = _ => defaults.FirstDelayMs };
        var chunkText = new Option<string>("--chunk-text") { Description = "Text of every content chunk.", DefaultValueFactory = _ => defaults.ChunkText };
        var timestamps = new Option<bool>("--timestamp-chunks") { Description = "Each content chunk's text is the time it was sent, t=<Unix ms, 3 decimals>; (instead of --chunk-text), to measure the delay a proxy adds per chunk." };
        var pacing = new Option<MockPacing>("--pacing") { Description = "How paced chunks are timed: precise (each chunk at its own time, within ~1 ms, from one pacing thread) or timer (Task.Delay per chunk: .NET's coarse timers release thousands of streams' chunks in bursts — a stress pattern).", DefaultValueFactory = _ => defaults.Pacing };
        var http2 = new Option<bool>("--http2") { Description = "Speak HTTP/2 only, without TLS (for a gateway model with \"HttpVersion\": \"2\"; HTTP/1.1 clients such as curl without --http2-prior-knowledge are refused)." };
        var model = new Option<string>("--model", "-m") { Description = "Model name reported (any requested model is accepted).", DefaultValueFactory = _ => defaults.Model };
        var command = new Command(
            "mock-upstream",
            "Serve a fake OpenAI-compatible upstream on loopback for benchmarks: POST /v1/chat/completions (SSE in the OpenAI format, "
            + "usage chunk when stream_options.include_usage, then [DONE]; or plain JSON) and GET /v1/models. Every answer is --chunks copies of --chunk-text.\n\n"
            + "Example:\n"
            + "  sluice mock-upstream --port 8081 --chunks 64 --chunk-delay-ms 0\n"
            + "  sluice bench --url http://127.0.0.1:8081 --model mock -c 32 -n 5000")
        {
            host, port, chunks, chunkDelay, firstDelay, chunkText, timestamps, pacing, http2, model,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(
            new MockUpstreamOptions
            {
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                Chunks = parse.GetValue(chunks),
                ChunkDelayMs = parse.GetValue(chunkDelay),
                FirstDelayMs = parse.GetValue(firstDelay),
                ChunkText = parse.GetValue(chunkText)!,
                TimestampChunks = parse.GetValue(timestamps),
                Pacing = parse.GetValue(pacing),
                Http2Only = parse.GetValue(http2),
                Model = parse.GetValue(model)!,
            },
            cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(MockUpstreamOptions options, CancellationToken cancellationToken)
    {
        try
        {
            await using var mock = await MockUpstream.StartAsync(options, cancellationToken);
            await Console.Out.WriteLineAsync(
                $"Mock upstream listening on {mock.BaseAddress}{(options.Http2Only ? " (HTTP/2 only, no TLS)" : string.Empty)} — model '{options.Model}', {options.Chunks} chunks of " + (options.TimestampChunks ? "their send time" : $"\"{options.ChunkText}\"") + ", "
                + $"first after {options.FirstDelayMs} ms, then every {options.ChunkDelayMs} ms ({(options.Pacing == MockPacing.Precise ? "precise pacing" : "Task.Delay pacing")}). Ctrl+C to stop. "
                + $"Try: sluice bench --url {mock.BaseAddress} --model {options.Model}");
            await mock.WaitForShutdownAsync(cancellationToken);
            return ExitCodes.Success;
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync($"sluice mock-upstream: {ex.Message}");
            return ExitCodes.Usage;
        }
        catch (IOException ex) when (ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
        {
            await Console.Error.WriteLineAsync($"sluice mock-upstream: {Sentences.Join(ex.Message, "Another process uses that port: stop it, or pass another --port.")}");
            return ExitCodes.Config;
        }
        catch (OperationCanceledException)
        {
            return ExitCodes.Success;
        }
    }
}
