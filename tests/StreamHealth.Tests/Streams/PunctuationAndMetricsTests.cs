using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Confluent.Kafka;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using StackExchange.Redis;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Streams.Reference;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Streams;

/// <summary>Counts records and punctuations; stream-time punctuation writes its count to the store.</summary>
internal sealed class TimedProcessor(ConcurrentQueue<(PunctuationType Type, long AtUnixMs)> fired) : IProcessor<string, long>
{
    public const string Store = "timed";
    private KeyValueStore<string, long> _store = null!;

    public void Init(IProcessorContext context)
    {
        _store = context.GetStore(Store, Utf8Serde.Instance, Int64Serde.Instance);
        context.Schedule(TimeSpan.FromMinutes(1), PunctuationType.StreamTime);
        context.Schedule(TimeSpan.FromMilliseconds(200), PunctuationType.WallClock);
    }

    public void Process(in StreamRecord<string, long> record)
    {
        _store.TryGet("records", out var n);
        _store.Put("records", n + 1);
    }

    public void Punctuate(PunctuationType type, long timeUnixMs)
    {
        fired.Enqueue((type, timeUnixMs));
        if (type != PunctuationType.StreamTime) return;
        _store.TryGet("stream-punctuations", out var n);
        _store.Put("stream-punctuations", n + 1);
    }
}

public sealed class PunctuationAndMetricsTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public void Stream_time_punctuation_follows_record_timestamps_and_wall_clock_punctuation_fires_without_input()
    {
        var source = kafka.NewTopic("punct", 1);
        var appId = source + "-app";
        kafka.Cluster.CreateTopic(appId + "-changelog", 1);
        var fired = new ConcurrentQueue<(PunctuationType Type, long AtUnixMs)>();
        var topology = new Topology<string, long>
        {
            ApplicationId = appId, SourceTopic = source, ProcessorName = "timed", StoreNames = [TimedProcessor.Store],
            KeySerde = Utf8Serde.Instance, ValueSerde = Int64Serde.Instance, ProcessorFactory = () => new TimedProcessor(fired),
        };
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-punct-").FullName;
        try
        {
            using var host = new StreamHost(new StreamHostOptions { BootstrapServers = kafka.BootstrapServers, StateDirectory = stateDir }, [topology]);
            host.Start();
            WaitFor(() => host.Metrics.ActiveTasks == 1, TimeSpan.FromSeconds(30), () => "task not assigned");
            // Event times (seconds after t0), deliberately including an out-of-order record: stream time never goes back.
            var t0 = DateTimeOffset.Parse("2026-01-01T00:00:00Z").ToUnixTimeMilliseconds();
            using (var p = new ProducerBuilder<string, long>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers })
                       .SetValueSerializer(StreamTestKit.BigEndianInt64.Instance).Build())
            {
                foreach (var s in new[] { 0, 30, 61, 10, 90, 200, 201 })
                    p.Produce(source, new Message<string, long> { Key = "k", Value = 1, Timestamp = new Timestamp(t0 + s * 1000L, TimestampType.CreateTime) });
                p.Flush(TimeSpan.FromSeconds(10));
            }
            WaitFor(() => host.Metrics.Processed == 7, TimeSpan.FromSeconds(30), () => $"processed {host.Metrics.Processed}");
            Thread.Sleep(1_000);   // idle: only wall-clock punctuation may fire now

            var streamTimes = fired.Where(f => f.Type == PunctuationType.StreamTime).Select(f => (f.AtUnixMs - t0) / 1000).ToList();
            // First record arms the schedule at t0+60 s; 61 s fires (next 121 s); 90 s does not; 200 s fires once (missed intervals collapse).
            Assert.Equal([61L, 200L], streamTimes);
            Assert.True(fired.Count(f => f.Type == PunctuationType.WallClock) >= 3, "wall-clock punctuation fires while no records arrive");
            WaitFor(() => Query(host, appId, "stream-punctuations") == 2 && Query(host, appId, "records") == 7, TimeSpan.FromSeconds(10),
                () => $"store: punctuations {Query(host, appId, "stream-punctuations")}, records {Query(host, appId, "records")}");
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    [Fact]
    public async Task Host_metrics_are_logged_published_to_redis_and_served_by_the_gateway()
    {
        var source = kafka.NewTopic("metrics", 2);
        var appId = source + "-app";
        kafka.Cluster.CreateTopic(appId + "-changelog", 2);
        kafka.Cluster.CreateTopic(KeySumTopology.OutputTopic(source), 2);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-metrics-").FullName;
        var logs = new TestLogs();
        try
        {
            using var host = new StreamHost(new StreamHostOptions { BootstrapServers = kafka.BootstrapServers, StateDirectory = stateDir },
                [KeySumTopology.Create(source, appId)], logs);
            host.Start();
            ProduceAmounts(kafka.BootstrapServers, source, 2_000, 20, seed: 5, []);
            WaitFor(() => host.Metrics.Processed == 2_000 && host.Metrics.Emitted == 2_000, TimeSpan.FromSeconds(30),
                () => $"processed {host.Metrics.Processed}, emitted {host.Metrics.Emitted}");

            using var redis = await ConnectionMultiplexer.ConnectAsync(LocalServices.RedisConfiguration);
            var hostId = "metrics-test-" + Guid.NewGuid().ToString("N")[..6];
            var settings = LocalServices.Overrides(LocalServices.NewDatabaseName("gateway_streams"), kafka.BootstrapServers);
            var metricsKey = settings["Streams:MetricsKey"]!;
            using var reporter = new StreamMetricsReporter(hostId, [appId], host, logs.CreateLogger("test"), redis.GetDatabase(), TimeSpan.FromMinutes(1),
                redisKey: metricsKey);
            var report = reporter.Report();
            Assert.Equal(2_000, report.Processed);
            Assert.Equal(2, report.ActiveTasks);
            Assert.True(report.ProcessP99Us >= report.ProcessP50Us && report.ProcessP50Us > 0);
            Assert.Contains($"streams {hostId}: in ", logs.Text);
            Assert.True(await redis.GetDatabase().HashExistsAsync(metricsKey, hostId), "published in the hosts' hash");

            await using var app = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
                b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
            using var client = app.CreateClient();
            var response = await client.GetAsync("/api/v1/streams");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var hosts = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("hosts");
            var mine = hosts.EnumerateArray().Single(h => h.GetProperty("hostId").GetString() == hostId);
            Assert.Equal(2_000, mine.GetProperty("processed").GetInt64());
            Assert.Equal(appId, mine.GetProperty("topologies")[0].GetString());
            // Both tasks are caught up: reported, with their lag, and not stalled.
            Assert.Equal(2, mine.GetProperty("tasks").GetArrayLength());
            Assert.All(mine.GetProperty("tasks").EnumerateArray(), t => Assert.False(t.GetProperty("stalled").GetBoolean()));
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static long Query(StreamHost host, string appId, string key) =>
        host.TryQuery(appId, TimedProcessor.Store, key, Utf8Serde.Instance, Int64Serde.Instance, out long v) ? v : -1;

}
