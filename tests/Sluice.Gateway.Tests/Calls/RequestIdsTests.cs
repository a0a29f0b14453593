using Sluice.Gateway.Calls;
using Xunit;

namespace Sluice.Gateway.Tests.Calls;

/// <summary>Request and stream ids: GUIDv7 text, time-ordered, unique across threads and buffer refills.</summary>
public sealed class RequestIdsTests
{
    [Fact]
    public void Ids_are_version_7_guids_in_32_hex_digits_that_start_with_the_current_millisecond()
    {
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var id = RequestIds.Next();
        var after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        Assert.Matches("^[0-9a-f]{32}$", id);
        var guid = Guid.ParseExact(id, "N");
        Assert.Equal(7, guid.Version);
        Assert.Equal(id, guid.ToString("N"));
        Assert.InRange(id[12], '7', '7');
        Assert.Contains(id[16], "89ab");
        Assert.InRange(Convert.ToInt64(id[..12], 16), before, after);
    }

    [Fact]
    public void An_id_with_a_prefix_and_suffix_is_the_same_kind_of_id_made_as_one_string()
    {
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var ids = Enumerable.Range(0, 1_000).Select(_ => RequestIds.Next("strm_", "-n7")).ToList();
        var after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
        foreach (var id in ids)
        {
            Assert.Matches("^strm_[0-9a-f]{32}-n7$", id);
            var guid = Guid.ParseExact(id[5..37], "N");
            Assert.Equal(7, guid.Version);
            Assert.Contains(id[5 + 16], "89ab");
            Assert.InRange(Convert.ToInt64(id[5..17], 16), before, after);
        }

        Assert.Matches("^[0-9a-f]{32}$", RequestIds.Next(string.Empty, string.Empty));
    }

    [Fact]
    public async Task Ids_are_unique_across_threads_and_many_refills_of_the_random_buffer()
    {
        // 4 threads x 5,000 ids: each thread's 4 KiB random buffer refills about twenty times.
        var ids = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
            Enumerable.Range(0, 5_000).Select(_ => RequestIds.Next()).ToList())));
        var all = ids.SelectMany(list => list).ToList();

        Assert.Equal(all.Count, all.Distinct(StringComparer.Ordinal).Count());

        // The random part is not constant or sequential: its bytes take many values in every position.
        for (var position = 13; position < 32; position++)
        {
            if (position is 16)
            {
                continue;
            }

            Assert.True(all.Select(id => id[position]).Distinct().Count() == 16, $"hex digit {position} takes all 16 values");
        }
    }
}
