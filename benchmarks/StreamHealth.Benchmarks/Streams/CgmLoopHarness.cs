using System.Globalization;
using Confluent.Kafka;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>Load harness: the CGM window topology end to end on ONE stream thread against the embedded Kafka
/// (same process). Real readings (the 19-person Hall 2018 set, ../shared/data/cgm) are replicated to
/// <c>copies</c> × 19 users and pre-produced onto a readings topic keyed by user, each user in time order;
/// the clock runs from the first processed record to the last. Each record is decoded and validated, the
/// user's window read from the processor's decoded cache (else Streamiz's caching RocksDB store), the reading aligned
/// into it and the window put back into the store (serialised on every reading: Streamiz has no pre-commit hook);
/// cgm.latest and forecast requests go out on the wall-clock punctuation; changelog and commit every second.
/// The host creates the changelog topic (<see cref="HarnessHost"/>). The topics are Avro through the stand-in schema
/// registry (<see cref="HarnessHost.Registry"/>, over BENCH_PG), as in production.</summary>
public static class CgmLoopHarness
{
    public static int Run(int copies, string sharedData)
    {
        var people = LoadHall(Path.Combine(sharedData, "cgm", "hall2018_19_subjects.csv"));
        using var cluster = EmbeddedKafkaCluster.Start(1, topics: []);
        var names = new CgmPipelineNames("cgm-bench", "cgm-bench.readings", "cgm-bench.latest", "cgm-bench.requests");
        // 8 partitions keep each under the embedded broker's ~5 MiB per-partition retention.
        cluster.CreateTopic(names.ReadingsTopic, 8);
        cluster.CreateTopic(names.LatestTopic, 8);
        cluster.CreateTopic(names.RequestsTopic, 8);
        cluster.CreateTopic(names.ReadingsTopic + Topics.DeadLetterSuffix, 1);

        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        var keys = registry.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var values = registry.SerDes<StreamHealth.Schemas.Avro.Cgm.CgmReading>();
        var keyContext = new SerializationContext(MessageComponentType.Key, names.ReadingsTopic);
        var valueContext = new SerializationContext(MessageComponentType.Value, names.ReadingsTopic);
        var records = 0;
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
               {
                   BootstrapServers = cluster.BootstrapServers, LingerMs = 5, QueueBufferingMaxMessages = 1_000_000,
               }).Build())
        {
            for (var c = 0; c < copies; c++)
            {
                foreach (var (person, readings) in people)
                {
                    var user = $"{person}-{c}";
                    var key = keys.Serialize(new StreamHealth.Schemas.Avro.Common.UserKey { user_id = user }, keyContext);
                    foreach (var (timeMs, mgDl) in readings)
                    {
                        var reading = CgmReadings.FromRow(user, CgmFormat.Unified, CgmRow.Glucose(timeMs, mgDl))!;
                        p.ProduceBlocking(names.ReadingsTopic, new Message<byte[], byte[]> { Key = key, Value = values.Serialize(reading, valueContext) });
                        records++;
                    }
                }
            }
            p.Flush(TimeSpan.FromMinutes(1));
        }

        var stateDir = Directory.CreateTempSubdirectory("streamhealth-cgm-loop-").FullName;
        try
        {
            var options = HarnessHost.Options(cluster, stateDir, registry: registry);
            using var host = new StreamHost(options,
                [CgmTopology.Create(new CgmPipelineOptions(), names.ApplicationId, names.ReadingsTopic, names.LatestTopic, names.RequestsTopic)], HarnessHost.Logs());
            host.Start();
            var perSecond = HarnessHost.RecordsPerSecond(host, records);
            var snapshot = host.Metrics.Snapshot();
            Console.WriteLine($"CGM window topology, {HarnessHost.Describe(options)}, 8 partitions, {copies * people.Count:N0} users (Hall 2018 × {copies}), embedded Kafka (same process):");
            Console.WriteLine($"  {records:N0} readings: {perSecond,10:N0} readings/s end to end " +
                              $"(process p50 {snapshot.ProcessP50Us:F0} µs, p99 {snapshot.ProcessP99Us:F0} µs, dead letters {host.Metrics.DeadLettered})");
            return host.Metrics.DeadLettered == 0 ? 0 : 1;
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    /// <summary>id → (time, mg/dL) in time order, from the iglu packaging of Hall et al. 2018.</summary>
    public static List<(string Person, List<(long TimeMs, double MgDl)> Readings)> LoadHall(string path)
    {
        var people = new Dictionary<string, List<(long, double)>>();
        foreach (var line in File.ReadLines(path).Skip(1))
        {
            var f = line.Split(',');
            var id = f[0].Trim('"');
            var time = DateTime.ParseExact(f[1], "yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal);
            if (!double.TryParse(f[2], NumberStyles.Float, CultureInfo.InvariantCulture, out var gl)) continue;
            if (!people.TryGetValue(id, out var list)) people[id] = list = [];
            list.Add((new DateTimeOffset(time, TimeSpan.Zero).ToUnixTimeMilliseconds(), gl));
        }
        return people.Select(kv => (kv.Key, kv.Value.OrderBy(r => r.Item1).ToList())).ToList();
    }
}
