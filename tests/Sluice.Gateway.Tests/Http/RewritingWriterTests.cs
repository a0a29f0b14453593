using System.IO.Pipelines;
using System.Text;
using Sluice.Gateway.Http;

namespace Sluice.Gateway.Tests.Http;

/// <summary>
/// The connection writer that gives Kestrel's own error responses a JSON body: it must recognise the head however
/// Kestrel's writes split it (on a kept-alive connection the previous response can leave the current block nearly full,
/// and the head then spans two), and pass every other write through unchanged.
/// </summary>
public sealed class RewritingWriterTests
{
    private const string KestrelHead = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\nDate: Mon, 07 Dec 2026 19:00:00 GMT\r\nServer: Kestrel\r\n\r\n";

    [Theory]
    [InlineData(0, false)] // one write, as nearly always
    [InlineData(5, false)] // split inside "HTTP/1."
    [InlineData(10, false)] // split after the status digit
    [InlineData(40, false)]
    [InlineData(KestrelHeadLength - 2, false)] // split inside the blank line
    [InlineData(KestrelHeadLength - 1, false)]
    [InlineData(5, true)] // the same, the second piece written on into the memory the first was given
    [InlineData(40, true)]
    [InlineData(KestrelHeadLength - 1, true)]
    public async Task Kestrels_bodiless_error_head_gets_the_json_body_however_it_is_split(int split, bool writeOn)
    {
        var written = await WriteAsync(split == 0 ? [KestrelHead] : [KestrelHead[..split], KestrelHead[split..]], writeOn);

        Assert.StartsWith("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ", written, StringComparison.Ordinal);
        var body = written[(written.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        Assert.Contains("\"code\":\"bad_request\"", body, StringComparison.Ordinal);
        Assert.Contains($"Content-Length: {Encoding.UTF8.GetByteCount(body)}\r\n", written, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Other_writes_pass_through_unchanged_whole_or_split(bool writeOn)
    {
        const string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        const string appError = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n";
        string[] writes = [ok, "{}", appError[..20], appError[20..], "{\"error\":\"x\"}", "Hello, HTTP/1.1 4 not a head", "HTTP/1.1 4"];
        Assert.Equal(string.Concat(writes), await WriteAsync(writes, writeOn));
        Assert.Equal(appError + "{\"error\":\"x\"}", await WriteAsync([appError + "{\"error\":\"x\"}"], writeOn));

        // Sluice's own error as Kestrel writes it: the head with the first chunk's size, then the chunk written on into
        // the same memory (seen on the wire: the head was sent twice and the body lost before the offset was tracked).
        const string chunkedHead = "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        string[] chunked = [chunkedHead + "d\r\n", "{\"error\":\"x\"}\r\n", "0\r\n\r\n"];
        Assert.Equal(string.Concat(chunked), await WriteAsync(chunked, writeOn));
    }

    [Fact]
    public async Task A_held_piece_is_not_lost_when_the_writer_completes_or_the_head_is_too_long()
    {
        Assert.Equal("HTTP/1.1 400 Bad", await WriteAsync(["HTTP/1.1 400 Bad"]));
        var longHead = "HTTP/1.1 431 Request Header Fields Too Large\r\nX-Long: " + new string('a', 9000) + "\r\n\r\n";
        Assert.Equal(longHead, await WriteAsync([longHead[..100], longHead[100..5000], longHead[5000..]]));
        Assert.Equal(longHead, await WriteAsync([longHead[..100], longHead[100..5000], longHead[5000..]], writeOn: true));
    }

    private const int KestrelHeadLength = 120;

    // Writes each piece through GetSpan/Advance as Kestrel does — each into fresh memory, or (writeOn) on into what is
    // left of the memory the previous piece was given, asking for more only when it does not fit — completes, and
    // returns what reached the transport.
    private static async Task<string> WriteAsync(string[] pieces, bool writeOn = false)
    {
        Assert.Equal(KestrelHeadLength, KestrelHead.Length);
        var pipe = new Pipe();
        var writer = new ProtocolErrorBodies.RewritingWriter(pipe.Writer);
        var memory = Memory<byte>.Empty;
        foreach (var piece in pieces)
        {
            var bytes = Encoding.ASCII.GetBytes(piece);
            if (!writeOn || memory.Length < bytes.Length)
            {
                memory = writer.GetMemory(bytes.Length);
            }

            bytes.CopyTo(memory.Span);
            memory = memory[bytes.Length..];
            writer.Advance(bytes.Length);
        }

        await writer.FlushAsync();
        await writer.CompleteAsync();
        var result = await pipe.Reader.ReadAtLeastAsync(int.MaxValue);
        var text = Encoding.ASCII.GetString(result.Buffer);
        pipe.Reader.AdvanceTo(result.Buffer.End);
        return text;
    }
}
