using System.Text;
using Sluice.Providers.Upstream;
using Xunit;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>
/// The per-thread buffer and JSON writer upstream bodies are written with: each body is its own copy, nothing of one
/// body leaks into the next on the same thread, a body that failed half-way leaves no state behind, and a huge body's
/// buffer is not kept.
/// </summary>
public sealed class PooledJsonWriterTests
{
    private static byte[] Body(string name, string value)
    {
        using var lease = PooledJsonWriter.Rent(16);
        var json = lease.Writer;
        json.WriteStartObject();
        json.WriteString(name, value);
        json.WriteEndObject();
        json.Flush();
        return lease.Written.ToArray();
    }

    [Fact]
    public void Successive_bodies_on_one_thread_are_independent_copies()
    {
        var first = Body("model", new string('x', 500));
        var second = Body("m", "y");

        Assert.Equal("""{"m":"y"}""", Encoding.UTF8.GetString(second));
        Assert.Equal("{\"model\":\"" + new string('x', 500) + "\"}", Encoding.UTF8.GetString(first));
    }

    private static void WriteHalfAndFail()
    {
        using var lease = PooledJsonWriter.Rent(16);
        lease.Writer.WriteStartObject();
        lease.Writer.WriteString("half", "written");
        throw new InvalidOperationException("the request could not be built");
    }

    [Fact]
    public void A_body_abandoned_half_way_leaves_nothing_for_the_next()
    {
        Assert.Throws<InvalidOperationException>(WriteHalfAndFail);

        Assert.Equal("""{"a":"b"}""", Encoding.UTF8.GetString(Body("a", "b")));
    }

    [Fact]
    public void A_rent_inside_another_on_the_same_thread_gets_its_own_buffer()
    {
        using var outer = PooledJsonWriter.Rent(16);
        outer.Writer.WriteStartObject();
        outer.Writer.WriteString("outer", "1");
        var inner = Body("inner", "2");
        outer.Writer.WriteEndObject();
        outer.Writer.Flush();

        Assert.Equal("""{"inner":"2"}""", Encoding.UTF8.GetString(inner));
        Assert.Equal("""{"outer":"1"}""", Encoding.UTF8.GetString(outer.Written));
    }

    [Fact]
    public void Bodies_from_many_threads_at_once_are_each_whole()
    {
        var bodies = Enumerable.Range(0, 2_000).AsParallel().WithDegreeOfParallelism(4)
            .Select(i => (i, Text: Encoding.UTF8.GetString(Body("n", new string((char)('a' + (i % 26)), i % 300)))))
            .ToList();

        Assert.All(bodies, b => Assert.Equal("{\"n\":\"" + new string((char)('a' + (b.i % 26)), b.i % 300) + "\"}", b.Text));
    }
}
