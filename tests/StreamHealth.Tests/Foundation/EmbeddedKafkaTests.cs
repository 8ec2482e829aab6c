using System.Runtime.InteropServices;
using System.Text;
using Confluent.Kafka;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Foundation;

public sealed class EmbeddedKafkaTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public void Round_trip_keeps_keys_headers_and_event_timestamps_per_partition_in_order()
    {
        var topic = kafka.NewTopic("roundtrip", partitions: 3);
        var baseTime = new DateTimeOffset(2024, 3, 1, 8, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        var sent = new List<(string User, WeightMeasurement Value, long TimeMs)>();
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
               { BootstrapServers = kafka.BootstrapServers, EnableIdempotence = true }).Build())
        {
            for (var i = 0; i < 60; i++)
            {
                var user = $"user-{i % 7}";
                var t = baseTime + i * 60_000L;
                var value = new WeightMeasurement
                {
                    SchemaVersion = 1, EventTimeUnixMs = t, MeasurementId = $"m-{i}", UserId = user,
                    Value = 70 + i * 0.1, Unit = WeightUnit.Kg, Source = WeightSource.ConnectedScale,
                };
                var headers = new Headers { { "trace-id", Encoding.UTF8.GetBytes($"trace-{i}") } };
                producer.Produce(topic, new Message<byte[], byte[]>
                {
                    Key = TestRegistry.Shared.Key(topic, user), Value = TestRegistry.Shared.Value(topic, value),
                    Timestamp = new Timestamp(t, TimestampType.CreateTime), Headers = headers,
                });
                sent.Add((user, value, t));
            }
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(10)));
        }

        var received = new List<ConsumeResult<byte[], byte[]>>();
        using (var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
               {
                   BootstrapServers = kafka.BootstrapServers, GroupId = "roundtrip-" + Guid.NewGuid().ToString("N"),
                   AutoOffsetReset = AutoOffsetReset.Earliest, SessionTimeoutMs = 6000,
               }).Build())
        {
            consumer.Subscribe(topic);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (received.Count < sent.Count && DateTime.UtcNow < deadline)
                if (consumer.Consume(TimeSpan.FromMilliseconds(500)) is { } r) received.Add(r);
            consumer.Close();
        }

        Assert.Equal(sent.Count, received.Count);
        foreach (var r in received)
        {
            var user = TestRegistry.Shared.UserOf(topic, r.Message.Key);
            var value = TestRegistry.Shared.Measurement(topic, r.Message.Value);
            var index = int.Parse(value.MeasurementId[2..]);
            Assert.Equal(sent[index].User, user);
            Assert.Equal(sent[index].Value, value);
            Assert.Equal(sent[index].TimeMs, r.Message.Timestamp.UnixTimestampMs);
            Assert.Equal(TimestampType.CreateTime, r.Message.Timestamp.Type);
            Assert.Equal($"trace-{index}", Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes("trace-id")));
        }
        // One key always lands on one partition, and within it in production order.
        foreach (var byUser in received.GroupBy(r => TestRegistry.Shared.UserOf(topic, r.Message.Key)))
        {
            Assert.Single(byUser.Select(r => r.Partition.Value).Distinct());
            var offsets = byUser.Select(r => TestRegistry.Shared.Measurement(topic, r.Message.Value).EventTimeUnixMs).ToList();
            Assert.Equal(offsets.Order(), offsets);
        }
    }

    [Fact]
    public void Every_catalogue_topic_exists_with_its_partition_count()
    {
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = kafka.BootstrapServers }).Build();
        var metadata = admin.GetMetadata(TimeSpan.FromSeconds(10));
        foreach (var spec in Topics.All)
        {
            var topic = Assert.Single(metadata.Topics, t => t.Topic == spec.Name);
            Assert.Equal(spec.Partitions, topic.Partitions.Count);
        }
    }

    /// <summary>The embedded broker runs its own librdkafka: setup.sh's build with the mock cluster's offset lookup
    /// walking from the newest message set (2.15.1, the newest librdkafka C source a reachable registry carries), loaded
    /// by path beside the clients' librdkafka.redist 2.16.0. Which of the redist's glibc builds the clients get depends
    /// on the machine: the default <c>librdkafka.so</c> needs libsasl2.so.3 (a RHEL soname; Debian 12's libsasl2-2 has
    /// libsasl2.so.2), else Confluent.Kafka falls back to the self-contained <c>centos8-librdkafka.so</c>.</summary>
    [Fact]
    public async Task Broker_runs_its_patched_librdkafka_and_the_clients_the_redist_2_16_0()
    {
        // A 2.16.0 client speaks to the 2.15.1 broker over the wire protocol: a delivery report with an offset.
        var topic = kafka.NewTopic("two-libraries", partitions: 1);
        using (var producer = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            var delivered = await producer.ProduceAsync(topic, new Message<Null, string> { Value = "one wire protocol" });
            Assert.Equal(0, delivered.Offset.Value);
        }

        var native = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native");
        var brokerFile = Path.Combine(native, "librdkafka-mock-broker.so");
        var clientFile = Path.Combine(native,
            NativeLibrary.TryLoad("libsasl2.so.3", out _) ? "librdkafka.so" : "centos8-librdkafka.so");
        Assert.True(EmbeddedKafkaCluster.IsPatchedBroker, $"broker runs on {EmbeddedKafkaCluster.LibrdkafkaPath}");
        Assert.Equal(brokerFile, EmbeddedKafkaCluster.LibrdkafkaPath);
        // Each copy answers for itself: the broker build's version (setup.sh BROKER_RDK_VERSION), the clients' 2.16.0.
        Assert.Equal("2.15.1", EmbeddedKafkaCluster.LibrdkafkaVersion);
        Assert.Equal("2.16.0", Library.VersionString);

        var mapped = File.ReadLines("/proc/self/maps")
            .Select(line => line.IndexOf('/') is var slash and >= 0 ? line[slash..] : "")
            .Where(file => Path.GetFileName(file).Contains("librdkafka", StringComparison.Ordinal))
            .Distinct()
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.Equal([clientFile, brokerFile], mapped);
        // Two loaded objects, not one file reached under two names.
        Assert.NotEqual(NativeLibrary.Load(clientFile), NativeLibrary.Load(brokerFile));
    }
}
