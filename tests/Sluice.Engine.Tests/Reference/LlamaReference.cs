using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Sluice.Engine.Tests.Reference;

/// <summary>One model run by llama.cpp: logits at every prompt position, then greedy generation.</summary>
public sealed record ReferenceCase(
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("tokens")] int[] Tokens,
    [property: JsonPropertyName("generate")] int Generate,
    [property: JsonPropertyName("contextSize")] int ContextSize,
    [property: JsonPropertyName("vocabSize")] int VocabularySize);

/// <summary>
/// What llama.cpp computed for a <see cref="ReferenceCase"/>: <c>Logits[i]</c> is the logits row after the i-th
/// evaluated token (prompt tokens, then each generated token fed back but the last), <c>Generated</c> the argmax
/// chain (lowest id on ties).
/// </summary>
public sealed record ReferenceResult(
    [property: JsonPropertyName("logits")] float[][] Logits,
    [property: JsonPropertyName("generated")] int[] Generated);

/// <summary>
/// Runs <c>Reference/llama-ref.mjs</c> (node-llama-cpp 3.22.1, i.e. llama.cpp on the CPU) for a batch of cases in one
/// node process. Needs <c>SLUICE_LLAMA_REF</c>, set by <c>scripts/test-llama-ref.sh</c>; without it the tests fail
/// (never skip) and say how to set it up.
/// </summary>
public static class LlamaReference
{
    public static string Folder
    {
        get
        {
            var folder = Environment.GetEnvironmentVariable("SLUICE_LLAMA_REF");
            if (string.IsNullOrEmpty(folder))
            {
                throw new InvalidOperationException(
                    "SLUICE_LLAMA_REF is not set, so the llama.cpp reference is unavailable. Run `bash scripts/test-llama-ref.sh` " +
                    "(installs node-llama-cpp into .test-cache/llama-ref and prints the variable), export SLUICE_LLAMA_REF, " +
                    "or run the tests through `bash scripts/test.sh`.");
            }

            if (!Directory.Exists(Path.Combine(folder, "node_modules", "node-llama-cpp")))
            {
                throw new InvalidOperationException(
                    $"SLUICE_LLAMA_REF={folder} has no node_modules/node-llama-cpp. Run `bash scripts/test-llama-ref.sh` to install it.");
            }

            return folder;
        }
    }

    public static IReadOnlyList<ReferenceResult> Run(IReadOnlyList<ReferenceCase> cases, string workFolder)
    {
        var folder = Folder;
        var script = Path.Combine(AppContext.BaseDirectory, "Reference", "llama-ref.mjs");
        var request = Path.Combine(workFolder, "request.json");
        var result = Path.Combine(workFolder, "result.json");

        // One thread: the reference's spinning thread pool crawls when the machine is oversubscribed (CI shares
        // two cores), and the thread count does not change llama.cpp's results.
        File.WriteAllText(request, JsonSerializer.Serialize(new { threads = 1, cases }));
        var start = new ProcessStartInfo("node", [script, request, result])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        start.Environment["SLUICE_LLAMA_REF"] = folder;
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start node");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("the llama.cpp reference did not finish in 10 minutes");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"the llama.cpp reference failed (exit {process.ExitCode}):\n{stderr.Result}\n{stdout.Result}");
        }

        using var stream = File.OpenRead(result);
        var parsed = JsonSerializer.Deserialize<ResultFile>(stream) ?? throw new InvalidOperationException("empty reference result");
        if (parsed.Cases.Length != cases.Count)
        {
            throw new InvalidOperationException($"the reference returned {parsed.Cases.Length} results for {cases.Count} cases");
        }

        return parsed.Cases;
    }

    private sealed record ResultFile([property: JsonPropertyName("cases")] ReferenceResult[] Cases);
}
