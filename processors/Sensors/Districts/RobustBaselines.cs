namespace StreamHealth.Sensors.Districts;

/// <summary>Median and MAD of small samples, sorted in a caller's scratch span (no allocation).</summary>
internal static class Robust
{
    /// <summary>1.4826 × MAD estimates the SD of normal data; robust to a minority of outliers, as the detectors need.</summary>
    public const double MadToSigma = 1.4826;

    public static double Median(Span<double> values)
    {
        if (values.IsEmpty) return double.NaN;
        values.Sort();
        var mid = values.Length / 2;
        return values.Length % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
    }

    /// <summary>The median and the MAD; reorders <paramref name="values"/>.</summary>
    public static (double Median, double Mad) MedianMad(Span<double> values)
    {
        var median = Median(values);
        for (var i = 0; i < values.Length; i++) values[i] = Math.Abs(values[i] - median);
        return (median, Median(values));
    }
}

/// <summary>
/// A robust seasonal baseline of one series: per local hour of the week (168 slots) the last <see cref="WeekDepth"/>
/// 15-minute means, and their median and MAD as the expected value and its spread; until an hour of the week has
/// <see cref="MinSamples"/>, the hour of the day over every day stands in (for estimates only: the checks and the residual
/// wait for the week's slot, as days of the week differ — weekends, markets, the simulator's Fridays). Learned online from
/// usable windows only, so a fault does not teach it. Bounded: 168 × 6 + 24 × 8 floats.
/// </summary>
internal sealed class SeasonalBaseline
{
    public const int WeekSlots = 168, WeekDepth = 6, DaySlots = 24, DayDepth = 8;
    /// <summary>Samples a slot needs before it gives an expectation (one hour's four quarter-hours).</summary>
    public const int MinSamples = 4;
    private const long DayMs = 86_400_000, HourMs = 3_600_000;

    private readonly float[] _week = new float[WeekSlots * WeekDepth];
    private readonly byte[] _weekCount = new byte[WeekSlots], _weekNext = new byte[WeekSlots];
    private readonly float[] _day = new float[DaySlots * DayDepth];
    private readonly byte[] _dayCount = new byte[DaySlots], _dayNext = new byte[DaySlots];

    /// <summary>Hour of the week, 0 = Monday 00:00 local (1970-01-01 was a Thursday).</summary>
    public static int WeekSlot(long localTimeUnixMs)
    {
        var hours = (long)Math.Floor(localTimeUnixMs / (double)HourMs);
        return (int)(((hours + 3 * 24) % WeekSlots + WeekSlots) % WeekSlots);
    }

    public void Add(long localTimeUnixMs, double value)
    {
        var week = WeekSlot(localTimeUnixMs);
        var day = week % 24;
        Push(_week, _weekCount, _weekNext, week, WeekDepth, value);
        Push(_day, _dayCount, _dayNext, day, DayDepth, value);
    }

    private static void Push(float[] values, byte[] counts, byte[] next, int slot, int depth, double value)
    {
        values[slot * depth + next[slot]] = (float)value;
        next[slot] = (byte)((next[slot] + 1) % depth);
        if (counts[slot] < depth) counts[slot]++;
    }

    /// <summary>The hour of the week's median and robust SD, or false while it has fewer than <see cref="MinSamples"/>
    /// samples (or, with <paramref name="dayFallback"/>, the hour of the day's while that one has them).</summary>
    public bool TryExpected(long localTimeUnixMs, out double median, out double sigma, bool dayFallback = false)
    {
        var week = WeekSlot(localTimeUnixMs);
        if (_weekCount[week] >= MinSamples) return Expected(_week, _weekCount[week], week, WeekDepth, out median, out sigma);
        if (dayFallback && _dayCount[week % 24] >= MinSamples) return Expected(_day, _dayCount[week % 24], week % 24, DayDepth, out median, out sigma);
        (median, sigma) = (double.NaN, double.NaN);
        return false;
    }

    private static bool Expected(float[] values, int n, int slot, int depth, out double median, out double sigma)
    {
        Span<double> scratch = stackalloc double[DayDepth];
        for (var i = 0; i < n; i++) scratch[i] = values[slot * depth + i];
        (median, var mad) = Robust.MedianMad(scratch[..n]);
        sigma = Robust.MadToSigma * mad;
        return true;
    }

    internal void Write(StateWriter w)
    {
        w.Floats(_week);
        w.Floats(_day);
        foreach (var c in _weekCount) w.Byte(c);
        foreach (var c in _weekNext) w.Byte(c);
        foreach (var c in _dayCount) w.Byte(c);
        foreach (var c in _dayNext) w.Byte(c);
    }

    internal static SeasonalBaseline Read(ref StateReader r)
    {
        var b = new SeasonalBaseline();
        var week = r.Floats();
        var day = r.Floats();
        if (week.Length != b._week.Length || day.Length != b._day.Length) throw new FormatException($"seasonal baseline: {week.Length} + {day.Length} values");
        week.CopyTo(b._week, 0);
        day.CopyTo(b._day, 0);
        for (var i = 0; i < WeekSlots; i++) b._weekCount[i] = Math.Min(r.Byte(), (byte)WeekDepth);
        for (var i = 0; i < WeekSlots; i++) b._weekNext[i] = (byte)(r.Byte() % WeekDepth);
        for (var i = 0; i < DaySlots; i++) b._dayCount[i] = Math.Min(r.Byte(), (byte)DayDepth);
        for (var i = 0; i < DaySlots; i++) b._dayNext[i] = (byte)(r.Byte() % DayDepth);
        return b;
    }
}

/// <summary>Two-sided CUSUM of standardised residuals (Page 1954) with a clearing rule: a persistent shift of a fraction
/// of an SD accumulates to the decision level, noise does not; the flag clears once the residuals have been back within
/// 2 SDs for a while (a plain CUSUM would take as long to come down as the shift lasted).</summary>
internal struct DriftCusum
{
    public double High, Low;
    public bool Flagged;
    public int Calm;

    /// <summary>Adds one residual (in SDs); returns whether the series is now flagged as drifting.</summary>
    public bool Update(double z, double allowance, double decision, int clearAfter)
    {
        z = Math.Clamp(z, -50, 50);     // one wild value (a spike the checks missed) moves it at most this much
        High = Math.Max(0, High + z - allowance);
        Low = Math.Max(0, Low - z - allowance);
        if (High > decision || Low > decision) Flagged = true;
        Calm = Math.Abs(z) < 2 ? Calm + 1 : 0;
        if (Flagged && Calm >= clearAfter)
        {
            Flagged = false;
            High = Low = 0;
        }
        return Flagged;
    }

    /// <summary>Which way the accumulated shift goes: +1 up, −1 down.</summary>
    public readonly int Direction => High >= Low ? 1 : -1;

    internal readonly void Write(StateWriter w)
    {
        w.Double(High);
        w.Double(Low);
        w.Bool(Flagged);
        w.Int(Calm);
    }

    internal static DriftCusum Read(ref StateReader r) => new() { High = r.Double(), Low = r.Double(), Flagged = r.Bool(), Calm = r.Int() };
}
