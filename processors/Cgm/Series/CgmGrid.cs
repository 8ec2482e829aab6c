namespace StreamHealth.Cgm.Series;

/// <summary>The glucose limits of <see cref="CgmSeriesOptions"/>, copied so that later changes to the options object
/// do not reach a running component.</summary>
internal readonly record struct GlucoseLimits(double DropAtOrBelowMgDl, double DropAboveMgDl, double SensorMinMgDl, double SensorMaxMgDl)
{
    public GlucoseLimits(CgmSeriesOptions options)
        : this(options.DropAtOrBelowMgDl, options.DropAboveMgDl, options.SensorMinMgDl, options.SensorMaxMgDl)
    {
    }

    /// <summary>False for NaN, at or below <see cref="DropAtOrBelowMgDl"/> and above <see cref="DropAboveMgDl"/>:
    /// such a value is dropped.</summary>
    public bool IsPlausible(double mgDl) => mgDl > DropAtOrBelowMgDl && mgDl <= DropAboveMgDl;

    /// <summary>Outside the sensor's reporting range: kept, flagged <see cref="CgmQuality.OutOfRange"/>.</summary>
    public bool IsOutOfRange(double mgDl) => mgDl < SensorMinMgDl || mgDl > SensorMaxMgDl;
}

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

    /// <summary>The linear fill of a gap: the value <paramref name="stepsIn"/> steps after a reading of
    /// <paramref name="fromMgDl"/>, on the way to one of <paramref name="toMgDl"/> <paramref name="gapSteps"/> steps later.</summary>
    public static double Interpolate(double fromMgDl, double toMgDl, long stepsIn, long gapSteps) =>
        fromMgDl + (toMgDl - fromMgDl) * (stepsIn / (double)gapSteps);

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
