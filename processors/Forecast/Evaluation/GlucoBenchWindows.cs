namespace StreamHealth.Forecast.Evaluation;

/// <summary>GlucoBench windowing, identical to <c>Training/data.py</c> (segments, windows): one person's readings are
/// sorted by time (stable), readings at the same timestamp averaged, the series cut wherever two consecutive readings
/// are more than 15 minutes apart, each segment of ≥ 2 readings resampled by linear interpolation onto a 5-minute grid
/// starting at its first reading (float64, stored float32), and windows of 96 inputs + 12 targets slid with stride 1
/// over every segment of ≥ 108 steps. Pure.</summary>
public static class GlucoBenchWindows
{
    public const long StepMs = 300_000;
    public const long MaxGapMs = 900_000;
    public const int InputSteps = 96, HorizonSteps = 12, WindowSteps = InputSteps + HorizonSteps;

    /// <summary>The 5-minute segments of one person's readings (times in ms on any clock, glucose mg/dL).</summary>
    public static List<float[]> Segments(ReadOnlySpan<long> timesMs, ReadOnlySpan<double> mgDl)
    {
        var order = new int[timesMs.Length];
        for (var i = 0; i < order.Length; i++) order[i] = i;
        var keys = timesMs.ToArray();
        // Array.Sort is not stable; ties are averaged below, so only the times' order matters (as in numpy's stable argsort).
        Array.Sort(keys, order);
        var times = new List<long>(keys.Length);
        var values = new List<double>(keys.Length);
        for (var i = 0; i < keys.Length;)
        {
            var j = i;
            double sum = 0;
            while (j < keys.Length && keys[j] == keys[i]) sum += mgDl[order[j++]];
            times.Add(keys[i]);
            values.Add(sum / (j - i));
            i = j;
        }
        var segments = new List<float[]>();
        var start = 0;
        for (var i = 1; i <= times.Count; i++)
        {
            if (i < times.Count && times[i] - times[i - 1] <= MaxGapMs) continue;
            if (i - start >= 2) segments.Add(Resample(times, values, start, i));
            start = i;
        }
        return segments;
    }

    /// <summary>np.interp(arange(t0, t_end + ε, 5 min), t, v) over readings [start, end).</summary>
    private static float[] Resample(List<long> times, List<double> values, int start, int end)
    {
        var t0 = times[start];
        var steps = (int)((times[end - 1] - t0) / StepMs) + 1;
        var grid = new float[steps];
        var j = start;
        for (var k = 0; k < steps; k++)
        {
            var t = t0 + k * StepMs;
            if (t >= times[end - 1]) { grid[k] = (float)values[end - 1]; continue; }
            while (times[j + 1] <= t) j++;   // stops before end − 1: t < times[end − 1]
            // numpy's own arithmetic, in seconds (exact: the times are whole seconds), so the float32s agree bit for bit.
            var slope = (values[j + 1] - values[j]) / ((times[j + 1] - times[j]) / 1000.0);
            grid[k] = (float)(slope * ((t - times[j]) / 1000.0) + values[j]);
        }
        return grid;
    }

    /// <summary>Windows of <paramref name="segments"/>: (segment, first step) pairs, in order.</summary>
    public static IEnumerable<(float[] Segment, int Start)> Windows(IEnumerable<float[]> segments)
    {
        foreach (var s in segments)
            for (var start = 0; start + WindowSteps <= s.Length; start++)
                yield return (s, start);
    }

    public static int CountWindows(IEnumerable<float[]> segments)
    {
        var n = 0;
        foreach (var s in segments) n += Math.Max(0, s.Length - WindowSteps + 1);
        return n;
    }

    public static int LongestSegment(IEnumerable<float[]> segments)
    {
        var n = 0;
        foreach (var s in segments) n = Math.Max(n, s.Length);
        return n;
    }
}
