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
/// A robust seasonal baseline of one series: per local time-of-week slot (hour of the day × workday or weekend, 48 slots)
/// the last <see cref="Depth"/> 15-minute means, and their median and MAD as the expected value and its spread. Learned
/// online from usable windows only, so a fault does not teach it. Bounded: 48 × 12 floats.
/// </summary>
internal sealed class SeasonalBaseline
{
    public const int Slots = 48, Depth = 12;
    /// <summary>Samples a slot needs before it gives an expectation (one day of a workday slot: 4 quarter-hours).</summary>
    public const int MinSamples = 4;
    private const long DayMs = 86_400_000, HourMs = 3_600_000;

    private readonly float[] _values = new float[Slots * Depth];
    private readonly byte[] _counts = new byte[Slots];   // samples held, ≤ Depth
    private readonly byte[] _next = new byte[Slots];     // ring position of the next sample

    public static int Slot(long localTimeUnixMs)
    {
        var days = Math.Floor(localTimeUnixMs / (double)DayMs);
        var weekday = (int)(((long)days + 3) % 7 + 7) % 7;     // 0 = Monday (1970-01-01 was a Thursday)
        var hour = (int)((localTimeUnixMs - (long)days * DayMs) / HourMs);
        return (weekday >= 5 ? 24 : 0) + hour;
    }

    public void Add(long localTimeUnixMs, double value)
    {
        var slot = Slot(localTimeUnixMs);
        _values[slot * Depth + _next[slot]] = (float)value;
        _next[slot] = (byte)((_next[slot] + 1) % Depth);
        if (_counts[slot] < Depth) _counts[slot]++;
    }

    /// <summary>The slot's median and robust SD, or false while it has fewer than <see cref="MinSamples"/> samples.</summary>
    public bool TryExpected(long localTimeUnixMs, out double median, out double sigma)
    {
        var slot = Slot(localTimeUnixMs);
        int n = _counts[slot];
        if (n < MinSamples)
        {
            (median, sigma) = (double.NaN, double.NaN);
            return false;
        }
        Span<double> scratch = stackalloc double[Depth];
        for (var i = 0; i < n; i++) scratch[i] = _values[slot * Depth + i];
        (median, var mad) = Robust.MedianMad(scratch[..n]);
        sigma = Robust.MadToSigma * mad;
        return true;
    }

    internal void Write(StateWriter w)
    {
        w.Floats(_values);
        foreach (var c in _counts) w.Byte(c);
        foreach (var n in _next) w.Byte(n);
    }

    internal static SeasonalBaseline Read(ref StateReader r)
    {
        var baseline = new SeasonalBaseline();
        var values = r.Floats();
        if (values.Length != baseline._values.Length) throw new FormatException($"seasonal baseline: {values.Length} values, expected {baseline._values.Length}");
        values.CopyTo(baseline._values, 0);
        for (var i = 0; i < Slots; i++) baseline._counts[i] = Math.Min(r.Byte(), (byte)Depth);
        for (var i = 0; i < Slots; i++) baseline._next[i] = (byte)(r.Byte() % Depth);
        return baseline;
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
