using Confluent.Kafka;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Sensors.Districts;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Sensors.Network;
using StreamHealth.Sensors.Simulation;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using SensorKey = StreamHealth.Schemas.Avro.Common.SensorKey;
using SensorReading = StreamHealth.Schemas.Avro.Sensors.SensorReading;

namespace StreamHealth.Tests.Sensors;

/// <summary>The whole sensors pipeline on real parts over four simulated days of one district with one injected burst: readings →
/// windows → the district analysis → anomalies, window quality, efficiency and flow predictions in PostgreSQL.</summary>
public sealed class SensorsDistrictPipelineFixture : SensorsPipelineFixture
{
    public NetworkSimulator Simulator { get; }
    public long EndUnixMs { get; }

    public SensorsDistrictPipelineFixture() : base("sensors_districts", partitions: 4)
    {
        var (readings, districts) = (Readings, Districts);
        // Four days from midnight UTC, ending at least an hour ago (three closed days for the efficiency), one burst (on the third
        // day: the simulator injects nothing in the first two) and nothing else injected.
        var start = DateTimeOffset.UtcNow.AddDays(-4).AddHours(-1).ToUnixTimeMilliseconds() / 86_400_000 * 86_400_000;
        Simulator = new NetworkSimulator(new SimulationOptions
        {
            Districts = 1, MetersPerDistrict = 3, Days = 4, StartUnixMs = start, Seed = 7, BurstsPerDistrict = 1, BackgroundLeaksPerDistrict = 0,
            FaultsPerNode = 0, LateFraction = 0, DuplicateFraction = 0, OutOfOrderFraction = 0,
        });
        EndUnixMs = start + 4 * 86_400_000L;
        NodeRegistry.RegisterAsync(Postgres, Simulator.RegisteredNodes).GetAwaiter().GetResult();
        StartPipeline(new SensorsOptions());

        // A day at a time, each once the district stage has read the windows of the one before: all of a district's windows go
        // to one partition of the district topic, and the embedded broker keeps about 5 MiB a partition (four days at once,
        // ~44k windows, would let a lagging district stage find its oldest windows gone). A real cluster keeps days.
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = Kafka.BootstrapServers, LingerMs = 5 }).Build();
        var keys = Registry.Connection.SerDes<SensorKey>();
        var values = Registry.Connection.SerDes<SensorReading>();
        foreach (var day in Simulator.Readings().GroupBy(r => (r.TimeUnixMs - start) / 86_400_000))
        {
            foreach (var r in day)
                producer.ProduceBlocking(readings, new Message<byte[], byte[]>
                {
                    Key = keys.Serialize(new SensorKey { node_id = r.NodeId }, new SerializationContext(MessageComponentType.Key, readings)),
                    Value = values.Serialize(r.ToAvro(), new SerializationContext(MessageComponentType.Value, readings)),
                });
            if (producer.Flush(TimeSpan.FromMinutes(1)) > 0) throw new TimeoutException("readings not acknowledged");
            WaitFor(() => Progress(Kafka.BootstrapServers, Pipeline.Names.ApplicationId, readings, Partitions) is var w && w.Committed == w.End
                          && Progress(Kafka.BootstrapServers, Pipeline.Names.DistrictsApplicationId, districts.Windows, Partitions) is var d && d.Committed == d.End,
                TimeSpan.FromMinutes(2), () => $"day {day.Key}: the stages did not catch up");
        }
    }

    public long Count(string sql)
    {
        using var command = Postgres.CreateCommand(sql);
        return Convert.ToInt64(command.ExecuteScalar());
    }
}

public sealed class SensorsDistrictPipelineTests(SensorsDistrictPipelineFixture f) : IClassFixture<SensorsDistrictPipelineFixture>
{
    [Fact]
    public void The_injected_burst_is_an_anomaly_within_15_minutes_and_resolved_after_it_ends_with_no_other_leak()
    {
        var burst = Assert.Single(f.Simulator.Events, e => e.Kind == NetworkSimulator.Burst);
        // A burst still running when the data ends stays open.
        var resolves = burst.EndUnixMs < f.EndUnixMs - 3_600_000;
        WaitFor(() => f.Count($"SELECT count(*) FROM sensors.anomalies WHERE kind = 'burst' AND state = '{(resolves ? "resolved" : "open")}'") >= 1,
            TimeSpan.FromMinutes(3),
            () => $"anomalies: {f.Count("SELECT count(*) FROM sensors.anomalies")}, quality rows {f.Count("SELECT count(*) FROM sensors.window_quality")}");
        using var command = f.Postgres.CreateCommand(
            "SELECT anomaly_id, started_at, ended_at, resolved_at, severity, observed, expected, unit FROM sensors.anomalies WHERE kind IN ('burst', 'background_leak')");
        using var reader = command.ExecuteReader();
        Assert.True(reader.Read());
        var started = new DateTimeOffset(reader.GetDateTime(1)).ToUnixTimeMilliseconds();
        Assert.InRange(started, burst.StartUnixMs - 60_000, burst.StartUnixMs + 15 * 60_000);
        Assert.Equal("L/s", reader.GetString(7));
        // The net flow it saw is the burst's size above the reference, within the noise.
        Assert.InRange(reader.GetDouble(5) - reader.GetDouble(6), burst.Magnitude * 0.6, burst.Magnitude * 1.4);
        if (resolves)
        {
            // Ended when half its flow was gone, after the burst ended; resolved then.
            var ended = new DateTimeOffset(reader.GetDateTime(2)).ToUnixTimeMilliseconds();
            Assert.InRange(ended, burst.EndUnixMs - 15 * 60_000, burst.EndUnixMs + 30 * 60_000);
            Assert.Equal(reader.GetDateTime(2), reader.GetDateTime(3));
        }
        else Assert.True(reader.IsDBNull(2) && reader.IsDBNull(3));
        Assert.False(reader.Read(), "a second leak anomaly");
    }

    [Fact]
    public void Every_closed_quarter_hour_of_every_series_is_judged_and_a_clean_network_is_usable()
    {
        // 7 series × 4 quarters × 24 h × 4 days, less the last quarter hours that have not closed.
        WaitFor(() => f.Count("SELECT count(DISTINCT (node_id, metric, window_start)) FROM sensors.window_quality WHERE window_minutes = 15") >= 7 * 4 * 24 * 4 - 7 * 4,
            TimeSpan.FromMinutes(3), () => $"{f.Count("SELECT count(*) FROM sensors.window_quality WHERE window_minutes = 15")} quarter verdicts");
        var usable = f.Count("SELECT count(*) FROM sensors.window_quality WHERE window_minutes = 15 AND usable");
        var all = f.Count("SELECT count(*) FROM sensors.window_quality WHERE window_minutes = 15");
        Assert.True(usable >= all * 0.97, $"{usable} of {all} usable");
        // Every verdict carries every rule with a score and a reason.
        Assert.Equal(0, f.Count("SELECT count(*) FROM sensors.window_quality WHERE NOT (checks ?& array['completeness','out_of_range','flatline','drift','late','duplicates'])"));
        // A clean network dead-letters nothing anywhere (the district stage once published a verdict per series and minute that
        // the quality sink could only dead-letter: 40k dead letters over these four days).
        Assert.Equal(0, f.Count("SELECT count(*) FROM streamhealth.dead_letters"));
    }

    [Fact]
    public void Each_closed_day_has_its_water_balance_with_the_burst_day_losing_more()
    {
        WaitFor(() => f.Count("SELECT count(*) FROM sensors.efficiency") >= 3, TimeSpan.FromMinutes(3),
            () => $"{f.Count("SELECT count(*) FROM sensors.efficiency")} days");
        using var command = f.Postgres.CreateCommand(
            "SELECT day_start, inflow_m3, metered_m3, non_revenue_m3, non_revenue_percent, completeness FROM sensors.efficiency ORDER BY day_start");
        using var reader = command.ExecuteReader();
        var days = new List<(long Day, double Inflow, double Metered, double Nrw, double Percent, double Completeness)>();
        while (reader.Read())
            days.Add((new DateTimeOffset(reader.GetDateTime(0)).ToUnixTimeMilliseconds(), reader.GetDouble(1), reader.GetDouble(2), reader.GetDouble(3),
                reader.GetDouble(4), reader.GetDouble(5)));
        var burst = f.Simulator.Events.Single(e => e.Kind == NetworkSimulator.Burst);
        foreach (var d in days)
        {
            Assert.Equal(d.Inflow - d.Metered, d.Nrw, 6);
            Assert.Equal(100 * d.Nrw / d.Inflow, d.Percent, 6);
            Assert.True(d.Completeness > 0.95, $"completeness {d.Completeness}");
        }
        // Day one has no leak: the simulator's losses are 6 % of metered plus 0.3 L/s (≈ 26 m³ a day).
        var first = days[0];
        Assert.InRange(first.Nrw, 0.06 * first.Metered + 0.3 * 86.4 - 8, 0.06 * first.Metered + 0.3 * 86.4 + 8);
        var burstDay = days.Single(d => burst.StartUnixMs >= d.Day && burst.StartUnixMs < d.Day + 86_400_000);
        Assert.True(burstDay.Nrw > first.Nrw + 5, $"the burst's day lost {burstDay.Nrw:F1} m³, the first {first.Nrw:F1}");
    }

    [Fact]
    public void Every_inflow_and_meter_gets_a_24_hour_forecast_each_hour_once_it_has_three_days()
    {
        // The predictor starts after 72 hours: from the fourth day on, a forecast per node and hour (the hour ending at the end of
        // the run's data is never closed, nor are the hours within the grace of it).
        var flowNodes = f.Simulator.Nodes.Count(n => n.Kind is "inflow" or "meter");
        WaitFor(() => f.Count("SELECT count(DISTINCT node_id) FROM sensors.predictions") == flowNodes
                      && f.Count("SELECT count(DISTINCT issued_at) FROM sensors.predictions") >= 20, TimeSpan.FromMinutes(3),
            () => $"{f.Count("SELECT count(DISTINCT node_id) FROM sensors.predictions")} nodes, {f.Count("SELECT count(DISTINCT issued_at) FROM sensors.predictions")} issues");
        // Each forecast is 24 consecutive hours from its issue time.
        Assert.Equal(0, f.Count("""
            SELECT count(*) FROM (SELECT node_id, issued_at, count(*) AS n, min(target_time) AS first, max(target_time) AS last
                                  FROM sensors.predictions GROUP BY node_id, issued_at) x
            WHERE n <> 24 OR first <> issued_at OR last <> issued_at + interval '23 hours'
            """));
        Assert.Equal(0, f.Count("SELECT count(*) FROM sensors.predictions WHERE issued_at < (SELECT min(window_start) FROM sensors.window_quality) + interval '71 hours'"));
        // Intervals hold the mean, the 95 % one the 80 % one, where the node has enough past errors to give them.
        Assert.Equal(0, f.Count("""
            SELECT count(*) FROM sensors.predictions
            WHERE lower_80 IS NOT NULL AND NOT (lower_95 <= lower_80 AND lower_80 <= upper_80 AND upper_80 <= upper_95)
            """));
        Assert.Equal(0, f.Count("SELECT count(*) FROM sensors.predictions WHERE NOT (mean BETWEEN -1 AND 30)"));
        Assert.Equal(0, f.Count("SELECT count(*) FROM sensors.predictions WHERE method NOT IN ('holt_winters_daily', 'seasonal_naive_daily', 'seasonal_naive_weekly', 'combined')"));
    }
}
