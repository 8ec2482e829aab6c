using StreamHealth.Sensors.Predictions;
using StreamHealth.Sensors.Simulation;

namespace StreamHealth.Sensors.Districts;

/// <summary>Which windows feed a node's <see cref="NodePredictor"/> and with what value: the hourly flow of inflow and meter nodes,
/// NaN when the window's data quality makes it unusable or, for an inflow, while a burst is open in its district (the analyser
/// says so). One rule for the pipeline (<see cref="DistrictTopology"/>) and its check (<see cref="FlowPredictionCheck"/>).</summary>
public static class FlowPredictions
{
    public static bool Feeds(in NodeWindow w) => w.WindowMinutes == 60 && w.Metric == "flow" && w.Kind is NodeKind.Inflow or NodeKind.Meter;

    public static double HourValue(in NodeWindow w, DistrictOutputs outputs, DistrictAnalyzer analyzer)
    {
        foreach (var v in outputs.Quality)
            if (v.WindowMinutes == 60 && v.NodeId == w.NodeId && v.Metric == w.Metric && !v.Usable) return double.NaN;
        if (w.Kind == NodeKind.Inflow && analyzer.BurstOpen) return double.NaN;
        return w.ReadingCount > 0 ? w.Mean : double.NaN;
    }
}

/// <summary>One node's forecasts on the simulator: relative MAE of the streaming predictor against the seasonal-naive forecast
/// (the same hour the day before), both against the hour's true mean flow (bursts included: what the network really did).</summary>
public sealed record FlowPredictionScore(string NodeId, string Kind, int Forecasts, double ModelMae, double NaiveMae, double Coverage80, double Coverage95)
{
    public double RelativeMae => ModelMae / NaiveMae;
}

/// <summary>`streamhealth sensors predict-check`'s streaming part: the simulator's readings windowed as the topology windows
/// them, each district's analyser and each node's <see cref="NodePredictor"/> fed as <see cref="DistrictTopology"/> feeds them, a
/// forecast issued at every midnight from the fourth day on, scored over the next 24 hours.</summary>
public static class FlowPredictionCheck
{
    private const long HourMs = 3_600_000, DayMs = 86_400_000;

    public static List<FlowPredictionScore> Run(SimulationOptions simulation, bool excludeUnusable = true)
    {
        var simulator = new NetworkSimulator(simulation);
        var kinds = simulator.Nodes.ToDictionary(n => n.NodeId, n => NodeKinds.Parse(n.Kind));
        var districtOf = simulator.Nodes.ToDictionary(n => n.NodeId, n => n.DistrictId);
        var analyzers = simulator.Nodes.Select(n => n.DistrictId).Distinct().ToDictionary(d => d, d => new DistrictAnalyzer(d));
        var predictors = new Dictionary<string, NodePredictor>();
        var forecasts = new Dictionary<string, List<(long IssuedUnixMs, ForecastPoint[] Points)>>();
        var truth = new Dictionary<(string Node, long Hour), (double Sum, int Count)>();
        var windows = new TopologyWindows();
        var closed = new List<NodeWindow>();
        var start = simulation.StartUnixMs;
        foreach (var r in simulator.Readings())
        {
            if (r.Metric == "flow" && kinds[r.NodeId] is NodeKind.Inflow or NodeKind.Meter)
            {
                var key = (r.NodeId, r.TimeUnixMs / HourMs * HourMs);
                truth[key] = truth.TryGetValue(key, out var t) ? (t.Sum + r.Value, t.Count + 1) : (r.Value, 1);
            }
            closed.Clear();
            windows.Add(r.NodeId, kinds[r.NodeId], r.Metric, r.TimeUnixMs, r.Value, closed);
            foreach (var w in closed)
            {
                var analyzer = analyzers[districtOf[w.NodeId]];
                var outputs = analyzer.Add(w);
                if (!FlowPredictions.Feeds(w)) continue;
                if (!predictors.TryGetValue(w.NodeId, out var predictor)) predictors[w.NodeId] = predictor = new NodePredictor();
                var value = excludeUnusable ? FlowPredictions.HourValue(w, outputs, analyzer) : w.ReadingCount > 0 ? w.Mean : double.NaN;
                if (!predictor.Add(w.WindowStartUnixMs, value)) continue;
                var issued = w.WindowEndUnixMs;
                if (issued % DayMs != 0 || issued < start + 3 * DayMs) continue;
                if (predictor.Forecast() is { } points)
                {
                    if (!forecasts.TryGetValue(w.NodeId, out var list)) forecasts[w.NodeId] = list = [];
                    list.Add((issued, points));
                }
            }
        }
        var scores = new List<FlowPredictionScore>();
        foreach (var (node, list) in forecasts.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            var tally = new ForecastTally();
            foreach (var (issued, points) in list)
                foreach (var p in points)
                {
                    var hour = issued + (p.Horizon - 1) * HourMs;
                    if (!truth.TryGetValue((node, hour), out var actual) || !truth.TryGetValue((node, hour - DayMs), out var dayBefore)) continue;
                    tally.Add(actual.Sum / actual.Count, dayBefore.Sum / dayBefore.Count, p);
                }
            if (tally.Count > 0) scores.Add(Scored(node, NodeKinds.Name(kinds[node]), list.Count, tally));
        }
        return scores;
    }

    /// <summary>The predictor on one hourly series (NaN: missing), as the pipeline would feed it hour by hour: a forecast from every
    /// 24th hour from the fourth day on, scored against the series over the next 24 hours, beside the seasonal-naive forecast.</summary>
    public static FlowPredictionScore? Score(string name, IReadOnlyList<double> hourly)
    {
        var predictor = new NodePredictor();
        var tally = new ForecastTally();
        var issued = 0;
        for (var t = 0; t < hourly.Count; t++)
        {
            predictor.Add(t * HourMs, hourly[t]);
            if (t < 3 * 24 - 1 || (t + 1) % 24 != 0 || predictor.Forecast() is not { } points) continue;
            issued++;
            foreach (var p in points)
            {
                var target = t + p.Horizon;
                if (target >= hourly.Count || double.IsNaN(hourly[target]) || double.IsNaN(hourly[target - 24])) continue;
                tally.Add(hourly[target], hourly[target - 24], p);
            }
        }
        return tally.Count == 0 ? null : Scored(name, "NAB", issued, tally);
    }

    private static FlowPredictionScore Scored(string name, string kind, int forecasts, ForecastTally tally) =>
        new(name, kind, forecasts, tally.ModelMae, tally.NaiveMae, tally.Coverage80, tally.Coverage95);
}
