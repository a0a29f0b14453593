using System.Text.Json;
using System.Text.Json.Nodes;
using Sluice.Engine.Gguf;
using Sluice.Engine.Models;
using Sluice.Engine.Templates;
using Sluice.Engine.Tokenization;
using Sluice.Engine.Tests.Reference;
using Sluice.Testing;
using Xunit.Abstractions;

namespace Sluice.Cli.Tests;

/// <summary>
/// <c>sluice run</c> on random-weight GGUF files: greedy generation gives exactly llama.cpp's token ids (prompt as fed and
/// answer), for llama, qwen2 and qwen3 with float and quantized weights; files that cannot be loaded fail with one line
/// naming the path; bad options exit 2.
/// </summary>
public sealed class RunCommandTests(RunModelsFixture models, ITestOutputHelper output) : IClassFixture<RunModelsFixture>
{
    public static TheoryData<string> CaseNames => [.. RunModelsFixture.Cases.Select(c => c.Name)];

    /// <summary>
    /// The token ids `sluice run --raw --temperature 0 --max-tokens 32 --json` prints are llama.cpp's: the prompt
    /// tokenized with specials parsed and BOS as the file says, then the greedy chain, ended by llama.cpp's end-of-generation
    /// token or the limit. The reference's top-2 margins show each case is no numerical tie (where either token would be a
    /// right answer; docs/engine.md).
    /// </summary>
    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task Raw_greedy_run_gives_llama_cpp_token_ids(string name)
    {
        var (@case, path) = models.Get(name);
        var reference = models.Reference(name);

        var result = await CliProcess.RunAsync(
            ["run", path, "--raw", "--temperature", "0", "--max-tokens", "32", "--threads", "1", "--context", "256", "--json", @case.Prompt],
            timeout: TimeSpan.FromMinutes(2));

        Assert.True(result.ExitCode == 0, result.ToString());
        using var json = JsonDocument.Parse(result.Stdout);
        var root = json.RootElement;
        var prompt = root.GetProperty("prompt_tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        var tokens = root.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        output.WriteLine($"{name}: prompt [{string.Join(' ', prompt)}], tokens [{string.Join(' ', tokens)}], stop {root.GetProperty("stop_reason").GetString()}, smallest margin {reference.Margins.Min():E2}");
        output.WriteLine(root.GetProperty("text").GetString());

        Assert.True(reference.Margins.Min() > 1e-3, $"{name}: llama.cpp's top two logits are {reference.Margins.Min():E2} apart at some step, a numerical tie; pick another seed");
        Assert.Equal(reference.PromptTokens, prompt);
        Assert.Equal(reference.Tokens, tokens);
        Assert.Equal(reference.Stop == "eog" ? "end_of_turn" : "max_tokens", root.GetProperty("stop_reason").GetString());
        Assert.Equal(@case.AddBos, prompt[0] == LocalTestModels.Bos);
        Assert.True(root.GetProperty("timings").GetProperty("generation_ms").GetDouble() > 0);
    }

    /// <summary>At least one case ends at an end-of-generation token and one at the limit, so both endings are compared.</summary>
    [Fact]
    public void The_cases_cover_both_endings_and_every_architecture()
    {
        var stops = RunModelsFixture.Cases.Select(c => models.Reference(c.Name).Stop).ToList();
        Assert.Contains("eog", stops);
        Assert.Contains("length", stops);
        Assert.Equal(ModelInfo.SupportedArchitectures.Order(), RunModelsFixture.Cases.Select(c => c.Spec.Architecture).Distinct().Order());
        Assert.Contains(RunModelsFixture.Cases, c => c.Spec.WeightType is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16));
    }

    [Fact]
    public async Task Missing_file_is_one_line_naming_the_path_exit_3()
    {
        var path = Path.Combine(models.Directory, "no-such-model.gguf");

        var result = await CliProcess.RunAsync(["run", path, "Hello"]);

        Assert.True(result.ExitCode == 3, result.ToString());
        Assert.Equal($"sluice run: model file '{path}' does not exist. Check the path.", Assert.Single(result.StderrLines));
        Assert.Equal(string.Empty, result.Stdout);
    }

    [Fact]
    public async Task Truncated_file_is_one_line_naming_the_path_and_what_to_do_exit_3()
    {
        var (_, source) = models.Get(RunModelsFixture.Cases[0].Name);
        var path = Path.Combine(models.Directory, "truncated.gguf");
        var bytes = await File.ReadAllBytesAsync(source);
        await File.WriteAllBytesAsync(path, bytes[..(bytes.Length / 2)]);

        var result = await CliProcess.RunAsync(["run", path, "Hello"]);

        Assert.True(result.ExitCode == 3, result.ToString());
        var line = Assert.Single(result.StderrLines);
        Assert.StartsWith($"sluice run: model file '{path}' is not a usable GGUF file: ", line, StringComparison.Ordinal);
        Assert.Contains("Download it again", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unsupported_architecture_is_one_line_listing_the_supported_ones_exit_3()
    {
        var path = Path.Combine(models.Directory, "gemma3.gguf");
        var writer = new GgufWriter();
        writer.AddString("general.architecture", "gemma3");
        writer.AddUInt32("gemma3.context_length", 2048);
        writer.WriteTo(path);

        var result = await CliProcess.RunAsync(["run", path, "Hello"]);

        Assert.True(result.ExitCode == 3, result.ToString());
        var line = Assert.Single(result.StderrLines);
        Assert.StartsWith($"sluice run: model file '{path}' cannot be run by Sluice's engine: architecture 'gemma3' is not supported", line, StringComparison.Ordinal);
        Assert.Contains("llama, qwen2, qwen3", line, StringComparison.Ordinal);
    }

    /// <summary><c>--bench</c> measures like llama-bench and prints the figures a comparison with llama.cpp needs.</summary>
    [Fact]
    public async Task Bench_prints_prompt_and_generation_speed_as_json()
    {
        var (_, path) = models.Get(RunModelsFixture.Cases[0].Name);

        var result = await CliProcess.RunAsync(["run", path, "--bench", "--threads", "1", "--json"], timeout: TimeSpan.FromMinutes(3));

        Assert.True(result.ExitCode == 0, result.ToString());
        using var json = JsonDocument.Parse(result.Stdout);
        var root = json.RootElement;
        Assert.True(root.GetProperty("pp_tok_s").GetDouble() > 0);
        Assert.True(root.GetProperty("tg_tok_s").GetDouble() > 0);
        Assert.True(root.GetProperty("ttft_ms").GetDouble() > 0);
        Assert.Equal((128, 64, 1), (root.GetProperty("pp_tokens").GetInt32(), root.GetProperty("tg_tokens").GetInt32(), root.GetProperty("threads").GetInt32()));
        var runs = root.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(3, runs.Count);
        Assert.Equal(runs.Max(r => r.GetProperty("tg_tok_s").GetDouble()), root.GetProperty("tg_tok_s").GetDouble());
        Assert.Contains(result.StderrLines, l => l.Contains("run 3/3", StringComparison.Ordinal));
        Assert.True(root.GetProperty("mmap").GetBoolean());
        Assert.Equal("f32", root.GetProperty("kv_cache").GetString());
        Assert.Contains(result.StderrLines, l => l.StartsWith("Loaded ", StringComparison.Ordinal) && l.Contains("of weights (memory-mapped)", StringComparison.Ordinal));
    }

    /// <summary>
    /// <c>--bench --parallel 4</c> adds the aggregate speed of four generations at once through the batching scheduler
    /// (here with <c>--no-mmap</c>: the weights read into memory, and the output says so; and an f16 KV cache).
    /// </summary>
    [Fact]
    public async Task Bench_with_parallel_adds_the_concurrent_generation_figure()
    {
        var (_, path) = models.Get(RunModelsFixture.Cases[0].Name);

        var result = await CliProcess.RunAsync(["run", path, "--bench", "--parallel", "4", "--threads", "1", "--json", "--no-mmap", "--kv-cache", "F16"], timeout: TimeSpan.FromMinutes(3));

        Assert.True(result.ExitCode == 0, result.ToString());
        using var json = JsonDocument.Parse(result.Stdout);
        var root = json.RootElement;
        Assert.Equal(4, root.GetProperty("parallel").GetInt32());
        var tg4 = root.GetProperty("tg4_tok_s").GetDouble();
        Assert.True(tg4 > 0);
        Assert.Equal(Math.Round(tg4 / root.GetProperty("tg_tok_s").GetDouble(), 3), root.GetProperty("tg4_ratio").GetDouble(), 2);
        var runs = root.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(tg4, runs.Max(r => r.GetProperty("tg4_tok_s").GetDouble()));
        Assert.Contains(result.StderrLines, l => l.Contains("tg ×4 streams", StringComparison.Ordinal));
        Assert.False(root.GetProperty("mmap").GetBoolean());
        Assert.Equal("f16", root.GetProperty("kv_cache").GetString());
        Assert.Contains(result.StderrLines, l => l.StartsWith("Loaded ", StringComparison.Ordinal) && l.Contains("of weights (in memory)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Parallel_without_bench_is_a_usage_error()
    {
        var (_, path) = models.Get(RunModelsFixture.Cases[0].Name);

        var result = await CliProcess.RunAsync(["run", path, "--parallel", "4", "Hello"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Equal("sluice run: --parallel measures concurrent generations with --bench; add --bench, or leave --parallel out.", Assert.Single(result.StderrLines));
    }

    [Fact]
    public async Task Bench_with_a_prompt_is_a_usage_error()
    {
        var (_, path) = models.Get(RunModelsFixture.Cases[0].Name);

        var result = await CliProcess.RunAsync(["run", path, "--bench", "Hello"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Equal("sluice run: --bench measures with a random prompt of its own; leave the prompt out.", Assert.Single(result.StderrLines));
    }

    [Theory]
    [InlineData("--top-p", "1.5", "sluice run: --top-p must be above 0 and at most 1 (got 1.5).")]
    [InlineData("--temperature", "-1", "sluice run: --temperature must be 0 or more (got -1); 0 is greedy.")]
    [InlineData("--max-tokens", "0", "sluice run: --max-tokens must be at least 1 (got 0).")]
    [InlineData("--kv-cache", "f8", "sluice run: --kv-cache must be f32 or f16 (got \"f8\"); f16 halves the cache's memory.")]
    public async Task Bad_option_values_exit_2_with_one_line(string option, string value, string expected)
    {
        var (_, path) = models.Get(RunModelsFixture.Cases[0].Name);

        var result = await CliProcess.RunAsync(["run", path, option, value, "Hello"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Equal(expected, Assert.Single(result.StderrLines));
    }

    /// <summary>
    /// Without --raw the prompt is a user turn of the file's chat template: the ids fed are the tokenizer's encoding of the
    /// rendered ChatML (special tokens parsed), and the answer's text is streamed to stdout with the stats on stderr.
    /// </summary>
    [Fact]
    public async Task Chat_prompt_is_the_rendered_template_and_the_answer_streams_to_stdout()
    {
        var (_, path) = models.Get(RunModelsFixture.Cases[0].Name);
        var json = await CliProcess.RunAsync(["run", path, "--temperature", "0", "--max-tokens", "8", "--json", "--system", "Be brief.", "Tell me about rivers"]);
        var text = await CliProcess.RunAsync(["run", path, "--temperature", "0", "--max-tokens", "8", "--system", "Be brief.", "Tell me about rivers"]);

        Assert.True(json.ExitCode == 0, json.ToString());
        Assert.True(text.ExitCode == 0, text.ToString());
        using var document = JsonDocument.Parse(json.Stdout);
        var prompt = document.RootElement.GetProperty("prompt_tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        using (var file = GgufFile.Open(path))
        {
            var tokenizer = Tokenizer.Create(VocabularyData.FromGguf(file));
            var rendered = new ChatTemplate(LocalTestModels.ChatMLTemplate).Render(
                [new ChatMessage("system", "Be brief."), new ChatMessage("user", "Tell me about rivers")], ChatTemplateOptions.For(tokenizer));
            Assert.Equal(tokenizer.Encode(rendered, addSpecial: true, parseSpecial: true), prompt);
        }

        Assert.Equal([LocalTestModels.Bos, LocalTestModels.ImStart], prompt[..2]); // the file's add_bos_token, then the template
        Assert.Equal(3, prompt.Count(t => t == LocalTestModels.ImStart));
        Assert.Equal(2, prompt.Count(t => t == LocalTestModels.ImEnd));
        var answer = document.RootElement.GetProperty("text").GetString()!;
        Assert.Equal(answer + "\n", text.Stdout);
        Assert.Contains(text.StderrLines, l => l.StartsWith($"· prompt {prompt.Length} tokens", StringComparison.Ordinal));
    }
}

/// <summary>One `sluice run` parity case: a model spec, the file's add_bos_token, and the raw prompt.</summary>
public sealed record RunCase(string Name, SyntheticModelSpec Spec, bool AddBos, string Prompt);

/// <summary>llama.cpp's answer for a case.</summary>
public sealed record RunReference(int[] PromptTokens, int[] Tokens, string Stop, double[] Margins);

/// <summary>Writes the case models once and runs llama.cpp on all of them in one node process.</summary>
public sealed class RunModelsFixture : IDisposable
{
    public static readonly IReadOnlyList<RunCase> Cases =
    [
        new("llama-F32", LocalTestModels.Tiny("llama", GgmlType.F32, seed: 11), AddBos: true, "The lighthouse keeper walked to the harbor"),
        new("llama-Q4_0", LocalTestModels.Tiny("llama", GgmlType.Q4_0, seed: 12), AddBos: false, "<|im_start|>user\nHello world<|im_end|>\n<|im_start|>assistant\n"),
        new("qwen2-Q8_0", LocalTestModels.Tiny("qwen2", GgmlType.Q8_0, seed: 34), AddBos: false, "Once upon a time, the river"),
        new("qwen3-Q4_K", LocalTestModels.Tiny("qwen3", GgmlType.Q4_K, seed: 14), AddBos: true, "Bright stars over the quiet sea"),
    ];

    private readonly Lazy<Dictionary<string, RunReference>> _references;

    public RunModelsFixture()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("sluice-run-tests-").FullName;
        foreach (var c in Cases)
        {
            LocalTestModels.WriteChatModel(PathOf(c.Name), c.Spec, addBos: c.AddBos);
        }

        _references = new Lazy<Dictionary<string, RunReference>>(RunReferences);
    }

    public string Directory { get; }

    public (RunCase Case, string Path) Get(string name) => (Cases.Single(c => c.Name == name), PathOf(name));

    public RunReference Reference(string name) => _references.Value[name];

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);

    private string PathOf(string name) => Path.Combine(Directory, name + ".gguf");

    private Dictionary<string, RunReference> RunReferences()
    {
        var input = new JsonObject
        {
            ["cases"] = new JsonArray([.. Cases.Select(c => (JsonNode)new JsonObject
            {
                ["model"] = PathOf(c.Name),
                ["prompt"] = c.Prompt,
                ["maxTokens"] = 32,
                ["contextSize"] = 256,
            })]),
        };
        var result = NodeReference.RunNode("run-ref.mjs", input, TimeSpan.FromMinutes(5));
        var cases = result["cases"]!.AsArray();
        var references = new Dictionary<string, RunReference>(StringComparer.Ordinal);
        for (var i = 0; i < Cases.Count; i++)
        {
            var c = cases[i]!;
            references[Cases[i].Name] = new RunReference(
                [.. c["promptTokens"]!.AsArray().Select(t => (int)t!)],
                [.. c["tokens"]!.AsArray().Select(t => (int)t!)],
                (string)c["stop"]!,
                [.. c["margins"]!.AsArray().Select(t => (double)t!)]);
        }

        return references;
    }
}
