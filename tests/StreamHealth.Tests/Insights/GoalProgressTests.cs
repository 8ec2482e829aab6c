using StreamHealth.Insights.Goals;
using StreamHealth.Insights.Metrics;

namespace StreamHealth.Tests.Insights;

/// <summary>The goal rules and the progress computation, pure: periods in local days, sums and means of the daily
/// aggregates, the clipping to the goal's own dates, and what "achieved" means each way.</summary>
public sealed class GoalProgressTests
{
    private static readonly DateOnly Wednesday = new(2026, 12, 2);

    [Theory]
    [InlineData("day", "2026-12-02", "2026-12-02", "2026-12-02")]
    [InlineData("week", "2026-12-02", "2026-11-30", "2026-12-06")]   // ISO week: Monday to Sunday
    [InlineData("week", "2026-11-30", "2026-11-30", "2026-12-06")]   // a Monday starts its own week
    [InlineData("week", "2026-12-06", "2026-11-30", "2026-12-06")]   // a Sunday ends it
    [InlineData("week", "2027-01-01", "2026-12-28", "2027-01-03")]   // across the year
    [InlineData("month", "2026-12-02", "2026-12-01", "2026-12-31")]
    [InlineData("month", "2028-02-15", "2028-02-01", "2028-02-29")]  // a leap February
    public void The_period_containing_a_day(string period, string day, string start, string end)
    {
        var (first, last) = GoalRules.Containing(GoalRules.ParsePeriod(period)!.Value, DateOnly.Parse(day));
        Assert.Equal((DateOnly.Parse(start), DateOnly.Parse(end)), (first, last));
    }

    /// <summary>One row of the table: the goal, the days' aggregates, and the progress expected.</summary>
    public sealed record ProgressCase(string Name, MetricAggregation Aggregation, double Target, string Period, string Direction, string? EndsOn,
        DailyAggregate[] Days, double? Value, double? Percent, bool Achieved, int DaysWithData)
    {
        public override string ToString() => Name;
    }

    public static TheoryData<ProgressCase> Cases => new(
    [
        // name, aggregation, target, period, direction, ends_on, days → value, percent, achieved, days_with_data
        new("steps today, under target", MetricAggregation.Sum, 10_000, "day", "at_least", null,
            [Day(0, 3, 6_000, 2_000), Day(-1, 5, 12_000, 2_400)], 6_000, 60, false, 1),
        new("steps this week, summed over Monday to today", MetricAggregation.Sum, 50_000, "week", "at_least", null,
            [Day(-2, 4, 20_000, 5_000), Day(-1, 4, 18_000, 4_500), Day(0, 2, 13_000, 6_500), Day(-3, 9, 99_999, 1)], 51_000, 102, true, 3),
        new("a day split in two rows (the offset changed) counts once", MetricAggregation.Sum, 10_000, "day", "at_least", null,
            [Day(0, 2, 4_000, 2_000), Day(0, 1, 7_000, 7_000)], 11_000, 110, true, 1),
        new("no data: nothing summed yet", MetricAggregation.Sum, 2_000, "day", "at_least", null, [], 0, 0, false, 0),
        new("calories at most, within", MetricAggregation.Sum, 2_000, "day", "at_most", null, [Day(0, 3, 1_850, 616.7)], 1_850, 92.5, true, 1),
        new("calories at most, over", MetricAggregation.Sum, 2_000, "day", "at_most", null, [Day(0, 4, 2_400, 600)], 2_400, 120, false, 1),
        new("at most without data is not achieved", MetricAggregation.Sum, 2_000, "day", "at_most", null, [], 0, 0, false, 0),
        new("weight: the mean of the days' means, each day once", MetricAggregation.Mean, 80, "week", "at_most", null,
            [Day(-2, 1, 81, 81), Day(-1, 10, 790, 79), Day(0, 1, 78, 78)], 79.333, 99.2, true, 3),
        new("heart rate: a day's rows merge by count", MetricAggregation.Mean, 60, "day", "at_least", null,
            [Day(0, 3, 180, 60), Day(0, 1, 80, 80)], 65, 108.3, true, 1),
        new("mean without data: no value", MetricAggregation.Mean, 70, "month", "at_least", null, [], null, null, false, 0),
        new("the period stops at ends_on", MetricAggregation.Sum, 20_000, "week", "at_least", "2026-12-03",
            [Day(0, 1, 10_000, 10_000), Day(2, 1, 10_000, 10_000)], 10_000, 50, false, 1),
    ]);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Progress_in_the_current_period(ProgressCase c)
    {
        var (name, aggregation, target, period, direction, endsOn, days, value, percent, achieved, daysWithData) = c;
        var progress = GoalProgressCalculator.Current(aggregation, target, GoalRules.ParsePeriod(period)!.Value, GoalRules.ParseDirection(direction)!.Value,
            new DateOnly(2026, 1, 1), endsOn is null ? null : DateOnly.Parse(endsOn), Wednesday, days);
        Assert.NotNull(progress);
        if (value is null) Assert.Null(progress.Value);
        else Assert.Equal(value.Value, progress.Value!.Value, 3);
        Assert.Equal(percent, progress.Percent);
        Assert.True(achieved == progress.Achieved, name);
        Assert.Equal(daysWithData, progress.DaysWithData);
    }

    [Fact]
    public void A_goal_starting_this_week_counts_from_its_first_day_and_one_not_running_today_has_no_progress()
    {
        var days = new[] { Day(-2, 1, 5_000, 5_000), Day(-1, 1, 6_000, 6_000), Day(0, 1, 7_000, 7_000) };
        var fromTuesday = GoalProgressCalculator.Current(MetricAggregation.Sum, 50_000, GoalPeriod.Week, GoalDirection.AtLeast,
            Wednesday.AddDays(-1), null, Wednesday, days)!;
        Assert.Equal((Wednesday.AddDays(-1), new DateOnly(2026, 12, 6)), (fromTuesday.PeriodStart, fromTuesday.PeriodEnd));
        Assert.Equal(13_000, fromTuesday.Value);
        Assert.Null(GoalProgressCalculator.Current(MetricAggregation.Sum, 1, GoalPeriod.Day, GoalDirection.AtLeast, Wednesday.AddDays(1), null, Wednesday, days));
        Assert.Null(GoalProgressCalculator.Current(MetricAggregation.Sum, 1, GoalPeriod.Day, GoalDirection.AtLeast, Wednesday.AddDays(-9), Wednesday.AddDays(-1), Wednesday, days));
    }

    [Theory]
    [InlineData("steps", 700_000, "week", true)]       // 100,000 a day, seven days
    [InlineData("steps", 700_001, "week", false)]
    [InlineData("steps", 100_001, "day", false)]
    [InlineData("steps", 0, "day", false)]              // a goal is above 0
    [InlineData("heart_rate", 250, "month", true)]      // a level, whatever the period
    [InlineData("heart_rate", 251, "month", false)]
    [InlineData("weight", 10, "week", false)]           // below the weights workload's plausible kg
    [InlineData("sleep_hours", 56, "week", true)]
    public void Targets_are_plausible_for_the_type_and_period(string metric, double target, string period, bool plausible)
    {
        var type = HealthMetricTypes.Find(metric)!;
        Assert.Equal(plausible, GoalRules.CheckTarget(type, target, GoalRules.ParsePeriod(period)!.Value, target, type.Unit) is null);
    }

    [Fact]
    public void Summed_and_sampled_types_are_named_in_one_place()
    {
        Assert.Equal(["steps", "sleep_hours", "water_ml", "calories"],
            HealthMetricTypes.All.Where(t => t.Aggregation == MetricAggregation.Sum).Select(t => t.Name));
        Assert.Equal(["heart_rate", "weight"], HealthMetricTypes.All.Where(t => t.Aggregation == MetricAggregation.Mean).Select(t => t.Name));
    }

    private static DailyAggregate Day(int offset, int count, double total, double mean) => new(Wednesday.AddDays(offset), count, total, mean);
}
