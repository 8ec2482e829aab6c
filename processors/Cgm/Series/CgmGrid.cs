namespace StreamHealth.Cgm.Series;

/// <summary>The grid shared by the batch resampler and the streaming window: step <c>n</c> is the time
/// <c>n · stepMs</c> since 1970-01-01 on the series' clock.</summary>
internal static class CgmGrid
{
    /// <summary>The nearest step; a time exactly half-way goes to the later step.</summary>
    public static long NearestStep(long timeMs, long stepMs) => FloorDiv(timeMs + stepMs / 2, stepMs);

    public static long FloorDiv(long value, long divisor)
    {
        var quotient = Math.DivRem(value, divisor, out var remainder);
        return remainder < 0 ? quotient - 1 : quotient;
    }

    /// <summary>Hour of the day (0-23) of a wall-clock time.</summary>
    public static int HourOfDay(long timeMs) => (int)(timeMs - FloorDiv(timeMs, 86_400_000) * 86_400_000) / 3_600_000;

    /// <summary>Which of two duplicates in one step to keep: the one nearer the grid time, then the earlier, then
    /// the lower value. A total order, so the choice does not depend on which arrived first.</summary>
    public static bool Precedes(long offsetMs, double glucoseMgDl, long otherOffsetMs, double otherGlucoseMgDl)
    {
        var distance = Math.Abs(offsetMs);
        var otherDistance = Math.Abs(otherOffsetMs);
        if (distance != otherDistance) return distance < otherDistance;
        if (offsetMs != otherOffsetMs) return offsetMs < otherOffsetMs;
        return glucoseMgDl < otherGlucoseMgDl;
    }
}
