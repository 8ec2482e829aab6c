using System.Text.Json.Serialization;

namespace StreamHealth.Sensors.Simulation;

/// <summary>Settings of <see cref="NetworkSimulator"/>.</summary>
public sealed record SimulationOptions
{
    public int Districts { get; init; } = 3;
    /// <summary>Customer meters per district (each reports its flow).</summary>
    public int MetersPerDistrict { get; init; } = 4;
    public int Days { get; init; } = 30;
    public int StepSeconds { get; init; } = 60;
    public int Seed { get; init; } = 1;
    /// <summary>Start of the simulation, ms since the Unix epoch (UTC); aligned down to the step.</summary>
    public long StartUnixMs { get; init; }
    /// <summary>Bursts per district over the run (sudden losses), background leaks per district (slowly growing losses).</summary>
    public double BurstsPerDistrict { get; init; } = 2;
    public double BackgroundLeaksPerDistrict { get; init; } = 1;
    /// <summary>Sensor faults (stuck, drift, dropout, spike bursts) per node over the run.</summary>
    public double FaultsPerNode { get; init; } = 0.5;
    /// <summary>Fractions of readings delivered late (minutes after their time), twice, or swapped with the next.</summary>
    public double LateFraction { get; init; } = 0.005;
    public double DuplicateFraction { get; init; } = 0.005;
    public double OutOfOrderFraction { get; init; } = 0.005;

    public void Validate()
    {
        if (Districts is < 1 or > 1000) throw new ArgumentOutOfRangeException(nameof(Districts), Districts, "1-1000");
        if (MetersPerDistrict is < 1 or > 1000) throw new ArgumentOutOfRangeException(nameof(MetersPerDistrict), MetersPerDistrict, "1-1000");
        if (Days is < 1 or > 3660) throw new ArgumentOutOfRangeException(nameof(Days), Days, "1-3660");
        if (StepSeconds is < 1 or > 3600) throw new ArgumentOutOfRangeException(nameof(StepSeconds), StepSeconds, "1-3600 s");
        foreach (var (name, v) in new[] { (nameof(LateFraction), LateFraction), (nameof(DuplicateFraction), DuplicateFraction), (nameof(OutOfOrderFraction), OutOfOrderFraction) })
            if (!(v is >= 0 and <= 0.5)) throw new ArgumentOutOfRangeException(name, v, "0-0.5");
        foreach (var (name, v) in new[] { (nameof(BurstsPerDistrict), BurstsPerDistrict), (nameof(BackgroundLeaksPerDistrict), BackgroundLeaksPerDistrict), (nameof(FaultsPerNode), FaultsPerNode) })
            if (!(v is >= 0 and <= 100)) throw new ArgumentOutOfRangeException(name, v, "0-100");
    }
}

/// <summary>One node of the simulated network and what it measures.</summary>
public sealed record SimulatedNode(string NodeId, string DistrictId, string Kind, IReadOnlyList<string> Metrics);

/// <summary>One injected event, the ground truth a detector is scored against. Magnitude in <see cref="Unit"/>: L/s for a burst,
/// L/s per day of growth for a background leak, the offset per day for a drift, the stuck value, the spike size.</summary>
public sealed record SimulatedEvent(
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("district_id")] string DistrictId,
    [property: JsonPropertyName("node_id")] string? NodeId,
    [property: JsonPropertyName("metric")] string? Metric,
    [property: JsonPropertyName("start_unix_ms")] long StartUnixMs,
    [property: JsonPropertyName("end_unix_ms")] long EndUnixMs,
    [property: JsonPropertyName("magnitude")] double Magnitude,
    [property: JsonPropertyName("unit")] string Unit);

/// <summary>One reading as delivered (in delivery order, which is not always event-time order).</summary>
public readonly record struct SimulatedReading(string NodeId, string DistrictId, string Metric, long TimeUnixMs, double Value, string Unit, string ReadingId)
{
    /// <summary>The reading as producers send it onto sensors.readings.</summary>
    public StreamHealth.Schemas.Avro.Sensors.SensorReading ToAvro() => new()
    {
        event_time_unix_ms = StreamHealth.Runtime.Streams.AvroTime.FromUnixMs(TimeUnixMs), node_id = NodeId, district_id = DistrictId, metric = Metric,
        value = Value, unit = Unit, reading_id = ReadingId,
    };
}

/// <summary>
/// A small water network for development and tests: districts (district metered areas) fed through one inflow meter each
/// (flow and pressure), customer meters (flow) with diurnal and weekly demand, a critical-point pressure logger whose
/// pressure falls with the square of the inflow, and a chlorine probe. Injected into it: bursts (a sudden loss until
/// repaired), background leaks (a loss growing by a fraction of a L/s each day), sensor faults (stuck value, drift,
/// dropout, spikes) and delivery faults (late, duplicate and out-of-order readings). Deterministic for a seed; the ground
/// truth (<see cref="Events"/>) is known before the first reading.
/// </summary>
public sealed class NetworkSimulator
{
    public const string Burst = "burst", BackgroundLeak = "background_leak", Stuck = "stuck", Drift = "drift", Dropout = "dropout", Spike = "spike";
    private const long DayMs = 86_400_000;

    private readonly SimulationOptions _options;
    private readonly long _start;
    private readonly long _stepMs;
    private readonly long _steps;

    public IReadOnlyList<SimulatedNode> Nodes { get; }
    public IReadOnlyList<SimulatedEvent> Events { get; }

    /// <summary>The network as the node registry holds it (sensors.nodes): each node reports every step.</summary>
    public IReadOnlyList<Network.SensorNode> RegisteredNodes =>
        [.. Nodes.Select(n => new Network.SensorNode(n.NodeId, n.DistrictId, n.Kind, n.Metrics, _options.StepSeconds))];

    public NetworkSimulator(SimulationOptions options)
    {
        options.Validate();
        _options = options;
        _stepMs = options.StepSeconds * 1000L;
        _start = options.StartUnixMs - ((options.StartUnixMs % _stepMs) + _stepMs) % _stepMs;
        _steps = options.Days * DayMs / _stepMs;
        var nodes = new List<SimulatedNode>();
        for (var d = 0; d < options.Districts; d++)
        {
            var district = $"dma-{d + 1:D2}";
            nodes.Add(new SimulatedNode($"{district}-inflow", district, "inflow", ["flow", "pressure"]));
            for (var m = 0; m < options.MetersPerDistrict; m++) nodes.Add(new SimulatedNode($"{district}-meter-{m + 1:D2}", district, "meter", ["flow"]));
            nodes.Add(new SimulatedNode($"{district}-critical", district, "pressure_logger", ["pressure"]));
            nodes.Add(new SimulatedNode($"{district}-chlorine", district, "quality_probe", ["chlorine"]));
        }
        Nodes = nodes;
        Events = DrawEvents(new Random(options.Seed));
    }

    private List<SimulatedEvent> DrawEvents(Random rng)
    {
        var end = _start + _steps * _stepMs;
        var events = new List<SimulatedEvent>();
        // Events start after the first two days (a baseline to learn from) and bursts last 2-24 h.
        long Time(double fromDays) => _start + (long)((fromDays + rng.NextDouble() * Math.Max(0.1, _options.Days - fromDays - 1)) * DayMs) / 60_000 * 60_000;
        foreach (var district in Nodes.Select(n => n.DistrictId).Distinct())
        {
            for (var i = 0; i < Count(rng, _options.BurstsPerDistrict); i++)
            {
                var s = Time(2);
                events.Add(new SimulatedEvent(Burst, district, null, "flow", s, Math.Min(end, s + (long)((2 + rng.NextDouble() * 22) * 3_600_000)),
                    Math.Round(1.5 + rng.NextDouble() * 4, 2), "L/s"));
            }
            for (var i = 0; i < Count(rng, _options.BackgroundLeaksPerDistrict); i++)
                events.Add(new SimulatedEvent(BackgroundLeak, district, null, "flow", Time(2), end, Math.Round(0.1 + rng.NextDouble() * 0.3, 3), "L/s per day"));
        }
        foreach (var node in Nodes)
            for (var i = 0; i < Count(rng, _options.FaultsPerNode); i++)
            {
                var metric = node.Metrics[rng.Next(node.Metrics.Count)];
                var s = Time(2);
                var kind = new[] { Stuck, Drift, Dropout, Spike }[rng.Next(4)];
                var hours = kind == Spike ? 0.05 : 2 + rng.NextDouble() * 22;
                var unit = Unit(metric);
                var magnitude = kind switch
                {
                    Drift => Math.Round((metric == "pressure" ? 5 : metric == "chlorine" ? 0.05 : 0.3) * (rng.Next(2) * 2 - 1), 3),   // per day
                    Spike => metric == "pressure" ? 150.0 : metric == "chlorine" ? 2.0 : 25.0,
                    _ => 0,
                };
                events.Add(new SimulatedEvent(kind, node.DistrictId, node.NodeId, metric, s, Math.Min(end, s + (long)(hours * 3_600_000)), magnitude,
                    kind == Drift ? unit + " per day" : unit));
            }
        return [.. events.OrderBy(e => e.StartUnixMs).ThenBy(e => e.NodeId, StringComparer.Ordinal)];
    }

    private static int Count(Random rng, double mean)
    {
        var whole = (int)Math.Floor(mean);
        return whole + (rng.NextDouble() < mean - whole ? 1 : 0);
    }

    private static string Unit(string metric) => metric switch { "flow" => "L/s", "pressure" => "kPa", "chlorine" => "mg/L", _ => "m" };

    /// <summary>Customer demand factor at a time: two daily peaks (07:30 and 19:30), a night minimum near 03:30, weekends
    /// later and a little higher.</summary>
    public static double DemandFactor(long timeUnixMs)
    {
        var day = (int)(((timeUnixMs / DayMs) + 4) % 7);        // 0 = Monday (1970-01-01 was a Thursday)
        var weekend = day >= 5;
        var hour = (timeUnixMs % DayMs) / 3_600_000.0;
        var shift = weekend ? 1.5 : 0;
        double Peak(double centre, double width) => Math.Exp(-0.5 * Math.Pow(((hour - centre - shift + 36) % 24 - 12) / width, 2));
        return (0.25 + 0.9 * Peak(7.5, 1.2) + 0.7 * Peak(19.5, 1.8) + 0.35 * Peak(13, 3)) * (weekend ? 1.08 : 1.0);
    }

    /// <summary>Every reading of the run in delivery order. Readings a dropout swallows are not delivered.</summary>
    public IEnumerable<SimulatedReading> Readings()
    {
        _stuck.Clear();
        var rng = new Random(_options.Seed * 7919 + 17);
        var baseDemand = Nodes.Where(n => n.Kind == "meter").ToDictionary(n => n.NodeId, _ => 0.4 + rng.NextDouble() * 1.2);   // L/s at factor 1
        var held = new List<(long DueUnixMs, SimulatedReading Reading)>();     // late readings, delivered when their due time comes
        SimulatedReading? swapped = null;
        var sequence = 0L;
        var districts = Nodes.GroupBy(n => n.DistrictId)
            .Select(g => (Id: g.Key, Nodes: g.Count(), Meters: g.Where(n => n.Kind == "meter").ToList())).ToList();
        for (var step = 0L; step < _steps; step++)
        {
            var t = _start + step * _stepMs;
            var factor = DemandFactor(t);
            foreach (var district in districts)
            {
                var meters = 0.0;
                var values = new Dictionary<(string Node, string Metric), double>();
                foreach (var meter in district.Meters)
                {
                    var v = Math.Max(0, baseDemand[meter.NodeId] * factor * (1 + 0.08 * Gaussian(rng)));
                    meters += v;
                    values[(meter.NodeId, "flow")] = v;
                }
                // Unmetered use and the real losses of a sound network: 6 % of the metered flow plus 0.3 L/s.
                var losses = 0.06 * meters + 0.3 + Losses(district.Id, t);
                var inflow = meters + losses + 0.05 * Gaussian(rng);
                var inflowNode = $"{district.Id}-inflow";
                values[(inflowNode, "flow")] = inflow;
                values[(inflowNode, "pressure")] = 420 + 3 * Gaussian(rng);
                values[($"{district.Id}-critical", "pressure")] = 420 - 18 - 1.1 * inflow * inflow / district.Nodes + 2 * Gaussian(rng);
                values[($"{district.Id}-chlorine", "chlorine")] = 0.45 - 0.05 * factor + 0.01 * Gaussian(rng);
                foreach (var ((node, metric), clean) in values)
                {
                    if (Faulted(node, metric, t, clean) is not { } value) continue;
                    var reading = new SimulatedReading(node, district.Id, metric, t, Math.Round(value, 4), Unit(metric), $"{node}-{metric}-{t}");
                    sequence++;
                    var u = rng.NextDouble();
                    if (u < _options.LateFraction) { held.Add((t + (2 + rng.Next(20)) * 60_000L, reading)); continue; }
                    if (u < _options.LateFraction + _options.OutOfOrderFraction && swapped is null) { swapped = reading; continue; }
                    yield return reading;
                    if (swapped is { } s) { yield return s; swapped = null; }
                    if (u > 1 - _options.DuplicateFraction) yield return reading;
                }
            }
            for (var i = held.Count - 1; i >= 0; i--)
                if (held[i].DueUnixMs <= t) { yield return held[i].Reading; held.RemoveAt(i); }
        }
        if (swapped is { } last) yield return last;
        foreach (var (_, reading) in held) yield return reading;
    }

    /// <summary>The district's losses from the injected bursts and background leaks at <paramref name="t"/>: L/s.</summary>
    private double Losses(string district, long t)
    {
        var loss = 0.0;
        foreach (var e in Events)
        {
            if (e.DistrictId != district || t < e.StartUnixMs || t >= e.EndUnixMs) continue;
            if (e.Kind == Burst) loss += e.Magnitude;
            else if (e.Kind == BackgroundLeak) loss += e.Magnitude * (t - e.StartUnixMs) / (double)DayMs;
        }
        return loss;
    }

    /// <summary>The value the node reports, after its faults; null when a dropout swallows it.</summary>
    private double? Faulted(string node, string metric, long t, double value)
    {
        foreach (var e in Events)
        {
            if (e.NodeId != node || e.Metric != metric || t < e.StartUnixMs || t >= e.EndUnixMs) continue;
            switch (e.Kind)
            {
                case Dropout: return null;
                case Stuck: return StuckValue(e, value);
                case Drift: value += e.Magnitude * (t - e.StartUnixMs) / (double)DayMs; break;
                case Spike: value += e.Magnitude; break;
            }
        }
        return value;
    }

    private readonly Dictionary<SimulatedEvent, double> _stuck = [];

    /// <summary>A stuck sensor repeats the value it reported when it stuck.</summary>
    private double StuckValue(SimulatedEvent e, double valueNow)
    {
        if (!_stuck.TryGetValue(e, out var v)) _stuck[e] = v = valueNow;
        return v;
    }

    private static double Gaussian(Random rng)
    {
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
