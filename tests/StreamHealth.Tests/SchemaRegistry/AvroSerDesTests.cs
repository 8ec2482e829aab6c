using Avro.Generic;
using Confluent.Kafka;
using Confluent.Kafka.SyncOverAsync;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas.Avro.Common;
using StreamHealth.Schemas.Avro.Weights;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.SchemaRegistry;

/// <summary><see cref="AvroSerDes{T}"/> over the stand-in registry and the embedded Kafka: records in the Confluent wire
/// format that a Confluent consumer outside the project reads with its own registry client, and records Confluent's own
/// serializer wrote (an older schema version included) that it reads; production's no-auto-registration refuses an
/// unregistered schema; an unknown schema id is named.</summary>
public sealed class AvroSerDesTests(RegistryFixture registry) : IClassFixture<RegistryFixture>
{
    private static WeightMeasurement Measurement(string user, int i) => new()
    {
        event_time_unix_ms = DateTime.UnixEpoch.AddMilliseconds(1_795_000_000_000 + i * 60_000L),
        measurement_id = $"{user}-{i}", user_id = user, value = 80 + i / 10.0, unit = WeightUnit.WEIGHT_UNIT_KG,
        source = WeightSource.WEIGHT_SOURCE_CONNECTED_SCALE, source_detail = i % 2 == 0 ? null : "scale-v2",
        initialization_batch = [], declared_event = WeightEvent.WEIGHT_EVENT_UNSPECIFIED,
    };

    [Fact]
    public async Task Records_written_through_the_serde_are_read_by_a_plain_confluent_consumer_with_its_own_registry_client()
    {
        using var kafka = new EmbeddedKafkaFixture();
        var topic = kafka.NewTopic("avro-weights", 2);
        using var client = RegistryFixture.Client(registry.Server);
        var keys = new AvroSerDes<UserKey>(client, autoRegister: true);
        var values = new AvroSerDes<WeightMeasurement>(client, autoRegister: true);
        var sent = Enumerable.Range(0, 20).Select(i => Measurement($"u{i % 3}", i)).ToList();
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            foreach (var m in sent)
                await producer.ProduceAsync(topic, new Message<byte[], byte[]>
                {
                    Key = keys.Serialize(new UserKey { user_id = m.user_id }, new SerializationContext(MessageComponentType.Key, topic)),
                    Value = values.Serialize(m, new SerializationContext(MessageComponentType.Value, topic)),
                });
        }

        // Outside the project: Confluent's consumer, its own registry client with empty caches, generic records.
        using var outside = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = registry.Server.Url });
        var valueId = (await outside.GetLatestSchemaAsync(SchemaRegistration.ValueSubject(topic))).Id;
        using var consumer = new ConsumerBuilder<GenericRecord, GenericRecord>(new ConsumerConfig
            {
                BootstrapServers = kafka.BootstrapServers, GroupId = "outside-" + topic, AutoOffsetReset = AutoOffsetReset.Earliest,
            })
            .SetKeyDeserializer(new AvroDeserializer<GenericRecord>(outside).AsSyncOverAsync())
            .SetValueDeserializer(new AvroDeserializer<GenericRecord>(outside).AsSyncOverAsync())
            .Build();
        consumer.Subscribe(topic);
        var received = new List<(GenericRecord Key, GenericRecord Value, byte[] Raw)>();
        using var raw = new ConsumerBuilder<Ignore, byte[]>(new ConsumerConfig
            { BootstrapServers = kafka.BootstrapServers, GroupId = "raw-" + topic, AutoOffsetReset = AutoOffsetReset.Earliest }).Build();
        raw.Subscribe(topic);
        var rawValues = new List<byte[]>();
        for (var deadline = DateTime.UtcNow.AddSeconds(30); (received.Count < sent.Count || rawValues.Count < sent.Count) && DateTime.UtcNow < deadline;)
        {
            if (received.Count < sent.Count && consumer.Consume(TimeSpan.FromMilliseconds(200)) is { } r) received.Add((r.Message.Key, r.Message.Value, []));
            if (rawValues.Count < sent.Count && raw.Consume(TimeSpan.FromMilliseconds(200)) is { } b) rawValues.Add(b.Message.Value);
        }
        Assert.Equal(sent.Count, received.Count);
        Assert.All(rawValues, v => Assert.Equal(valueId, ConfluentWire.SchemaId(v)));
        var byId = received.ToDictionary(r => (string)r.Value["measurement_id"]);
        foreach (var m in sent)
        {
            var v = byId[m.measurement_id].Value;
            Assert.Equal(m.user_id, (string)byId[m.measurement_id].Key["user_id"]);
            Assert.Equal(m.user_id, (string)v["user_id"]);
            Assert.Equal(m.value, (double)v["value"]);
            Assert.Equal(m.event_time_unix_ms, (DateTime)v["event_time_unix_ms"]);
            Assert.Equal("WEIGHT_UNIT_KG", ((GenericEnum)v["unit"]).Value);
            Assert.Equal(m.source_detail, (string?)v["source_detail"]);
        }

        // And the project's own serde reads them back as the generated class.
        var back = values.Deserialize(rawValues[0], new SerializationContext(MessageComponentType.Value, topic));
        Assert.Contains(sent, m => m.measurement_id == back.measurement_id && m.value == back.value && m.event_time_unix_ms == back.event_time_unix_ms);
    }

    [Fact]
    public async Task Records_confluents_serializer_wrote_with_this_schema_or_an_older_version_are_read()
    {
        var topic = $"confluent-written-{Guid.NewGuid():N}"[..30];
        using var client = RegistryFixture.Client(registry.Server);
        var serde = new AvroSerDes<WeightMeasurement>(client, autoRegister: true);
        var context = new SerializationContext(MessageComponentType.Value, topic);
        var confluent = new AvroSerializer<WeightMeasurement>(client, new AvroSerializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic });
        var m = Measurement("c1", 7);
        var bytes = await confluent.SerializeAsync(m, context);
        Assert.Equal(bytes, serde.Serialize(m, context));   // the same wire bytes, byte for byte

        var read = serde.Deserialize(bytes, context);
        Assert.Equal((m.measurement_id, m.value, m.event_time_unix_ms, m.unit, m.source_detail),
            (read.measurement_id, read.value, read.event_time_unix_ms, read.unit, read.source_detail));

        // An older writer schema (without source_detail, initialization_batch and declared_event): resolved to today's class.
        var older = global::Avro.Schema.Parse(WeightMeasurement._SCHEMA.ToString()) as global::Avro.RecordSchema;
        var oldText = System.Text.Json.Nodes.JsonNode.Parse(older!.ToString())!;
        var fields = oldText["fields"]!.AsArray();
        foreach (var name in new[] { "source_detail", "initialization_batch", "declared_event" })
            fields.Remove(fields.Single(f => f!["name"]!.GetValue<string>() == name));
        var oldSchema = (global::Avro.RecordSchema)global::Avro.Schema.Parse(oldText.ToJsonString());
        var oldRecord = new GenericRecord(oldSchema);
        oldRecord.Add("event_time_unix_ms", m.event_time_unix_ms);
        oldRecord.Add("measurement_id", "old-1");
        oldRecord.Add("user_id", "c1");
        oldRecord.Add("value", 71.5);
        oldRecord.Add("unit", new GenericEnum((global::Avro.EnumSchema)oldSchema["unit"].Schema, "WEIGHT_UNIT_LB"));
        oldRecord.Add("source", new GenericEnum((global::Avro.EnumSchema)oldSchema["source"].Schema, "WEIGHT_SOURCE_CARE_TEAM"));
        var oldTopic = topic + "-old";
        var oldBytes = await new AvroSerializer<GenericRecord>(client, new AvroSerializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic })
            .SerializeAsync(oldRecord, new SerializationContext(MessageComponentType.Value, oldTopic));
        var upgraded = serde.Deserialize(oldBytes, new SerializationContext(MessageComponentType.Value, oldTopic));
        Assert.Equal(("old-1", 71.5, WeightUnit.WEIGHT_UNIT_LB, WeightSource.WEIGHT_SOURCE_CARE_TEAM), (upgraded.measurement_id, upgraded.value, upgraded.unit, upgraded.source));
        Assert.Null(upgraded.source_detail);
        Assert.Empty(upgraded.initialization_batch);
        Assert.Equal(WeightEvent.WEIGHT_EVENT_UNSPECIFIED, upgraded.declared_event);
    }

    [Fact]
    public void Without_auto_registration_an_unregistered_schema_is_refused_naming_the_subject()
    {
        using var client = RegistryFixture.Client(registry.Server);
        var serde = new AvroSerDes<WeightMeasurement>(client, autoRegister: false);
        var topic = $"unregistered-{Guid.NewGuid():N}"[..20];
        var e = Assert.ThrowsAny<Exception>(() => serde.Serialize(Measurement("u", 1), new SerializationContext(MessageComponentType.Value, topic)));
        Assert.Contains(topic + "-value", e.ToString());
    }

    [Fact]
    public void A_record_naming_an_unknown_schema_id_fails_to_decode_and_the_id_can_be_read_from_its_header()
    {
        using var client = RegistryFixture.Client(registry.Server);
        var serde = new AvroSerDes<WeightMeasurement>(client, autoRegister: true);
        byte[] bogus = [0, 0x00, 0x0F, 0x42, 0x3F, 1, 2, 3];
        Assert.Equal(999_999, ConfluentWire.SchemaId(bogus));
        Assert.Null(ConfluentWire.SchemaId([1, 2, 3, 4, 5, 6]));
        Assert.Null(ConfluentWire.SchemaId([0, 1]));
        var e = Assert.ThrowsAny<Exception>(() => serde.Deserialize(bogus, new SerializationContext(MessageComponentType.Value, "weights.raw")));
        Assert.Contains("999999", e.ToString().Replace(",", ""));
    }
}
