using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Confluent.Kafka;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using StackExchange.Redis;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using StreamHealth.Gateway.Observability;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Streams.Reference;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Streams;

/// <summary>Counts records and punctuations; stream-time punctuation writes its count to the store.</summary>
public sealed class TimedProcessor : StreamProcessor<string, long>
{
    public const string Store = "timed";
    private readonly ConcurrentQueue<(PunctuationType Type, long AtUnixMs)> _fired = new();
    private IKeyValueStore<string, Count> _store = null!;

    public TimedProcessor() : base(null!, null!, null!, "") { }

    public TimedProcessor(ProcessorServices services, ConcurrentQueue<(PunctuationType Type, long AtUnixMs)> fired)
        : base(services, new StringSerDes(), BigEndianInt64SerDes.Instance, "timed") => _fired = fired;

    /// <summary>A count (a class: Streamiz stores and queries reference values).</summary>
    public sealed record Count(long N)
    {
        public static readonly BigEndianInt64SerDes<Count> SerDes = new(c => c.N, n => new Count(n));
    }

    public static StreamTopology Topology(string source, string appId, ConcurrentQueue<(PunctuationType Type, long AtUnixMs)> fired) => new()
    {
        ApplicationId = appId,
        SourceTopic = source,
        ProcessorName = "timed",
        Processor = services => TransformerBuilder.New<byte[], byte[], byte[], Emission>()
            .Transformer<TimedProcessor>(services, fired)
            .StateStore(Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(Store), new StringSerDes(), Count.SerDes).WithCachingEnabled())
            .Build(),
    };

    protected override void Init()
    {
        _store = (IKeyValueStore<string, Count>)Context.GetStateStore(Store);
        Context.Schedule(TimeSpan.FromMinutes(1), PunctuationType.STREAM_TIME, now => Punctuation(StreamTime, now));
        Context.Schedule(TimeSpan.FromMilliseconds(200), PunctuationType.PROCESSING_TIME,
            now => Punctuation(t => _fired.Enqueue((PunctuationType.PROCESSING_TIME, t)), now));
    }

    protected override void Process(in InputRecord<string, long> record) => Increment("records");

    private void StreamTime(long timeUnixMs)
    {
        _fired.Enqueue((PunctuationType.STREAM_TIME, timeUnixMs));
        Increment("stream-punctuations");
    }

    private void Increment(string key) => _store.Put(key, new Count((_store.Get(key)?.N ?? 0) + 1));
}

public sealed class PunctuationAndMetricsTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public void Stream_time_punctuation_follows_record_timestamps_and_wall_clock_punctuation_fires_without_input()
    {
        var source = kafka.NewTopic("punct", 1);
        var appId = source + "-app";
        var fired = new ConcurrentQueue<(PunctuationType Type, long AtUnixMs)>();
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-punct-").FullName;
        try
        {
            using var host = new StreamHost(new StreamHostOptions { BootstrapServers = kafka.BootstrapServers, StateDirectory = stateDir,
                CreateInternalTopic = (topic, partitions) => kafka.Cluster.CreateTopic(topic, partitions) }, [TimedProcessor.Topology(source, appId, fired)]);
            host.Start();
            WaitFor(() => host.Metrics.ActiveTasks == 1, TimeSpan.FromSeconds(30), () => "task not assigned");
            // Event times (seconds after t0), deliberately including an out-of-order record: stream time never goes back.
            // One record at a time, each processed before the next is sent: Streamiz checks stream-time punctuation after a
            // batch of records, so records arriving together would advance stream time in one step (as they may in Kafka Streams).
            var t0 = DateTimeOffset.Parse("2026-01-01T00:00:00Z").ToUnixTimeMilliseconds();
            var seconds = new[] { 0, 30, 61, 10, 90, 200, 201 };
            using (var p = new ProducerBuilder<string, long>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers })
                       .SetValueSerializer(StreamTestKit.BigEndianInt64.Instance).Build())
            {
                for (var i = 0; i < seconds.Length; i++)
                {
                    p.Produce(source, new Message<string, long> { Key = "k", Value = 1, Timestamp = new Timestamp(t0 + seconds[i] * 1000L, TimestampType.CreateTime) });
                    p.Flush(TimeSpan.FromSeconds(10));
                    WaitFor(() => host.Metrics.Processed == i + 1, TimeSpan.FromSeconds(30), () => $"processed {host.Metrics.Processed}/{i + 1}");
                }
            }
            var wallClockAtIdle = fired.Count(f => f.Type == PunctuationType.PROCESSING_TIME);
            Thread.Sleep(1_500);   // idle: only wall-clock punctuation may fire now

            var streamTimes = fired.Where(f => f.Type == PunctuationType.STREAM_TIME).Select(f => (f.AtUnixMs - t0) / 1000).ToList();
            // Streamiz (like Kafka Streams) aligns a stream-time schedule to 0, so the first record fires it at once (0 s) and
            // the next is due at t0+60 s; 30 s does not fire; 61 s fires (next 120 s); the late 10 s record leaves stream time
            // at 61 s; 90 s does not fire; 200 s fires once (the missed 120 s and 180 s collapse, next 240 s); 201 s does not.
            // (The old runtime armed the schedule at the first record instead, so it fired at [61, 200] only.)
            Assert.Equal([0L, 61L, 200L], streamTimes);
            var wallClockIdle = fired.Count(f => f.Type == PunctuationType.PROCESSING_TIME) - wallClockAtIdle;
            Assert.True(wallClockIdle >= 3, $"wall-clock punctuation fires while no records arrive: {wallClockIdle} in 1.5 s at 200 ms");
            Assert.Equal(7, host.Metrics.Processed);
            WaitFor(() => Query(host, appId, "stream-punctuations") == 3 && Query(host, appId, "records") == 7, TimeSpan.FromSeconds(10),
                () => $"store: punctuations {Query(host, appId, "stream-punctuations")}, records {Query(host, appId, "records")}");
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    /// <summary>A host's figures go one way: logged, exported at its /metrics (its own, Streamiz's thread sensors and librdkafka's
    /// statistics, by host, topology, topic and partition), and read back from there by the gateway, which finds the host in the
    /// discovery registry.</summary>
    [Fact]
    public async Task Host_metrics_are_logged_exported_with_kafka_statistics_and_read_from_its_endpoint_by_the_gateway()
    {
        var source = kafka.NewTopic("metrics", 2);
        var appId = source + "-app";
        kafka.Cluster.CreateTopic(KeySumTopology.OutputTopic(source), 2);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-metrics-").FullName;
        var logs = new TestLogs();
        try
        {
            using var host = new StreamHost(new StreamHostOptions { BootstrapServers = kafka.BootstrapServers, StateDirectory = stateDir,
                KafkaStatisticsIntervalMs = 500,
                CreateInternalTopic = (topic, partitions) => kafka.Cluster.CreateTopic(topic, partitions) }, [KeySumTopology.Create(source, appId)], logs);
            host.Start();
            ProduceAmounts(kafka.BootstrapServers, source, 2_000, 20, seed: 5, []);
            WaitFor(() => host.Metrics.Processed == 2_000 && host.Metrics.Emitted == 2_000, TimeSpan.FromSeconds(30),
                () => $"processed {host.Metrics.Processed}, emitted {host.Metrics.Emitted}");

            using var redis = await ConnectionMultiplexer.ConnectAsync(LocalServices.RedisConfiguration);
            var hostId = "metrics-test-" + Guid.NewGuid().ToString("N")[..6];
            var settings = LocalServices.Overrides(LocalServices.NewDatabaseName("gateway_streams"), kafka.BootstrapServers);
            var registryKey = settings["Streams:RegistryKey"]!;
            await using var endpoint = await StoreQueryServer.StartAsync([host], "http://127.0.0.1:0", null, logs);
            using var reporter = new StreamMetricsReporter(hostId, [appId], host, logs.CreateLogger("test"), redis.GetDatabase(), TimeSpan.FromMinutes(1),
                registryKey: registryKey, url: endpoint.Url);
            var report = reporter.Report();
            Assert.Equal(2_000, report.Processed);
            Assert.Equal(2_000, report.Emitted);
            Assert.Equal(0, report.DeadLettered);
            Assert.Equal(2, report.ActiveTasks);
            Assert.True(report.ProcessP99Us >= report.ProcessP50Us && report.ProcessP50Us > 0);
            // Tasks are Streamiz's "subtopology-partition" ids, keyed by topology.
            Assert.Equal(["0-0", "0-1"], report.Tasks.Select(t => t.Task));
            Assert.All(report.Tasks, t => Assert.Equal(appId, t.ApplicationId));
            Assert.Contains($"streams {hostId}: in ", logs.Text);
            Assert.True(await redis.GetDatabase().HashExistsAsync(registryKey, hostId), "registered for discovery");

            // librdkafka's statistics (every 500 ms here) and Streamiz's sensors, read by the host's probe each second.
            using var scraper = new HttpClient();
            List<PrometheusSample> Mine() => PrometheusText.Parse(scraper.GetStringAsync(endpoint.Url + "/metrics").Result, out _)
                .Where(s => s.Label("host") == hostId).ToList();
            double? Of(List<PrometheusSample> samples, string name, params (string Label, string Value)[] labels) =>
                samples.FirstOrDefault(s => s.Name == name && labels.All(l => s.Label(l.Label) == l.Value))?.Value;
            List<PrometheusSample> scraped = [];
            WaitFor(() => Of(scraped = Mine(), KafkaClientMetrics.ConsumedMessages, ("group", appId)) >= 2_000
                          && Of(scraped, KafkaClientMetrics.ConsumerLag, ("group", appId), ("topic", source), ("partition", "1")) is not null,
                TimeSpan.FromSeconds(30), () => "scraped: " + string.Join("; ", scraped.Where(s => s.Name.Contains("kafka") || s.Name.Contains("streamiz"))));
            // Both partitions are read to their end and committed: librdkafka's lag of each is 0 (the high watermark minus the
            // committed position).
            foreach (var partition in new[] { "0", "1" })
                WaitFor(() => Of(Mine(), KafkaClientMetrics.ConsumerLag, ("group", appId), ("topic", source), ("partition", partition)) == 0,
                    TimeSpan.FromSeconds(30), () => $"lag of {source}[{partition}]: {Of(Mine(), KafkaClientMetrics.ConsumerLag, ("topic", source), ("partition", partition))}");
            scraped = Mine();
            Assert.True(Of(scraped, KafkaClientMetrics.ConsumedBytes, ("group", appId)) > 2_000 * 8, "bytes received");
            Assert.True(Of(scraped, KafkaClientMetrics.ProducedMessages, ("group", appId)) >= 2_000, "the 2,000 sums (and their changelog) sent");
            Assert.NotNull(Of(scraped, KafkaClientMetrics.ProducerQueueMessages, ("group", appId)));
            Assert.Contains(scraped, s => s.Name == KafkaClientMetrics.BrokerRtt && s.Label("broker") is not null && s.Value >= 0);
            Assert.True(Of(scraped, KafkaClientMetrics.ThreadOperations, ("group", appId), ("operation", "commit")) > 0, "Streamiz's commits");
            Assert.True(Of(scraped, KafkaClientMetrics.ThreadOperations, ("group", appId), ("operation", "poll")) > 0, "Streamiz's polls");
            Assert.Equal(2_000, Of(scraped, StreamTelemetry.Processed));
            Assert.Equal(1, Of(scraped, StreamTelemetry.Topology, ("application", appId)));

            await using var app = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
                b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
            using var client = app.CreateClient();
            JsonElement mine = default;
            WaitFor(() =>
            {
                using var response = client.GetAsync("/api/v1/streams").Result;
                if (response.StatusCode != HttpStatusCode.OK) return false;
                var hosts = JsonDocument.Parse(response.Content.ReadAsStringAsync().Result).RootElement.GetProperty("hosts");
                mine = hosts.EnumerateArray().FirstOrDefault(h => h.GetProperty("hostId").GetString() == hostId);
                return mine.ValueKind == JsonValueKind.Object;
            }, TimeSpan.FromSeconds(20), () => "the gateway does not list the host");
            Assert.Equal(2_000, mine.GetProperty("processed").GetInt64());
            Assert.Equal(2_000, mine.GetProperty("emitted").GetInt64());
            Assert.Equal(appId, mine.GetProperty("topologies")[0].GetString());
            // Both tasks are caught up: read back with their partitions and lag, and not stalled.
            Assert.Equal([0, 1], mine.GetProperty("tasks").EnumerateArray().Select(t => t.GetProperty("partition").GetInt32()));
            Assert.All(mine.GetProperty("tasks").EnumerateArray(), t => Assert.False(t.GetProperty("stalled").GetBoolean()));
            Assert.All(mine.GetProperty("tasks").EnumerateArray(), t => Assert.Equal(0, t.GetProperty("lag").GetInt64()));
            // No private report format is written any more, under the old key or a test's.
            var server = redis.GetServer(redis.GetEndPoints()[0]);
            Assert.Empty(server.Keys(pattern: "streamhealth:streams*"));
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    /// <summary>librdkafka's consumer lag as a sink's consumer exports it (its statistics handler, <see cref="KafkaClientMetrics.PublishStatistics"/>):
    /// a consumer that committed after the first of N records of a partition and then stopped reading it (paused) shows
    /// exactly N - 1 for that partition at /metrics.</summary>
    [Fact]
    public async Task A_stopped_consumers_lag_is_exported_exactly_from_librdkafka_statistics()
    {
        var topic = kafka.NewTopic("lag", 2);
        const int records = 25;
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            for (var i = 0; i < records; i++) producer.Produce(new TopicPartition(topic, 1), new Message<byte[], byte[]> { Key = [1], Value = [(byte)i] });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(10)));
        }
        var group = topic + "-sink";
        var owner = new object();
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
            {
                BootstrapServers = kafka.BootstrapServers, GroupId = group, EnableAutoCommit = false, StatisticsIntervalMs = 200,
            })
            .SetStatisticsHandler((_, json) => KafkaClientMetrics.PublishStatistics(owner, group, json)).Build();
        var partition = new TopicPartition(topic, 1);
        consumer.Assign(new TopicPartitionOffset(partition, Offset.Beginning));
        var first = consumer.Consume(TimeSpan.FromSeconds(10));
        Assert.Equal(0, first?.Offset.Value);
        consumer.Commit(first);
        consumer.Pause([partition]);
        await using var endpoint = await StoreQueryServer.StartAsync([], "http://127.0.0.1:0", null, new TestLogs());
        using var scraper = new HttpClient();
        double? Exported() => PrometheusText.Parse(scraper.GetStringAsync(endpoint.Url + "/metrics").Result, out _).FirstOrDefault(s =>
            s.Name == KafkaClientMetrics.ConsumerLag && s.Label("group") == group && s.Label("topic") == topic && s.Label("partition") == "1")?.Value;
        double? Lag()
        {
            // Statistics reach the handler from the consumer's poll; a paused partition returns nothing.
            Assert.Null(consumer.Consume(TimeSpan.FromMilliseconds(100)));
            return Exported();
        }
        try
        {
            WaitFor(() => Lag() == records - 1, TimeSpan.FromSeconds(30), () => $"exported lag {Exported()}");
        }
        finally
        {
            KafkaClientMetrics.ForgetStatistics(owner);
        }
        // Gone from the scrape once forgotten (the exporter caches a scrape for a moment).
        WaitFor(() => Exported() is null, TimeSpan.FromSeconds(10), () => $"still exported: {Exported()}");
    }

    private static long Query(StreamHost host, string appId, string key) =>
        host.TryQuery<string, TimedProcessor.Count>(appId, TimedProcessor.Store, key, out var v) ? v.N : -1;
}
