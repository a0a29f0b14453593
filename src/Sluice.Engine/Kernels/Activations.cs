using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>The format activations are converted to before a product with weights of a given type.</summary>
internal enum ActivationKind
{
    /// <summary>Plain f32 (F32 weights).</summary>
    F32,

    /// <summary>f32 values rounded to f16 (F16 weights).</summary>
    F16,

    /// <summary>f32 values rounded to bf16 (BF16 weights).</summary>
    BF16,

    /// <summary>Q8_0 blocks of 32: f16-rounded scale, 32 int8 (Q8_0, Q4_0 and Q5_0 weights).</summary>
    Q8_0,

    /// <summary>Q8_K blocks of 256: f32 scale, 256 int8, 16 sums of 16 (K-quant weights).</summary>
    Q8_K,
}

/// <summary>
/// A batch of activation rows (tokens) converted for products with one weight type. Float kinds are row-major f32
/// (rounded to the weight's format). Integer kinds are stored for the token-lane kernels of <see cref="QuantGemm"/>:
/// tokens in groups of <see cref="Group"/>, and within a group, for every 4 consecutive values of the row, the 4 bytes of
/// each of the 8 tokens side by side (32 bytes: one <c>vpdpbusd</c> operand), next to per-group lane vectors of block
/// scales and block sums. Lanes past the last token are zero. Reused across layers; buffers are pinned.
/// </summary>
internal sealed unsafe class Activations
{
    /// <summary>Tokens per group (the lanes of one 256-bit integer vector).</summary>
    public const int Group = 8;

    private float[] _values = [];
    private sbyte[] _quants = [];
    private float[] _scales = [];
    private int[] _sums = [];
    private sbyte[] _plainQuants = [];
    private int[] _quadPairSums = [];
    private bool _hasQuadPairSums;
    [ThreadStatic]
    private static sbyte[]? _threadQuants;
    [ThreadStatic]
    private static float[]? _threadScales;
    [ThreadStatic]
    private static short[]? _threadSums;

    public ActivationKind Kind { get; private set; }

    /// <summary>Tokens.</summary>
    public int Rows { get; private set; }

    /// <summary>Values per token.</summary>
    public int Length { get; private set; }

    /// <summary>Token groups of <see cref="Group"/> (integer kinds).</summary>
    public int Groups => (Rows + Group - 1) / Group;

    /// <summary>Values per scale: 32 for Q8_0, 256 for Q8_K.</summary>
    public int ScaleBlock => Kind == ActivationKind.Q8_K ? 256 : 32;

    /// <summary>Values per sum: 32 for Q8_0 (one per block), 16 for Q8_K (ggml's bsums).</summary>
    public int SumBlock => Kind == ActivationKind.Q8_K ? 16 : 32;

    /// <summary>The activation format weights of <paramref name="type"/> are multiplied with.</summary>
    public static ActivationKind KindFor(GgmlType type) => type switch
    {
        GgmlType.F32 => ActivationKind.F32,
        GgmlType.F16 => ActivationKind.F16,
        GgmlType.BF16 => ActivationKind.BF16,
        GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 => ActivationKind.Q8_0,
        GgmlType.Q4_K or GgmlType.Q6_K => ActivationKind.Q8_K,
        _ => throw new NotSupportedException($"no kernels for {type} weights"),
    };

    /// <summary>Row <paramref name="row"/> of a float kind.</summary>
    public float* Values(int row) => Pointer(_values) + ((long)row * Length);

    /// <summary>Group <paramref name="group"/>'s interleaved quants: per 32 values 256 bytes ([4-value step][token][4]).</summary>
    public sbyte* GroupQuants(int group) => Pointer(_quants) + ((long)group * Length * Group);

    /// <summary>Group <paramref name="group"/>'s scales: per scale block, <see cref="Group"/> lanes.</summary>
    public float* GroupScales(int group) => Pointer(_scales) + ((long)group * (Length / ScaleBlock) * Group);

    /// <summary>Group <paramref name="group"/>'s sums: per sum block, <see cref="Group"/> int lanes.</summary>
    public int* GroupSums(int group) => Pointer(_sums) + ((long)group * (Length / SumBlock) * Group);

    /// <summary>
    /// Batches of at most this many tokens (integer kinds) go to the matrix-vector kernels
    /// (<see cref="QuantGemm.MultiplyFewRows"/>), which read each token's plain row contiguously instead of 4 bytes out of
    /// every 32 of a mostly empty token group. Their cost grows with each token; from 2 tokens on, the quad kernels
    /// (<see cref="QuantGemm.MultiplyTokenQuads"/>, 2–8 tokens) cost less per token.
    /// </summary>
    public const int MaxPlainRows = 1;

    /// <summary>True when <see cref="PlainQuants"/> holds every token (integer kinds, at most <see cref="MaxPlainRows"/> tokens).</summary>
    public bool HasPlainRows => (Kind is ActivationKind.Q8_0 or ActivationKind.Q8_K) && Rows <= MaxPlainRows;

    /// <summary>
    /// True when <see cref="PlainQuants"/> holds every token: integer kinds and at most <see cref="QuantGemm.MaxQuadTokens"/>
    /// tokens (the wide Q4_K quad kernel reads whole plain rows too; <see cref="HasPlainRows"/> says which kernel takes the
    /// product).
    /// </summary>
    public bool KeepsPlainRows => (Kind is ActivationKind.Q8_0 or ActivationKind.Q8_K) && Rows <= QuantGemm.MaxQuadTokens;

    /// <summary>Token <paramref name="row"/>'s quants in ggml's plain order (only when <see cref="KeepsPlainRows"/>).</summary>
    public sbyte* PlainQuants(int row) => Pointer(_plainQuants) + ((long)row * Length);

    /// <summary>Token <paramref name="row"/>'s value <paramref name="k"/> (integer kinds), for references and tests.</summary>
    public sbyte Quant(int row, int k) =>
        GroupQuants(row / Group)[((k / 32) * 256) + (((k % 32) / 4) * 32) + ((row % Group) * 4) + (k % 4)];

    /// <summary>Token <paramref name="row"/>'s scale of block <paramref name="block"/> (integer kinds).</summary>
    public float Scale(int row, int block) => GroupScales(row / Group)[(block * Group) + (row % Group)];

    /// <summary>Token <paramref name="row"/>'s sum of block <paramref name="block"/> of <see cref="SumBlock"/> values.</summary>
    public int Sum(int row, int block) => GroupSums(row / Group)[(block * Group) + (row % Group)];

    /// <summary>Token <paramref name="row"/> in ggml's plain layout (quants, scales, and for Q8_K the 16-value sums), for the scalar references.</summary>
    public (sbyte[] Quants, float[] Scales, short[] Sums) ExportRow(int row)
    {
        var q = new sbyte[Length];
        for (var k = 0; k < Length; k++)
        {
            q[k] = Quant(row, k);
        }

        var d = new float[Length / ScaleBlock];
        for (var b = 0; b < d.Length; b++)
        {
            d[b] = Scale(row, b);
        }

        var sums = new short[Length / 16];
        for (var j = 0; j < sums.Length; j++)
        {
            var s = 0;
            for (var i = 0; i < 16; i++)
            {
                s += q[(16 * j) + i];
            }

            sums[j] = (short)s;
        }

        return (q, d, sums);
    }

    /// <summary>
    /// Converts <paramref name="rows"/> rows of <paramref name="length"/> values (row stride <paramref name="stride"/>),
    /// spread over <paramref name="pool"/> when the batch is large.
    /// </summary>
    public void Load(ActivationKind kind, float* source, int rows, int length, int stride, WorkerPool? pool = null)
    {
        Kind = kind;
        Rows = rows;
        Length = length;
        var total = (long)rows * length;
        switch (kind)
        {
            case ActivationKind.F32:
            case ActivationKind.F16:
            case ActivationKind.BF16:
                Ensure(ref _values, total);
                break;
            case ActivationKind.Q8_0:
                CheckMultiple(length, 32);
                EnsureGroups(length / 32, length / 32);
                EnsurePlain();
                break;
            case ActivationKind.Q8_K:
                CheckMultiple(length, 256);
                EnsureGroups(length / 256, length / 16);
                EnsurePlain();
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }

        var src = (nint)source;
        if (pool is null || pool.ThreadCount == 1 || total < 1 << 15)
        {
            LoadRows((float*)src, stride, 0, rows);
        }
        else
        {
            pool.ForRange(rows, 4, (start, end) => LoadRows((float*)src, stride, start, end));
        }

        // Every Q4_K product of this input (Q, K and V; gate and up) needs the same pair sums: made once here, not per call.
        _hasQuadPairSums = kind == ActivationKind.Q8_K && rows >= 2 && rows <= QuantGemm.MaxQuadTokens;
        if (_hasQuadPairSums)
        {
            var perLanes = QuantGemm.QuadPairSumsLength(length / 256, 8);
            Ensure(ref _quadPairSums, 3L * perLanes);
            QuantGemm.QuadPairSums(GroupSums(0), length / 256, 8, Pointer(_quadPairSums));
            QuantGemm.QuadPairSums(GroupSums(0), length / 256, 16, Pointer(_quadPairSums) + perLanes);
        }
    }

    /// <summary>
    /// The quad kernels' pairs of sub-block sums for <paramref name="lanes"/> (8 or 16) lanes per vector, made at
    /// <see cref="Load"/> for Q8_K inputs of 2–<see cref="QuantGemm.MaxQuadTokens"/> tokens; null otherwise.
    /// </summary>
    public int* QuadPairSums(int lanes)
    {
        if (!_hasQuadPairSums)
        {
            return null;
        }

        var perLanes = QuantGemm.QuadPairSumsLength(Length / 256, 8);
        return lanes == 8 ? Pointer(_quadPairSums) : Pointer(_quadPairSums) + perLanes;
    }

    private void EnsurePlain()
    {
        if (KeepsPlainRows)
        {
            Ensure(ref _plainQuants, (long)Rows * Length);
        }
    }

    private void EnsureGroups(int scaleBlocks, int sumBlocks)
    {
        var groups = Groups;
        Ensure(ref _quants, (long)groups * Group * Length);
        Ensure(ref _scales, (long)groups * Group * scaleBlocks);
        Ensure(ref _sums, (long)groups * Group * sumBlocks);

        // Lanes past the last token stay zero: they then add nothing (their outputs are never stored either).
        var padded = Rows % Group;
        if (padded != 0)
        {
            var last = groups - 1;
            new Span<sbyte>(GroupQuants(last), Length * Group).Clear();
            new Span<float>(GroupScales(last), scaleBlocks * Group).Clear();
            new Span<int>(GroupSums(last), sumBlocks * Group).Clear();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void LoadRows(float* source, int stride, int start, int end)
    {
        var length = Length;
        for (var r = start; r < end; r++)
        {
            var src = source + ((long)r * stride);
            switch (Kind)
            {
                case ActivationKind.F32:
                    new ReadOnlySpan<float>(src, length).CopyTo(new Span<float>(Values(r), length));
                    break;
                case ActivationKind.F16:
                    FloatConversions.RoundToHalf(src, Values(r), length);
                    break;
                case ActivationKind.BF16:
                    FloatConversions.RoundToBFloat16(src, Values(r), length);
                    break;
                case ActivationKind.Q8_0:
                {
                    var (q, d, _) = RowScratch();
                    fixed (sbyte* scratch = q)
                    fixed (float* dp = d)
                    {
                        // Few tokens: quantize straight into the plain row the matrix-vector kernels read.
                        var qp = KeepsPlainRows ? PlainQuants(r) : scratch;
                        QuantizeQ8_0Fast(src, qp, dp, length);
                        Scatter(r, qp, dp, null);
                    }

                    break;
                }

                case ActivationKind.Q8_K:
                {
                    var (q, d, s) = RowScratch();
                    fixed (sbyte* scratch = q)
                    fixed (float* dp = d)
                    fixed (short* sp = s)
                    {
                        var qp = KeepsPlainRows ? PlainQuants(r) : scratch;
                        QuantizeQ8_KFast(src, qp, dp, sp, length);
                        Scatter(r, qp, dp, sp);
                    }

                    break;
                }
            }
        }
    }

    /// <summary>This thread's scratch row (plain quants, scales, sums).</summary>
    private (sbyte[] Q, float[] D, short[] S) RowScratch()
    {
        if (_threadQuants is null || _threadQuants.Length < Length)
        {
            _threadQuants = new sbyte[Length];
            _threadScales = new float[Length / 32];
            _threadSums = new short[Length / 16];
        }

        return (_threadQuants, _threadScales!, _threadSums!);
    }

    /// <summary>Copies token <paramref name="row"/>'s plain quantized row into its group lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Scatter(int row, sbyte* q, float* d, short* sums16)
    {
        var lane = row % Group;
        var group = row / Group;
        var gq = GroupQuants(group) + (lane * 4);
        for (var b = 0; b < Length / 32; b++)
        {
            // Values 4i–4i+3 of a block of 32 go to the group's step i (32 bytes apart: 8 lanes of 4).
            var from = (int*)(q + (32 * b));
            var to = gq + (256 * b);
            for (var i = 0; i < 8; i++)
            {
                *(int*)(to + (32 * i)) = from[i];
            }
        }

        var gd = GroupScales(group) + lane;
        var scales = Length / ScaleBlock;
        for (var b = 0; b < scales; b++)
        {
            gd[b * Group] = d[b];
        }

        var gs = GroupSums(group) + lane;
        if (Kind == ActivationKind.Q8_K)
        {
            for (var j = 0; j < Length / 16; j++)
            {
                gs[j * Group] = sums16[j];
            }
        }
        else
        {
            for (var b = 0; b < Length / 32; b++)
            {
                var s = 0;
                var qb = q + (32 * b);
                for (var i = 0; i < 32; i++)
                {
                    s += qb[i];
                }

                gs[b * Group] = s;
            }
        }
    }

    /// <summary>
    /// Q8_0 as ggml's x86 <c>quantize_row_q8_0</c> does it for activations: scale max|x|/127 stored as f16,
    /// values round-half-even of x·127/max|x|. The scalar definition.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeQ8_0(float* x, sbyte* q, float* d, int length)
    {
        for (var b = 0; b < length / 32; b++)
        {
            var block = x + (32 * b);
            var amax = 0f;
            for (var j = 0; j < 32; j++)
            {
                amax = MathF.Max(amax, MathF.Abs(block[j]));
            }

            d[b] = FloatConversions.RoundToHalf(amax / 127f);
            var id = amax != 0 ? 127f / amax : 0f;
            var qb = q + (32 * b);
            for (var j = 0; j < 32; j++)
            {
                qb[j] = (sbyte)Math.Clamp((int)MathF.Round(block[j] * id, MidpointRounding.ToEven), -128, 127);
            }
        }
    }

    /// <summary><see cref="QuantizeQ8_0"/> with AVX2 (same results bit for bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeQ8_0Fast(float* x, sbyte* q, float* d, int length)
    {
        if (!Avx2.IsSupported)
        {
            QuantizeQ8_0(x, q, d, length);
            return;
        }

        var absMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        for (var b = 0; b < length / 32; b++)
        {
            var block = x + (32 * b);
            var v0 = Avx.LoadVector256(block);
            var v1 = Avx.LoadVector256(block + 8);
            var v2 = Avx.LoadVector256(block + 16);
            var v3 = Avx.LoadVector256(block + 24);
            var m = Avx.Max(Avx.Max(v0 & absMask, v1 & absMask), Avx.Max(v2 & absMask, v3 & absMask));
            var m4 = Sse.Max(m.GetLower(), m.GetUpper());
            m4 = Sse.Max(m4, Sse.MoveHighToLow(m4, m4));
            m4 = Sse.MaxScalar(m4, Sse.Shuffle(m4, m4, 0x55));
            var amax = m4.ToScalar();
            d[b] = FloatConversions.RoundToHalf(amax / 127f);
            var id = Vector256.Create(amax != 0 ? 127f / amax : 0f);
            var i0 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v0 * id));
            var i1 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v1 * id));
            var i2 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v2 * id));
            var i3 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v3 * id));
            Store32(q + (32 * b), i0, i1, i2, i3);
        }
    }

    /// <summary>ggml's <c>quantize_row_q8_K_ref</c>: scale from the signed value of largest magnitude, 16 partial sums. The scalar definition.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeQ8_K(float* x, sbyte* q, float* d, short* sums, int length)
    {
        for (var b = 0; b < length / 256; b++)
        {
            var block = x + (256 * b);
            var qb = q + (256 * b);
            var max = 0f;
            var amax = 0f;
            for (var j = 0; j < 256; j++)
            {
                var ax = MathF.Abs(block[j]);
                if (ax > amax)
                {
                    amax = ax;
                    max = block[j];
                }
            }

            if (amax == 0)
            {
                d[b] = 0;
                new Span<sbyte>(qb, 256).Clear();
                new Span<short>(sums + (16 * b), 16).Clear();
                continue;
            }

            var iscale = -127f / max;
            for (var j = 0; j < 256; j++)
            {
                qb[j] = (sbyte)Math.Min(127, GgmlQuantization.NearestInt(iscale * block[j]));
            }

            for (var j = 0; j < 16; j++)
            {
                var sum = 0;
                for (var i = 0; i < 16; i++)
                {
                    sum += qb[(16 * j) + i];
                }

                sums[(16 * b) + j] = (short)sum;
            }

            d[b] = 1 / iscale;
        }
    }

    /// <summary><see cref="QuantizeQ8_K"/> with AVX2 (same results bit for bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeQ8_KFast(float* x, sbyte* q, float* d, short* sums, int length)
    {
        if (!Avx2.IsSupported)
        {
            QuantizeQ8_K(x, q, d, sums, length);
            return;
        }

        var absMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        for (var b = 0; b < length / 256; b++)
        {
            var block = x + (256 * b);
            var qb = q + (256 * b);
            var m = Vector256<float>.Zero;
            for (var j = 0; j < 256; j += 8)
            {
                m = Avx.Max(m, Avx.LoadVector256(block + j) & absMask);
            }

            var m4 = Sse.Max(m.GetLower(), m.GetUpper());
            m4 = Sse.Max(m4, Sse.MoveHighToLow(m4, m4));
            m4 = Sse.MaxScalar(m4, Sse.Shuffle(m4, m4, 0x55));
            var amax = m4.ToScalar();
            if (amax == 0 || float.IsNaN(amax))
            {
                // All zero (or NaN, which the scalar definition's comparisons skip): leave it to the definition.
                QuantizeQ8_K(block, qb, d + b, sums + (16 * b), 256);
                continue;
            }

            // The first value of largest magnitude, with its sign (the scalar loop's strict '>'): the first lane whose
            // magnitude equals the maximum, 8 at a time.
            var max = 0f;
            var target = Vector256.Create(amax);
            for (var j = 0; j < 256; j += 8)
            {
                var hits = Avx.CompareEqual(Avx.LoadVector256(block + j) & absMask, target).ExtractMostSignificantBits();
                if (hits != 0)
                {
                    max = block[j + BitOperations.TrailingZeroCount(hits)];
                    break;
                }
            }

            var iscale = -127f / max;
            var vs = Vector256.Create(iscale);
            var top = Vector256.Create(127);
            for (var j = 0; j < 256; j += 32)
            {
                // nearest_int (round half to even for |v| < 2^22) then min(127); iscale·x stays within ±127.
                var i0 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.LoadVector256(block + j) * vs)), top);
                var i1 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.LoadVector256(block + j + 8) * vs)), top);
                var i2 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.LoadVector256(block + j + 16) * vs)), top);
                var i3 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.LoadVector256(block + j + 24) * vs)), top);
                Store32(qb + j, i0, i1, i2, i3);
            }

            // Sums of 16: the bytes offset to unsigned (+128), summed 8 at a time by psadbw, the offset taken back off.
            var bias = Vector256.Create((byte)0x80);
            for (var j = 0; j < 256; j += 32)
            {
                var eights = Avx2.SumAbsoluteDifferences(Vector256.Load((byte*)qb + j) ^ bias, Vector256<byte>.Zero).AsInt64();
                var sb = sums + (16 * b) + (j / 16);
                sb[0] = (short)(eights.GetElement(0) + eights.GetElement(1) - (16 * 128));
                sb[1] = (short)(eights.GetElement(2) + eights.GetElement(3) - (16 * 128));
            }

            d[b] = 1 / iscale;
        }
    }

    /// <summary>Packs four vectors of int32 (each within −128..127) into 32 signed bytes in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store32(sbyte* destination, Vector256<int> i0, Vector256<int> i1, Vector256<int> i2, Vector256<int> i3)
    {
        // packs work per 128-bit lane: the result is in lane order 0,2,1,3 of 4-value groups; a permute restores it.
        var s01 = Avx2.PackSignedSaturate(i0, i1);
        var s23 = Avx2.PackSignedSaturate(i2, i3);
        var b = Avx2.PackSignedSaturate(s01, s23);
        Avx2.PermuteVar8x32(b.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte().Store(destination);
    }

    private static void CheckMultiple(int length, int block)
    {
        if (length % block != 0)
        {
            throw new ArgumentException($"activation rows of {length} values are not a multiple of {block}");
        }
    }

    /// <summary>Bytes every buffer's first element is aligned to: a cache line, so vector loads split lines the same way in every process.</summary>
    private const int Alignment = 64;

    // Pinned arrays start 8- or 16-byte aligned, wherever allocation order put them; a buffer's usable part starts at
    // the next cache line instead (Pointer), so it holds Alignment extra bytes.
    private static void Ensure<T>(ref T[] buffer, long length)
        where T : unmanaged
    {
        var slack = Alignment / sizeof(T);
        if (buffer.Length - slack < length)
        {
            buffer = GC.AllocateUninitializedArray<T>(checked((int)length + slack), pinned: true);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T* Pointer<T>(T[] array)
        where T : unmanaged =>
        (T*)(((nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array)) + (Alignment - 1)) & ~(nint)(Alignment - 1));
}
