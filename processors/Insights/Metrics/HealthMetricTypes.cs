using System.Globalization;
using StreamHealth.Runtime.Validation;
using StreamHealth.Weight.Filter;

namespace StreamHealth.Insights.Metrics;

/// <summary>How a type's records make up a day and a period: summed (a day's steps are its records' total) or averaged
/// (a day's heart rate is its records' mean; a period's, the mean of its days' means).</summary>
public enum MetricAggregation { Sum, Mean }

/// <summary>One metric type: the unit it is stored in, the other units a client may send (with the factor to the
/// stored unit), the plausible range of one record in the stored unit, and how records aggregate over days.</summary>
public sealed record HealthMetricType(string Name, string Unit, double Min, double Max, IReadOnlyDictionary<string, double> Conversions,
    MetricAggregation Aggregation)
{
    /// <summary>The units accepted for this type, stored unit first, as an error lists them.</summary>
    public string UnitsText => string.Join(", ", new[] { Unit }.Concat(Conversions.Keys.Where(k => k != Unit)));
}

/// <summary>The health metric types and their rules, shared by the gateway (400 naming the field) and the sink (a record
/// that reached insights.metrics without the gateway is dead-lettered by the same rule). Pure: no I/O.</summary>
public static class HealthMetricTypes
{
    /// <summary>Pounds per kilogram's inverse: 1 lb = 0.45359237 kg exactly (international pound).</summary>
    public const double KgPerLb = 0.45359237;

    private static readonly WeightFilterOptions WeightDefaults = new();

    /// <summary>Per-record plausibility: a value outside is a typo or a wrong unit. Steps are per record (a day's total
    /// at most), sleep per night, water and calories per day; weight as the weights workload's filter bounds.</summary>
    public static readonly IReadOnlyList<HealthMetricType> All =
    [
        new("steps", "steps", 0, 100_000, Units(("steps", 1), ("count", 1)), MetricAggregation.Sum),
        new("heart_rate", "bpm", 20, 250, Units(("bpm", 1), ("/min", 1)), MetricAggregation.Mean),
        new("sleep_hours", "h", 0, 24, Units(("h", 1), ("hours", 1), ("min", 1.0 / 60)), MetricAggregation.Sum),
        new("weight", "kg", WeightDefaults.MinPlausibleKg, WeightDefaults.MaxPlausibleKg, Units(("kg", 1), ("lb", KgPerLb), ("lbs", KgPerLb)), MetricAggregation.Mean),
        new("water_ml", "ml", 0, 10_000, Units(("ml", 1), ("l", 1000)), MetricAggregation.Sum),
        new("calories", "kcal", 0, 20_000, Units(("kcal", 1)), MetricAggregation.Sum),
    ];

    public static string NamesText { get; } = string.Join(", ", All.Select(t => t.Name));

    public static HealthMetricType? Find(string? name)
    {
        foreach (var type in All)
            if (string.Equals(type.Name, name, StringComparison.Ordinal)) return type;
        return null;
    }

    /// <summary>The value in the type's stored unit, or why not (naming <paramref name="unitField"/> or
    /// <paramref name="valueField"/>).</summary>
    public static (double Value, string? UnitProblem, string? ValueProblem) Normalize(HealthMetricType type, double value, string unit,
        string valueField = "value", string unitField = "unit")
    {
        var (stored, factor, unitProblem) = ToStoredUnit(type, value, unit, unitField);
        if (unitProblem is not null) return (0, unitProblem, null);
        if (!double.IsFinite(value)) return (0, null, InputRules.CheckRange(valueField, value, 0, 0, ""));
        if (stored < type.Min || stored > type.Max)
        {
            var range = factor == 1 ? "" : $" ({Format(stored)} {type.Unit})";
            return (0, null, $"{valueField} = {Format(value)} {unit}{range}: a {type.Name} record must be {Format(type.Min)}-{Format(type.Max)} {type.Unit}");
        }
        return (stored, null, null);
    }

    /// <summary>The value in the type's stored unit with the factor applied, or why the unit is not one of the type's
    /// (naming <paramref name="unitField"/>); no range check: a goal's weekly steps are no one record's.</summary>
    public static (double Value, double Factor, string? UnitProblem) ToStoredUnit(HealthMetricType type, double value, string unit, string unitField = "unit") =>
        type.Conversions.TryGetValue(unit.ToLowerInvariant(), out var factor)
            ? (value * factor, factor, null)
            : (0, 0, $"{unitField} = {InputRules.Quote(unit)}: {type.Name} takes {type.UnitsText}");

    /// <summary>Why a stored record (type, value, unit in the stored unit) breaks the rules, or null.</summary>
    public static string? Refuse(string typeName, double value, string unit)
    {
        if (Find(typeName) is not { } type) return $"metric = {InputRules.Quote(typeName)}: not a health metric type ({NamesText})";
        if (unit != type.Unit) return $"unit = {InputRules.Quote(unit)}: {type.Name} is stored in {type.Unit}";
        return Normalize(type, value, unit).ValueProblem;
    }

    /// <summary>What makes a retry the same metric: equal under one metric_id is a retry, different is a conflict.</summary>
    public static string Fingerprint(string typeName, long eventTimeUnixMs, double value, string unit) =>
        string.Create(CultureInfo.InvariantCulture, $"{typeName}|{eventTimeUnixMs}|{value:R}|{unit}");

    private static IReadOnlyDictionary<string, double> Units(params (string Unit, double Factor)[] units) =>
        units.ToDictionary(u => u.Unit, u => u.Factor, StringComparer.Ordinal);

    private static string Format(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
}
