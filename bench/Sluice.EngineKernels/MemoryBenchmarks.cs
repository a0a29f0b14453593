using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;

namespace Sluice.EngineKernels;

/// <summary>
/// The machine's memory bandwidth, the ceiling for decode: a plain streaming read (sum of 512-bit loads, what a
/// matrix × vector must at least do with its weights) and a copy, over a buffer far larger than the caches, on 1 and
/// 2 threads. The GB/s column of this table and of <see cref="MatMulBenchmarks"/> compare directly.
/// </summary>
public unsafe class MemoryBenchmarks
{
    private byte* _source;
    private byte* _destination;

    /// <summary>Bytes read per call.</summary>
    [Params(256L << 20)]
    public long Bytes { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _source = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        _destination = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);

        // Touch every page so the measurement is of memory, not of page faults.
        new Span<byte>(_source, checked((int)Math.Min(Bytes, int.MaxValue))).Fill(1);
        new Span<byte>(_destination, checked((int)Math.Min(Bytes, int.MaxValue))).Clear();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_source);
        NativeMemory.AlignedFree(_destination);
    }

    /// <summary>Reads <see cref="Bytes"/> once (GB/s = read bandwidth).</summary>
    [Benchmark]
    public long StreamRead() => Split(static (s, d, n) => Sum(s, n));

    /// <summary>Copies <see cref="Bytes"/> (GB/s counts the bytes read only; the same bytes are written too).</summary>
    [Benchmark]
    public long Copy() => Split(static (s, d, n) =>
    {
        Buffer.MemoryCopy(s, d, n, n);
        return n;
    });

    private delegate long Part(byte* source, byte* destination, long bytes);

    private long Split(Part part)
    {
        if (Threads == 1)
        {
            return part(_source, _destination, Bytes);
        }

        // Fresh threads per call cost microseconds against a 256 MiB pass of tens of milliseconds.
        var share = Bytes / Threads;
        var results = new long[Threads];
        var threads = new Thread[Threads - 1];
        for (var i = 1; i < Threads; i++)
        {
            var index = i;
            threads[i - 1] = new Thread(() => results[index] = part(_source + (index * share), _destination + (index * share), share));
            threads[i - 1].Start();
        }

        results[0] = part(_source, _destination, share);
        foreach (var t in threads)
        {
            t.Join();
        }

        return results.Sum();
    }

    private static long Sum(byte* p, long bytes)
    {
        // Four independent accumulators so the loads, not the adds' latency, set the pace.
        Vector512<long> a = default, b = default, c = default, d = default;
        var end = p + bytes;
        for (; p + 256 <= end; p += 256)
        {
            a += Vector512.Load((long*)p);
            b += Vector512.Load((long*)(p + 64));
            c += Vector512.Load((long*)(p + 128));
            d += Vector512.Load((long*)(p + 192));
        }

        return Vector512.Sum(a + b + c + d);
    }
}
