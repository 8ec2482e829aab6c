namespace StreamHealth.Sensors.Metrics;

/// <summary>The statistics of one window's values (canonical unit). NaN everywhere when the window had no readings.</summary>
public readonly record struct WindowStatistics(int Count, double Min, double Max, double Mean, double StdDev, double P50, double P95)
{
    public static readonly WindowStatistics Empty = new(0, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN);

    /// <summary>Exact statistics of <paramref name="values"/>, which it sorts in place. Percentiles interpolate linearly
    /// between order statistics (position q·(n−1), numpy's default); the standard deviation is the population one,
    /// by Welford's update (no cancellation when the values are large and close, as pressures are).</summary>
    public static WindowStatistics Compute(Span<double> values)
    {
        if (values.IsEmpty) return Empty;
        var mean = 0.0;
        var m2 = 0.0;
        for (var i = 0; i < values.Length; i++)
        {
            var delta = values[i] - mean;
            mean += delta / (i + 1);
            m2 += delta * (values[i] - mean);
        }
        values.Sort();
        return new WindowStatistics(values.Length, values[0], values[^1], mean, Math.Sqrt(m2 / values.Length),
            Percentile(values, 0.50), Percentile(values, 0.95));
    }

    /// <summary>The q-quantile of sorted values, interpolating linearly between order statistics at position q·(n−1).</summary>
    public static double Percentile(ReadOnlySpan<double> sorted, double q)
    {
        var position = q * (sorted.Length - 1);
        var below = (int)Math.Floor(position);
        var above = Math.Min(below + 1, sorted.Length - 1);
        return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
    }
}
