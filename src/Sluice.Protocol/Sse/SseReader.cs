using System.IO.Pipelines;
using System.Runtime.CompilerServices;

namespace Sluice.Protocol.Sse;

/// <summary>Reads Server-Sent Events from a stream as they arrive.</summary>
public static class SseReader
{
    /// <summary>
    /// Yields each event as soon as its terminating blank line has been read (no read-ahead buffering
    /// beyond what the transport delivered).
    /// </summary>
    public static async IAsyncEnumerable<SseEvent> ReadAsync(
        Stream stream,
        bool surfaceComments = false,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 16 * 1024, leaveOpen: true));
        var parser = new SseParser(surfaceComments);
        var events = new List<SseEvent>(8);
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(cancellationToken);
                parser.Feed(result.Buffer, events);
                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    parser.Complete(events);
                }

                foreach (var sseEvent in events)
                {
                    yield return sseEvent;
                }

                events.Clear();
                if (result.IsCompleted)
                {
                    yield break;
                }
            }
        }
        finally
        {
            await reader.CompleteAsync();
        }
    }
}
