using Confluent.Kafka;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Streams;

/// <summary>Interactive-query routing finds a key's owner by computing its partition: that computation must be the one our
/// producers' librdkafka applies (default partitioner), checked here against real deliveries. (Empty and null keys are
/// spread at random by that partitioner; no query key serializes to one: a user id has at least one character.)</summary>
public sealed class KeyPartitionerTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(7)]
    [InlineData(16)]
    public async Task Every_delivered_partition_is_the_one_KeyPartitioner_computes(int partitions)
    {
        var topic = kafka.NewTopic("partitioner", partitions);
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build();
        var keys = Enumerable.Range(0, 400).Select(i => TestRegistry.Shared.Key(topic, $"user-{i}"))
            .Append([0xff, 0x00, 0x7f]).ToList();
        var deliveries = keys.Select(key => producer.ProduceAsync(topic, new Message<byte[], byte[]> { Key = key, Value = [1] })).ToList();
        var wrong = new List<string>();
        var used = new HashSet<int>();
        for (var i = 0; i < keys.Count; i++)
        {
            var delivered = (await deliveries[i]).Partition.Value;
            used.Add(delivered);
            var computed = KeyPartitioner.PartitionOf(keys[i], partitions);
            if (delivered != computed) wrong.Add($"key {Convert.ToHexString(keys[i])}: delivered to {delivered}, computed {computed}");
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong.Take(10)));
        Assert.Equal(partitions, used.Count);
    }
}
