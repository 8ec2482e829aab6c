using StreamHealth.Sensors.Metrics;
using StreamHealth.Sensors.Simulation;

namespace StreamHealth.Sensors.Districts;

/// <summary>
/// The windows of <see cref="SensorsTopology"/> built in process, with its semantics: per node and metric, tumbling windows
/// of 1, 15 and 60 minutes closed by the series' own event time plus the grace; a repeated event time counts once (a
/// duplicate); a reading inside the grace counts and is marked late; a reading whose minute is closed is dropped (the
/// topology dead-letters it) and counted; after a silence only the newest <c>maxEmptyWindows</c> empty windows per size.
/// Windows come out in the order the topology emits them (per reading: sizes 1, 15, 60, oldest first).
/// </summary>
public sealed class TopologyWindows(long graceMs = 5 * 60_000, int maxEmptyWindows = 60)
{
    private sealed class Series
    {
        public long StreamTime = long.MinValue;
        public readonly long[] Next = [long.MinValue, long.MinValue, long.MinValue];
        public readonly Dictionary<long, MinuteBucket> Minutes = [];
    }

    private readonly Dictionary<(string Node, string Metric), Series> _series = [];
    private readonly List<double> _values = [];
    private long _offset;

    /// <summary>Readings dropped because their minute had closed (late beyond the grace).</summary>
    public long LateDropped { get; private set; }

    /// <summary>Adds a reading (in delivery order); appends the windows it closes to <paramref name="closed"/>.</summary>
    public void Add(string nodeId, NodeKind kind, string metric, long timeUnixMs, double value, List<NodeWindow> closed)
    {
        if (!_series.TryGetValue((nodeId, metric), out var s)) _series[(nodeId, metric)] = s = new Series();
        var minuteStart = SensorWindows.Floor(timeUnixMs, SensorWindows.MinuteMs);
        if (s.StreamTime != long.MinValue && minuteStart < s.Next[0])
        {
            LateDropped++;
            return;
        }
        if (!s.Minutes.TryGetValue(minuteStart, out var bucket)) s.Minutes[minuteStart] = bucket = new MinuteBucket();
        bucket.Add(timeUnixMs, value, _offset++, late: s.StreamTime != long.MinValue && minuteStart + SensorWindows.MinuteMs <= s.StreamTime);
        if (s.StreamTime == long.MinValue)
            for (var i = 0; i < 3; i++) s.Next[i] = SensorWindows.Floor(timeUnixMs, SensorWindows.SizesMinutes[i] * SensorWindows.MinuteMs);
        var previous = s.StreamTime == long.MinValue ? timeUnixMs : s.StreamTime;
        s.StreamTime = Math.Max(s.StreamTime, timeUnixMs);
        for (var i = 0; i < 3; i++)
        {
            var minutes = SensorWindows.SizesMinutes[i];
            var sizeMs = minutes * SensorWindows.MinuteMs;
            var start = s.Next[i];
            var newestClosed = SensorWindows.Floor(s.StreamTime - graceMs - sizeMs, sizeMs);
            for (; start <= newestClosed; start += sizeMs)
            {
                if (start > previous)
                {
                    var firstKept = newestClosed - (maxEmptyWindows - 1L) * sizeMs;
                    if (maxEmptyWindows == 0 || firstKept > newestClosed) break;
                    if (firstKept > start) start = firstKept;
                }
                closed.Add(Window(s, nodeId, kind, metric, minutes, start));
            }
            s.Next[i] = Math.Max(start, newestClosed + sizeMs);
        }
        // Minutes before the next hour to emit are no longer needed by any size.
        if (s.Minutes.Count > 90)
            foreach (var key in s.Minutes.Keys.Where(k => k < s.Next[2]).ToList()) s.Minutes.Remove(key);
    }

    private NodeWindow Window(Series s, string nodeId, NodeKind kind, string metric, int minutes, long start)
    {
        _values.Clear();
        int duplicates = 0, lates = 0;
        for (var m = 0; m < minutes; m++)
        {
            if (!s.Minutes.TryGetValue(start + m * SensorWindows.MinuteMs, out var bucket)) continue;
            foreach (var r in bucket.Readings) _values.Add(r.Value);
            duplicates += bucket.DuplicateCount;
            lates += bucket.LateCount;
        }
        var stats = WindowStatistics.Compute(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_values));
        return NodeWindow.From(nodeId, kind, metric, start, minutes, stats, duplicates, lates);
    }
}

/// <summary>One simulated run through the analysers: what they reported, with the simulated time each was reported at
/// (the newest reading time delivered when the window that produced it closed).</summary>
public sealed class LeakCheckRun
{
    public required int Seed { get; init; }
    public required long StartUnixMs { get; init; }
    public required long EndUnixMs { get; init; }
    public required IReadOnlyList<SimulatedEvent> Events { get; init; }
    /// <summary>Leak and residual anomalies by id: as opened, when reported, and the end once resolved.</summary>
    public List<(AnomalyEvent Opened, long ReportedUnixMs, long? EndUnixMs)> Anomalies { get; } = [];
    /// <summary>Quality verdicts with a problem other than late or duplicate readings.</summary>
    public List<(string NodeId, string Metric, long StartUnixMs, int Minutes, long ReportedUnixMs, QualityRule Rule)> Problems { get; } = [];
    public long MinuteVerdicts { get; set; }
    public List<EfficiencyResult> Efficiency { get; } = [];
    public long Windows { get; set; }
    public long LateDropped { get; set; }
    public long StateBytesMax { get; set; }
}

/// <summary>The issue-16 check of leak detection and data quality on the simulator (<c>streamhealth sensors leaks-check</c>).</summary>
public static class LeakCheck
{
    public static readonly string[] LeakKinds = [NetworkSimulator.Burst, NetworkSimulator.BackgroundLeak];
    public static readonly string[] FaultKinds = [NetworkSimulator.Stuck, NetworkSimulator.Drift, NetworkSimulator.Dropout, NetworkSimulator.Spike];
    public static readonly TimeSpan BurstBar = TimeSpan.FromMinutes(15), BackgroundBar = TimeSpan.FromDays(3);

    /// <summary>Runs the simulator, windows its readings as the topology would, and feeds each district's analyser in the
    /// order its windows close. Every <paramref name="saveEveryWindows"/> windows a district's analyser is saved and
    /// restored (as a store would), so the run exercises the state codec too.</summary>
    public static LeakCheckRun Run(SimulationOptions simulation, DistrictAnalyzerOptions? options = null, int saveEveryWindows = 5000)
    {
        var simulator = new NetworkSimulator(simulation);
        var kinds = simulator.Nodes.ToDictionary(n => n.NodeId, n => NodeKinds.Parse(n.Kind));
        var districtOf = simulator.Nodes.ToDictionary(n => n.NodeId, n => n.DistrictId);
        var analyzers = simulator.Nodes.Select(n => n.DistrictId).Distinct().ToDictionary(d => d, d => new DistrictAnalyzer(d, options));
        var windows = new TopologyWindows();
        var closed = new List<NodeWindow>();
        var run = new LeakCheckRun
        {
            Seed = simulation.Seed, Events = simulator.Events,
            StartUnixMs = SensorWindows.Floor(simulation.StartUnixMs, simulation.StepSeconds * 1000L),
            EndUnixMs = SensorWindows.Floor(simulation.StartUnixMs, simulation.StepSeconds * 1000L) + simulation.Days * 86_400_000L,
        };
        var open = new Dictionary<string, int>();
        var now = long.MinValue;
        var sinceSave = 0;
        foreach (var reading in simulator.Readings())
        {
            now = Math.Max(now, reading.TimeUnixMs);
            closed.Clear();
            windows.Add(reading.NodeId, kinds[reading.NodeId], reading.Metric, reading.TimeUnixMs, reading.Value, closed);
            if (closed.Count == 0) continue;
            var district = districtOf[reading.NodeId];
            var analyzer = analyzers[district];
            foreach (var window in closed)
            {
                run.Windows++;
                var outputs = analyzer.Add(window);
                foreach (var v in outputs.Quality)
                {
                    if (v.WindowMinutes == 1) run.MinuteVerdicts++;
                    foreach (var c in v.Checks)
                        if (c.Problem && c.Rule is not (QualityRule.Late or QualityRule.Duplicates))
                            run.Problems.Add((v.NodeId, v.Metric, v.WindowStartUnixMs, v.WindowMinutes, now, c.Rule));
                }
                foreach (var a in outputs.Anomalies)
                {
                    if (a.State == AnomalyState.Open)
                    {
                        open[a.AnomalyId] = run.Anomalies.Count;
                        run.Anomalies.Add((a, now, null));
                    }
                    else if (open.Remove(a.AnomalyId, out var index))
                        run.Anomalies[index] = run.Anomalies[index] with { EndUnixMs = a.EndUnixMs };
                }
                run.Efficiency.AddRange(outputs.Efficiency);
            }
            if ((sinceSave += closed.Count) >= saveEveryWindows)
            {
                sinceSave = 0;
                var bytes = analyzer.Save();
                run.StateBytesMax = Math.Max(run.StateBytesMax, bytes.Length);
                analyzers[district] = DistrictAnalyzer.Restore(bytes, options);
            }
        }
        run.LateDropped = windows.LateDropped;
        return run;
    }

    /// <summary>Detection of one kind of leak: injected (those starting less than the bar before the run's end apart, in
    /// <see cref="LeakScore.StartedTooLate"/>), detected (by an anomaly of the same kind in the district reported
    /// while the leak was active), within the bar, and the delays from the leak's start to the report.</summary>
    public sealed record LeakScore(string Kind, int Injected, int StartedTooLate, int Detected, int WithinBar, TimeSpan? MedianDelay, TimeSpan? MaxDelay);

    public sealed record FaultScore(string Kind, int Injected, int Flagged, TimeSpan? MedianDelay, TimeSpan? MaxDelay, int ReportedAsLeak);

    public sealed record Summary(
        IReadOnlyList<LeakScore> Leaks, int LeakAnomalies, int TruePositives, double Precision, int FalseOverlappingFaults,
        IReadOnlyList<FaultScore> Faults, IReadOnlyDictionary<QualityRule, double> CleanMinutesFlagged,
        int ResidualAnomalies, int ResidualOverlappingEvents, double MeanNonRevenuePercent, double MeanCompleteness, long StateBytesMax,
        IReadOnlyList<string> Misses);

    public static Summary Score(IReadOnlyList<LeakCheckRun> runs)
    {
        var misses = new List<string>();
        var leaks = new List<LeakScore>();
        foreach (var kind in LeakKinds)
        {
            var delays = new List<TimeSpan>();
            int injected = 0, tooLate = 0;
            var bar = kind == NetworkSimulator.Burst ? BurstBar : BackgroundBar;
            var anomalyKind = kind == NetworkSimulator.Burst ? AnomalyKind.Burst : AnomalyKind.BackgroundLeak;
            foreach (var run in runs)
                foreach (var e in run.Events.Where(e => e.Kind == kind))
                {
                    // A leak starting less than its bar before the run's end cannot be judged against the bar.
                    if (e.StartUnixMs + (long)bar.TotalMilliseconds > run.EndUnixMs) { tooLate++; continue; }
                    injected++;
                    var reports = run.Anomalies.Where(a => a.Opened.Kind == anomalyKind && a.Opened.DistrictId == e.DistrictId
                                                            && a.ReportedUnixMs >= e.StartUnixMs && a.ReportedUnixMs < e.EndUnixMs + 3_600_000)
                        .Select(a => a.ReportedUnixMs).ToList();
                    if (reports.Count == 0) { misses.Add($"seed {run.Seed} {kind} {e.DistrictId} from {Time(e.StartUnixMs)} ({e.Magnitude} {e.Unit}): not detected"); continue; }
                    var delay = TimeSpan.FromMilliseconds(reports.Min() - e.StartUnixMs);
                    delays.Add(delay);
                    if (delay > bar) misses.Add($"seed {run.Seed} {kind} {e.DistrictId} from {Time(e.StartUnixMs)} ({e.Magnitude} {e.Unit}): detected after {Format(delay)}");
                }
            delays.Sort();
            leaks.Add(new LeakScore(kind, injected, tooLate, delays.Count, delays.Count(d => d <= bar),
                delays.Count == 0 ? null : delays[delays.Count / 2], delays.Count == 0 ? null : delays[^1]));
        }

        int leakAnomalies = 0, truePositives = 0, falseOverlappingFaults = 0;
        var faultsAsLeaks = new HashSet<SimulatedEvent>();
        foreach (var run in runs)
            foreach (var (a, reported, end) in run.Anomalies.Where(a => AnomalyKinds.IsLeak(a.Opened.Kind)))
            {
                leakAnomalies++;
                var to = end ?? run.EndUnixMs;
                bool Overlaps(SimulatedEvent e) => e.DistrictId == a.DistrictId && a.StartUnixMs < e.EndUnixMs && to > e.StartUnixMs;
                if (run.Events.Any(e => LeakKinds.Contains(e.Kind) && Overlaps(e))) { truePositives++; continue; }
                var faults = run.Events.Where(e => FaultKinds.Contains(e.Kind) && Overlaps(e)).ToList();
                if (faults.Count > 0) falseOverlappingFaults++;
                foreach (var f in faults) faultsAsLeaks.Add(f);
                misses.Add($"seed {run.Seed} false {AnomalyKinds.Name(a.Kind)} {a.DistrictId} {Time(a.StartUnixMs)}-{(end is { } x ? Time(x) : "open")}" +
                           (faults.Count > 0 ? $" during {string.Join(", ", faults.Select(f => $"{f.Kind} {f.NodeId} {f.Metric}"))}" : "") + $": {a.Reason}");
            }

        var faultScores = new List<FaultScore>();
        var flaggedIntervals = new Dictionary<(int Run, string Node, string Metric), List<(long From, long To)>>();
        foreach (var kind in FaultKinds)
        {
            var delays = new List<TimeSpan>();
            int injected = 0, asLeak = 0;
            for (var r = 0; r < runs.Count; r++)
                foreach (var e in runs[r].Events.Where(e => e.Kind == kind))
                {
                    injected++;
                    if (faultsAsLeaks.Contains(e)) asLeak++;
                    var first = long.MaxValue;
                    foreach (var p in runs[r].Problems)
                        if (p.NodeId == e.NodeId && p.Metric == e.Metric && p.StartUnixMs < e.EndUnixMs && p.StartUnixMs + p.Minutes * 60_000L > e.StartUnixMs)
                            first = Math.Min(first, p.ReportedUnixMs);
                    if (first == long.MaxValue) { misses.Add($"seed {runs[r].Seed} {kind} {e.NodeId} {e.Metric} from {Time(e.StartUnixMs)} ({Format(TimeSpan.FromMilliseconds(e.EndUnixMs - e.StartUnixMs))}, {e.Magnitude} {e.Unit}): not flagged"); continue; }
                    delays.Add(TimeSpan.FromMilliseconds(Math.Max(0, first - e.StartUnixMs)));
                }
            delays.Sort();
            faultScores.Add(new FaultScore(kind, injected, delays.Count, delays.Count == 0 ? null : delays[delays.Count / 2], delays.Count == 0 ? null : delays[^1], asLeak));
        }

        // Minutes flagged on a series with no fault injected within the hour around them: the checks' false alarms.
        var clean = new Dictionary<QualityRule, double>();
        var minuteVerdicts = runs.Sum(r => r.MinuteVerdicts);
        foreach (var rule in new[] { QualityRule.Completeness, QualityRule.OutOfRange, QualityRule.Flatline, QualityRule.Drift })
        {
            long flagged = 0;
            foreach (var run in runs)
                foreach (var p in run.Problems)
                    if (p.Rule == rule && p.Minutes == 1 && !run.Events.Any(e => e.NodeId == p.NodeId && e.Metric == p.Metric
                            && p.StartUnixMs < e.EndUnixMs + 3_600_000 && p.StartUnixMs + 60_000 > e.StartUnixMs - 3_600_000))
                        flagged++;
            clean[rule] = minuteVerdicts == 0 ? 0 : flagged / (double)minuteVerdicts;
        }

        int residuals = 0, residualsOverlapping = 0;
        foreach (var run in runs)
            foreach (var (a, _, end) in run.Anomalies.Where(a => a.Opened.Kind == AnomalyKind.Residual))
            {
                residuals++;
                var to = end ?? run.EndUnixMs;
                if (run.Events.Any(e => e.DistrictId == a.DistrictId && a.StartUnixMs < e.EndUnixMs + 3_600_000 && to > e.StartUnixMs)) residualsOverlapping++;
            }
        var days = runs.SelectMany(r => r.Efficiency).Where(e => e.Completeness > 0.5).ToList();
        return new Summary(leaks, leakAnomalies, truePositives, leakAnomalies == 0 ? double.NaN : truePositives / (double)leakAnomalies, falseOverlappingFaults,
            faultScores, clean, residuals, residualsOverlapping,
            days.Count == 0 ? double.NaN : days.Average(d => d.NonRevenuePercent), days.Count == 0 ? double.NaN : days.Average(d => d.Completeness),
            runs.Max(r => r.StateBytesMax), misses);
    }

    public static string Format(TimeSpan? delay) => delay is not { } d ? "–"
        : d.TotalHours >= 24 ? $"{d.TotalDays:0.00} d" : d.TotalMinutes >= 120 ? $"{d.TotalHours:0.0} h" : $"{d.TotalMinutes:0} min";

    private static string Time(long unixMs) => DateTimeOffset.FromUnixTimeMilliseconds(unixMs).ToString("MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture);
}
