using System.Runtime.CompilerServices;

namespace Sluice.Engine.Kernels;

/// <summary>Products of a weight matrix with a batch of activation rows, split over the worker pool by weight rows.</summary>
internal static unsafe class MatMul
{
    private const int RowGrain = 16;
    private const int TokenTile = 32;

    /// <summary>
    /// <c>y[t·yStride + r] = W[r] · x[t]</c> for every weight row r and activation row t. Each weight row is read
    /// from memory once per call whatever the batch size: a prompt is one pass over the weights, not one per token.
    /// </summary>
    public static void Multiply(WeightMatrix w, Activations x, float* y, int yStride, WorkerPool pool)
    {
        if (x.Length != w.Columns)
        {
            throw new ArgumentException($"'{w.Name}' takes rows of {w.Columns} values, got {x.Length}");
        }

        if (x.Kind != w.ActivationKind)
        {
            throw new ArgumentException($"'{w.Name}' ({w.Type}) needs {w.ActivationKind} activations, got {x.Kind}");
        }

        var output = (nint)y;
        pool.ForRange(w.Rows, RowGrain, (start, end) => MultiplyRows(w, x, (float*)output, yStride, start, end));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MultiplyRows(WeightMatrix w, Activations x, float* y, int yStride, int start, int end)
    {
        var tokens = x.Rows;
        var four = stackalloc float[VecDotTile.Width];
        for (var t0 = 0; t0 < tokens; t0 += TokenTile)
        {
            var t1 = Math.Min(tokens, t0 + TokenTile);
            for (var r = start; r < end; r++)
            {
                var t = t0;

                // Four tokens per pass over the row share its loads and decoding; the rest one at a time.
                for (; t + VecDotTile.Width <= t1; t += VecDotTile.Width)
                {
                    VecDotTile.Dot4(w, r, x, t, four);
                    for (var j = 0; j < VecDotTile.Width; j++)
                    {
                        y[((long)(t + j) * yStride) + r] = four[j];
                    }
                }

                for (; t < t1; t++)
                {
                    y[((long)t * yStride) + r] = w.Dot(r, x, t);
                }
            }
        }
    }
}
