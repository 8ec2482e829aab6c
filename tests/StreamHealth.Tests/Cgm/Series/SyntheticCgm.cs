using System.Globalization;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Series;

namespace StreamHealth.Tests.Cgm.Series;

/// <summary>Generated CGM exports for the property tests: a 5-minute sensor with ±60 s jitter on a continuous clock,
/// and what a vendor export makes of it (gaps, duplicates, out-of-range and impossible values, events, local
/// reordering, daylight-saving and time-zone shifts).</summary>
internal sealed class SyntheticCgm(Random random)
{
    public const long Minute = 60_000;
    public const long Hour = 60 * Minute;
    public const long Day = 24 * Hour;
    public const long Cadence = 5 * Minute;

    public int MinReadings { get; init; } = 200;
    public int MaxReadings { get; init; } = 1200;
    public double GapProbability { get; init; } = 0.02;
    public double DuplicateProbability { get; init; } = 0.03;
    public double ExactDuplicateProbability { get; init; } = 0.01;
    public double OutOfRangeProbability { get; init; } = 0.01;
    public double ImpossibleProbability { get; init; } = 0.01;
    public double EventProbability { get; init; } = 0.02;
    public double JitterSeconds { get; init; } = 60;

    /// <summary>Readings within this span of one of these times keep a clean cadence: no gap, duplicate or impossible
    /// value (events still appear), so a clock shift placed there is recognisable.</summary>
    public List<long> QuietAround { get; } = [];

    public long QuietSpanMs { get; init; } = Hour;

    /// <summary>The tests' shorthand: resample into a new list with the given (default) options.</summary>
    public static (List<CgmRow> Output, ResampleReport Report) Resample(IEnumerable<CgmRow> rows, CgmSeriesOptions? options = null)
    {
        var output = new List<CgmRow>();
        return (output, CgmResampler.Resample(rows.ToArray(), options ?? new CgmSeriesOptions(), output));
    }

    /// <summary>Milliseconds since 1970 of a wall-clock time written <c>yyyy-MM-dd HH:mm[:ss]</c>.</summary>
    public static long At(string wallClock) =>
        (long)(DateTime.ParseExact(wallClock, ["yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm"], CultureInfo.InvariantCulture,
            DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal) - DateTime.UnixEpoch).TotalMilliseconds;

    /// <summary>Glucose readings every <paramref name="cadenceMs"/> from <paramref name="firstMs"/>, values from
    /// <paramref name="mgDl"/> (the last one repeated when there are more readings than values).</summary>
    public static List<CgmRow> Readings(long firstMs, int count, long cadenceMs = Cadence, params double[] mgDl)
    {
        var rows = new List<CgmRow>(count);
        for (var i = 0; i < count; i++)
            rows.Add(CgmRow.Glucose(firstMs + i * cadenceMs, mgDl.Length == 0 ? 100 + i : mgDl[Math.Min(i, mgDl.Length - 1)]));
        return rows;
    }

    /// <summary>Midnight of a random day in 2015-2025 (whole days since 1970).</summary>
    public static long RandomMidnight(Random random) => (16_436 + random.Next(0, 4_000)) * Day;

    /// <summary>Rows in time order on the continuous clock, starting <paramref name="startMs"/>.</summary>
    public List<CgmRow> Generate(long startMs)
    {
        var rows = new List<CgmRow>();
        var count = random.Next(MinReadings, MaxReadings + 1);
        var nominalMs = startMs;
        double mgDl = random.Next(70, 220);
        for (var i = 0; i < count; i++)
        {
            nominalMs += Cadence;
            if (random.NextDouble() < GapProbability)
            {
                var missing = GapLength();
                if (!OverlapsQuiet(nominalMs, nominalMs + missing * Cadence)) nominalMs += missing * Cadence;
            }
            var quiet = IsQuiet(nominalMs);
            var timeMs = nominalMs + (long)Math.Round((random.NextDouble() * 2 - 1) * JitterSeconds) * 1000;
            mgDl = Math.Clamp(mgDl + (random.NextDouble() - 0.5) * 12, 45, 380);
            double value = Math.Round(mgDl);
            if (random.NextDouble() < OutOfRangeProbability)
                value = random.Next(4) switch { 0 => 39, 1 => 401, 2 => random.Next(20, 40), _ => random.Next(401, 700) };
            if (!quiet && random.NextDouble() < ImpossibleProbability)
                value = random.Next(5) switch { 0 => double.NaN, 1 => 0, 2 => -7, 3 => 1500, _ => double.PositiveInfinity };
            rows.Add(CgmRow.Glucose(timeMs, value));
            if (!quiet && random.NextDouble() < DuplicateProbability)
                rows.Add(CgmRow.Glucose(timeMs + random.Next(-120, 121) * 1000, value + random.Next(-4, 5)));
            if (!quiet && random.NextDouble() < ExactDuplicateProbability)
                rows.Add(CgmRow.Glucose(timeMs, value));
            if (random.NextDouble() < EventProbability)
                rows.Add(RandomEvent(timeMs + random.Next(-150, 151) * 1000));
        }
        rows.Sort((a, b) => a.TimeMs.CompareTo(b.TimeMs));
        return rows;
    }

    /// <summary>Readings missing in a gap: mostly short (interpolated), some medium, some long. Never 10-14, which
    /// with the cadence makes a forward jump of about an hour: indistinguishable from spring-forward at night
    /// (<see cref="CgmClockShiftTests"/> covers that case on purpose).</summary>
    private int GapLength() => random.Next(4) switch
    {
        0 or 1 => random.Next(1, 3),
        2 => random.Next(3, 10),
        _ => random.Next(15, 300),
    };

    private bool IsQuiet(long timeMs) => OverlapsQuiet(timeMs, timeMs);

    private bool OverlapsQuiet(long fromMs, long toMs)
    {
        foreach (var quietMs in QuietAround)
            if (fromMs <= quietMs + QuietSpanMs && toMs >= quietMs - QuietSpanMs) return true;
        return false;
    }

    private CgmRow RandomEvent(long timeMs) => random.Next(4) switch
    {
        0 => CgmRow.Event(CgmEventType.Carbs, timeMs, carbsG: random.Next(5, 90)),
        1 => CgmRow.Event(CgmEventType.InsulinFast, timeMs, insulinFastU: random.Next(1, 20)),
        2 => CgmRow.Event(CgmEventType.ExerciseMedium, timeMs, exerciseSeconds: random.Next(600, 3600)),
        _ => CgmRow.Event(CgmEventType.Calibration, timeMs) with { GlucoseMgDl = random.Next(60, 250) },
    };

    /// <summary>Swaps some rows with one of the next three: the local reordering of uploads merged late.</summary>
    public void ShuffleLocally(List<CgmRow> rows, double probability = 0.05)
    {
        for (var i = 0; i + 1 < rows.Count; i++)
        {
            if (random.NextDouble() >= probability) continue;
            var j = Math.Min(rows.Count - 1, i + random.Next(1, 4));
            if (IsQuiet(rows[i].TimeMs) || IsQuiet(rows[j].TimeMs)) continue;
            (rows[i], rows[j]) = (rows[j], rows[i]);
        }
    }

    public void Shuffle(List<CgmRow> rows)
    {
        for (var i = rows.Count - 1; i > 0; i--)
        {
            var j = random.Next(i + 1);
            (rows[i], rows[j]) = (rows[j], rows[i]);
        }
    }

    /// <summary>A clock change at continuous time <paramref name="atMs"/>: rows from then on read
    /// <paramref name="shiftMs"/> later on the wall clock (+1 h spring-forward, −1 h fall-back).</summary>
    public readonly record struct ClockChange(long AtMs, long ShiftMs);

    /// <summary>The export's wall-clock view of continuous-clock rows: times moved by the clock changes in effect,
    /// file order unchanged.</summary>
    public static List<CgmRow> ToWallClock(List<CgmRow> rows, IReadOnlyList<ClockChange> changes)
    {
        var wall = new List<CgmRow>(rows.Count);
        foreach (var row in rows)
        {
            long shiftMs = 0;
            foreach (var change in changes)
                if (row.TimeMs >= change.AtMs) shiftMs += change.ShiftMs;
            wall.Add(row with { TimeMs = row.TimeMs + shiftMs, OriginalTimeMs = row.OriginalTimeMs + shiftMs });
        }
        return wall;
    }
}
