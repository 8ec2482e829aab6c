using System.Buffers;

namespace StreamHealth.Weight.Filter;

/// <summary>A measurement in kilograms with the variance its source carries.</summary>
public readonly record struct BaselineSample(long TimeUnixMs, double WeightKg, double VarianceKg2);

/// <summary>Robust start of a user's estimate from a handful of measurements: median/MAD for the level and
/// outliers, Theil–Sen for the slope when the samples span long enough (else flat), and a covariance that
/// says how little three noisy points really know.</summary>
public static class RobustBaseline
{
    /// <summary>Most samples one fit takes (Theil–Sen looks at every pair: 32,640 pairs at this bound).</summary>
    public const int MaxSamples = 256;

    /// <summary>1 / Φ⁻¹(3/4): scales a MAD to a standard deviation for normal data.</summary>
    private const double MadToSd = 1.4826;

    /// <summary>Pairs closer than this say more about the morning/evening swing than about the trend.</summary>
    private const double MinPairSpacingDays = 1.0;

    private const double MsPerDay = 86_400_000.0;

    /// <summary>Fits the estimate at <paramref name="atTimeUnixMs"/> (normally the newest sample's time).</summary>
    /// <param name="samples">In any order; 1 to <see cref="MaxSamples"/>.</param>
    /// <param name="excluded">Same length as <paramref name="samples"/>; set where a sample was dropped as an outlier.</param>
    /// <param name="used">How many samples the estimate rests on.</param>
    /// <param name="minSlopeSpanDays">Shorter spans start flat with <paramref name="trendPriorSdKgPerDay"/>.</param>
    /// <param name="maxTrendKgPerDay">The slope is clamped to ± this (the physiological bound).</param>
    public static WeightTrendKalman Fit(ReadOnlySpan<BaselineSample> samples, long atTimeUnixMs, double outlierZ,
        double minSlopeSpanDays, double trendPriorSdKgPerDay, double maxTrendKgPerDay, Span<bool> excluded, out int used)
    {
        var n = samples.Length;
        if (n is < 1 or > MaxSamples)
            throw new ArgumentOutOfRangeException(nameof(samples), n, $"a baseline needs 1-{MaxSamples} samples");
        if (excluded.Length != n)
            throw new ArgumentException("excluded must have one slot per sample", nameof(excluded));

        Span<double> scratch = stackalloc double[n];
        Span<double> daysBefore = stackalloc double[n];   // ≤ 0: sample time relative to atTimeUnixMs
        Span<double> kept = stackalloc double[n];

        for (var i = 0; i < n; i++) scratch[i] = samples[i].WeightKg;
        var median = MedianInPlace(scratch);
        for (var i = 0; i < n; i++) scratch[i] = Math.Abs(samples[i].WeightKg - median);
        var mad = MedianInPlace(scratch);

        // The MAD of three points can be ~0 by chance; the sources' own noise is the floor of what we believe.
        var minVariance = double.MaxValue;
        for (var i = 0; i < n; i++) minVariance = Math.Min(minVariance, samples[i].VarianceKg2);
        var robustSd = MadToSd * mad;
        var gateSd = Math.Max(robustSd, Math.Sqrt(minVariance));

        // At least half the samples lie within one MAD of the median, so m ≥ 1 whatever the data.
        var m = 0;
        var sumVariance = 0.0;
        for (var i = 0; i < n; i++)
        {
            excluded[i] = Math.Abs(samples[i].WeightKg - median) > outlierZ * gateSd;
            if (excluded[i]) continue;
            kept[m] = samples[i].WeightKg;
            daysBefore[m] = (samples[i].TimeUnixMs - atTimeUnixMs) / MsPerDay;
            sumVariance += samples[i].VarianceKg2;
            m++;
        }
        used = m;
        var meanVariance = sumVariance / m;
        kept = kept[..m];
        daysBefore = daysBefore[..m];

        var noiseVariance = Math.Max(robustSd * robustSd, meanVariance);
        var meanDays = 0.0;
        var minDays = double.MaxValue;
        var maxDays = double.MinValue;
        foreach (var d in daysBefore)
        {
            meanDays += d / m;
            minDays = Math.Min(minDays, d);
            maxDays = Math.Max(maxDays, d);
        }
        var sumSquares = 0.0;
        foreach (var d in daysBefore) sumSquares += (d - meanDays) * (d - meanDays);

        // Long enough a span (a week or more) says what the slope is: the Theil–Sen slope itself, with the
        // variance its scatter gives, within the physiological bound. Shorter spans start flat with room to
        // learn (a prior that pulled a real week's slope towards 0 biased every diet for its first weeks).
        var trend = 0.0;
        var trendVariance = trendPriorSdKgPerDay * trendPriorSdKgPerDay;
        if (m >= 3 && maxDays - minDays >= minSlopeSpanDays && sumSquares > 0
            && TryTheilSen(kept, daysBefore, out var slope))
        {
            trend = Math.Clamp(slope, -maxTrendKgPerDay, maxTrendKgPerDay);
            trendVariance = noiseVariance / sumSquares;
        }

        for (var i = 0; i < m; i++) scratch[i] = kept[i] - trend * daysBefore[i];
        var level = MedianInPlace(scratch[..m]);

        // The median's variance is about π/2 times the mean's; carrying the level from the samples' centroid
        // to atTime adds the trend's uncertainty over that distance, and correlates the two.
        var centroidVariance = Math.PI / 2 * noiseVariance / m;
        return new WeightTrendKalman(
            weightKg: level,
            trendKgPerDay: trend,
            varWeightKg2: centroidVariance + meanDays * meanDays * trendVariance,
            covWeightTrendKg2PerDay: -meanDays * trendVariance,
            varTrendKg2PerDay2: trendVariance);
    }

    /// <summary>Median of the slopes of every pair at least <see cref="MinPairSpacingDays"/> apart.</summary>
    private static bool TryTheilSen(ReadOnlySpan<double> weightsKg, ReadOnlySpan<double> days, out double slopeKgPerDay)
    {
        var n = weightsKg.Length;
        var maxPairs = n * (n - 1) / 2;
        double[]? rented = null;
        Span<double> slopes = maxPairs <= 512 ? stackalloc double[maxPairs] : (rented = ArrayPool<double>.Shared.Rent(maxPairs));
        try
        {
            var count = 0;
            for (var i = 0; i < n; i++)
            for (var j = i + 1; j < n; j++)
            {
                var dt = days[j] - days[i];
                if (Math.Abs(dt) < MinPairSpacingDays) continue;
                slopes[count++] = (weightsKg[j] - weightsKg[i]) / dt;
            }
            slopeKgPerDay = count > 0 ? MedianInPlace(slopes[..count]) : 0;
            return count > 0;
        }
        finally
        {
            if (rented is not null) ArrayPool<double>.Shared.Return(rented);
        }
    }

    /// <summary>Sorts <paramref name="values"/> and returns its median (mean of the middle two when even).</summary>
    public static double MedianInPlace(Span<double> values)
    {
        values.Sort();
        var mid = values.Length / 2;
        return values.Length % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
    }
}
