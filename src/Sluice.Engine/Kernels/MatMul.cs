namespace Sluice.Engine.Kernels;

/// <summary>Products of a weight matrix with a batch of activation rows, split over the worker pool by weight rows.</summary>
internal static unsafe class MatMul
{
    /// <summary>Rows per parallel chunk at least (a multiple of the kernels' 4-row tiles).</summary>
    private const int RowGrain = 16;

    /// <summary>
    /// <c>y[t·yStride + r] = W[r] · x[t]</c> for every weight row r and activation row t. Each weight row is read
    /// from memory once per call whatever the batch size: a prompt, or the decode steps of several sequences, is one
    /// pass over the weights. Results do not depend on the batch, the thread count or the split (see <see cref="VecDot"/>).
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

        // Split on the kernel's row tile (8 rows for the matrix-vector path, 4 for the GEMMs) so no chunk ends mid-tile.
        var tile = x.HasPlainRows || QuantGemm.TakesQuads(w, x) ? QuantGemm.LaneRows : 4;
        var tiles = (w.Rows + tile - 1) / tile;
        pool.ForRange(tiles, Math.Max(1, RowGrain / tile), (start, end) => MultiplyRows(w, x, (float*)output, yStride, tile * start, Math.Min(w.Rows, tile * end)));
    }

    /// <summary>Rows [<paramref name="start"/>, <paramref name="end"/>) on the calling thread.</summary>
    public static void MultiplyRows(WeightMatrix w, Activations x, float* y, int yStride, int start, int end)
    {
        if (QuantGemm.TakesQuads(w, x))
        {
            // A few tokens (concurrent decode steps) with blocks of 32: 2 rows × 4 tokens per vector (see QuantGemm.Quads).
            QuantGemm.MultiplyTokenQuads(w, x, y, yStride, start, end);
        }
        else if (x.HasPlainRows)
        {
            // Decode (a few tokens): rows dotted directly, no unpacking (see QuantGemm.FewRows).
            QuantGemm.MultiplyFewRows(w, x, y, yStride, start, end);
        }
        else if (w.ActivationKind is ActivationKind.Q8_0 or ActivationKind.Q8_K)
        {
            QuantGemm.MultiplyRows(w, x, y, yStride, start, end);
        }
        else if (x.Rows <= FloatGemm.MaxFewRows)
        {
            // Decode with float weights: the matrix-vector path (see FloatGemm.FewRows).
            FloatGemm.MultiplyFewRows(w, x, y, yStride, start, end);
        }
        else
        {
            FloatGemm.MultiplyRows(w, x, y, yStride, start, end);
        }
    }
}
