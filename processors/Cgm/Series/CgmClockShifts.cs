namespace StreamHealth.Cgm.Series;

/// <summary>Finds daylight-saving and time-zone jumps in a wall-clock export and puts the readings on one continuous
/// clock. Input: the glucose readings in file order (ascending after a descending file is reversed).</summary>
/// <remarks>
/// A jump between readings k−1 and k is a clock change only when the sensor's cadence is steady around it: the
/// <see cref="CgmSeriesOptions.ClockShiftRegularIntervals"/> intervals before it and as many after it are each
/// positive, at most <see cref="CgmSeriesOptions.MaxInterpolationGapMinutes"/>, and within
/// <see cref="CgmSeriesOptions.ClockShiftToleranceMinutes"/> (tol, 2.5 min) of their mean c. A reading missing next to
/// the jump breaks that (one interval is 2c), ±60 s of jitter per reading does not.
/// <list type="bullet">
/// <item>Backward (the time decreases): undone by the smallest half-hour multiple S (up to
/// <see cref="CgmSeriesOptions.MaxClockShiftMinutes"/>) that leaves an interval of at least c − tol; that interval
/// must then be at most the interpolation threshold + tol, so a fall-back with a reading or two missing at the switch
/// is still undone. Time never runs backward in a steady series except by a clock change (fall-back, travel
/// westwards, a pump clock set back), so this applies at any time of day — unless the rows after the jump repeat
/// rows before it exactly (time and value, up to six): that is a re-exported block, left to become duplicates.</item>
/// <item>Forward: taken for spring-forward only when the jump minus one hour is within tol of c (the cadence
/// continues exactly) and the reading after it has a wall-clock hour in
/// [<see cref="CgmSeriesOptions.SpringForwardFromHour"/>, <see cref="CgmSeriesOptions.SpringForwardToHour"/>). A
/// genuine signal loss of that length at night is indistinguishable and is closed too (the report counts every
/// correction); a loss of any other length or at another hour, a spring-forward with a reading missing at the switch,
/// and eastward travel are left as gaps.</item>
/// </list>
/// The clock of the first reading is kept; every shift moves all later rows.
/// </remarks>
internal static class CgmClockShifts
{
    private const long HalfHourMs = 30 * 60_000L;
    private const long HourMs = 60 * 60_000L;
    private const int RepeatCheckReadings = 6;

    /// <summary>Writes each reading's continuous time to <paramref name="continuousTimesMs"/>; returns the number of
    /// shifts undone. <paramref name="wallMs"/> holds the readings' times (an array of their own, so the scan stays in
    /// cache however the rows are ordered), <paramref name="glucoseRows"/> their rows.</summary>
    public static int Correct(ReadOnlySpan<long> wallMs, ReadOnlySpan<CgmRow> rows, ReadOnlySpan<int> glucoseRows,
        Span<long> continuousTimesMs, CgmSeriesOptions options)
    {
        var count = wallMs.Length;
        var regular = options.ClockShiftRegularIntervals;
        long offsetMs = 0;
        var corrections = 0;
        for (var k = 0; k < count; k++)
        {
            if (k > regular && k + regular < count)
            {
                var jumpMs = wallMs[k] - wallMs[k - 1];
                // Cheap filter first: a clock change is a backward step or a forward one of about an hour.
                if (jumpMs < 0 || jumpMs > HalfHourMs)
                {
                    var shiftMs = ShiftAt(wallMs, rows, glucoseRows, k, jumpMs, options);
                    if (shiftMs != 0)
                    {
                        offsetMs += shiftMs;
                        corrections++;
                    }
                }
            }
            continuousTimesMs[k] = wallMs[k] + offsetMs;
        }
        return corrections;
    }

    /// <summary>The shift that puts reading <paramref name="k"/> and those after it back on the earlier clock, or 0.</summary>
    private static long ShiftAt(ReadOnlySpan<long> wallMs, ReadOnlySpan<CgmRow> rows, ReadOnlySpan<int> glucoseRows, int k, long jumpMs,
        CgmSeriesOptions options)
    {
        var regular = options.ClockShiftRegularIntervals;
        var toleranceMs = (long)(options.ClockShiftToleranceMinutes * 60_000);
        var maxIntervalMs = options.MaxInterpolationGapMinutes * 60_000L;
        long sumMs = 0;
        for (var j = k - regular; j <= k + regular; j++)
        {
            if (j == k) continue;
            var intervalMs = wallMs[j] - wallMs[j - 1];
            if (intervalMs <= 0 || intervalMs > maxIntervalMs) return 0;
            sumMs += intervalMs;
        }
        var cadenceMs = sumMs / (2 * regular);
        for (var j = k - regular; j <= k + regular; j++)
            if (j != k && Math.Abs(wallMs[j] - wallMs[j - 1] - cadenceMs) > toleranceMs) return 0;

        if (jumpMs < 0)
        {
            var shiftMs = CeilDiv(cadenceMs - toleranceMs - jumpMs, HalfHourMs) * HalfHourMs;
            if (shiftMs <= 0 || shiftMs > options.MaxClockShiftMinutes * 60_000L || jumpMs + shiftMs > maxIntervalMs + toleranceMs) return 0;
            return IsRepeatedBlock(wallMs, rows, glucoseRows, k) ? 0 : shiftMs;
        }

        if (Math.Abs(jumpMs - HourMs - cadenceMs) > toleranceMs) return 0;
        var hour = CgmGrid.HourOfDay(wallMs[k]);
        return hour >= options.SpringForwardFromHour && hour < options.SpringForwardToHour ? -HourMs : 0;
    }

    /// <summary>True when the readings from <paramref name="k"/> on (up to six) each equal, in time and value, a
    /// reading before the jump: the export repeats a block, the clock did not change.</summary>
    private static bool IsRepeatedBlock(ReadOnlySpan<long> wallMs, ReadOnlySpan<CgmRow> rows, ReadOnlySpan<int> glucoseRows, int k)
    {
        var end = Math.Min(wallMs.Length, k + RepeatCheckReadings);
        var searchFrom = Math.Max(0, k - 2048);
        for (var j = k; j < end; j++)
        {
            var mgDl = rows[glucoseRows[j]].GlucoseMgDl;
            var found = false;
            for (var i = k - 1; i >= searchFrom && !found; i--)
                found = wallMs[i] == wallMs[j] && rows[glucoseRows[i]].GlucoseMgDl.Equals(mgDl);
            if (!found) return false;
        }
        return true;
    }

    private static long CeilDiv(long value, long divisor) => -CgmGrid.FloorDiv(-value, divisor);
}
