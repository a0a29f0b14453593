using System.Diagnostics;
using System.Text.Json;

namespace Sluice.Cli.Tests;

/// <summary>
/// Ctrl+C in a one-shot <c>sluice chat</c> stops the generation on the gateway every time: the real chat process
/// against a real <c>sluice serve</c>, interrupted mid-answer again and again, leaves no generation running to its
/// end (the gateway's usage counts all of them abandoned, none completed).
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class CtrlCCancelTests : IDisposable
{
    private const int Runs = 20;

    private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("sluice-ctrl-c-");
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public void Dispose()
    {
        _http.Dispose();
        _data.Delete(recursive: true);
    }

    [Fact]
    public async Task Ctrl_c_mid_answer_cancels_the_generation_on_the_gateway_every_time()
    {
        await using var server = await ServeProcess.StartAsync(["--data", _data.FullName]);

        for (var run = 1; run <= Runs; run++)
        {
            // 400 tokens of sim-realistic (~45 tokens/s) take about 9 s: long enough that a generation the cancel
            // missed would still be running when the next run starts, and would then finish as "completed".
            await using var chat = CliProcess.Start(
                ["chat", "Tell me a story about rivers", "--url", server.Url, "--model", "sim-realistic", "--max-tokens", "400", "--seed", run.ToString(System.Globalization.CultureInfo.InvariantCulture)],
                defaultSigInt: true);
            chat.Stdin.Close();
            await chat.WaitForOutputAsync((stdout, _) => stdout.Length >= 20, TimeSpan.FromSeconds(30));
            await chat.InterruptAsync();
            var exitCode = await chat.WaitForExitAsync(TimeSpan.FromSeconds(15));
            Assert.True(exitCode == 130, $"run {run}: exit {exitCode}\n{chat.Stderr}");
            Assert.Contains("[sim-realistic] cancelled after ", chat.Stderr, StringComparison.Ordinal);
        }

        // Every request is settled once its generation has stopped: at once when cancelled, after ~9 s when not.
        var deadline = Stopwatch.GetTimestamp() + (Stopwatch.Frequency * 25);
        JsonElement usage;
        do
        {
            await Task.Delay(250);
            using var health = JsonDocument.Parse(await _http.GetStringAsync(new Uri(server.Url + "/health")));
            usage = health.RootElement.GetProperty("usage").Clone();
        }
        while (Settled(usage) < Runs && Stopwatch.GetTimestamp() < deadline);

        Assert.True(usage.GetProperty("requests").GetInt64() == Runs, usage.ToString());
        Assert.True(usage.GetProperty("completed").GetInt64() == 0, $"generations that ran to their end after Ctrl+C: {usage}");
        Assert.True(usage.GetProperty("abandoned").GetInt64() == Runs, usage.ToString());
    }

    private static long Settled(JsonElement usage) =>
        usage.GetProperty("completed").GetInt64() + usage.GetProperty("failed").GetInt64() + usage.GetProperty("abandoned").GetInt64();
}
