using System.Globalization;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Insights.Aggregates;

/// <summary>One metric type's aggregate on one of the person's local days. Values in the type's stored unit.</summary>
public struct MetricDay
{
    /// <summary>The local calendar day, days since 1970-01-01.</summary>
    public int LocalDate;
    /// <summary>Minutes east of UTC that <see cref="DayStartUnixMs"/> is computed with: the day's first counted record's, kept
    /// when a later record of the day carries another offset (a daylight-saving change), so the stored row's key never moves.</summary>
    public int UtcOffsetMinutes;
    public int Count;
    public double Total;
    public double Min;
    public double Max;
    /// <summary>The value with the latest event time of the day (a late record that is older does not replace it).</summary>
    public double LastValue;
    public long LastTimeUnixMs;

    public readonly double Mean => Total / Count;

    /// <summary>The UTC instant the local day began, by <see cref="UtcOffsetMinutes"/>.</summary>
    public readonly long DayStartUnixMs => DailyFold.DayStartUnixMs(LocalDate, UtcOffsetMinutes);
}

/// <summary>A rolling summary over the local days <c>ThroughDate - WindowDays + 1 .. ThroughDate</c>: the days with data only (a day
/// without records is unknown, not zero).</summary>
public readonly record struct RollingSummary(int WindowDays, int ThroughDate, int DaysWithData, int Count, double Total, double Min, double Max)
{
    /// <summary>Mean of the days' totals (unit per day).</summary>
    public double PerDayMean => Total / DaysWithData;

    /// <summary>Mean of every record in the window (unit).</summary>
    public double ValueMean => Total / Count;
}

/// <summary>One metric type's recent local days of one person, oldest first: at most the 30-day window that ends with the latest
/// day with data (older days can no longer change a summary, and a record for one is refused, see
/// <see cref="DailyFold.CheckLate"/>). A sorted array: 30 entries at most, so an insert's shift is cheaper than any tree.</summary>
public sealed class MetricDays
{
    private MetricDay[] _days;

    public MetricDays(int capacity = 4) => _days = new MetricDay[Math.Max(1, capacity)];

    public int Count { get; private set; }

    public ref MetricDay this[int i] => ref _days[i];

    public ReadOnlySpan<MetricDay> Days => _days.AsSpan(0, Count);

    /// <summary>The latest local day with data, or null before the first record.</summary>
    public int? LatestDate => Count == 0 ? null : _days[Count - 1].LocalDate;

    /// <summary>The day's index, or the bitwise complement of where it would be inserted.</summary>
    public int IndexOf(int localDate)
    {
        int lo = 0, hi = Count - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var d = _days[mid].LocalDate;
            if (d == localDate) return mid;
            if (d < localDate) lo = mid + 1;
            else hi = mid - 1;
        }
        return ~lo;
    }

    /// <summary>Appends a day in order (decoding); the caller guarantees it is later than the last.</summary>
    public void Append(in MetricDay day)
    {
        if (Count == _days.Length) Array.Resize(ref _days, _days.Length * 2);
        _days[Count++] = day;
    }

    internal ref MetricDay Insert(int index, int localDate, int utcOffsetMinutes)
    {
        if (Count == _days.Length) Array.Resize(ref _days, _days.Length * 2);
        Array.Copy(_days, index, _days, index + 1, Count - index);
        Count++;
        _days[index] = new MetricDay { LocalDate = localDate, UtcOffsetMinutes = utcOffsetMinutes, Min = double.PositiveInfinity, Max = double.NegativeInfinity, LastTimeUnixMs = long.MinValue };
        return ref _days[index];
    }

    /// <summary>Drops the days before <paramref name="firstKeptDate"/>.</summary>
    internal void DropBefore(int firstKeptDate)
    {
        var drop = 0;
        while (drop < Count && _days[drop].LocalDate < firstKeptDate) drop++;
        if (drop == 0) return;
        Array.Copy(_days, drop, _days, 0, Count - drop);
        Count -= drop;
    }
}

/// <summary>The per-person daily aggregate and rolling-window maths of the insights topology. Pure: no I/O, no clock (stream time is
/// the caller's), so it is tested and benchmarked on its own.</summary>
public static class DailyFold
{
    public const long MsPerDay = 86_400_000L;
    public const int WeekDays = 7;
    public const int MonthDays = 30;
    /// <summary>UTC-14:00 to UTC+14:00, the offsets in use anywhere (Kiribati's Line Islands to Baker Island): minutes.</summary>
    public const int MaxUtcOffsetMinutes = 840;

    /// <summary>The local calendar day (days since 1970-01-01) of an instant at an offset: floor, so instants before 1970 and
    /// negative offsets fall on the right day.</summary>
    public static int LocalDate(long eventTimeUnixMs, int utcOffsetMinutes) =>
        (int)Math.Floor((eventTimeUnixMs + utcOffsetMinutes * 60_000L) / (double)MsPerDay);

    /// <summary>The UTC instant the local day began at the given offset.</summary>
    public static long DayStartUnixMs(int localDate, int utcOffsetMinutes) => localDate * MsPerDay - utcOffsetMinutes * 60_000L;

    public static DateOnly ToDateOnly(int localDate) => DateOnly.FromDayNumber(EpochDayNumber + localDate);

    public static int FromDateOnly(DateOnly date) => date.DayNumber - EpochDayNumber;

    private static readonly int EpochDayNumber = new DateOnly(1970, 1, 1).DayNumber;

    /// <summary>Null when <paramref name="utcOffsetMinutes"/> is a real offset, else why (naming the field).</summary>
    public static string? CheckOffset(int utcOffsetMinutes) =>
        utcOffsetMinutes is >= -MaxUtcOffsetMinutes and <= MaxUtcOffsetMinutes
            ? null
            : $"utc_offset_minutes = {utcOffsetMinutes}: must be -{MaxUtcOffsetMinutes} to {MaxUtcOffsetMinutes} (minutes east of UTC)";

    /// <summary>Why a record of <paramref name="metric"/> for <paramref name="localDate"/> comes too late to be counted, or null.
    /// Too late: its local day (at the record's offset) ended more than <paramref name="graceMs"/> before
    /// <paramref name="streamTimeUnixMs"/>, the latest event time counted for the person; or the day is outside the 30-day
    /// window that ends with the type's latest day with data (it could change no summary, and its day is no longer kept).</summary>
    public static string? CheckLate(MetricDays? days, string metric, int localDate, int utcOffsetMinutes, long streamTimeUnixMs, long graceMs)
    {
        var dayEndUnixMs = DayStartUnixMs(localDate + 1, utcOffsetMinutes);
        if (streamTimeUnixMs != long.MinValue && streamTimeUnixMs - dayEndUnixMs > graceMs)
            return string.Create(CultureInfo.InvariantCulture,
                $"late record: local day {Iso(localDate)} of {metric} ended at {InputRules.FormatTime(dayEndUnixMs)}, more than the grace of {graceMs / 3_600_000.0:0.##} h " +
                $"(Insights:GraceHours) before the latest event time counted for this person ({InputRules.FormatTime(streamTimeUnixMs)})");
        if (days?.LatestDate is { } latest && localDate <= latest - MonthDays)
            return $"late record: local day {Iso(localDate)} of {metric} is outside the rolling {MonthDays}-day window that ends with the latest day with " +
                   $"{metric} data ({Iso(latest)})";
        return null;
    }

    /// <summary>Counts one record into its day (created at <paramref name="utcOffsetMinutes"/> if new) and drops the days that
    /// fell out of the 30-day window; returns the day's index after the drop. The caller has checked <see cref="CheckLate"/>, so
    /// the day is inside the window.</summary>
    public static int Add(MetricDays days, int localDate, int utcOffsetMinutes, double value, long eventTimeUnixMs)
    {
        var index = days.IndexOf(localDate);
        if (index < 0) days.Insert(index = ~index, localDate, utcOffsetMinutes);
        ref var day = ref days[index];
        day.Count++;
        day.Total += value;
        if (value < day.Min) day.Min = value;
        if (value > day.Max) day.Max = value;
        // >=: of two records at one instant the later counted is the last, as a reader who saw them arrive would say.
        if (eventTimeUnixMs >= day.LastTimeUnixMs)
        {
            day.LastValue = value;
            day.LastTimeUnixMs = eventTimeUnixMs;
        }
        var before = days.Count;
        days.DropBefore(days.LatestDate!.Value - MonthDays + 1);
        return index - (before - days.Count);
    }

    /// <summary>The summary over the <paramref name="windowDays"/> local days ending with the latest day with data. Requires at
    /// least one day.</summary>
    public static RollingSummary Summarize(MetricDays days, int windowDays)
    {
        var span = days.Days;
        var through = span[^1].LocalDate;
        var first = through - windowDays + 1;
        int daysWithData = 0, count = 0;
        double total = 0, min = double.PositiveInfinity, max = double.NegativeInfinity;
        for (var i = span.Length - 1; i >= 0 && span[i].LocalDate >= first; i--)
        {
            ref readonly var d = ref span[i];
            daysWithData++;
            count += d.Count;
            total += d.Total;
            if (d.Min < min) min = d.Min;
            if (d.Max > max) max = d.Max;
        }
        return new RollingSummary(windowDays, through, daysWithData, count, total, min, max);
    }

    public static string Iso(int localDate) => ToDateOnly(localDate).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
}
