using System.Net;

namespace Sluice.Providers.Upstream;

/// <summary>
/// An upstream request's JSON body as <see cref="HttpContent"/> whose bytes <see cref="Http11Handler"/> can read
/// without a copy (<see cref="ReadOnlyMemoryContent"/> keeps its memory to itself, so every request paid an array).
/// </summary>
/// <param name="body">The body; it must stay unchanged until the request was sent.</param>
internal sealed class UpstreamBodyContent(ReadOnlyMemory<byte> body) : HttpContent
{
    /// <summary>The body's bytes.</summary>
    public ReadOnlyMemory<byte> Body { get; } = body;

    /// <inheritdoc />
    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        stream.WriteAsync(Body).AsTask();

    /// <inheritdoc />
    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken) =>
        stream.WriteAsync(Body, cancellationToken).AsTask();

    /// <inheritdoc />
    protected override void SerializeToStream(Stream stream, TransportContext? context, CancellationToken cancellationToken) =>
        stream.Write(Body.Span);

    /// <inheritdoc />
    protected override bool TryComputeLength(out long length)
    {
        length = Body.Length;
        return true;
    }
}
