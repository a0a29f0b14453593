using Sluice.Engine;
using Sluice.Providers.Local;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Local;

/// <summary>A local model entry's <c>KvCache</c>: f16 reaches the engine, anything but f32/f16 is refused naming the entry.</summary>
public sealed class LocalKvCacheTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("sluice-kv-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData(null, KvCacheType.F32)]
    [InlineData("f32", KvCacheType.F32)]
    [InlineData("F16", KvCacheType.F16)]
    [InlineData(" f16 ", KvCacheType.F16)]
    public async Task The_entry_s_cache_type_reaches_the_loaded_model(string? setting, KvCacheType expected)
    {
        var path = LocalTestModels.WriteChatModel(Path.Combine(_directory, "m.gguf"), LocalTestModels.Tiny("llama", seed: 3));
        using var backend = LocalChatBackend.Create(new ModelOptions { Name = "m", Provider = "local", ModelPath = path, ContextSize = 64, Threads = 1, KvCache = setting }, path, "Models[0] (\"m\")");
        await backend.PreloadAsync(_ => { }, CancellationToken.None);
        Assert.Equal(expected, backend.Model!.Model.Options.KvCache);
        var info = backend.Model.Model.Info;
        Assert.Equal(2L * info.BlockCount * 64 * info.KvLength * (expected == KvCacheType.F16 ? 2 : 4), backend.Model.Model.CreateSequence().KvCacheBytes);
    }

    [Theory]
    [InlineData("f8")]
    [InlineData("q8_0")]
    [InlineData("")]
    public void Another_value_is_refused_naming_the_entry_and_the_choices(string setting)
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog([
            new ModelOptions { Name = "ok" },
            new ModelOptions { Name = "m", Provider = "local", ModelPath = Path.Combine(_directory, "absent.gguf"), KvCache = setting },
        ]));

        Assert.Contains("Models[1]", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"has KvCache \"{setting}\": give \"f32\" or \"f16\"", ex.Message, StringComparison.Ordinal);
    }
}
