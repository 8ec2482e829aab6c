using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Tools;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using AvroCommon = StreamHealth.Schemas.Avro.Common;
using AvroInsights = StreamHealth.Schemas.Avro.Insights;

namespace StreamHealth.Tests.SchemaRegistry;

/// <summary>`streamhealth dump` on records in the Confluent wire format: decoded with their writer schema from the registry,
/// in Avro's JSON encoding with the schema ids; a record naming a schema the registry does not have, or read without a
/// registry, is shown as base64 with the reason.</summary>
public sealed class AvroDumpTests(RegistryFixture registry) : IClassFixture<RegistryFixture>
{
    [Fact]
    public async Task Dump_decodes_avro_records_with_their_writer_schema_and_names_an_unknown_schema_id()
    {
        using var kafka = new EmbeddedKafkaFixture();
        var name = kafka.NewTopic("avro-dump", 1);
        var topic = new TopicSpec(name, UserKey.Descriptor, HealthMetric.Descriptor, 1);
        using var client = RegistryFixture.Client(registry.Server);
        var keys = new AvroSerDes<AvroCommon.UserKey>(client, autoRegister: true);
        var values = new AvroSerDes<AvroInsights.HealthMetric>(client, autoRegister: true);
        var metric = new AvroInsights.HealthMetric
        {
            event_time_unix_ms = new DateTime(2026, 12, 1, 7, 30, 0, DateTimeKind.Utc), metric_id = "m-1", user_id = "alice",
            metric = "steps", value = 4321, unit = "{steps}",
        };
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            await producer.ProduceAsync(name, new Message<byte[], byte[]>
            {
                Key = keys.Serialize(new AvroCommon.UserKey { user_id = "alice" }, new SerializationContext(MessageComponentType.Key, name)),
                Value = values.Serialize(metric, new SerializationContext(MessageComponentType.Value, name)),
            });
            await producer.ProduceAsync(name, new Message<byte[], byte[]> { Value = [0, 0x00, 0x0F, 0x42, 0x3F, 2, 0x41] });
        }
        var valueId = (await client.GetLatestSchemaAsync(SchemaRegistration.ValueSubject(name))).Id;

        var lines = await Dump(new TopicDumper.Request(topic, kafka.BootstrapServers, BrokerCapabilities.Embedded, Registry: client));
        Assert.Equal(2, lines.Count);
        var record = lines[0];
        Assert.Equal(valueId, record.GetProperty("valueSchemaId").GetInt32());
        Assert.Equal("alice", record.GetProperty("key").GetProperty("user_id").GetString());
        var value = record.GetProperty("value");
        Assert.Equal("steps", value.GetProperty("metric").GetString());
        Assert.Equal(4321, value.GetProperty("value").GetDouble());
        Assert.Equal(new DateTimeOffset(2026, 12, 1, 7, 30, 0, TimeSpan.Zero).ToUnixTimeMilliseconds(), value.GetProperty("event_time_unix_ms").GetInt64());

        var unknown = lines[1];
        Assert.Equal(999_999, unknown.GetProperty("valueSchemaId").GetInt32());
        Assert.Contains("schema id 999999", unknown.GetProperty("valueError").GetString());
        Assert.Equal([0, 0x00, 0x0F, 0x42, 0x3F, 2, 0x41], Convert.FromBase64String(unknown.GetProperty("valueBase64").GetString()!));

        // Without a registry the Avro payload is not mistaken for Protobuf: its schema id and the reason are shown.
        var bare = (await Dump(new TopicDumper.Request(topic, kafka.BootstrapServers, BrokerCapabilities.Embedded)))[0];
        Assert.Equal(valueId, bare.GetProperty("valueSchemaId").GetInt32());
        Assert.Contains("no schema registry", bare.GetProperty("valueError").GetString());
        Assert.False(bare.TryGetProperty("value", out _));
    }

    private static async Task<List<JsonElement>> Dump(TopicDumper.Request request)
    {
        using var buffer = new MemoryStream();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await TopicDumper.DumpAsync(request, buffer, cts.Token);
        return [.. Encoding.UTF8.GetString(buffer.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone())];
    }
}
