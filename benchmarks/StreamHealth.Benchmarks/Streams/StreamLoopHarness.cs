using System.Diagnostics;
using Confluent.Kafka;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Streams.Reference;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>Load harness for the whole stream loop: the key-sum (count-per-key) topology on ONE Streamiz stream
/// thread (unless HARNESS_THREADS says otherwise, see <see cref="HarnessHost"/>) against the embedded Kafka — consume,
/// decode, state read/modify/write through Streamiz's caching RocksDB store, one output record per input, changelog +
/// offset commit every commit interval.
/// Phase 1 (throughput): N records pre-produced, time from the first processed record to the last.
/// Phase 2 (latency): records produced at a paced rate with their send time as timestamp; a consumer of
/// the output topic records (receive time − send time) per output: produce → broker → task → broker → reader.</summary>
public static class StreamLoopHarness
{
    private const int Partitions = 4;
    private const int Keys = 10_000;

    public static int Run(int records, int pacedPerSecond, int pacedSeconds, int commitIntervalMs)
    {
        using var cluster = EmbeddedKafkaCluster.Start(1, topics: []);
        var throughput = Throughput(cluster, records, commitIntervalMs);
        var (p50, p99, max, received, early, late) = Latency(cluster, pacedPerSecond, pacedSeconds, commitIntervalMs);
        Console.WriteLine($"stream loop, key-sum topology, {HarnessHost.Describe(HarnessHost.Options(cluster, "", commitIntervalMs))}, {Partitions} partitions, {Keys:N0} keys, embedded Kafka (same process):");
        Console.WriteLine($"  throughput: {throughput,10:N0} records/s end to end ({records:N0} records)");
        Console.WriteLine($"  latency at {pacedPerSecond:N0} records/s for {pacedSeconds} s ({received:N0} outputs): p50 {p50:F1} ms, p99 {p99:F1} ms, max {max:F1} ms");
        // A broker whose per-fetch cost grows with the data it holds shows up as the last window being slower.
        if (early is { } e && late is { } l)
            Console.WriteLine($"  drift: outputs of seconds 1-10 p50 {e.P50:F1} ms, p99 {e.P99:F1} ms; last {10 * pacedPerSecond:N0} outputs received p50 {l.P50:F1} ms, p99 {l.P99:F1} ms");
        return 0;
    }

    private static (string Source, string AppId) Topics(EmbeddedKafkaCluster cluster, string name)
    {
        cluster.CreateTopic(name, Partitions);
        cluster.CreateTopic(KeySumTopology.OutputTopic(name), Partitions);
        cluster.CreateTopic(name + ".dlq", 1);
        // The changelog ({app}-sums-changelog) is created by the host (HarnessHost.Options).
        return (name, name + "-app");
    }

    private static double Throughput(EmbeddedKafkaCluster cluster, int records, int commitIntervalMs)
    {
        var (source, appId) = Topics(cluster, "loop-throughput");
        Produce(cluster.BootstrapServers, source, records, perSecond: 0);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-loop-").FullName;
        try
        {
            using var host = new StreamHost(HarnessHost.Options(cluster, stateDir, commitIntervalMs), [KeySumTopology.Create(source, appId)], HarnessHost.Logs());
            host.Start();
            return HarnessHost.RecordsPerSecond(host, records);
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static (double P50, double P99, double Max, int Received, (double P50, double P99)? Early, (double P50, double P99)? Late) Latency(EmbeddedKafkaCluster cluster, int perSecond, int seconds, int commitIntervalMs)
    {
        var (source, appId) = Topics(cluster, "loop-latency");
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-loop-").FullName;
        try
        {
            using var host = new StreamHost(HarnessHost.Options(cluster, stateDir, commitIntervalMs), [KeySumTopology.Create(source, appId)], HarnessHost.Logs());
            host.Start();
            while (host.Metrics.ActiveTasks < Partitions) Thread.Sleep(10);

            var latencies = new List<double>(perSecond * seconds);
            var total = perSecond * seconds;
            var reader = new Thread(() =>
            {
                using var c = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig
                {
                    BootstrapServers = cluster.BootstrapServers, GroupId = "latency-reader", AutoOffsetReset = AutoOffsetReset.Earliest,
                    FetchWaitMaxMs = 10,
                }).Build();
                c.Subscribe(KeySumTopology.OutputTopic(source));
                var deadline = DateTime.UtcNow.AddSeconds(seconds + 30);
                while (latencies.Count < total && DateTime.UtcNow < deadline)
                {
                    var r = c.Consume(TimeSpan.FromMilliseconds(100));
                    if (r is null) continue;
                    latencies.Add((DateTime.UtcNow - DateTime.UnixEpoch).TotalMilliseconds - r.Message.Timestamp.UnixTimestampMs);   // ms timestamps: ±1 ms
                }
                c.Close();
            }) { IsBackground = true };
            reader.Start();
            Thread.Sleep(2_000);   // reader joined its group
            Produce(cluster.BootstrapServers, source, total, perSecond);
            reader.Join();
            if (Environment.GetEnvironmentVariable("STREAMHEALTH_HARNESS_TRACE") is not null)
                for (var w = 0; w * perSecond < latencies.Count; w++)
                {
                    var window = latencies.Skip(w * perSecond).Take(perSecond).Order().ToArray();
                    Console.WriteLine($"  second {w}: p50 {window[window.Length / 2]:F1} ms, p99 {window[(int)(window.Length * 0.99)]:F1} ms, max {window[^1]:F1} ms");
                }
            // Skip the first second: group join and first fetches, not steady state.
            var steady = latencies.Skip(perSecond).Order().ToArray();
            if (steady.Length == 0) return (double.NaN, double.NaN, double.NaN, latencies.Count, null, null);
            (double, double)? early = null, late = null;
            var windowRecords = 10 * perSecond;
            if (latencies.Count >= perSecond + 2 * windowRecords)
            {
                early = Percentiles(latencies.Skip(perSecond).Take(windowRecords));
                late = Percentiles(latencies.Skip(latencies.Count - windowRecords));
            }
            return (steady[steady.Length / 2], steady[(int)(steady.Length * 0.99)], steady[^1], latencies.Count, early, late);
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static (double P50, double P99) Percentiles(IEnumerable<double> window)
    {
        var sorted = window.Order().ToArray();
        return (sorted[sorted.Length / 2], sorted[(int)(sorted.Length * 0.99)]);
    }

    private static void Produce(string bootstrap, string topic, int count, int perSecond)
    {
        using var p = new ProducerBuilder<string, byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrap, LingerMs = perSecond > 0 ? 1 : 5, QueueBufferingMaxMessages = 1_000_000,
        }).Build();
        var one = BigEndianInt64SerDes.Encode(1);
        var keys = Enumerable.Range(0, Keys).Select(i => $"user-{i}").ToArray();
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            if (perSecond > 0)
            {
                var due = TimeSpan.FromSeconds((double)i / perSecond);
                while (sw.Elapsed < due) Thread.SpinWait(50);
            }
            var message = new Message<string, byte[]>
            {
                Key = keys[i % Keys], Value = one,
                Timestamp = new Timestamp(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), TimestampType.CreateTime),
            };
            p.ProduceBlocking(topic, message);
        }
        p.Flush(TimeSpan.FromMinutes(1));
    }
}
