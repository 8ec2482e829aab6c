using Confluent.Kafka;
using Npgsql;
using StreamHealth.Runtime.Storage;
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

/// <summary>`streamhealth run --topology sensors,sensors-districts` (both stages and their sinks, as deployed) killed with SIGKILL
/// mid-stream over a simulated day of two districts with late, duplicate and out-of-order deliveries: after a restart every
/// window is stored once with exactly the statistics an in-process windowing of the same deliveries gives (nothing lost, nothing
/// counted twice), and every closed quarter hour and hour of every series has its quality verdict.</summary>
public sealed class SensorsCrashTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public async Task A_sensors_processor_killed_mid_stream_loses_no_window_and_counts_no_reading_twice()
    {
        var database = LocalServices.NewDatabaseName("sensors_crash");
        var connectionString = LocalServices.PostgresConnectionString(database);
        await PostgresMigrator.MigrateAsync(connectionString);
        using var registry = TestRegistry.Start(connectionString);
        await using var db = NpgsqlDataSource.Create(connectionString);
        // `run` against the embedded broker needs its stores' changelogs to exist (`streamhealth kafka` creates them).
        var nodes = new NodeRegistry(db, NodeRegistry.DefaultRefresh);
        foreach (var topology in new[] { SensorsTopology.Create(nodes), DistrictTopology.Create(nodes) })
            foreach (var changelog in topology.ChangelogTopics()) kafka.Cluster.CreateTopic(changelog, Topics.DefaultPartitions);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-sensors-kill-").FullName;
        var env = ChildHost.RunEnvironment(kafka.BootstrapServers, stateDir, database, registry.Url);
        string[] args = ["run", "--topology", "sensors,sensors-districts", "--host-id", "sensors-kill-test"];

        // One day of two districts: a district's windows all go to one partition of sensors.district-windows, and the embedded
        // broker keeps about 5 MiB a partition (two days of one district, ~22k windows, outgrew it in CI while the district
        // stage lagged, and the oldest windows were gone before it read them). A real cluster keeps days.
        var start = DateTimeOffset.UtcNow.AddDays(-1).AddHours(-1).ToUnixTimeMilliseconds() / 3_600_000 * 3_600_000;
        var simulator = new NetworkSimulator(new SimulationOptions
        {
            Districts = 2, MetersPerDistrict = 2, Days = 1, StartUnixMs = start, Seed = 11,
            LateFraction = 0.01, DuplicateFraction = 0.01, OutOfOrderFraction = 0.01,
        });
        await NodeRegistry.RegisterAsync(db, simulator.RegisteredNodes);
        var readings = simulator.Readings().ToList();
        void Produce(IEnumerable<StreamHealth.Sensors.Simulation.SimulatedReading> batch)
        {
            using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers, LingerMs = 5 }).Build();
            var keys = registry.Connection.SerDes<SensorKey>();
            var values = registry.Connection.SerDes<SensorReading>();
            foreach (var r in batch)
                StreamHealth.Runtime.Kafka.ProducerExtensions.ProduceBlocking(p, Topics.SensorsReadings, new Message<byte[], byte[]>
                {
                    Key = keys.Serialize(new SensorKey { node_id = r.NodeId }, new SerializationContext(MessageComponentType.Key, Topics.SensorsReadings)),
                    Value = values.Serialize(r.ToAvro(), new SerializationContext(MessageComponentType.Value, Topics.SensorsReadings)),
                });
            if (p.Flush(TimeSpan.FromSeconds(60)) > 0) throw new TimeoutException("readings not acknowledged");
        }

        // What the windows must be: the same deliveries windowed in process with the topology's rules.
        var kinds = simulator.Nodes.ToDictionary(n => n.NodeId, n => NodeKinds.Parse(n.Kind));
        var windowing = new TopologyWindows();
        var expected = new List<NodeWindow>();
        foreach (var r in readings) windowing.Add(r.NodeId, kinds[r.NodeId], r.Metric, r.TimeUnixMs, r.Value, expected);
        try
        {
            var half = readings.Count / 2;
            using (var first = ChildHost.Start(args, env))
            {
                Produce(readings.Take(half));
                WaitFor(() => Progress(kafka.BootstrapServers, SensorsTopology.ApplicationId, Topics.SensorsReadings, 4).Committed >= 3_000,
                    TimeSpan.FromSeconds(90), () => $"no progress before the kill:\n{first.Output}");
                first.KillHard();
            }
            Produce(readings.Skip(half));
            using (var second = ChildHost.Start(args, env))
            {
                WaitFor(() => Count(db, "SELECT count(*) FROM sensors.window_metrics") >= expected.Count, TimeSpan.FromSeconds(180),
                    () => $"windows {Count(db, "SELECT count(*) FROM sensors.window_metrics")}/{expected.Count}\n{second.Output}");
                // Every closed quarter hour and hour judged (the district stage runs behind the windows).
                var judged = expected.Count(w => w.WindowMinutes is 15 or 60);
                WaitFor(() => Count(db, "SELECT count(*) FROM sensors.window_quality") >= judged, TimeSpan.FromSeconds(120),
                    () => $"quality verdicts {Count(db, "SELECT count(*) FROM sensors.window_quality")}/{judged}\n{second.Output}");
                Assert.Equal(0, second.Terminate());
            }

            var stored = new Dictionary<(string, string, int, long), (int Count, int Duplicates, double? Mean)>();
            await using (var cmd = db.CreateCommand("SELECT node_id, metric, window_minutes, window_start, reading_count, duplicate_count, mean FROM sensors.window_metrics"))
            await using (var reader = await cmd.ExecuteReaderAsync())
                while (await reader.ReadAsync())
                    stored[(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), new DateTimeOffset(reader.GetDateTime(3)).ToUnixTimeMilliseconds())] =
                        (reader.GetInt32(4), reader.GetInt32(5), reader.IsDBNull(6) ? null : reader.GetDouble(6));
            Assert.Equal(expected.Count, stored.Count);
            var wrong = new List<string>();
            foreach (var w in expected)
            {
                if (!stored.TryGetValue((w.NodeId, w.Metric, w.WindowMinutes, w.WindowStartUnixMs), out var row)) wrong.Add($"{w.NodeId} {w.Metric} {w.WindowMinutes} {w.WindowStartUnixMs}: missing");
                else if (row.Count != w.ReadingCount || row.Duplicates != w.DuplicateCount
                         || (row.Mean is { } mean ? Math.Abs(mean - w.Mean) > 1e-9 : !double.IsNaN(w.Mean)))
                    wrong.Add($"{w.NodeId} {w.Metric} {w.WindowMinutes} {w.WindowStartUnixMs}: {row} vs ({w.ReadingCount}, {w.DuplicateCount}, {w.Mean})");
            }
            Assert.True(wrong.Count == 0, $"{wrong.Count} of {expected.Count} windows differ: {string.Join("; ", wrong.Take(5))}");
            Assert.Equal(expected.Count(w => w.WindowMinutes is 15 or 60), Count(db, "SELECT count(*) FROM sensors.window_quality"));
            // Late, duplicate and out-of-order deliveries and the replay after the kill are all handled, none dead-lettered.
            Assert.Equal(0, Count(db, "SELECT count(*) FROM streamhealth.dead_letters"));
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static long Count(NpgsqlDataSource db, string sql)
    {
        using var cmd = db.CreateCommand(sql);
        return (long)cmd.ExecuteScalar()!;
    }
}
