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

        var tokens = x.Rows;
        var output = (nint)y;
        pool.ForRange(w.Rows, RowGrain, (start, end) =>
        {
            var yp = (float*)output;
            for (var t0 = 0; t0 < tokens; t0 += TokenTile)
            {
                var t1 = Math.Min(tokens, t0 + TokenTile);
                for (var r = start; r < end; r++)
                {
                    for (var t = t0; t < t1; t++)
                    {
                        yp[((long)t * yStride) + r] = w.Dot(r, x, t);
                    }
                }
            }
        });
    }
}
