using System.Buffers.Binary;
using System.Collections.Concurrent;
using Avro.IO;
using Avro.Specific;
using Confluent.Kafka;
using Confluent.SchemaRegistry;
using Streamiz.Kafka.Net.SerDes;
using AvroSchema = Avro.Schema;

namespace StreamHealth.Runtime.Streams;

/// <summary>An Avro record (a class generated from schemas/avro) in the Confluent wire format (magic byte 0, schema id
/// int32 big-endian, Avro binary), as a Streamiz serde. Subjects by TopicNameStrategy (<c>{topic}-key</c>/<c>-value</c>).
/// The registry side is Confluent's own client (<see cref="ISchemaRegistryClient"/>): it registers the schema
/// (<paramref name="autoRegister"/>) or only looks its id up (production, where the deploy step registered it), and
/// fetches a writer schema by id, each cached after the first call. The bytes are Apache.Avro's, the library Confluent's
/// serdes use too. Confluent's <c>AvroSerializer</c>/<c>AvroDeserializer</c> would cost 2.1 µs and 10.5 µs per record
/// here (async per call, a rules engine, a semaphore per deserialization), which caps a stream thread below 100k
/// records/s. This pair costs about 0.2 and 0.5 µs (benchmarks/RESULTS.md). Both directions are tested against
/// Confluent's serdes: each reads what the other writes.</summary>
public sealed class AvroSerDes<T>(ISchemaRegistryClient registry, bool autoRegister) : AbstractSerDes<T>, IConfluentWireSerDes
    where T : ISpecificRecord, new()
{
    private static readonly AvroSchema ReaderSchema = new T().Schema;
    private static readonly SpecificDatumWriter<T> Writer = new(ReaderSchema);
    // Schema ids by topic, one map per component: the subject string ({topic}-key / -value) is built only to ask the
    // registry, not for every record.
    private readonly ConcurrentDictionary<string, int> _keyIds = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _valueIds = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, SpecificDatumReader<T>> _readerByWriterId = new();
    [ThreadStatic] private static MemoryStream? t_buffer;

    /// <summary>Resolves (and caches) the schema id of <paramref name="topic"/>'s key or value without blocking a thread:
    /// an async caller (a request handler) awaits this before <see cref="Serialize"/>, which then never waits on the
    /// registry. (Many concurrent first calls blocking on the registry starved the thread pool: 23 s at a cold start.)</summary>
    public async Task PrepareAsync(string topic, MessageComponentType component)
    {
        var ids = IdsOf(component);
        if (!ids.ContainsKey(topic)) ids.TryAdd(topic, await SchemaIdOfAsync(topic, component));
    }

    public override byte[] Serialize(T data, SerializationContext context)
    {
        if (data is null) return null!;
        var ids = IdsOf(context.Component);
        // A failed lookup (registry down, schema not registered) is not cached: the next record asks again.
        if (!ids.TryGetValue(context.Topic, out var id))
            id = ids.GetOrAdd(context.Topic, SchemaIdOfAsync(context.Topic, context.Component).GetAwaiter().GetResult());
        var buffer = t_buffer ??= new MemoryStream(256);
        buffer.SetLength(ConfluentWire.HeaderBytes);
        buffer.Position = ConfluentWire.HeaderBytes;
        var header = buffer.GetBuffer();
        header[0] = 0;
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(1), id);
        Writer.Write(data, new BinaryEncoder(buffer));
        return buffer.ToArray();
    }

    public override T Deserialize(byte[] data, SerializationContext context)
    {
        if (data is null) return default!;
        var id = ConfluentWire.SchemaId(data)
                 ?? throw new InvalidDataException($"not in the Confluent wire format: {data.Length} byte(s) without the magic byte 0 and a schema id");
        if (!_readerByWriterId.TryGetValue(id, out var reader)) reader = _readerByWriterId.GetOrAdd(id, ReaderFor(id));
        var body = new MemoryStream(data, ConfluentWire.HeaderBytes, data.Length - ConfluentWire.HeaderBytes, writable: false);
        return reader.Read(default!, new BinaryDecoder(body));
    }

    /// <summary>A value of <paramref name="topic"/> decoded, or a <see cref="FormatException"/> (what a sink dead-letters)
    /// naming the schema id when the bytes cannot be this record: not in the wire format, a schema id the registry does
    /// not know, or a body that does not match its schema. A registry that cannot be reached throws as it is (an outage:
    /// retried, never dead-lettered).</summary>
    public T ReadValue(byte[]? data, string topic) => Read(data, topic, MessageComponentType.Value);

    /// <summary>A key of <paramref name="topic"/> decoded; failures as <see cref="ReadValue"/>.</summary>
    public T ReadKey(byte[]? data, string topic) => Read(data, topic, MessageComponentType.Key);

    private T Read(byte[]? data, string topic, MessageComponentType component)
    {
        if (data is null) throw new FormatException(component == MessageComponentType.Key ? "record has no key" : "record has no value");
        try
        {
            return Deserialize(data, new SerializationContext(component, topic));
        }
        catch (Exception e) when (e is InvalidDataException or global::Avro.AvroException or EndOfStreamException or ArgumentException or InvalidCastException)
        {
            var id = ConfluentWire.SchemaId(data);
            throw new FormatException($"{(id is { } known ? $"schema id {known}" : "no Confluent wire header")}: {e.Message}", e);
        }
    }

    private ConcurrentDictionary<string, int> IdsOf(MessageComponentType component) =>
        component == MessageComponentType.Key ? _keyIds : _valueIds;

    /// <summary>The id of this record's schema under the topic's subject (TopicNameStrategy): registered when
    /// <c>autoRegister</c>, else looked up (production, where the deploy step registered it).</summary>
    private async Task<int> SchemaIdOfAsync(string topic, MessageComponentType component)
    {
        var subject = component == MessageComponentType.Key ? SchemaRegistry.SchemaRegistration.KeySubject(topic) : SchemaRegistry.SchemaRegistration.ValueSubject(topic);
        var schema = new Schema(ReaderSchema.ToString(), SchemaType.Avro);
        try
        {
            return autoRegister
                ? await registry.RegisterSchemaAsync(subject, schema, normalize: false)
                : (await registry.LookupSchemaAsync(subject, schema, ignoreDeletedSchemas: true, normalize: false)).Id;
        }
        catch (SchemaRegistryException e)
        {
            throw new InvalidOperationException($"schema {ReaderSchema.Fullname} under subject {subject}: {e.Message}" +
                (autoRegister ? "" : " (schemas are registered by `streamhealth schemas register`)"), e);
        }
    }

    private SpecificDatumReader<T> ReaderFor(int id)
    {
        try
        {
            var writer = AvroSchema.Parse(registry.GetSchemaAsync(id).GetAwaiter().GetResult().SchemaString);
            return new SpecificDatumReader<T>(writer, ReaderSchema);
        }
        // Only "no such schema" is the record's fault; a registry that cannot answer (5xx, unreachable) is an outage and
        // propagates as it is (ConfluentWire.IsRegistryUnavailable), so the record is retried, not dead-lettered.
        catch (SchemaRegistryException e) when (e.Status == System.Net.HttpStatusCode.NotFound)
        {
            throw new InvalidDataException($"schema id {id}: {e.Message}", e);
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
            // The registry answered: its status says whose failure it is (a 4xx such as "schema not found" is the record's;
            // the client may keep the HTTP exception it came from inside).
            if (e is SchemaRegistryException answered) return answered.Status >= System.Net.HttpStatusCode.InternalServerError;
            if (e is HttpRequestException or TaskCanceledException or TimeoutException) return true;
        }
        return false;
    }
}
