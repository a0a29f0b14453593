namespace Sluice.Cli.Tests;

/// <summary><see cref="RuntimeTuning"/>: the shared array pool's size, chosen unless the environment sets it.</summary>
public sealed class RuntimeTuningTests
{
    [Theory]
    [InlineData(1, "2048")]
    [InlineData(2, "1024")]
    [InlineData(16, "128")]
    [InlineData(64, "32")]
    [InlineData(256, "32")]
    public void Unset_it_is_about_2048_arrays_per_size_in_all_and_never_below_the_runtime_default(int cores, string expected)
    {
        var environment = new Dictionary<string, string>();

        RuntimeTuning.Apply(name => environment.GetValueOrDefault(name), (name, value) => environment[name] = value, cores);

        Assert.Equal(expected, Assert.Single(environment, e => e.Key == RuntimeTuning.MaxArraysPerPartition).Value);
    }

    [Fact]
    public void A_value_set_in_the_environment_is_kept()
    {
        var environment = new Dictionary<string, string> { [RuntimeTuning.MaxArraysPerPartition] = "7" };
        var writes = 0;

        RuntimeTuning.Apply(name => environment.GetValueOrDefault(name), (_, _) => writes++, 2);

        Assert.Equal(0, writes);
        Assert.Equal("7", environment[RuntimeTuning.MaxArraysPerPartition]);
    }
}
