using System.Buffers.Binary;
using Avro.Specific;
using Confluent.Kafka;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using Streamiz.Kafka.Net.SerDes;

namespace StreamHealth.Runtime.Streams;

/// <summary>An Avro record (a class generated from schemas/avro) in the Confluent wire format, as a Streamiz serde:
/// Confluent's own <see cref="AvroSerializer{T}"/> and <see cref="AvroDeserializer{T}"/> over a shared schema registry
/// client, subjects by TopicNameStrategy (<c>{topic}-key</c>/<c>{topic}-value</c>; set explicitly, since the 2.16
/// serializers otherwise first ask the registry for an "association" on every new topic). With
/// <paramref name="autoRegister"/> off (production) a schema must have been registered by the deploy step
/// (`streamhealth schemas register`): the serializer only looks its id up. Streamiz serdes are synchronous; Confluent's
/// are asynchronous only while a schema id is not cached yet (one registry round trip per subject), then complete at once.</summary>
public sealed class AvroSerDes<T>(ISchemaRegistryClient registry, bool autoRegister) : AbstractSerDes<T>, IConfluentWireSerDes where T : ISpecificRecord
{
    private readonly AvroSerializer<T> _serializer = new(registry, new AvroSerializerConfig
    {
        AutoRegisterSchemas = autoRegister,
        SubjectNameStrategy = SubjectNameStrategy.Topic,
    });
    private readonly AvroDeserializer<T> _deserializer = new(registry, new AvroDeserializerConfig
    {
        SubjectNameStrategy = SubjectNameStrategy.Topic,
    });

    public override byte[] Serialize(T data, SerializationContext context) =>
        _serializer.SerializeAsync(data, context).GetAwaiter().GetResult();

    public override T Deserialize(byte[] data, SerializationContext context) =>
        _deserializer.DeserializeAsync(data, data is null, context).GetAwaiter().GetResult();

    /// <summary>A value of <paramref name="topic"/> decoded, or a <see cref="FormatException"/> (what a sink dead-letters)
    /// naming the schema id when the bytes cannot be this record: not in the wire format, a schema id the registry does
    /// not know, or a body that does not match its schema. A registry that cannot be reached throws as it is (an outage:
    /// retried, never dead-lettered).</summary>
    public T ReadValue(byte[]? data, string topic)
    {
        if (data is null) throw new FormatException("record has no value");
        try
        {
            return Deserialize(data, new SerializationContext(MessageComponentType.Value, topic));
        }
        catch (Exception e) when (e is InvalidDataException or global::Avro.AvroException or EndOfStreamException or ArgumentException or InvalidCastException
                                      || e is SchemaRegistryException { Status: System.Net.HttpStatusCode.NotFound })
        {
            var id = ConfluentWire.SchemaId(data);
            throw new FormatException($"{(id is { } known ? $"schema id {known}" : "no Confluent wire header")}: {e.Message}", e);
        }
    }
}

/// <summary>A serde whose bytes are in the Confluent wire format (a dead letter of its records names their schema id).</summary>
public interface IConfluentWireSerDes;

/// <summary>The Confluent wire format's 5-byte header: magic byte 0, then the schema id (int32 big-endian).</summary>
public static class ConfluentWire
{
    public const int HeaderBytes = 5;

    /// <summary>The schema id a record names, or null when its bytes do not start with the header (so a dead letter can
    /// say which schema an undecodable record claimed to be written with).</summary>
    public static int? SchemaId(ReadOnlySpan<byte> data) =>
        data.Length >= HeaderBytes && data[0] == 0 ? BinaryPrimitives.ReadInt32BigEndian(data[1..]) : null;

    /// <summary>Whether <paramref name="e"/> (or an exception inside it) says the schema registry could not answer (unreachable,
    /// timed out, a 5xx): a failure of the moment, not of the record, so the record must be retried, never dead-lettered.</summary>
    public static bool IsRegistryUnavailable(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            // The registry's own answer (a SchemaRegistryException is an HttpRequestException): only a 5xx is an outage;
            // a 404 for an unknown schema id is the record's problem.
            if (e is SchemaRegistryException answered) return answered.Status >= System.Net.HttpStatusCode.InternalServerError;
            if (e is HttpRequestException or TaskCanceledException or TimeoutException) return true;
        }
        return false;
    }
}
