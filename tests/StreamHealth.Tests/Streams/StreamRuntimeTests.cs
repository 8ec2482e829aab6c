using System.Text;
using Confluent.Kafka;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Streams.Reference;
using StreamHealth.Schemas;
using UserKey = StreamHealth.Schemas.Avro.Common.UserKey;
using HealthMetric = StreamHealth.Schemas.Avro.Insights.HealthMetric;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Streams;

/// <summary>A running sum per user over HealthMetric values: a fold whose result shows any lost or
/// doubly applied update. A "poison" metric is rejected before any state is written.</summary>
public sealed class SumProcessor : StreamProcessor<UserKey, HealthMetric>
{
    public const string Store = "sums";
    private readonly string _output = "";
    private IKeyValueStore<string, Fenced<KeySumTopology.RunningSum>> _sums = null!;

    public SumProcessor() : base(null!, null!, null!, "") { }

    public SumProcessor(ProcessorServices services, string output)
        : base(services, services.Schemas.SerDes<UserKey>(), services.Schemas.SerDes<HealthMetric>(), "sum")
    {
        _output = output;
        _schemas = services.Schemas;
    }

    private readonly StreamHealth.Runtime.SchemaRegistry.SchemaRegistryConnection _schemas = null!;

    public static StreamTopology Topology(string source, string appId) => new()
    {
        ApplicationId = appId,
        SourceTopic = source,
        ProcessorName = "sum",
        RequiresSchemaRegistry = true,
        SinkTopics = [Output(source)],
        Processor = services => TransformerBuilder.New<byte[], byte[], byte[], Emission>()
            .Transformer<SumProcessor>(services, Output(source))
            .StateStore(Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(Store), new StringSerDes(),
                    new FencedSerDes<KeySumTopology.RunningSum>(KeySumTopology.RunningSum.SerDes))
                .WithCachingEnabled())
            .Build(),
    };

    public static string Output(string source) => source + ".sums";

    protected override void Init() => _sums = (IKeyValueStore<string, Fenced<KeySumTopology.RunningSum>>)Context.GetStateStore(Store);

    protected override void Process(in InputRecord<UserKey, HealthMetric> record)
    {
        if (record.Value.metric == "poison") throw new InvalidOperationException($"poison metric {record.Value.metric_id}");
        var entry = _sums.Get(record.Key.user_id);
        if (entry is not null && record.Offset <= entry.AppliedOffset)
        {
            SkipAlreadyApplied();
            return;
        }
        var sum = (entry?.Value.Sum ?? 0) + (long)record.Value.value;
        _sums.Put(record.Key.user_id, new Fenced<KeySumTopology.RunningSum>(record.Offset, new KeySumTopology.RunningSum(sum)));
        var outputKey = _schemas.SerDes<UserKey>().Serialize(record.Key, new SerializationContext(MessageComponentType.Key, _output));
        var outputValue = _schemas.SerDes<HealthMetric>().Serialize(new HealthMetric { event_time_unix_ms = DateTime.UnixEpoch.AddMilliseconds(record.TimestampUnixMs),
                user_id = record.Key.user_id, metric = "sum", value = sum, unit = "count", metric_id = $"{record.Partition}:{record.Offset}" },
            new SerializationContext(MessageComponentType.Value, _output));
        EmitBytes(_output, outputKey, outputValue, record.TimestampUnixMs, $"{record.Topic}:{record.Partition}:{record.Offset}");
    }
}

public sealed class StreamRuntimeTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public void State_survives_a_restart_and_poison_records_go_to_the_dead_letter_topic()
    {
        var source = kafka.NewTopic("sum-src", 4);
        kafka.Cluster.CreateTopic(source + ".dlq", 1);
        kafka.Cluster.CreateTopic(SumProcessor.Output(source), 4);
        var appId = "sum-" + Guid.NewGuid().ToString("N")[..8];
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-state-").FullName;
        var expected = new Dictionary<string, long>();
        var produced = 0;
        var registry = TestRegistry.Shared.Connection;
        byte[] Key(string user) => registry.SerDes<UserKey>().Serialize(new UserKey { user_id = user }, new SerializationContext(MessageComponentType.Key, source));
        byte[] Value(HealthMetric metric) => registry.SerDes<HealthMetric>().Serialize(metric, new SerializationContext(MessageComponentType.Value, source));
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
                // One poison and one good record per batch carry a request id (and a header that is not theirs to pass on).
                Headers? headers = i is 7 or 8
                    ? new Headers { { StreamHeaders.RequestId, Encoding.UTF8.GetBytes($"req-{seed}-{i}") }, { StreamHeaders.Error, "stale"u8.ToArray() } }
                    : null;
                p.Produce(source, new Message<byte[], byte[]>
                {
                    Key = Key(user),
                    Value = Value(new HealthMetric { event_time_unix_ms = DateTime.UtcNow, user_id = user, metric = poison ? "poison" : "steps", value = v, unit = "count", metric_id = $"{seed}-{i}" }),
                    Headers = headers,
                });
                produced++;
            }
            // One undecodable record per batch, too.
            p.Produce(source, new Message<byte[], byte[]> { Key = Key("u1"), Value = [0xff, 0xff] });
            produced++;
            p.Flush(TimeSpan.FromSeconds(10));
        }
        var options = new StreamHostOptions
        {
            SchemaRegistry = registry, BootstrapServers = kafka.BootstrapServers, StateDirectory = stateDir,
            CreateInternalTopic = (topic, partitions) => kafka.Cluster.CreateTopic(topic, partitions),
        };
        try
        {
            Produce(5_000, 1);
            using (var host = new StreamHost(options, [SumProcessor.Topology(source, appId)]))
            {
                host.Start();
                WaitFor(() => host.Metrics.Processed >= produced, TimeSpan.FromSeconds(60), () => $"processed {host.Metrics.Processed}/{produced}");
                Assert.Equal(11, host.Metrics.DeadLettered);
            }
            Produce(5_000, 2);
            using (var host = new StreamHost(options, [SumProcessor.Topology(source, appId)]))
            {
                host.Start();
                WaitFor(() => host.Metrics.Processed >= 5_001, TimeSpan.FromSeconds(60), () => $"processed {host.Metrics.Processed}");
                WaitFor(() => AllMatch(host, appId, expected), TimeSpan.FromSeconds(30), () => "state differs from the reference fold");
                // The first host stopped gracefully and committed: the second resumes where it left off, so it processes
                // exactly the second batch and finds nothing it had already applied.
                Assert.Equal(5_001, host.Metrics.Processed);
                Assert.Equal(0, host.Metrics.SkippedAlreadyApplied);
            }
            var dlq = ReadAll(source + ".dlq", 1);
            Assert.Equal(2 * 10 + 2, dlq.Count);   // 10 poison metrics per 5,000 plus one undecodable record per batch
            string H(Message<byte[], byte[]> m, string name) => Encoding.UTF8.GetString(m.Headers.GetLastBytes(name));
            bool Has(Message<byte[], byte[]> m, string name) => m.Headers.TryGetLastBytes(name, out _);
            var undecodable = dlq.Where(m => H(m, StreamHeaders.ErrorType) == StreamHeaders.DeserializationError).ToList();
            Assert.Equal(2, undecodable.Count);
            Assert.All(undecodable, m =>
            {
                Assert.Equal([0xff, 0xff], m.Value);
                Assert.Contains("cannot decode", H(m, StreamHeaders.Error));
            });
            Assert.Equal(20, dlq.Count(m => H(m, StreamHeaders.ErrorType) == nameof(InvalidOperationException) && H(m, StreamHeaders.Error).StartsWith("poison metric")));
            Assert.All(dlq, m =>
            {
                Assert.Equal(source, H(m, StreamHeaders.SourceTopic));
                Assert.Equal("sum", H(m, StreamHeaders.Processor));
                var offset = long.Parse(H(m, StreamHeaders.SourceOffset));
                var partition = int.Parse(H(m, StreamHeaders.SourcePartition));
                Assert.True(offset >= 0);
                Assert.InRange(partition, 0, 3);
                // The output id names the source position, so a re-sent dead letter is recognisable.
                Assert.Equal($"dlq:{source}:{partition}:{offset}", H(m, StreamHeaders.OutputId));
            });
            Assert.Equal(22, dlq.Select(m => H(m, StreamHeaders.OutputId)).Distinct().Count());

            // A request id travels from the input to its dead letter and to its result; the input's other streamhealth-
            // headers describe that record only and are not copied.
            foreach (var seed in new[] { 1, 2 })
            {
                var poisoned = Assert.Single(dlq, m => Has(m, StreamHeaders.RequestId) && H(m, StreamHeaders.RequestId) == $"req-{seed}-7");
                Assert.Equal($"poison metric {seed}-7", H(poisoned, StreamHeaders.Error));
                Assert.Single(poisoned.Headers, h => h.Key == StreamHeaders.Error);
            }
            var results = ReadAll(SumProcessor.Output(source), 4);
            Assert.Equal(2 * (5_000 - 10), results.Count);
            foreach (var seed in new[] { 1, 2 })
            {
                var answered = Assert.Single(results, m => Has(m, StreamHeaders.RequestId) && H(m, StreamHeaders.RequestId) == $"req-{seed}-8");
                Assert.False(Has(answered, StreamHeaders.Error));
                Assert.StartsWith(source + ":", H(answered, StreamHeaders.OutputId));
                Assert.Equal("sum", registry.SerDes<HealthMetric>().ReadValue(answered.Value, SumProcessor.Output(source)).metric);
            }
            Assert.Equal(2, results.Count(m => Has(m, StreamHeaders.RequestId)));
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static bool AllMatch(StreamHost host, string appId, Dictionary<string, long> expected)
    {
        foreach (var (user, sum) in expected)
            if (!host.TryQuery<string, Fenced<KeySumTopology.RunningSum>>(appId, SumProcessor.Store, user, out var actual) || actual.Value.Sum != sum)
                return false;
        return true;
    }

    private List<Message<byte[], byte[]>> ReadAll(string topic, int partitions)
    {
        var list = new List<Message<byte[], byte[]>>();
        for (var partition = 0; partition < partitions; partition++)
        {
            using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
            {
                BootstrapServers = kafka.BootstrapServers, GroupId = "read-" + Guid.NewGuid().ToString("N"),
                AutoOffsetReset = AutoOffsetReset.Earliest, EnablePartitionEof = true,
            }).Build();
            c.Assign(new TopicPartitionOffset(topic, partition, Offset.Beginning));
            while (c.Consume(TimeSpan.FromSeconds(10)) is { } r && !r.IsPartitionEOF) list.Add(r.Message);
        }
        return list;
    }
}
