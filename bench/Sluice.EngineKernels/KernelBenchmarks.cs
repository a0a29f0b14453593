using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Sluice.Engine.Gguf;
using Sluice.Engine.Kernels;

namespace Sluice.EngineKernels;

/// <summary>A weight matrix of a real model: <see cref="Columns"/> inputs (ggml <c>ne[0]</c>) × <see cref="Rows"/> outputs.</summary>
public enum KernelShape
{
    /// <summary>Qwen2.5-0.5B <c>ffn_down</c>: 4864 → 896 (its only matrix wide enough for K-quants; the 896-wide ones fall back to Q5_0).</summary>
    Qwen05Down,

    /// <summary>TinyLlama-1.1B <c>ffn_up</c>/<c>ffn_gate</c>: 2048 → 5632.</summary>
    TinyLlamaUp,

    /// <summary>Qwen2.5-0.5B <c>ffn_up</c>/<c>ffn_gate</c>: 896 → 4864 (its common 896-wide input).</summary>
    Qwen05Up,

    /// <summary>A small matrix for the smoke run only (512 → 64).</summary>
    Smoke,

    /// <summary>TinyLlama-1.1B <c>ffn_down</c>: 5632 → 2048 (rows of 22 K-quant super-blocks).</summary>
    TinyLlamaDown,

    /// <summary>TinyLlama-1.1B <c>attn_q</c>/<c>attn_output</c>: 2048 → 2048.</summary>
    TinyLlamaAttention,

    /// <summary>Qwen2.5-0.5B <c>attn_q</c>/<c>attn_output</c>: 896 → 896.</summary>
    Qwen05Attention,

    /// <summary>Qwen2.5-0.5B <c>attn_k</c>/<c>attn_v</c>: 896 → 128 (16 tiles of 8 rows).</summary>
    Qwen05KeyValue,
}

/// <summary>Sizes of the shapes and of the weights in bytes.</summary>
public static class KernelShapes
{
    public static (int Columns, int Rows) Size(KernelShape shape) => shape switch
    {
        KernelShape.Qwen05Down => (4864, 896),
        KernelShape.TinyLlamaUp => (2048, 5632),
        KernelShape.Qwen05Up => (896, 4864),
        KernelShape.Smoke => (512, 64),
        KernelShape.TinyLlamaDown => (5632, 2048),
        KernelShape.TinyLlamaAttention => (2048, 2048),
        KernelShape.Qwen05Attention => (896, 896),
        KernelShape.Qwen05KeyValue => (896, 128),
        _ => throw new ArgumentOutOfRangeException(nameof(shape)),
    };

    /// <summary>Bytes of one weight matrix of <paramref name="type"/>: what a product reads from memory.</summary>
    public static long WeightBytes(GgmlType type, KernelShape shape)
    {
        var (columns, rows) = Size(shape);
        return GgmlTypes.RowBytes(type, columns) * rows;
    }
}

/// <summary>
/// <c>MatMul.Multiply</c> (which runs <c>QuantGemm</c>'s token-lane integer GEMM for quantized weights and
/// <c>FloatGemm</c> for float ones) on one weight matrix of a real shape: 1 token is decode (matrix × vector, bound by
/// reading the weights), 128 tokens is a prompt (matrix × matrix, bound by arithmetic). The activations are converted
/// once in the set-up (the engine shares one conversion between the matrices reading the same input; see
/// <see cref="ActivationBenchmarks"/> for its cost). Each call reads the next of several copies of the weights, together
/// larger than any cache, so decode streams from DRAM as it does in a model — the copies of a warm single matrix would
/// otherwise sit in L2/L3 and flatter it.
/// </summary>
public unsafe class MatMulBenchmarks
{
    /// <summary>Bytes of weight copies at least: far past the last-level cache of the machines this runs on.</summary>
    private const long RotationBytes = 256L << 20;

    private static readonly Dictionary<(GgmlType, KernelShape), byte[]> Cache = [];

    private readonly List<nint> _copies = [];
    private WeightMatrix[] _matrices = [];
    private Activations _x = null!;
    private float* _y;
    private WorkerPool _pool = null!;
    private int _next;

    [Params(GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q5_0, GgmlType.F16)]
    public GgmlType Type { get; set; }

    [Params(KernelShape.Qwen05Down, KernelShape.TinyLlamaUp)]
    public KernelShape Shape { get; set; }

    [Params(1, 128)]
    public int Tokens { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var (columns, rows) = KernelShapes.Size(Shape);
        var bytes = KernelShapes.WeightBytes(Type, Shape);
        var quantized = Quantized(Type, Shape);
        var count = Shape == KernelShape.Smoke ? 2 : (int)Math.Max(1, (RotationBytes + bytes - 1) / bytes);
        fixed (byte* source = quantized)
        {
            for (var i = 0; i < count; i++)
            {
                var copy = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
                Buffer.MemoryCopy(source, copy, bytes, bytes);
                _copies.Add((nint)copy);
            }
        }

        _matrices = [.. _copies.Select(p => new WeightMatrix($"w{Type}", Type, columns, rows, (byte*)p))];

        var random = new Random(2);
        var input = new float[Tokens * columns];
        for (var i = 0; i < input.Length; i++)
        {
            input[i] = (random.NextSingle() * 2) - 1;
        }

        _x = new Activations();
        fixed (float* p = input)
        {
            _x.Load(Activations.KindFor(Type), p, Tokens, columns, columns);
        }

        _y = (float*)NativeMemory.AlignedAlloc((nuint)((long)Tokens * rows * sizeof(float)), 64);
        _pool = new WorkerPool(Threads);
        _next = 0;
    }

    /// <summary>
    /// Token <paramref name="t"/>'s outputs of the last <see cref="MatMul"/> against the scalar definition: the number of
    /// rows that differ in any bit (the smoke run checks the benchmark measures the real kernel on real data).
    /// </summary>
    public int CountMismatches(int t)
    {
        var w = _matrices[(_next + _matrices.Length - 1) % _matrices.Length];
        var mismatches = 0;
        for (var r = 0; r < w.Rows; r++)
        {
            if (BitConverter.SingleToInt32Bits(_y[((long)t * w.Rows) + r]) != BitConverter.SingleToInt32Bits(VecDot.Reference(w, r, _x, t)))
            {
                mismatches++;
            }
        }

        return mismatches;
    }

    /// <summary>The weights of a (type, shape), quantized once per process: every thread/token case of it reuses them.</summary>
    private static byte[] Quantized(GgmlType type, KernelShape shape)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue((type, shape), out var cached))
            {
                return cached;
            }

            var (columns, rows) = KernelShapes.Size(shape);
            var rowBytes = (int)GgmlTypes.RowBytes(type, columns);
            var bytes = new byte[KernelShapes.WeightBytes(type, shape)];
            var random = new Random(1);
            var values = new float[columns];
            for (var r = 0; r < rows; r++)
            {
                // Bell-shaped weights at a trained layer's scale; the values matter to the quantizer, not to the kernels' speed.
                for (var c = 0; c < columns; c++)
                {
                    values[c] = (random.NextSingle() + random.NextSingle() + random.NextSingle() - 1.5f) * 0.05f;
                }

                GgmlQuantization.Quantize(type, values, bytes.AsSpan(r * rowBytes, rowBytes));
            }

            Cache[(type, shape)] = bytes;
            return bytes;
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pool.Dispose();
        foreach (var p in _copies)
        {
            NativeMemory.AlignedFree((void*)p);
        }

        _copies.Clear();
        NativeMemory.AlignedFree(_y);
        _y = null;
    }

    /// <summary>One product of a weight matrix with the token batch, on the engine's worker pool.</summary>
    [Benchmark]
    public float MatMul()
    {
        var w = _matrices[_next];
        _next = (_next + 1) % _matrices.Length;
        Sluice.Engine.Kernels.MatMul.Multiply(w, _x, _y, w.Rows, _pool);
        return _y[0];
    }
}

/// <summary>
/// The scalar definition every kernel must equal bit for bit (<c>VecDot.Reference</c>), one weight row × one token:
/// shows what the vector kernels buy. Small on purpose (it allocates the exported activation row per call).
/// </summary>
public unsafe class VecDotReferenceBenchmarks
{
    private nint _weights;
    private WeightMatrix _w = null!;
    private Activations _x = null!;

    [Params(GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.F16)]
    public GgmlType Type { get; set; }

    /// <summary>Inputs per row (TinyLlama's width).</summary>
    public int Columns { get; set; } = 2048;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        var values = new float[Columns];
        for (var c = 0; c < values.Length; c++)
        {
            values[c] = (random.NextSingle() - 0.5f) * 0.1f;
        }

        var bytes = GgmlTypes.RowBytes(Type, Columns);
        _weights = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        GgmlQuantization.Quantize(Type, values, new Span<byte>((void*)_weights, checked((int)bytes)));
        _w = new WeightMatrix("row", Type, Columns, 1, (byte*)_weights);
        _x = new Activations();
        fixed (float* p = values)
        {
            _x.Load(Activations.KindFor(Type), p, 1, Columns, Columns);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => NativeMemory.AlignedFree((void*)_weights);

    [Benchmark]
    public float Reference() => VecDot.Reference(_w, 0, _x, 0);
}

/// <summary>
/// Converting a batch of f32 activation rows for a product (<c>Activations.Load</c>): Q8_0 / Q8_K quantization into the
/// token-lane layout, or f16 rounding. Done once per distinct matrix input in a layer.
/// </summary>
public unsafe class ActivationBenchmarks
{
    private float[] _input = [];
    private Activations _x = null!;

    /// <summary>The weight type the activations are converted for: Q8_0 → Q8_0 blocks, Q4_K → Q8_K, F16 → f16-rounded.</summary>
    [Params(GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.F16)]
    public GgmlType WeightType { get; set; }

    [Params(1, 128)]
    public int Tokens { get; set; }

    /// <summary>Values per token (TinyLlama's width).</summary>
    public int Columns { get; set; } = 2048;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        _input = new float[Tokens * Columns];
        for (var i = 0; i < _input.Length; i++)
        {
            _input[i] = (random.NextSingle() * 2) - 1;
        }

        _x = new Activations();
    }

    [Benchmark]
    public int Load()
    {
        fixed (float* p = _input)
        {
            _x.Load(Activations.KindFor(WeightType), p, Tokens, Columns, Columns);
        }

        return _x.Rows;
    }
}
