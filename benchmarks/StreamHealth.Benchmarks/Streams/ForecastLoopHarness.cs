using System.Diagnostics;
using System.Globalization;
using Confluent.Kafka;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Service;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>Load harness: the forecast consumer end to end against the embedded Kafka (same process: broker, consumer,
/// ONNX Runtime, producers and the latency reader share the machine's 2 cores). Requests carry real 8-hour windows
/// (the 19-person Hall 2018 set, ../shared/data/cgm: every run of 96 readings 5 minutes apart), one user per request.
/// For each MaxBatchSize:
/// <list type="number">
/// <item>throughput: N requests pre-produced, the consumer started; forecasts/s from the first request read to the
/// last forecast in the output topic (its high watermark);</item>
/// <item>latency: the consumer running, requests produced at fixed rates (open loop) with their produce time as the
/// record timestamp, which the forecast carries; latency = forecast read by a reader − request produced.</item>
/// </list>
/// Requests and forecasts are Avro through the stand-in schema registry (<see cref="HarnessHost.Registry"/>, over BENCH_PG).</summary>
public static class ForecastLoopHarness
{
    private const int Partitions = 16;   // keeps each partition under the embedded broker's ~5 MiB retention at 10k requests/s

    public static int Run(int requests, string modelPath, string sharedData, int[] batchSizes, int[] ratesPerSecond, int seconds, int intraOpThreads,
        int maxWaitMs)
    {
        var windows = HallWindows(Path.Combine(sharedData, "cgm", "hall2018_19_subjects.csv"));
        using var cluster = EmbeddedKafkaCluster.Start(1, topics: []);
        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        Console.WriteLine($"forecast loop: model {modelPath}, {windows.Count:N0} real windows (Hall 2018), 10 MC samples, quantiles 0.05/0.25/0.75/0.95, " +
                          $"MaxWaitMs {maxWaitMs}, intra-op threads {intraOpThreads}, embedded Kafka ({Partitions} partitions), {Environment.ProcessorCount} cores");
        var failures = 0;
        foreach (var batch in batchSizes)
        {
            var options = new ForecastOptions
            {
                ModelPath = modelPath, Seed = 1, McSamples = 10, MaxBatchSize = batch, MaxWaitMs = maxWaitMs, IntraOpThreads = intraOpThreads,
            };
            var (rate, meanBatch, modelMs, quantileMs, dead) = Throughput(cluster, registry, options, windows, requests);
            Console.WriteLine($"  MaxBatchSize {batch,5}: {rate,8:N0} forecasts/s ({requests:N0} pre-produced), batches of {meanBatch:F1} on average, " +
                              $"per batch: model {modelMs:F2} ms, quantiles {quantileMs:F2} ms; dead letters {dead}");
            if (dead > 0) failures++;
            foreach (var perSecond in ratesPerSecond)
            {
                var (p50, p99, max, received, sent) = Latency(cluster, registry, options, windows, perSecond, seconds);
                Console.WriteLine($"  {"",17}  at {perSecond,6:N0} requests/s for {seconds} s: p50 {p50,6:F1} ms, p99 {p99,7:F1} ms, max {max,7:F1} ms " +
                                  $"({received:N0} of {sent:N0} forecasts)");
                if (received < sent) failures++;
            }
        }
        return failures == 0 ? 0 : 1;
    }

    private static (double Rate, double MeanBatch, double ModelMs, double QuantileMs, long Dead) Throughput(
        EmbeddedKafkaCluster cluster, SchemaRegistryConnection registry, ForecastOptions options, List<float[]> windows, int count)
    {
        var names = NewTopics(cluster, $"fc-tp-{options.MaxBatchSize}");
        Produce(cluster.BootstrapServers, registry, names.RequestsTopic, windows, count, perSecond: 0, interactiveEvery: 0);
        using var consumer = new ForecastConsumer(options, OnnxGlucoseForecaster.Open(options),
            new ForecastConsumerSettings(cluster.BootstrapServers, FetchWaitMaxMs: 2), registry, names);
        consumer.Start();
        while (consumer.Consumed == 0) Thread.Sleep(1);
        var clock = Stopwatch.StartNew();
        using var watermarks = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = cluster.BootstrapServers, GroupId = "watermarks" }).Build();
        long Written() => Enumerable.Range(0, Partitions)
            .Sum(p => watermarks.QueryWatermarkOffsets(new TopicPartition(names.ForecastsTopic, p), TimeSpan.FromSeconds(5)).High.Value);
        var deadline = DateTime.UtcNow.AddMinutes(5);
        while (Written() < count && DateTime.UtcNow < deadline) Thread.Sleep(5);
        var seconds = clock.Elapsed.TotalSeconds;
        return (count / seconds, (double)consumer.BatchedRequests / consumer.Batches, consumer.InferenceTime.TotalMilliseconds / consumer.Batches,
            consumer.SummaryTime.TotalMilliseconds / consumer.Batches, consumer.DeadLettered);
    }

    private static (double P50, double P99, double Max, int Received, int Sent) Latency(
        EmbeddedKafkaCluster cluster, SchemaRegistryConnection registry, ForecastOptions options, List<float[]> windows, int perSecond, int seconds)
    {
        var names = NewTopics(cluster, $"fc-lat-{options.MaxBatchSize}-{perSecond}");
        using var consumer = new ForecastConsumer(options, OnnxGlucoseForecaster.Open(options),
            new ForecastConsumerSettings(cluster.BootstrapServers, FetchWaitMaxMs: 2), registry, names);
        consumer.Start();
        var total = perSecond * seconds;
        var latencies = new List<double>(total);
        using var joined = new ManualResetEventSlim();
        var reader = new Thread(() =>
        {
            using var c = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig
            {
                BootstrapServers = cluster.BootstrapServers, GroupId = "latency-reader", AutoOffsetReset = AutoOffsetReset.Earliest, FetchWaitMaxMs = 2,
            }).Build();
            c.Assign(Enumerable.Range(0, Partitions).Select(p => new TopicPartitionOffset(names.ForecastsTopic, p, Offset.Beginning)));
            joined.Set();
            var deadline = DateTime.UtcNow.AddSeconds(seconds + 30);
            while (latencies.Count < total && DateTime.UtcNow < deadline)
            {
                if (c.Consume(TimeSpan.FromMilliseconds(100)) is not { } r) continue;
                latencies.Add((DateTime.UtcNow - DateTime.UnixEpoch).TotalMilliseconds - r.Message.Timestamp.UnixTimestampMs);   // ms timestamps: ±1 ms
            }
        }) { IsBackground = true };
        reader.Start();
        joined.Wait();
        // Warm-up: the consumer's group join and first batches, not counted.
        Produce(cluster.BootstrapServers, registry, names.RequestsTopic, windows, 200, perSecond: 200, interactiveEvery: 0);
        while (latencies.Count < 200) Thread.Sleep(10);
        latencies.Clear();
        Produce(cluster.BootstrapServers, registry, names.RequestsTopic, windows, total, perSecond, interactiveEvery: 0, firstUser: 200);
        reader.Join();
        var sorted = latencies.Order().ToArray();
        if (sorted.Length == 0) return (double.NaN, double.NaN, double.NaN, 0, total);
        return (sorted[sorted.Length / 2], sorted[(int)(sorted.Length * 0.99)], sorted[^1], sorted.Length, total);
    }

    private static ForecastNames NewTopics(EmbeddedKafkaCluster cluster, string prefix)
    {
        var names = new ForecastNames(prefix + ".requests", prefix + ".forecasts", prefix + "-forecaster");
        cluster.CreateTopic(names.RequestsTopic, Partitions);
        cluster.CreateTopic(names.ForecastsTopic, Partitions);
        cluster.CreateTopic(names.DeadLetterTopic, 1);
        return names;
    }

    /// <summary>One request per user (user i gets window i mod windows); timestamps are produce times.</summary>
    private static void Produce(string bootstrap, SchemaRegistryConnection registry, string topic, List<float[]> windows, int count, int perSecond,
        int interactiveEvery, int firstUser = 0)
    {
        var keys = registry.SerDes<AvroRecords.Common.UserKey>();
        var values = registry.SerDes<AvroRecords.Cgm.CgmForecastRequest>();
        var keyContext = new SerializationContext(MessageComponentType.Key, topic);
        var valueContext = new SerializationContext(MessageComponentType.Value, topic);
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrap, LingerMs = perSecond > 0 ? 1 : 5, QueueBufferingMaxMessages = 1_000_000,
        }).Build();
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            if (perSecond > 0)
            {
                var due = TimeSpan.FromSeconds((double)i / perSecond);
                while (clock.Elapsed < due) Thread.Sleep(TimeSpan.FromTicks(Math.Max(1, (due - clock.Elapsed).Ticks / 2)));
            }
            var user = $"bench-{firstUser + i}";
            var request = new AvroRecords.Cgm.CgmForecastRequest
            {
                event_time_unix_ms = AvroTime.FromUnixMs(1_795_000_000_000), request_id = $"{user}:1", user_id = user, step_minutes = 5,
                interactive = interactiveEvery > 0 && i % interactiveEvery == 0,
                glucose_mg_dl = windows[(firstUser + i) % windows.Count],
            };
            p.ProduceBlocking(topic, new Message<byte[], byte[]>
            {
                Key = keys.Serialize(new AvroRecords.Common.UserKey { user_id = user }, keyContext), Value = values.Serialize(request, valueContext),
                Timestamp = new Timestamp(DateTime.UtcNow, TimestampType.CreateTime),
            });
        }
        p.Flush(TimeSpan.FromMinutes(1));
    }

    /// <summary>Every run of 96 consecutive readings 5 minutes (± 1) apart, oldest first, one window per start (stride 1).</summary>
    private static List<float[]> HallWindows(string path)
    {
        var windows = new List<float[]>();
        foreach (var (_, readings) in CgmLoopHarness.LoadHall(path))
        {
            var runStart = 0;
            for (var i = 1; i <= readings.Count; i++)
            {
                var regular = i < readings.Count && Math.Abs(readings[i].TimeMs - readings[i - 1].TimeMs - 300_000) <= 60_000;
                if (regular) continue;
                for (var s = runStart; s + 96 <= i; s++)
                    windows.Add([.. readings.Skip(s).Take(96).Select(r => (float)r.MgDl)]);
                runStart = i;
            }
        }
        if (windows.Count == 0) throw new InvalidDataException($"{path}: no run of 96 readings 5 minutes apart");
        return windows;
    }

    public static int[] ParseList(string? text, int[] fallback) =>
        text is null ? fallback : [.. text.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture))];
}
