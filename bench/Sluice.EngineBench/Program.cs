using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Sluice.Engine;
using Sluice.Engine.Benchmarking;
using Sluice.Engine.Gguf;
using Sluice.Engine.Models;
using Sluice.Engine.Sampling;
using Sluice.Providers.Local;

// Sluice's engine against llama.cpp (node-llama-cpp 3.22.1) on random-weight GGUF files of real model shapes.
// Usage: dotnet run -c Release --project bench/Sluice.EngineBench -- [options]   (see Options.Usage)
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var options = Options.Parse(args);
if (options is null)
{
    Console.Error.WriteLine(Options.Usage);
    return 2;
}

Directory.CreateDirectory(options.Directory);
var report = new Report(options);
Console.WriteLine($"# Sluice engine vs llama.cpp — {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, {options.Threads} threads, {options.Repetitions} repetitions, weights {(options.MemoryMap ? "memory-mapped" : "read into memory (--no-mmap)")}");
Console.WriteLine($"load average at start: {Machine.LoadAverage()}");

using var reference = options.Reference ? LlamaReference.Start() : null;
foreach (var shape in options.Shapes)
{
    foreach (var type in options.Types)
    {
        var path = ModelFiles.Ensure(options.Directory, shape, type);
        report.Add(Measure(shape, type, path));
    }
}

Console.WriteLine();
Console.WriteLine($"load average at end: {Machine.LoadAverage()}");
Console.WriteLine();
Console.WriteLine(report.Markdown());
if (options.JsonPath is not null)
{
    File.WriteAllText(options.JsonPath, report.Json());
    Console.WriteLine($"wrote {options.JsonPath}");
}

return 0;

Row Measure(Shape shape, GgmlType type, string path)
{
    Console.WriteLine();
    Console.WriteLine($"## {shape.Name} {type} ({new FileInfo(path).Length / (1 << 20)} MiB) — load {Machine.LoadAverage()}");
    var context = options.PromptTokens + options.GenerateTokens + 16;
    using var model = LocalModel.Load(path, new LocalModelOptions { ThreadCount = options.Threads, ContextSize = context, MemoryMap = options.MemoryMap, KvCache = options.KvCache ?? KvCacheType.F32 });
    var prompt = EngineBenchmark.RandomPrompt(model.Info, options.PromptTokens, 1);
    var bench = new EngineBenchmarkOptions { PromptTokens = options.PromptTokens, GenerateTokens = options.GenerateTokens, Repetitions = 1, Warmup = 0 };
    var row = new Row(shape.Name, type.ToString(), new FileInfo(path).Length);
    if (options.Engine)
    {
        EngineBenchmark.Run(model, bench with { Warmup = 1, Repetitions = 0 + 1 });
    }

    if (reference is not null)
    {
        reference.Load(path, options.Threads, context, options.MemoryMap, options.KvCache);
        reference.Run(prompt, options.GenerateTokens); // warm-up
    }

    for (var rep = 0; rep < options.Repetitions; rep++)
    {
        // Alternate who goes first so a drifting load favours neither.
        for (var turn = 0; turn < 2; turn++)
        {
            var engineTurn = (rep + turn) % 2 == 0;
            if (engineTurn && options.Engine)
            {
                var s = EngineBenchmark.Run(model, bench).Samples[0];
                row.Engine.Add(new Sample(s.PromptTokensPerSecond, s.GenerateTokensPerSecond, s.TimeToFirstTokenMs));
                Console.WriteLine($"  engine    rep {rep + 1}: pp {s.PromptTokensPerSecond,7:F1}  tg {s.GenerateTokensPerSecond,6:F2}  ttft {s.TimeToFirstTokenMs,7:F0} ms   (load {Machine.LoadAverage()})");
            }
            else if (!engineTurn && reference is not null)
            {
                var s = reference.Run(prompt, options.GenerateTokens);
                row.Reference.Add(s);
                Console.WriteLine($"  llama.cpp rep {rep + 1}: pp {s.Pp,7:F1}  tg {s.Tg,6:F2}  ttft {s.TtftMs,7:F0} ms   (load {Machine.LoadAverage()})");
            }
        }
    }

    if (options.Streams > 1 && options.Engine)
    {
        row.Concurrent = ConcurrentStreams.Measure(model, options, prompt);
    }

    reference?.Unload();
    return row;
}

internal sealed record Shape(string Name, string Architecture, int D, int Layers, int Heads, int KvHeads, int Ff, bool Tied)
{
    public static readonly Shape Qwen05 = new("qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, true);
    public static readonly Shape TinyLlama = new("tinyllama-1.1b", "llama", 2048, 22, 32, 4, 5632, false);
    public static readonly IReadOnlyList<Shape> All = [Qwen05, TinyLlama];
}

internal sealed record Options
{
    public const string Usage = """
        Sluice.EngineBench: the engine against llama.cpp on random-weight models of real shapes.
          --dir PATH        where the GGUF files are written and reused (default .bench-cache/models)
          --shapes LIST     qwen2.5-0.5b,tinyllama-1.1b (default both)
          --types LIST      weight types (default Q8_0,Q4_K,F16)
          --reps N          interleaved repetitions per model (default 5)
          --threads N       threads for both engines (default: all cores)
          --pp N --tg N     prompt and generated tokens (default 128 and 64)
          --streams N       concurrent streams for the scheduler measurement (default 4; 1 skips it)
          --no-ref          engine only        --no-engine   llama.cpp only
          --no-mmap         both engines read the file into memory instead of mapping it
          --kv-cache f32|f16  both engines' KV cache (default: the engine's f32, llama.cpp's own f16)
          --json PATH       also write the results as JSON
        llama.cpp comes from SLUICE_LLAMA_REF (bash scripts/test-llama-ref.sh).
        """;

    public string Directory { get; init; } = Path.Combine(".bench-cache", "models");

    public IReadOnlyList<Shape> Shapes { get; init; } = Shape.All;

    public IReadOnlyList<GgmlType> Types { get; init; } = [GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.F16];

    public int Repetitions { get; init; } = 5;

    public int Threads { get; init; } = Environment.ProcessorCount;

    public int PromptTokens { get; init; } = 128;

    public int GenerateTokens { get; init; } = 64;

    public int Streams { get; init; } = 4;

    public bool Reference { get; init; } = true;

    public bool Engine { get; init; } = true;

    /// <summary>False: both engines read the file into memory (llama.cpp's --no-mmap) instead of mapping it.</summary>
    public bool MemoryMap { get; init; } = true;

    /// <summary>Both engines' KV cache type; null: the engine's f32 and llama.cpp's own default (f16).</summary>
    public KvCacheType? KvCache { get; init; }

    public string? JsonPath { get; init; }

    public static Options? Parse(string[] args)
    {
        var o = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--dir": o = o with { Directory = Next() }; break;
                case "--shapes":
                    o = o with { Shapes = [.. Next().Split(',').Select(n => Shape.All.FirstOrDefault(s => s.Name.StartsWith(n, StringComparison.OrdinalIgnoreCase)) ?? throw new ArgumentException($"unknown shape {n}"))] };
                    break;
                case "--types": o = o with { Types = [.. Next().Split(',').Select(Enum.Parse<GgmlType>)] }; break;
                case "--reps": o = o with { Repetitions = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--threads": o = o with { Threads = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--pp": o = o with { PromptTokens = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--tg": o = o with { GenerateTokens = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--streams": o = o with { Streams = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--no-ref": o = o with { Reference = false }; break;
                case "--no-engine": o = o with { Engine = false }; break;
                case "--no-mmap": o = o with { MemoryMap = false }; break;
                case "--kv-cache": o = o with { KvCache = Enum.Parse<KvCacheType>(Next(), ignoreCase: true) }; break;
                case "--json": o = o with { JsonPath = Next() }; break;
                default: return null;
            }
        }

        return o;
    }
}

internal readonly record struct Sample(double Pp, double Tg, double TtftMs);

internal sealed record ConcurrentResult(int Streams, List<double> Single, List<double> Aggregate, List<double> CpuRatios);

internal sealed class Row(string shape, string type, long bytes)
{
    public string Shape { get; } = shape;

    public string Type { get; } = type;

    public long Bytes { get; } = bytes;

    public List<Sample> Engine { get; } = [];

    public List<Sample> Reference { get; } = [];

    public ConcurrentResult? Concurrent { get; set; }
}

internal static class Stats
{
    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length == 0 ? double.NaN : v.Length % 2 == 1 ? v[v.Length / 2] : (v[(v.Length / 2) - 1] + v[v.Length / 2]) / 2;
    }

    public static string Summary(IEnumerable<double> values, string format)
    {
        var v = values.ToArray();
        return v.Length == 0 ? "—" : $"{Median(v).ToString(format)} ({v.Min().ToString(format)}–{v.Max().ToString(format)})";
    }
}

internal sealed class Report(Options options)
{
    private readonly List<Row> _rows = [];
    private readonly string _loadStart = Machine.LoadAverage();

    public void Add(Row row) => _rows.Add(row);

    public string Markdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Threads {options.Threads}, prompt {options.PromptTokens}, generation {options.GenerateTokens}, {options.Repetitions} interleaved repetitions; median (min–max). Load average {_loadStart} → {Machine.LoadAverage()}.");
        sb.AppendLine();
        sb.AppendLine("| model | type | MiB | engine pp tok/s | llama.cpp pp tok/s | pp ratio | engine tg tok/s | llama.cpp tg tok/s | tg ratio | engine TTFT ms | llama.cpp TTFT ms | TTFT ratio |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in _rows)
        {
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Shape} | {r.Type} | {r.Bytes >> 20} | {Stats.Summary(r.Engine.Select(s => s.Pp), "F1")} | {Stats.Summary(r.Reference.Select(s => s.Pp), "F1")} | {Ratio(r, s => s.Pp)} | " +
                $"{Stats.Summary(r.Engine.Select(s => s.Tg), "F2")} | {Stats.Summary(r.Reference.Select(s => s.Tg), "F2")} | {Ratio(r, s => s.Tg)} | " +
                $"{Stats.Summary(r.Engine.Select(s => s.TtftMs), "F0")} | {Stats.Summary(r.Reference.Select(s => s.TtftMs), "F0")} | {Ratio(r, s => s.TtftMs)} |");
        }

        if (_rows.Any(r => r.Concurrent is not null))
        {
            sb.AppendLine();
            sb.AppendLine("Concurrent streams through the batch scheduler (engine only): aggregate generation tokens/s of N simultaneous requests against one request alone, interleaved.");
            sb.AppendLine();
            sb.AppendLine("| model | type | streams | single tg tok/s | aggregate tg tok/s | ratio (medians) | ratio per CPU-second (median of runs) |");
            sb.AppendLine("|---|---|---:|---:|---:|---:|---:|");
            foreach (var r in _rows.Where(r => r.Concurrent is not null))
            {
                var c = r.Concurrent!;
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {r.Shape} | {r.Type} | {c.Streams} | {Stats.Summary(c.Single, "F2")} | {Stats.Summary(c.Aggregate, "F2")} | {Stats.Median(c.Aggregate) / Stats.Median(c.Single):F2}× | {Stats.Summary(c.CpuRatios, "F2")}× |");
            }
        }

        return sb.ToString();
    }

    /// <summary>Engine ÷ llama.cpp of the medians, and the range of the per-repetition ratios (pairs run back to back).</summary>
    private static string Ratio(Row r, Func<Sample, double> metric)
    {
        if (r.Engine.Count == 0 || r.Reference.Count == 0)
        {
            return "—";
        }

        var pairs = r.Engine.Zip(r.Reference, (e, l) => metric(e) / metric(l)).ToArray();
        return $"{Stats.Median(r.Engine.Select(metric)) / Stats.Median(r.Reference.Select(metric)):F2} ({pairs.Min():F2}–{pairs.Max():F2})";
    }

    public string Json()
    {
        var root = new JsonObject
        {
            ["threads"] = options.Threads,
            ["mmap"] = options.MemoryMap,
            ["prompt_tokens"] = options.PromptTokens,
            ["generate_tokens"] = options.GenerateTokens,
            ["load_start"] = _loadStart,
            ["load_end"] = Machine.LoadAverage(),
        };
        var rows = new JsonArray();
        foreach (var r in _rows)
        {
            JsonArray Samples(List<Sample> list) => [.. list.Select(s => (JsonNode)new JsonObject { ["pp_tok_s"] = s.Pp, ["tg_tok_s"] = s.Tg, ["ttft_ms"] = s.TtftMs })];
            var o = new JsonObject { ["model"] = r.Shape, ["type"] = r.Type, ["bytes"] = r.Bytes, ["engine"] = Samples(r.Engine), ["llama_cpp"] = Samples(r.Reference) };
            if (r.Concurrent is { } c)
            {
                o["concurrent"] = new JsonObject
                {
                    ["streams"] = c.Streams,
                    ["single_tg_tok_s"] = new JsonArray([.. c.Single.Select(v => (JsonNode)v)]),
                    ["aggregate_tg_tok_s"] = new JsonArray([.. c.Aggregate.Select(v => (JsonNode)v)]),
                    ["cpu_ratios"] = new JsonArray([.. c.CpuRatios.Select(v => (JsonNode)v)]),
                };
            }

            rows.Add(o);
        }

        root["rows"] = rows;
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}

internal static class Machine
{
    public static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "n/a";
        }
    }
}

internal static class ModelFiles
{
    /// <summary>The model file of <paramref name="shape"/> in <paramref name="type"/>, written once (seed 1, vocabulary 32,000).</summary>
    public static string Ensure(string directory, Shape shape, GgmlType type)
    {
        var path = Path.Combine(directory, $"{shape.Name}-{type}.gguf");
        if (File.Exists(path))
        {
            return path;
        }

        Console.WriteLine($"writing {path} …");
        var sw = Stopwatch.StartNew();
        var temp = path + ".tmp";
        SyntheticModel.Write(temp, new SyntheticModelSpec
        {
            Architecture = shape.Architecture,
            EmbeddingLength = shape.D,
            BlockCount = shape.Layers,
            HeadCount = shape.Heads,
            KvHeadCount = shape.KvHeads,
            FeedForwardLength = shape.Ff,
            VocabularySize = 32_000,
            ContextLength = 2048,
            RopeFreqBase = shape.Architecture == "qwen2" ? 1_000_000f : 10_000f,
            RmsEpsilon = shape.Architecture == "qwen2" ? 1e-6f : 1e-5f,
            WeightType = type,
            TiedOutput = shape.Tied,
            Seed = 1,
        });
        File.Move(temp, path, overwrite: true);
        Console.WriteLine($"  {new FileInfo(path).Length / (1 << 20)} MiB in {sw.Elapsed.TotalSeconds:F0} s");
        return path;
    }
}

/// <summary>The node-llama-cpp process running bench/engine/llama-bench.mjs, one JSON line per command.</summary>
internal sealed class LlamaReference : IDisposable
{
    private readonly Process _process;

    private LlamaReference(Process process) => _process = process;

    public static LlamaReference Start()
    {
        var folder = Environment.GetEnvironmentVariable("SLUICE_LLAMA_REF");
        if (string.IsNullOrEmpty(folder) || !Directory.Exists(Path.Combine(folder, "node_modules", "node-llama-cpp")))
        {
            throw new InvalidOperationException("SLUICE_LLAMA_REF does not point at node-llama-cpp; run: source <(bash scripts/test-llama-ref.sh | sed 's/^/export /') or pass --no-ref");
        }

        var psi = new ProcessStartInfo("node")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = false,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "llama-bench.mjs"));
        psi.Environment["SLUICE_LLAMA_REF"] = folder;
        return new LlamaReference(Process.Start(psi) ?? throw new InvalidOperationException("could not start node"));
    }

    public void Load(string model, int threads, int contextSize, bool memoryMap, KvCacheType? cache)
    {
        var command = new JsonObject { ["cmd"] = "load", ["model"] = Path.GetFullPath(model), ["threads"] = threads, ["contextSize"] = contextSize, ["mmap"] = memoryMap };
        if (cache is { } type)
        {
            command["kvCache"] = type.ToString();
        }

        Call(command);
    }

    public Sample Run(int[] prompt, int generate)
    {
        var r = Call(new JsonObject { ["cmd"] = "run", ["prompt"] = new JsonArray([.. prompt.Select(t => (JsonNode)t)]), ["generate"] = generate });
        return new Sample(r["pp_tok_s"]!.GetValue<double>(), r["tg_tok_s"]!.GetValue<double>(), r["ttft_ms"]!.GetValue<double>());
    }

    public void Unload() => Call(new JsonObject { ["cmd"] = "unload" });

    private JsonNode Call(JsonObject command)
    {
        _process.StandardInput.WriteLine(command.ToJsonString());
        _process.StandardInput.Flush();
        var line = _process.StandardOutput.ReadLine() ?? throw new InvalidOperationException("the llama.cpp process ended");
        var reply = JsonNode.Parse(line) ?? throw new InvalidOperationException("empty reply");
        if (reply["error"] is { } error)
        {
            throw new InvalidOperationException($"llama.cpp: {error}");
        }

        return reply;
    }

    public void Dispose()
    {
        try
        {
            _process.StandardInput.Close();
            if (!_process.WaitForExit(10_000))
            {
                _process.Kill();
            }
        }
        finally
        {
            _process.Dispose();
        }
    }
}

/// <summary>N simultaneous generations through the gateway's batching scheduler against one stream alone, interleaved per repetition.</summary>
internal static class ConcurrentStreams
{
    public static ConcurrentResult? Measure(LocalModel model, Options options, int[] prompt)
    {
        _ = prompt; // each stream draws a fresh random prompt of the same length
        using var generator = new BatchingGenerator(model, options.Streams, options.PromptTokens + options.GenerateTokens + 2);
        var bench = new EngineBenchmarkOptions
        {
            PromptTokens = options.PromptTokens,
            GenerateTokens = options.GenerateTokens,
            Repetitions = options.Repetitions,
            Warmup = 1,
            Parallel = options.Streams,
        };
        var result = EngineBenchmark.RunAsync(
            model,
            bench,
            (p, maxTokens, cancellationToken) => generator.GenerateAsync(
                new LocalGenerationRequest { Prompt = p, MaxTokens = maxTokens, Sampling = SamplingOptions.Greedy, StopTokens = new HashSet<int>() },
                null,
                cancellationToken),
            new ConsoleProgress()).GetAwaiter().GetResult();
        return new ConcurrentResult(
            options.Streams,
            [.. result.Samples.Select(s => s.GenerateTokensPerSecond)],
            [.. result.Samples.Select(s => s.ParallelGenerateTokensPerSecond)],
            [.. result.Samples.Select(s => s.ParallelGenerateTokensPerCpuSecond / s.GenerateTokensPerCpuSecond)]);
    }

    private sealed class ConsoleProgress : IProgress<string>
    {
        public void Report(string value) => Console.WriteLine($"  streams   {value}   (load {Machine.LoadAverage()})");
    }
}
