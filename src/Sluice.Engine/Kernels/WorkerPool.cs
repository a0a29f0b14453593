using System.Runtime.ExceptionServices;

namespace Sluice.Engine.Kernels;

/// <summary>
/// A fixed set of worker threads for the forward pass. <see cref="For"/> splits a range into chunks that the
/// calling thread and the workers take from a shared counter. Workers spin briefly between jobs (a forward pass
/// issues hundreds of small parallel sections back to back, and waking a blocked thread costs more than a
/// section), then block so an idle model costs no CPU.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    private const int SpinIterations = 20_000;

    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private Action<int>? _body;
    private int _chunkCount;
    private int _nextChunk;
    private int _pending;
    private long _epoch;
    private int _sleepers;
    private volatile bool _stopping;
    private ExceptionDispatchInfo? _failure;

    /// <summary>Creates a pool running work on <paramref name="threadCount"/> threads, the caller's included.</summary>
    public WorkerPool(int threadCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threadCount, 1);
        ThreadCount = threadCount;
        _threads = new Thread[threadCount - 1];
        for (var i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"sluice-engine-{i + 1}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads that run work, the calling thread included.</summary>
    public int ThreadCount { get; }

    /// <summary>Runs <paramref name="body"/> for every chunk index in [0, <paramref name="chunkCount"/>) and returns when all are done.</summary>
    public void For(int chunkCount, Action<int> body)
    {
        ObjectDisposedException.ThrowIf(_stopping, this);
        if (chunkCount <= 0)
        {
            return;
        }

        if (_threads.Length == 0 || chunkCount == 1)
        {
            for (var i = 0; i < chunkCount; i++)
            {
                body(i);
            }

            return;
        }

        _body = body;
        _chunkCount = chunkCount;
        _nextChunk = 0;
        _failure = null;
        Volatile.Write(ref _pending, _threads.Length);
        Interlocked.Increment(ref _epoch);
        if (Volatile.Read(ref _sleepers) > 0)
        {
            lock (_gate)
            {
                Monitor.PulseAll(_gate);
            }
        }

        RunChunks(body);
        var spinner = default(SpinWait);
        while (Volatile.Read(ref _pending) != 0)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }

        _body = null;
        _failure?.Throw();
    }

    /// <summary>Splits [0, <paramref name="count"/>) into ranges of at least <paramref name="grain"/> and runs them.</summary>
    public void ForRange(int count, int grain, Action<int, int> body)
    {
        if (count <= 0)
        {
            return;
        }

        var chunks = Math.Max(1, Math.Min(ThreadCount * 4, (count + grain - 1) / grain));
        var size = (count + chunks - 1) / chunks;
        chunks = (count + size - 1) / size;
        For(chunks, c => body(c * size, Math.Min(count, (c + 1) * size)));
    }

    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        Interlocked.Increment(ref _epoch);
        lock (_gate)
        {
            Monitor.PulseAll(_gate);
        }

        foreach (var thread in _threads)
        {
            thread.Join();
        }
    }

    private void RunChunks(Action<int> body)
    {
        while (true)
        {
            var chunk = Interlocked.Increment(ref _nextChunk) - 1;
            if (chunk >= _chunkCount)
            {
                return;
            }

            try
            {
                body(chunk);
            }
            catch (Exception ex)
            {
                Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(ex), null);
            }
        }
    }

    private void WorkerLoop()
    {
        long seen = 0;
        while (true)
        {
            var spins = 0;
            while (Volatile.Read(ref _epoch) == seen)
            {
                if (++spins < SpinIterations)
                {
                    Thread.SpinWait(10);
                    continue;
                }

                lock (_gate)
                {
                    Interlocked.Increment(ref _sleepers);
                    while (Volatile.Read(ref _epoch) == seen)
                    {
                        Monitor.Wait(_gate);
                    }

                    Interlocked.Decrement(ref _sleepers);
                }
            }

            seen = Volatile.Read(ref _epoch);
            if (_stopping)
            {
                return;
            }

            var body = _body;
            if (body is not null)
            {
                RunChunks(body);
            }

            Interlocked.Decrement(ref _pending);
        }
    }
}
