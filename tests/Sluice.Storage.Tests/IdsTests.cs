using Sluice.Storage.Sql;

namespace Sluice.Storage.Tests;

public sealed class IdsTests
{
    [Fact]
    public void Ids_made_in_the_same_millisecond_sort_in_creation_order()
    {
        var now = DateTimeOffset.UtcNow;
        var ids = Enumerable.Range(0, 5_000).Select(_ => Ids.New("job", now)).ToList();
        Assert.Equal(ids, ids.Order(StringComparer.Ordinal));
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.All(ids, id => Assert.Matches("^job_[0-9a-f]{32}$", id));
    }

    [Fact]
    public void Later_milliseconds_sort_after_earlier_ones()
    {
        var early = Ids.New("key", DateTimeOffset.UtcNow.AddMinutes(1));
        var later = Ids.New("key", DateTimeOffset.UtcNow.AddMinutes(2));
        Assert.True(string.CompareOrdinal(early, later) < 0);
    }
}
