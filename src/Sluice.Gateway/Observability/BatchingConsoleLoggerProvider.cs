using System.Collections.Concurrent;
using System.Buffers;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Sluice.Gateway.Observability;

/// <summary>
/// The gateway's console log: Microsoft's console formatters (simple single-line or JSON, with their options), written
/// to standard output in batches by one background thread.
/// </summary>
/// <remarks>
/// <para>Microsoft's console logger wakes its writer thread for every line and writes each line with its own system
/// call; with an access-log line per call that was ~15 % of the gateway's CPU per proxied stream
/// (<c>bench/cpu-per-stream.sh</c>, <c>ACCESS_LOG=false</c> against <c>true</c>). Here a caller formats its line and
/// queues it without waking anyone unless the writer is idle; the writer then writes whatever has queued in one call,
/// and under load waits <see cref="GatherTime"/> before the next write, so lines go out in batches.</para>
/// <para>The steps, per wake of the writer thread: (1) take every queued line, (2) encode them into one buffer (plus a
/// note of lines dropped since the last write, if any), (3) write and flush it, (4) if anything was written, sleep
/// <see cref="GatherTime"/> and go to (1); otherwise wait for the next signal. A lone line is written at once; under
/// load a line waits at most about <see cref="GatherTime"/>. Queued text is bounded (<c>maxPendingChars</c>): past it
/// lines are dropped and counted, never buffered without limit. Disposal (the host's stop) writes what is queued.</para>
/// <para>Access-log lines (<see cref="AccessLogLine"/>) under Microsoft's simple formatter skip the message string: the
/// formatter writes its line around a placeholder message, and the placeholder is replaced by the message formatted
/// straight into the line's buffer. Same text, one 432-byte string per call fewer. A message with a line break (which
/// the formatter would rewrite) and every other formatter take the ordinary path.</para>
/// </remarks>
[ProviderAlias("Console")]
internal sealed class BatchingConsoleLoggerProvider : ILoggerProvider, ISupportExternalScope
{
    /// <summary>How long the writer waits after a write, under load, so the next lines go out together.</summary>
    internal static readonly TimeSpan GatherTime = TimeSpan.FromMilliseconds(10);

    private const int DefaultMaxPendingChars = 4 * 1024 * 1024;
    private const int MaxKeptBuilderChars = 16 * 1024;

    /// <summary>Characters per pooled line buffer: an access-log line is ~200–300; longer lines get their own array.</summary>
    internal const int PooledLineChars = 1024;

    /// <summary>Pooled line buffers kept at most (2 MiB of characters).</summary>
    private const int MaxPooledLines = 1024;

    // What Microsoft's simple formatter is given as an access-log line's message; replaced by the real one afterwards.
    // Control characters no id, name or number in that message contains.
    private const string Placeholder = "\u001e\u001fsluice-message\u001f\u001e";

    private static readonly Func<AccessLogLine, Exception?, string> PlaceholderMessage = static (_, _) => Placeholder;

    [ThreadStatic]
    private static StringWriter? t_writer;

    private readonly ConsoleFormatter _formatter;

    // Microsoft's simple formatter writes the message it is given unchanged when it has no line break; nothing else is
    // assumed of other formatters (the JSON one escapes it, and asks the state for its text again).
    private readonly bool _placesMessages;
    private readonly Stream _output;
    private readonly int _maxPendingChars;
    private readonly ConcurrentQueue<PendingLine> _lines = new();

    // Line buffers go back and forth between the callers and the writer thread. A line used to be a new string per call
    // (~0.5 KB per access-log line); queued lines that a collection met then survived it through the queue, a long-lived
    // object. Pooled buffers are long-lived themselves, so neither costs the collector anything.
    private readonly ConcurrentQueue<char[]> _freeLines = new();
    private int _freeLineCount;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private IExternalScopeProvider? _scopes;
    private long _pendingChars;
    private long _dropped;
    private int _signalled;
    private volatile bool _disposed;

    /// <summary>Created by the container: the formatter named by the console options, writing to standard output.</summary>
    public BatchingConsoleLoggerProvider(IOptions<ConsoleLoggerOptions> options, IEnumerable<ConsoleFormatter> formatters)
        : this(Pick(options.Value.FormatterName, formatters), Console.OpenStandardOutput())
    {
    }

    internal BatchingConsoleLoggerProvider(ConsoleFormatter formatter, Stream output, int maxPendingChars = DefaultMaxPendingChars)
    {
        _formatter = formatter;
        _placesMessages = formatter.GetType().FullName == "Microsoft.Extensions.Logging.Console.SimpleConsoleFormatter";
        _output = output;
        _maxPendingChars = maxPendingChars;
        _thread = new Thread(WriteLoop) { IsBackground = true, Name = "sluice-log" };
        _thread.Start();

        // A process that ends without disposing the host (a failed start returning from Main) still writes its last lines.
        AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
    }

    /// <inheritdoc />
    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, this);

    /// <inheritdoc />
    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    /// <summary>Writes what is queued and stops the writer (waits at most a few seconds for a blocked output).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        _wake.Release();
        _thread.Join(TimeSpan.FromSeconds(5));
    }

    private void OnProcessExit(object? sender, EventArgs e) => Dispose();

    private static ConsoleFormatter Pick(string? name, IEnumerable<ConsoleFormatter> formatters)
    {
        var all = formatters.ToList();
        return all.FirstOrDefault(f => string.Equals(f.Name, name ?? ConsoleFormatterNames.Simple, StringComparison.OrdinalIgnoreCase))
            ?? all.FirstOrDefault(f => f.Name == ConsoleFormatterNames.Simple)
            ?? throw new InvalidOperationException($"No console log formatter named '{name}' is registered; use 'simple' or 'json'.");
    }

    private void Write<TState>(in LogEntry<TState> entry)
    {
        // A type test on a struct type argument: decided when the method is compiled for it, no boxing.
        if (typeof(TState) == typeof(AccessLogLine) && _placesMessages)
        {
            var state = entry.State;
            if (TryWritePlaced(in entry, Unsafe.As<TState, AccessLogLine>(ref state)))
            {
                return;
            }
        }

        var writer = t_writer ??= new StringWriter(CultureInfo.InvariantCulture);
        var text = writer.GetStringBuilder();
        text.Clear();
        _formatter.Write(in entry, _scopes, writer);
        if (text.Length == 0)
        {
            return;
        }

        var length = text.Length;
        if (!Reserve(length))
        {
            return;
        }

        var buffer = RentLine(length);
        text.CopyTo(0, buffer, 0, length);
        ReleaseHugeBuilder(text);
        Enqueue(new PendingLine(buffer, length));
    }

    /// <summary>
    /// Writes an access-log line with its message formatted into the line's buffer (no message string): (1) the message
    /// into a stack buffer, (2) the formatter's line around the placeholder, (3) the line's buffer filled with the text
    /// before the placeholder, the message and the text after it. False (nothing written or counted) when the message
    /// has a line break or does not fit, or the placeholder is not found: the caller then takes the ordinary path.
    /// </summary>
    private bool TryWritePlaced<TState>(in LogEntry<TState> entry, in AccessLogLine line)
    {
        Span<char> message = stackalloc char[512];
        if (!line.TryFormat(message, out var messageLength) || message[..messageLength].ContainsAny('\r', '\n'))
        {
            return false;
        }

        message = message[..messageLength];
        var writer = t_writer ??= new StringWriter(CultureInfo.InvariantCulture);
        var text = writer.GetStringBuilder();
        text.Clear();
        _formatter.Write(new LogEntry<AccessLogLine>(entry.LogLevel, entry.Category, entry.EventId, line, entry.Exception, PlaceholderMessage), _scopes, writer);

        var formatted = text.Length;
        var copy = ArrayPool<char>.Shared.Rent(formatted);
        try
        {
            text.CopyTo(0, copy, 0, formatted);
            ReleaseHugeBuilder(text);
            var around = copy.AsSpan(0, formatted);
            var at = around.IndexOf(Placeholder);
            if (at < 0)
            {
                return false;
            }

            var length = formatted - Placeholder.Length + message.Length;
            if (!Reserve(length))
            {
                // Counted as dropped: the ordinary path would drop it too.
                return true;
            }

            var buffer = RentLine(length);
            around[..at].CopyTo(buffer);
            message.CopyTo(buffer.AsSpan(at));
            around[(at + Placeholder.Length)..].CopyTo(buffer.AsSpan(at + message.Length));
            Enqueue(new PendingLine(buffer, length));
            return true;
        }
        finally
        {
            ArrayPool<char>.Shared.Return(copy);
        }
    }

    private static void ReleaseHugeBuilder(StringBuilder text)
    {
        if (text.Capacity > MaxKeptBuilderChars)
        {
            // One huge message must not pin a huge builder to this thread for good.
            t_writer = null;
        }
    }

    /// <summary>Counts <paramref name="chars"/> against the bound; false (and the line counted as dropped) past it.</summary>
    private bool Reserve(int chars)
    {
        if (_disposed)
        {
            return false;
        }

        if (Interlocked.Add(ref _pendingChars, chars) > _maxPendingChars)
        {
            Interlocked.Add(ref _pendingChars, -chars);
            Interlocked.Increment(ref _dropped);
            return false;
        }

        return true;
    }

    private char[] RentLine(int length)
    {
        if (length <= PooledLineChars && _freeLines.TryDequeue(out var pooled))
        {
            Interlocked.Decrement(ref _freeLineCount);
            return pooled;
        }

        return new char[Math.Max(length, PooledLineChars)];
    }

    private void ReturnLine(char[] buffer)
    {
        // Only standard-size buffers, and a bounded number of them: a burst's worth is not kept for good.
        if (buffer.Length != PooledLineChars)
        {
            return;
        }

        if (Interlocked.Increment(ref _freeLineCount) <= MaxPooledLines)
        {
            _freeLines.Enqueue(buffer);
        }
        else
        {
            Interlocked.Decrement(ref _freeLineCount);
        }
    }

    private void Enqueue(PendingLine line)
    {
        _lines.Enqueue(line);

        // Only the first line after the writer went idle wakes it; the rest ride along.
        if (Volatile.Read(ref _signalled) == 0 && Interlocked.Exchange(ref _signalled, 1) == 0)
        {
            _wake.Release();
        }
    }

    private void WriteLoop()
    {
        var buffer = new byte[64 * 1024];
        while (true)
        {
            // A dedicated thread: the wait blocks no pool thread.
            _wake.Wait();
            while (true)
            {
                Volatile.Write(ref _signalled, 0);
                var wrote = WriteQueued(ref buffer);
                if (_disposed && _lines.IsEmpty)
                {
                    return;
                }

                if (!wrote)
                {
                    break;
                }

                Thread.Sleep(GatherTime);
            }
        }
    }

    private bool WriteQueued(ref byte[] buffer)
    {
        var used = 0;
        var any = false;
        while (_lines.TryDequeue(out var line))
        {
            any = true;
            Interlocked.Add(ref _pendingChars, -line.Length);
            Append(ref buffer, ref used, line.Buffer.AsSpan(0, line.Length));
            ReturnLine(line.Buffer);
        }

        var dropped = Interlocked.Exchange(ref _dropped, 0);
        if (dropped > 0)
        {
            any = true;
            Append(ref buffer, ref used, string.Create(CultureInfo.InvariantCulture,
                $"warn: Sluice.Logging {dropped} log line(s) dropped: standard output did not keep up. Send it to a faster destination (a file or a pipe that is read) or raise the log level.{Environment.NewLine}"));
        }

        if (used > 0)
        {
            Flush(buffer, ref used);
        }

        return any;
    }

    private void Append(ref byte[] buffer, ref int used, ReadOnlySpan<char> line)
    {
        var bytes = Encoding.UTF8.GetMaxByteCount(line.Length);
        if (used + bytes > buffer.Length)
        {
            Flush(buffer, ref used);
            if (bytes > buffer.Length)
            {
                buffer = new byte[bytes];
            }
        }

        used += Encoding.UTF8.GetBytes(line, buffer.AsSpan(used));
    }

    private void Flush(byte[] buffer, ref int used)
    {
        try
        {
            _output.Write(buffer, 0, used);
            _output.Flush();
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException)
        {
            // Standard output closed (the reader went away): nothing useful can be done with a log line about it.
        }

        used = 0;
    }

    /// <summary>A queued line: the first <see cref="Length"/> characters of a pooled (or, for a long line, its own) buffer.</summary>
    private readonly record struct PendingLine(char[] Buffer, int Length);

    private sealed class Logger(string category, BatchingConsoleLoggerProvider provider) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => provider._scopes?.Push(state);

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                provider.Write(new LogEntry<TState>(logLevel, category, eventId, state, exception, formatter));
            }
        }
    }
}
