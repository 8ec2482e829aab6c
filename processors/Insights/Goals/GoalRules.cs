using System.Globalization;
using StreamHealth.Insights.Metrics;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Insights.Goals;

/// <summary>The span a goal's target applies to, in the person's local days (weeks start on Monday, as ISO 8601).</summary>
public enum GoalPeriod { Day, Week, Month }

/// <summary>Whether the period's value must reach the target (steps, water) or stay under it (calories, weight).</summary>
public enum GoalDirection { AtLeast, AtMost }

/// <summary>The rules of a health goal (POST /api/v1/health-goals): names, target plausibility, the period containing a
/// day, and what a retry must repeat. Pure: no I/O.</summary>
public static class GoalRules
{
    public const string PeriodsText = "day, week or month";
    public const string DirectionsText = "at_least or at_most";
    /// <summary>Active goals (not ended before today) one person may hold: a dashboard shows them all, and a client in a
    /// loop stops here rather than filling the table. Our choice; the issue gives no number.</summary>
    public const int MaxActiveGoalsPerPerson = 50;
    public static readonly DateOnly EarliestDate = new(1990, 1, 1);
    public static readonly DateOnly LatestDate = new(2199, 12, 31);

    public static GoalPeriod? ParsePeriod(string text) => text switch
    {
        "day" => GoalPeriod.Day,
        "week" => GoalPeriod.Week,
        "month" => GoalPeriod.Month,
        _ => null,
    };

    public static string Name(GoalPeriod period) => period switch
    {
        GoalPeriod.Day => "day",
        GoalPeriod.Week => "week",
        _ => "month",
    };

    public static GoalDirection? ParseDirection(string text) => text switch
    {
        "at_least" => GoalDirection.AtLeast,
        "at_most" => GoalDirection.AtMost,
        _ => null,
    };

    public static string Name(GoalDirection direction) => direction == GoalDirection.AtLeast ? "at_least" : "at_most";

    /// <summary>The most local days a period holds (a month's 31).</summary>
    public static int MaxDays(GoalPeriod period) => period switch
    {
        GoalPeriod.Day => 1,
        GoalPeriod.Week => 7,
        _ => 31,
    };

    /// <summary>The period of <paramref name="period"/>'s kind that contains <paramref name="day"/>, first and last day inclusive.</summary>
    public static (DateOnly Start, DateOnly End) Containing(GoalPeriod period, DateOnly day)
    {
        switch (period)
        {
            case GoalPeriod.Day:
                return (day, day);
            case GoalPeriod.Week:
                // ISO weeks: Monday first (DayOfWeek numbers Sunday 0).
                var monday = day.AddDays(-(((int)day.DayOfWeek + 6) % 7));
                return (monday, monday.AddDays(6));
            default:
                var first = new DateOnly(day.Year, day.Month, 1);
                return (first, first.AddMonths(1).AddDays(-1));
        }
    }

    /// <summary>Why <paramref name="target"/> (in the type's stored unit) is not a goal one could mean, or null. A summed
    /// type's target is over the period: at most a plausible day's total times the period's days (100,000 steps a day is
    /// 700,000 a week). A sampled type's target is a level any day could read: the type's per-record range.</summary>
    public static string? CheckTarget(HealthMetricType type, double target, GoalPeriod period, double shownValue, string shownUnit)
    {
        var (min, max) = type.Aggregation == MetricAggregation.Sum ? (0.0, type.Max * MaxDays(period)) : (type.Min, type.Max);
        if (target > 0 && target >= min && target <= max) return null;
        var converted = shownUnit == type.Unit ? "" : $" ({Format(target)} {type.Unit})";
        var per = type.Aggregation == MetricAggregation.Sum ? $" a {Name(period)}" : "";
        return $"target = {Format(shownValue)} {shownUnit}{converted}: a {type.Name} goal must be above 0 and within {Format(min)}-{Format(max)} {type.Unit}{per}";
    }

    /// <summary>What makes a retry the same goal: equal under one goal_id is a retry (200 with the stored goal), different
    /// is a conflict (409).</summary>
    public static string Fingerprint(string metric, double target, string unit, GoalPeriod period, GoalDirection direction, DateOnly startsOn, DateOnly? endsOn) =>
        string.Create(CultureInfo.InvariantCulture,
            $"{metric}|{target:R}|{unit}|{Name(period)}|{Name(direction)}|{startsOn:yyyy-MM-dd}|{endsOn?.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)}");

    /// <summary>A date as the API takes it: ISO-8601 <c>yyyy-MM-dd</c>, within 1990-2199.</summary>
    public static (DateOnly? Date, string? Problem) ParseDate(string field, string text)
    {
        if (!DateOnly.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date))
            return (null, $"{field} = {InputRules.Quote(text)}: must be an ISO-8601 date such as 2026-01-31");
        if (date < EarliestDate || date > LatestDate)
            return (null, $"{field} = {InputRules.Quote(text)}: must be between {EarliestDate:yyyy-MM-dd} and {LatestDate:yyyy-MM-dd}");
        return (date, null);
    }

    private static string Format(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
}
