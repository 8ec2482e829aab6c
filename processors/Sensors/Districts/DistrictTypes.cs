using StreamHealth.Runtime.Streams;
using StreamHealth.Sensors.Metrics;

namespace StreamHealth.Sensors.Districts;

/// <summary>What a node is in its district (the simulator's and the node registry's kinds). The kind says which role a
/// node's flow plays in the water balance: an inflow feeds the district, a meter is metered consumption.</summary>
public enum NodeKind : byte { Inflow, Meter, PressureLogger, QualityProbe }

public static class NodeKinds
{
    /// <summary>The registry's name of a kind: inflow, meter, pressure_logger, quality_probe.</summary>
    public static string Name(NodeKind kind) => kind switch
    {
        NodeKind.Inflow => "inflow",
        NodeKind.Meter => "meter",
        NodeKind.PressureLogger => "pressure_logger",
        _ => "quality_probe",
    };

    public static NodeKind Parse(string name) => name switch
    {
        "inflow" => NodeKind.Inflow,
        "meter" => NodeKind.Meter,
        "pressure_logger" => NodeKind.PressureLogger,
        "quality_probe" => NodeKind.QualityProbe,
        _ => throw new ArgumentException($"node kind = '{name}': not one of inflow, meter, pressure_logger, quality_probe", nameof(name)),
    };
}

/// <summary>One closed window of one node's metric: the fields of the Avro SensorMetric the windows topology emits plus the
/// node's kind from the node registry. Values in the metric's canonical unit (flow L/s, pressure kPa, level m, chlorine mg/L,
/// turbidity NTU); NaN statistics when the window had no readings.</summary>
public readonly record struct NodeWindow(
    string NodeId, NodeKind Kind, string Metric, long WindowStartUnixMs, int WindowMinutes,
    int ReadingCount, int DuplicateCount, int LateCount,
    double Min, double Max, double Mean, double StdDev, double P50, double P95)
{
    public long WindowEndUnixMs => WindowStartUnixMs + WindowMinutes * 60_000L;

    /// <summary>A window of the sensors.metrics topic, with the node's kind from the registry.</summary>
    public static NodeWindow FromAvro(StreamHealth.Schemas.Avro.Sensors.SensorMetric metric, NodeKind kind) => new(
        metric.node_id, kind, metric.metric, AvroTime.ToUnixMs(metric.window_start_unix_ms), metric.window_minutes,
        metric.reading_count, metric.duplicate_count, metric.late_count, metric.min, metric.max, metric.mean, metric.stddev, metric.p50, metric.p95);

    public static NodeWindow From(string nodeId, NodeKind kind, string metric, long windowStartUnixMs, int windowMinutes,
        WindowStatistics stats, int duplicateCount, int lateCount) => new(
        nodeId, kind, metric, windowStartUnixMs, windowMinutes, stats.Count, duplicateCount, lateCount,
        stats.Min, stats.Max, stats.Mean, stats.StdDev, stats.P50, stats.P95);
}

/// <summary>The data-quality rules a window is judged by.</summary>
public enum QualityRule : byte { Completeness, OutOfRange, Flatline, Drift, Late, Duplicates }

/// <summary>One rule's verdict on a window: a score from 0 (worst) to 1 (clean), whether it is a problem, and why.</summary>
public readonly record struct QualityCheck(QualityRule Rule, double Score, bool Problem, string Reason);

/// <summary>The quality of one node window under every rule. <see cref="Usable"/>: the detectors may use its value
/// (complete enough, in range, not stuck, not drifting); late and duplicate readings are reported but do not spoil a value.</summary>
public sealed record QualityVerdict(
    string DistrictId, string NodeId, string Metric, long WindowStartUnixMs, int WindowMinutes, bool Usable, QualityCheck[] Checks)
{
    public long WindowEndUnixMs => WindowStartUnixMs + WindowMinutes * 60_000L;
    public bool HasProblem
    {
        get
        {
            foreach (var c in Checks) if (c.Problem) return true;
            return false;
        }
    }
    public QualityCheck this[QualityRule rule] => Checks[(int)rule];
}

/// <summary>Kinds of anomaly events. Burst and background leak are leaks (district water balance); residual is one series
/// far from its own seasonal baseline (a demand change, a pressure or chlorine event, or the trace of a leak on one node).</summary>
public enum AnomalyKind : byte { Burst, BackgroundLeak, Residual }

/// <summary>Open → (Acknowledged, by an operator elsewhere) → Resolved.</summary>
public enum AnomalyState : byte { Open, Acknowledged, Resolved }

public enum AnomalySeverity : byte { Low, Medium, High, Critical }

public static class AnomalyKinds
{
    public static string Name(AnomalyKind kind) => kind switch
    {
        AnomalyKind.Burst => "burst",
        AnomalyKind.BackgroundLeak => "background_leak",
        _ => "residual",
    };

    public static bool IsLeak(AnomalyKind kind) => kind is AnomalyKind.Burst or AnomalyKind.BackgroundLeak;
}

/// <summary>One anomaly event as it changes state (emitted when it opens and when it resolves; the id stays the same, so a
/// sink upserts by it). <see cref="EndUnixMs"/> is null while open. Observed and expected are in <see cref="Unit"/>: for a
/// leak, the district's net flow (inflow − metered) against its reference; for a residual, the series' 15-minute mean
/// against its seasonal median.</summary>
public sealed record AnomalyEvent(
    string AnomalyId, AnomalyKind Kind, string DistrictId, string? NodeId, string? Metric,
    long StartUnixMs, long? EndUnixMs, AnomalySeverity Severity, double Score, AnomalyState State,
    double Observed, double Expected, string Unit, string Reason);

/// <summary>The water balance of one district over one UTC day and the 7 days ending with it: inflow volume, metered
/// consumption, non-revenue water (inflow − metered) in m³ and as a percentage of inflow. Completeness: the fraction of
/// the balance's node-minutes measured with usable quality (the rest estimated, see <see cref="DistrictAnalyzer"/>).</summary>
public sealed record EfficiencyResult(
    string DistrictId, long DayStartUnixMs,
    double InflowM3, double MeteredM3, double NonRevenueM3, double NonRevenuePercent, double Completeness,
    int RollingDays, double RollingInflowM3, double RollingMeteredM3, double RollingNonRevenueM3, double RollingNonRevenuePercent,
    double RollingCompleteness);

/// <summary>What one <see cref="DistrictAnalyzer.Add"/> produced. The analyser reuses this object: its lists are valid
/// until the next call (copy what must outlive it), so a record costs no new lists.</summary>
public sealed class DistrictOutputs
{
    public List<QualityVerdict> Quality { get; } = [];
    public List<AnomalyEvent> Anomalies { get; } = [];
    public List<EfficiencyResult> Efficiency { get; } = [];
    public bool IsEmpty => Quality.Count == 0 && Anomalies.Count == 0 && Efficiency.Count == 0;

    internal void Clear()
    {
        Quality.Clear();
        Anomalies.Clear();
        Efficiency.Clear();
    }
}
