using Sluice.Engine.Gguf;
using Sluice.Engine.Models;

namespace Sluice.Engine.Tests.Models;

/// <summary>Small synthetic models shared by the engine's own tests.</summary>
public sealed class ModelFixture : IDisposable
{
    private readonly TempDirectory _dir = new();

    public ModelFixture()
    {
        LlamaQ8 = Write("llama-q8", new SyntheticModelSpec { Architecture = "llama", WeightType = GgmlType.Q8_0, Seed = 11 });
        Qwen3K = Write("qwen3-q4k", new SyntheticModelSpec { Architecture = "qwen3", WeightType = GgmlType.Q4_K, HeadDimension = 128, TiedOutput = true, Seed = 12 });
        Qwen2F16 = Write("qwen2-f16", new SyntheticModelSpec { Architecture = "qwen2", WeightType = GgmlType.F16, Seed = 13 });
    }

    public string LlamaQ8 { get; }

    public string Qwen3K { get; }

    public string Qwen2F16 { get; }

    public string Directory => _dir.Path;

    public string Write(string name, SyntheticModelSpec spec)
    {
        var path = _dir.File(name + ".gguf");
        SyntheticModel.Write(path, spec);
        return path;
    }

    public void Dispose() => _dir.Dispose();
}
