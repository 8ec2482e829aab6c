using Avro.Generic;
using Confluent.Kafka;
using Confluent.Kafka.SyncOverAsync;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using StreamHealth.Schemas;

namespace StreamHealth.Tests.Gateway.Contract;

/// <summary>A data engineer's consumer outside the project — Confluent's own <c>CachedSchemaRegistryClient</c> and
/// <c>AvroDeserializer&lt;GenericRecord&gt;</c>, nothing of StreamHealth — reads every record of every catalogue topic the
/// stack has written to (gateway, topologies, sinks' inputs), key and value, with the writer schema the record names.</summary>
public sealed class OutsideReaderTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    [Fact]
    public async Task A_plain_confluent_avro_consumer_reads_every_record_the_stack_wrote()
    {
        using (var client = f.Client())
            await f.AssertSinksFlowAsync(client);   // a weight through the gateway, a CGM upload through the topology

        using var registry = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = f.Registry.Url });
        var keys = new AvroDeserializer<GenericRecord>(registry).AsSyncOverAsync();
        var values = new AvroDeserializer<GenericRecord>(registry).AsSyncOverAsync();
        var read = new Dictionary<string, int>(StringComparer.Ordinal);
        var failures = new List<string>();
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = f.Stack.BootstrapServers, GroupId = "outside-reader-" + Guid.NewGuid().ToString("N"), EnableAutoCommit = false,
        }).Build();
        foreach (var topic in Topics.All.Where(t => !t.IsDeadLetter))
        {
            var partitions = Enumerable.Range(0, topic.Partitions).Select(p => new TopicPartition(topic.Name, p)).ToList();
            var ends = partitions.ToDictionary(tp => tp.Partition.Value, tp => consumer.QueryWatermarkOffsets(tp, TimeSpan.FromSeconds(10)).High.Value);
            if (ends.Values.Sum() == 0) continue;
            consumer.Assign(partitions.Select(tp => new TopicPartitionOffset(tp, Offset.Beginning)));
            var remaining = ends.Values.Sum();
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (remaining > 0 && DateTime.UtcNow < deadline)
            {
                var record = consumer.Consume(TimeSpan.FromMilliseconds(500));
                if (record is null || record.IsPartitionEOF) continue;
                if (record.Offset.Value >= ends[record.Partition.Value]) continue;
                remaining--;
                try
                {
                    var key = keys.Deserialize(record.Message.Key, false, new SerializationContext(MessageComponentType.Key, topic.Name));
                    var value = values.Deserialize(record.Message.Value, false, new SerializationContext(MessageComponentType.Value, topic.Name));
                    // The writer schemas are the catalogue's records (what `schemas register` put under the topic's subjects).
                    Assert.Equal(AvroSchemas.For(topic.Name).Key.Fullname, key.Schema.Fullname);
                    Assert.Equal(AvroSchemas.For(topic.Name).Value.Fullname, value.Schema.Fullname);
                    read[topic.Name] = read.GetValueOrDefault(topic.Name) + 1;
                }
                catch (Exception e)
                {
                    failures.Add($"{topic.Name}[{record.Partition.Value}]@{record.Offset.Value}: {e.GetType().Name}: {e.Message}");
                }
            }
            consumer.Unassign();
            Assert.True(remaining == 0, $"{topic.Name}: {remaining} records not read within 30 s");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
        // What the sentinel wrote: a measurement and its result, an upload's readings and the latest value it produced.
        foreach (var topic in new[] { Topics.WeightsRaw, Topics.WeightsFiltered, Topics.CgmReadings, Topics.CgmLatest })
            Assert.True(read.GetValueOrDefault(topic) > 0, $"nothing read from {topic}: {string.Join(", ", read.Select(kv => $"{kv.Key} {kv.Value}"))}");
    }
}
