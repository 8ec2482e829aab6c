using System.Buffers.Binary;
using Avro;
using Avro.Generic;
using Confluent.Kafka;
using Confluent.SchemaRegistry.Serdes;
using static StreamHealth.Tests.SchemaRegistry.Avsc;

namespace StreamHealth.Tests.SchemaRegistry;

/// <summary>Confluent's Avro serializer and deserializer (Confluent.SchemaRegistry.Serdes.Avro 2.16) against the embedded
/// registry: the serializer registers the record's schema itself and frames the id in the Confluent wire format; a
/// deserializer with its own client fetches the writer's schema by that id.</summary>
public sealed class SchemaRegistrySerdeTests(RegistryFixture fixture) : IClassFixture<RegistryFixture>
{
    [Fact]
    public async Task Generic_records_round_trip_with_auto_registration_across_two_versions()
    {
        const string topic = "serde.weights";
        var context = new SerializationContext(MessageComponentType.Value, topic);
        using var producerSide = RegistryFixture.Client(fixture.Server);
        var serializer = new AvroSerializer<GenericRecord>(producerSide);

        var v1 = Weight(WeightV1, "u-1", 81.5, 1_700_000_000_000);
        var bytes1 = await serializer.SerializeAsync(v1, context);
        var v2 = Weight(WeightV2, "u-2", 64.25, 1_700_000_060_000);
        v2.Add("source", "app");
        var bytes2 = await serializer.SerializeAsync(v2, context);

        // The serdes' default subject name strategy asked for the topic's associated subject, got none, and fell back to
        // <topic>-value.
        using var registry = RegistryFixture.Client(fixture.Server);
        Assert.Empty(await registry.GetAssociationsByResourceNameAsync(topic, "-", "topic", ["value"], null, 0, -1));
        Assert.Equal([topic + "-value"], (await registry.GetAllSubjectsAsync()).Where(s => s.StartsWith(topic, StringComparison.Ordinal)));

        // Confluent wire format: magic byte 0, the schema id as a big-endian int, the Avro body.
        var first = await registry.GetRegisteredSchemaAsync(topic + "-value", 1);
        var latest = await registry.GetLatestSchemaAsync(topic + "-value");
        Assert.Equal(2, latest.Version);
        Assert.Equal(0, bytes1[0]);
        Assert.Equal(first.Id, BinaryPrimitives.ReadInt32BigEndian(bytes1.AsSpan(1, 4)));
        Assert.Equal(latest.Id, BinaryPrimitives.ReadInt32BigEndian(bytes2.AsSpan(1, 4)));

        using var consumerSide = RegistryFixture.Client(fixture.Server);
        var deserializer = new AvroDeserializer<GenericRecord>(consumerSide);
        var read1 = await deserializer.DeserializeAsync(bytes1, isNull: false, context);
        var read2 = await deserializer.DeserializeAsync(bytes2, isNull: false, context);
        Assert.Equal(("u-1", 81.5, 1_700_000_000_000L), ((string)read1["user_id"], (double)read1["kg"], (long)read1["at_ms"]));
        Assert.False(read1.TryGetValue("source", out _));
        Assert.Equal(("u-2", 64.25, "app"), ((string)read2["user_id"], (double)read2["kg"], (string)read2["source"]));
    }

    private static GenericRecord Weight(string schema, string user, double kg, long atMs)
    {
        var record = new GenericRecord((RecordSchema)Schema.Parse(schema));
        record.Add("user_id", user);
        record.Add("kg", kg);
        record.Add("at_ms", atMs);
        return record;
    }
}
