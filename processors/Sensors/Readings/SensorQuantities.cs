using System.Globalization;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Sensors.Readings;

/// <summary>One quantity a water-network node measures: its canonical unit, the units loggers send it in (with the factor to
/// the canonical unit) and the range a real network can produce. A value outside the range is an error (a broken probe,
/// a unit mix-up), not an anomaly.</summary>
public sealed record SensorQuantity(string Metric, string CanonicalUnit, IReadOnlyDictionary<string, double> UnitFactors, double Min, double Max);

/// <summary>The catalogue of <see cref="SensorQuantity"/>: flow, pressure, level, chlorine, turbidity.</summary>
public static class SensorQuantities
{
    public static readonly SensorQuantity Flow = new("flow", "L/s",
        new Dictionary<string, double>(StringComparer.Ordinal) { ["L/s"] = 1, ["L/min"] = 1 / 60.0, ["m3/h"] = 1000 / 3600.0, ["gpm"] = 0.0630901964 },
        // Reverse flow is real (negative); 50 m³/s is beyond any district main.
        Min: -50_000, Max: 50_000);

    public static readonly SensorQuantity Pressure = new("pressure", "kPa",
        new Dictionary<string, double>(StringComparer.Ordinal) { ["kPa"] = 1, ["bar"] = 100, ["psi"] = 6.894757293, ["m"] = 9.80665 },
        // Slightly below vacuum (a transient at a high point) to 250 m of head.
        Min: -101.325, Max: 2_500);

    public static readonly SensorQuantity Level = new("level", "m",
        new Dictionary<string, double>(StringComparer.Ordinal) { ["m"] = 1, ["cm"] = 0.01, ["ft"] = 0.3048 },
        Min: -5, Max: 200);

    public static readonly SensorQuantity Chlorine = new("chlorine", "mg/L",
        new Dictionary<string, double>(StringComparer.Ordinal) { ["mg/L"] = 1, ["ppm"] = 1 },
        Min: 0, Max: 50);

    public static readonly SensorQuantity Turbidity = new("turbidity", "NTU",
        new Dictionary<string, double>(StringComparer.Ordinal) { ["NTU"] = 1, ["FNU"] = 1 },
        Min: 0, Max: 4_000);

    public static readonly IReadOnlyList<SensorQuantity> All = [Flow, Pressure, Level, Chlorine, Turbidity];

    public static SensorQuantity? Find(string metric) => All.FirstOrDefault(q => q.Metric == metric);

    /// <summary>The value in the metric's canonical unit, or why the reading cannot be used (naming the field).</summary>
    public static string? Convert(string? metric, double value, string? unit, out SensorQuantity quantity, out double canonicalValue)
    {
        canonicalValue = double.NaN;
        quantity = null!;
        if (Find(metric ?? "") is not { } q)
            return $"metric = {InputRules.Quote(metric ?? "")}: not one of {string.Join(", ", All.Select(a => a.Metric))}";
        quantity = q;
        if (!q.UnitFactors.TryGetValue(unit ?? "", out var factor))
            return $"unit = {InputRules.Quote(unit ?? "")}: not a unit of {q.Metric} ({string.Join(", ", q.UnitFactors.Keys)})";
        if (!double.IsFinite(value)) return $"value = {value.ToString(CultureInfo.InvariantCulture)}: not a finite number";
        canonicalValue = value * factor;
        if (canonicalValue < q.Min || canonicalValue > q.Max)
            return $"value = {value.ToString("G6", CultureInfo.InvariantCulture)} {unit}: outside what a {q.Metric} sensor can report " +
                   $"({q.Min.ToString(CultureInfo.InvariantCulture)}-{q.Max.ToString(CultureInfo.InvariantCulture)} {q.CanonicalUnit})";
        return null;
    }
}
