using System.Text;
using Confluent.Kafka;
using Google.Protobuf;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Streams;

/// <summary>A running sum per user over HealthMetric values: a fold whose result shows any lost or
/// doubly applied update.</summary>
internal sealed class SumProcessor : IProcessor<UserKey, HealthMetric>
{
    public const string Store = "sums";
    public const string Output = "test.sums";
    private KeyValueStore<string, long> _sums = null!;
    private IProcessorContext _context = null!;

    public void Init(IProcessorContext context)
    {
        _context = context;
        _sums = context.GetStore(Store, Utf8Serde.Instance, Int64Serde.Instance);
    }

    public void Process(in StreamRecord<UserKey, HealthMetric> record)
    {
        if (record.Value.Metric == "poison") throw new InvalidOperationException($"poison metric {record.Value.MetricId}");
        _sums.TryGet(record.Key.UserId, out var sum);
        sum += (long)record.Value.Value;
        _sums.Put(record.Key.UserId, sum);
        _context.Forward(Output, record.Key, new HealthMetric { SchemaVersion = 1, EventTimeUnixMs = record.TimestampUnixMs,
                UserId = record.Key.UserId, Metric = "sum", Value = sum, MetricId = $"{record.Partition}:{record.Offset}" },
            record.TimestampUnixMs, $"{record.Topic}:{record.Partition}:{record.Offset}");
    }
}

public sealed class StreamRuntimeTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    private Topology<UserKey, HealthMetric> SumTopology(string source, string appId) => new()
    {
        ApplicationId = appId,
        SourceTopic = source,
        ProcessorName = "sum",
        SinkTopics = [SumProcessor.Output],
        StoreNames = [SumProcessor.Store],
        KeySerde = ProtobufSerde<UserKey>.Instance,
        ValueSerde = ProtobufSerde<HealthMetric>.Instance,
        ProcessorFactory = () => new SumProcessor(),
    };

    [Fact]
    public void State_survives_a_restart_and_poison_records_go_to_the_dead_letter_topic()
    {
        var source = kafka.NewTopic("sum-src", 4);
        kafka.Cluster.CreateTopic(source + ".dlq", 1);
        var appId = "sum-" + Guid.NewGuid().ToString("N")[..8];
        kafka.Cluster.CreateTopic(appId + "-changelog", 4);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-state-").FullName;
        var expected = new Dictionary<string, long>();
        var produced = 0;
        void Produce(int count, int seed)
        {
            var random = new Random(seed);
            using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build();
            for (var i = 0; i < count; i++)
            {
                var user = $"u{random.Next(50)}";
                var poison = i % 500 == 7;
                var v = random.Next(1, 100);
                if (!poison) expected[user] = expected.GetValueOrDefault(user) + v;
                p.Produce(source, new Message<byte[], byte[]>
                {
                    Key = new UserKey { UserId = user }.ToByteArray(),
                    Value = new HealthMetric { SchemaVersion = 1, UserId = user, Metric = poison ? "poison" : "steps", Value = v, MetricId = $"{seed}-{i}" }.ToByteArray(),
                });
                produced++;
            }
            // One undecodable record per batch, too.
            p.Produce(source, new Message<byte[], byte[]> { Key = new UserKey { UserId = "u1" }.ToByteArray(), Value = [0xff, 0xff] });
            produced++;
            p.Flush(TimeSpan.FromSeconds(10));
        }
        var options = new StreamHostOptions { BootstrapServers = kafka.BootstrapServers, StateDirectory = stateDir };
        try
        {
            Produce(5_000, 1);
            using (var host = new StreamHost(options, [SumTopology(source, appId)]))
            {
                host.Start();
                WaitFor(() => host.Metrics.Processed >= produced, TimeSpan.FromSeconds(60), () => $"processed {host.Metrics.Processed}/{produced}");
            }
            Produce(5_000, 2);
            using (var host = new StreamHost(options, [SumTopology(source, appId)]))
            {
                host.Start();
                WaitFor(() => host.Metrics.Processed + host.Metrics.SkippedAlreadyApplied >= 5_001, TimeSpan.FromSeconds(60),
                    () => $"processed {host.Metrics.Processed}");
                WaitFor(() => AllMatch(host, appId, expected), TimeSpan.FromSeconds(30), () => "state differs from the reference fold");
            }
            var dlq = ReadAll(source + ".dlq");
            Assert.Equal(2 * 10 + 2, dlq.Count);   // 10 poison metrics per 5,000 plus one undecodable record per batch
            string H(Message<byte[], byte[]> m, string name) => Encoding.UTF8.GetString(m.Headers.GetLastBytes(name));
            var undecodable = dlq.Where(m => H(m, StreamHeaders.ErrorType) == "deserialization").ToList();
            Assert.Equal(2, undecodable.Count);
            Assert.All(undecodable, m => Assert.Equal([0xff, 0xff], m.Value));
            Assert.Equal(20, dlq.Count(m => H(m, StreamHeaders.ErrorType) == nameof(InvalidOperationException) && H(m, StreamHeaders.Error).StartsWith("poison metric")));
            Assert.All(dlq, m =>
            {
                Assert.Equal(source, H(m, StreamHeaders.SourceTopic));
                Assert.Equal("sum", H(m, StreamHeaders.Processor));
                Assert.True(long.Parse(H(m, StreamHeaders.SourceOffset)) >= 0);
                Assert.InRange(int.Parse(H(m, StreamHeaders.SourcePartition)), 0, 3);
            });
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static bool AllMatch(StreamHost host, string appId, Dictionary<string, long> expected)
    {
        foreach (var (user, sum) in expected)
            if (!host.TryQuery(appId, SumProcessor.Store, user, Utf8Serde.Instance, Int64Serde.Instance, out long actual) || actual != sum)
                return false;
        return true;
    }

    private List<Message<byte[], byte[]>> ReadAll(string topic)
    {
        using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = kafka.BootstrapServers, GroupId = "read-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = AutoOffsetReset.Earliest, EnablePartitionEof = true,
        }).Build();
        c.Assign(new TopicPartitionOffset(topic, 0, Offset.Beginning));
        var list = new List<Message<byte[], byte[]>>();
        while (c.Consume(TimeSpan.FromSeconds(10)) is { } r && !r.IsPartitionEOF) list.Add(r.Message);
        return list;
    }

}
