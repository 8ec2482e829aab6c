using Confluent.Kafka;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Sensors.Network;
using StreamHealth.Sensors.Simulation;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>Load harness: the sensors windowed-metrics topology end to end on ONE stream thread against the embedded Kafka
/// (same process). The simulator's network (<c>districts</c> districts of 7 nodes and 8 series each, <see cref="NetworkSimulator"/>)
/// over <c>days</c> days at one reading per minute per series, with its late, duplicate and
/// out-of-order deliveries and its sensor faults, is pre-produced onto a readings topic keyed by node (Avro, the stand-in
/// registry over BENCH_PG); the clock runs from the first processed record to the last. Every reading is decoded,
/// validated, converted, put into its minute in RocksDB, and each closed 1-, 15- and 60-minute window is computed from its
/// minutes and emitted.</summary>
public static class SensorsLoopHarness
{
    public static int Run(int districts, int days)
    {
        using var cluster = EmbeddedKafkaCluster.Start(1, topics: []);
        const string readingsTopic = "sensors-bench.readings", metricsTopic = "sensors-bench.metrics", districtTopic = "sensors-bench.district-windows";
        // 8 partitions keep each under the embedded broker's ~5 MiB per-partition retention.
        cluster.CreateTopic(readingsTopic, 8);
        cluster.CreateTopic(metricsTopic, 8);
        cluster.CreateTopic(districtTopic, 8);
        cluster.CreateTopic(readingsTopic + Topics.DeadLetterSuffix, 1);
        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        var keys = registry.SerDes<StreamHealth.Schemas.Avro.Common.SensorKey>();
        var values = registry.SerDes<StreamHealth.Schemas.Avro.Sensors.SensorReading>();
        var keyContext = new SerializationContext(MessageComponentType.Key, readingsTopic);
        var valueContext = new SerializationContext(MessageComponentType.Value, readingsTopic);
        var simulator = new NetworkSimulator(new SimulationOptions
        {
            Districts = districts, Days = days, StartUnixMs = DateTimeOffset.UtcNow.AddDays(-days - 1).ToUnixTimeMilliseconds(),
        });
        using var postgres = Npgsql.NpgsqlDataSource.Create(HarnessHost.Postgres);
        NodeRegistry.RegisterAsync(postgres, simulator.RegisteredNodes).GetAwaiter().GetResult();
        var records = 0;
        var keyBytes = new Dictionary<string, byte[]>();
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
               {
                   BootstrapServers = cluster.BootstrapServers, LingerMs = 5, QueueBufferingMaxMessages = 1_000_000,
               }).Build())
        {
            foreach (var r in simulator.Readings())
            {
                if (!keyBytes.TryGetValue(r.NodeId, out var key))
                    keyBytes[r.NodeId] = key = keys.Serialize(new StreamHealth.Schemas.Avro.Common.SensorKey { node_id = r.NodeId }, keyContext);
                p.ProduceBlocking(readingsTopic, new Message<byte[], byte[]> { Key = key, Value = values.Serialize(r.ToAvro(), valueContext) });
                records++;
            }
            p.Flush(TimeSpan.FromMinutes(1));
        }

        var stateDir = Directory.CreateTempSubdirectory("streamhealth-sensors-loop-").FullName;
        try
        {
            var options = HarnessHost.Options(cluster, stateDir, registry: registry);
            using var host = new StreamHost(options, [SensorsTopology.Create(new NodeRegistry(postgres, NodeRegistry.DefaultRefresh), new SensorsOptions(), "sensors-bench", readingsTopic, metricsTopic, districtTopic)], HarnessHost.Logs());
            host.Start();
            var perSecond = HarnessHost.RecordsPerSecond(host, records);
            var snapshot = host.Metrics.Snapshot();
            Console.WriteLine($"sensors windowed metrics, {HarnessHost.Describe(options)}, 8 partitions, {simulator.Nodes.Count} nodes " +
                              $"({districts} simulated districts, {days} days, 1 reading/min per series), embedded Kafka (same process):");
            Console.WriteLine($"  {records:N0} readings: {perSecond,10:N0} readings/s end to end, {host.Metrics.Emitted:N0} windows and dead letters out " +
                              $"(process p50 {snapshot.ProcessP50Us:F0} µs, p99 {snapshot.ProcessP99Us:F0} µs, dead letters {host.Metrics.DeadLettered}: " +
                              "the simulator's deliveries later than the grace)");
            return 0;
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }
}
