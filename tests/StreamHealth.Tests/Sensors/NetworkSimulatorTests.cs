using StreamHealth.Sensors.Readings;
using StreamHealth.Sensors.Simulation;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Sensors;

/// <summary>The water-network simulator (issue 16): deterministic, physically plausible, and its injected events really in its data.</summary>
public sealed class NetworkSimulatorTests
{
    private static readonly long Start = DateTimeOffset.Parse("2026-06-01T00:00:00Z").ToUnixTimeMilliseconds();
    private static readonly SimulationOptions Week = new() { Days = 7, StartUnixMs = Start, Seed = 5 };

    [Fact]
    public void The_same_seed_gives_the_same_network_events_and_readings()
    {
        var a = new NetworkSimulator(Week);
        var b = new NetworkSimulator(Week);
        Assert.Equal(a.Events, b.Events);
        Assert.True(a.Readings().SequenceEqual(b.Readings()));
        Assert.NotEqual(a.Events, new NetworkSimulator(Week with { Seed = 6 }).Events);
        Assert.Equal(3 * (1 + 4 + 2), a.Nodes.Count);
    }

    [Fact]
    public void Every_reading_is_valid_and_delivery_faults_are_there()
    {
        var sim = new NetworkSimulator(Week);
        var readings = sim.Readings().ToList();
        Assert.All(readings, r => Assert.Null(SensorQuantities.Convert(r.Metric, r.Value, r.Unit, out _, out _)));
        var steps = 7 * 1440;
        var expected = steps * (3 * (2 + 4 + 1 + 1));                 // per district: inflow flow + pressure, 4 meters, critical, chlorine
        var distinct = readings.Select(r => r.ReadingId).Distinct().Count();
        var swallowed = sim.Events.Where(e => e.Kind == NetworkSimulator.Dropout).Sum(e => (e.EndUnixMs - e.StartUnixMs + 59_999) / 60_000);
        Assert.Equal(expected - swallowed, distinct);                  // every reading once, except those a dropout swallowed
        var duplicates = readings.Count - distinct;
        Assert.InRange(duplicates, expected * 0.003, expected * 0.008);
        var backwards = readings.Zip(readings.Skip(1)).Count(p => p.Second.TimeUnixMs < p.First.TimeUnixMs);
        Assert.InRange(backwards, expected * 0.004, expected * 0.02);  // late and out-of-order deliveries
    }

    [Fact]
    public void Demand_is_diurnal_and_a_burst_shows_in_its_districts_inflow_and_nowhere_else()
    {
        var sim = new NetworkSimulator(Week with { FaultsPerNode = 0, BackgroundLeaksPerDistrict = 0, BurstsPerDistrict = 1 });
        var inflow = sim.Readings().Where(r => r.NodeId.EndsWith("-inflow") && r.Metric == "flow")
            .GroupBy(r => r.DistrictId).ToDictionary(g => g.Key, g => g.DistinctBy(r => r.TimeUnixMs).ToDictionary(r => r.TimeUnixMs, r => r.Value));
        var hour = (long t) => (t % 86_400_000) / 3_600_000;
        var night = inflow["dma-01"].Where(kv => hour(kv.Key) == 3).Average(kv => kv.Value);
        var morning = inflow["dma-01"].Where(kv => hour(kv.Key) == 7).Average(kv => kv.Value);
        Assert.True(morning > 2 * night, $"morning {morning:F2} L/s against night {night:F2} L/s");
        var burst = sim.Events.First(e => e.Kind == NetworkSimulator.Burst);
        double Around(string district, long t) => Enumerable.Range(0, 30).Average(i => inflow[district][t + i * 60_000L]);
        // Same hour of the same weekday, a week apart is out of range: compare with the day before instead.
        var during = Around(burst.DistrictId, burst.StartUnixMs);
        var dayBefore = Around(burst.DistrictId, burst.StartUnixMs - 86_400_000);
        Assert.InRange(during - dayBefore, burst.Magnitude * 0.6, burst.Magnitude * 1.4);
        var other = inflow.Keys.First(d => d != burst.DistrictId);
        Assert.InRange(Around(other, burst.StartUnixMs) - Around(other, burst.StartUnixMs - 86_400_000), -1.0, 1.0);
    }

    [Fact]
    public void The_command_writes_readings_and_ground_truth_and_refuses_nonsense()
    {
        var dir = Directory.CreateTempSubdirectory("sensors-sim-").FullName;
        try
        {
            var (code, stdout, stderr) = Repo.Run("dotnet", [ChildHost.HostDll, "sensors", "simulate", "--days", "2", "--districts", "1", "--seed", "3",
                "--start", "2026-06-01T00:00:00Z", "--out", dir]);
            Assert.True(code == 0, stderr);
            Assert.Contains("simulated 7 nodes in 1 districts over 2 days from 2026-06-01T00:00Z", stdout);
            var lines = File.ReadAllLines(Path.Combine(dir, "readings.csv"));
            Assert.Equal("node_id,district_id,metric,time,value,unit,reading_id", lines[0]);
            Assert.StartsWith("dma-01-", lines[1]);
            Assert.Contains("\"start_unix_ms\"", File.ReadAllText(Path.Combine(dir, "events.json")));
            Assert.Contains("dma-01-inflow", File.ReadAllText(Path.Combine(dir, "network.json")));

            var bad = Repo.Run("dotnet", [ChildHost.HostDll, "sensors", "simulate", "--days", "0", "--out", dir]);
            Assert.Equal(2, bad.ExitCode);
            Assert.Contains("--days: 1-3660", bad.StdErr);
            Assert.Equal(2, Repo.Run("dotnet", [ChildHost.HostDll, "sensors", "simulate", "--start", "yesterday", "--out", dir]).ExitCode);
            Assert.Contains("give --out DIR, --produce, or both", Repo.Run("dotnet", [ChildHost.HostDll, "sensors", "simulate"]).StdErr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
