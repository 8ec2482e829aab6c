using Confluent.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Pipeline;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Weight;

/// <summary>A schema registry the weights topology cannot reach is an outage, not a bad record: a valid Avro record whose
/// writer schema it cannot fetch is never dead-lettered; the stream client fails and the host restarts it.</summary>
public sealed class WeightRegistryOutageTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public void A_record_read_while_the_registry_is_unreachable_is_retried_not_dead_lettered()
    {
        var raw = kafka.NewTopic("wraw-outage", 1);
        var filtered = kafka.NewTopic("wfilt-outage", 1);
        kafka.Cluster.CreateTopic(raw + Topics.DeadLetterSuffix, 1);
        var registry = TestRegistry.Shared;
        var t0 = DateTimeOffset.UtcNow.AddDays(-1).ToUnixTimeMilliseconds();
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            p.Produce(raw, new Message<byte[], byte[]>
            {
                Key = registry.Key(raw, "outage-user"),
                Value = registry.Value(raw, new WeightMeasurement
                {
                    SchemaVersion = 1, EventTimeUnixMs = t0, MeasurementId = "outage-1", UserId = "outage-user", Value = 80,
                    Unit = WeightUnit.Kg, Source = WeightSource.ConnectedScale,
                }),
            });
            Assert.Equal(0, p.Flush(TimeSpan.FromSeconds(10)));
        }

        var logs = new TestLogs();
        var state = Directory.CreateTempSubdirectory("streamhealth-weights-outage-").FullName;
        using var unreachable = SchemaRegistryConnection.Connect("http://127.0.0.1:1", autoRegister: true);   // nothing listens there
        try
        {
            using (var host = new StreamHost(new StreamHostOptions
                   {
                       SchemaRegistry = unreachable, BootstrapServers = kafka.BootstrapServers, StateDirectory = state, CommitIntervalMs = 200,
                       CreateInternalTopic = (topic, partitions) => kafka.Cluster.CreateTopic(topic, partitions),
                   }, [WeightTopology.Create(null, raw + "-app", raw, filtered)], logs))
            {
                host.Start();
                WaitFor(() => host.ThreadRestarts >= 1, TimeSpan.FromSeconds(60), () => "the stream client did not fail\n" + logs.Tail());
                Assert.Equal(0, host.Metrics.DeadLettered);
            }
            Assert.Equal(0, Progress(kafka.BootstrapServers, raw + "-app", raw, 1).Committed);
            Assert.Equal(0, Progress(kafka.BootstrapServers, "nobody", raw + Topics.DeadLetterSuffix, 1).End);
        }
        finally
        {
            Directory.Delete(state, recursive: true);
        }
    }
}
