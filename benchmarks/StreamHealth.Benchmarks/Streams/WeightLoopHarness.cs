using Confluent.Kafka;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Weight.Pipeline;
using StreamHealth.Weight.Samples;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>Load harness: the weights topology end to end on ONE stream thread against the embedded
/// Kafka (same process). The synthetic cohort's measurements are pre-produced onto a raw topic (keyed by
/// user, in time order); the clock runs from the first processed record to the last. Each record is
/// decoded, the user's filter state read from the processor's decoded cache (else Streamiz's caching RocksDB store),
/// filtered, written back, and a WeightResult produced; changelog and commit every second. The host creates the
/// changelog topic (<see cref="HarnessHost"/>).</summary>
public static class WeightLoopHarness
{
    public static int Run(int users)
    {
        using var cluster = EmbeddedKafkaCluster.Start(1, topics: []);
        var names = new WeightPipelineNames("weights-bench", "weights-bench.raw", "weights-bench.filtered");
        cluster.CreateTopic(names.RawTopic, 4);
        cluster.CreateTopic(names.FilteredTopic, 4);
        cluster.CreateTopic(names.RawTopic + Topics.DeadLetterSuffix, 1);

        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        var keys = registry.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var values = registry.SerDes<StreamHealth.Schemas.Avro.Weights.WeightMeasurement>();
        var cohort = new SyntheticWeightCohort(users);
        var records = 0;
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
               {
                   BootstrapServers = cluster.BootstrapServers, LingerMs = 5, QueueBufferingMaxMessages = 1_000_000,
               }).Build())
        {
            foreach (var w in cohort.Stream())
            {
                var m = new WeightMeasurement
                {
                    SchemaVersion = 1, EventTimeUnixMs = w.Observation.TimeUnixMs, MeasurementId = $"m{records}", UserId = w.UserId,
                    Value = w.Observation.Value, Unit = w.Observation.Unit, Source = w.Observation.Source,
                };
                p.ProduceBlocking(names.RawTopic, new Message<byte[], byte[]>
                {
                    Key = WeightWire.Key(keys, names.RawTopic, w.UserId), Value = WeightWire.Measurement(values, names.RawTopic, m),
                });
                records++;
            }
            p.Flush(TimeSpan.FromMinutes(1));
        }

        var stateDir = Directory.CreateTempSubdirectory("streamhealth-weight-loop-").FullName;
        try
        {
            var options = HarnessHost.Options(cluster, stateDir, registry: registry);
            using var host = new StreamHost(options,
                [WeightTopology.Create(null, names.ApplicationId, names.RawTopic, names.FilteredTopic)], HarnessHost.Logs());
            host.Start();
            var perSecond = HarnessHost.RecordsPerSecond(host, records);
            Console.WriteLine($"weights topology, {HarnessHost.Describe(options)}, 4 partitions, {users:N0} synthetic users, embedded Kafka (same process):");
            Console.WriteLine($"  {records:N0} measurements: {perSecond,10:N0} measurements/s end to end " +
                              $"(process p50 {host.Metrics.Snapshot().ProcessP50Us:F0} µs, p99 {host.Metrics.Snapshot().ProcessP99Us:F0} µs, dead letters {host.Metrics.DeadLettered})");
            return host.Metrics.DeadLettered == 0 ? 0 : 1;
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }
}

/// <summary>Runs an action on Dispose (a using for something that is only async-disposable).</summary>
internal sealed class Disposing(Action dispose) : IDisposable
{
    public void Dispose() => dispose();
}
