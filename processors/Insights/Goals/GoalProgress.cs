using StreamHealth.Insights.Metrics;

namespace StreamHealth.Insights.Goals;

/// <summary>One row of insights.daily_metrics as progress needs it: a local day's record count, total and mean, in the
/// type's stored unit. A day may come as several rows (the person's UTC offset changed that day); they are merged.</summary>
public readonly record struct DailyAggregate(DateOnly LocalDate, int Count, double Total, double Mean);

/// <summary>A goal's progress in one period: the local days it spans (clipped to the goal's own start and end), the value
/// so far in the type's stored unit (null: a sampled type with no data yet), the percentage of the target (null with the
/// value), whether the goal is met so far, and on how many of the period's days there was data.</summary>
public sealed record GoalProgress(DateOnly PeriodStart, DateOnly PeriodEnd, double? Value, double? Percent, bool Achieved, int DaysWithData);

/// <summary>Progress of a goal from the daily aggregates. Pure: no I/O, no clock (the caller passes the person's local
/// today).</summary>
public static class GoalProgressCalculator
{
    /// <summary>The progress in the period containing <paramref name="today"/>, or null when the goal is not running today
    /// (it starts later or has ended). Summed types add the days' totals; sampled types average the days' means (each day
    /// counts once, however many records it has). at_least is met once the value reaches the target; at_most while there
    /// is data and the value stays at or under it (no data is no evidence either way).</summary>
    public static GoalProgress? Current(MetricAggregation aggregation, double target, GoalPeriod period, GoalDirection direction,
        DateOnly startsOn, DateOnly? endsOn, DateOnly today, IReadOnlyList<DailyAggregate> days)
    {
        if (today < startsOn || endsOn is { } end && today > end) return null;
        var (periodStart, periodEnd) = GoalRules.Containing(period, today);
        if (periodStart < startsOn) periodStart = startsOn;
        if (endsOn is { } last && periodEnd > last) periodEnd = last;

        double total = 0, sumOfDayMeans = 0;
        var daysWithData = 0;
        // Rows arrive in any order and a day may have several: merge per day (count-weighted mean) before aggregating.
        foreach (var day in days.Where(d => d.LocalDate >= periodStart && d.LocalDate <= periodEnd && d.Count > 0)
                     .GroupBy(d => d.LocalDate))
        {
            var count = day.Sum(d => d.Count);
            total += day.Sum(d => d.Total);
            sumOfDayMeans += day.Sum(d => d.Mean * d.Count) / count;
            daysWithData++;
        }
        double? value = aggregation == MetricAggregation.Sum ? total : daysWithData > 0 ? sumOfDayMeans / daysWithData : null;
        double? percent = value is { } v ? Math.Round(100 * v / target, 1) : null;
        var achieved = value is { } so && (direction == GoalDirection.AtLeast ? so >= target : daysWithData > 0 && so <= target);
        return new GoalProgress(periodStart, periodEnd, value, percent, achieved, daysWithData);
    }
}
