using BenchmarkDotNet.Attributes;
using Confluent.Kafka;
using Confluent.SchemaRegistry;
using Google.Protobuf;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using AvroWeights = StreamHealth.Schemas.Avro.Weights;

namespace StreamHealth.Benchmarks.Schemas;

/// <summary>Cost of the value serde every record pays twice (consume and produce): today's Protobuf, its successor
/// <see cref="AvroSerDes{T}"/> (the registry's wire format), and Confluent's own Avro serializer/deserializer, for the same
/// weight measurement. The Avro rows run against the stand-in registry (BENCH_PG, default the local stack's
/// PostgreSQL): after the first call the schema id is cached, so what is measured is the serde, not the registry.</summary>
[MemoryDiagnoser]
public class SerdeBenchmarks
{
    private readonly WeightMeasurement _measurement = new()
    {
        SchemaVersion = 1, EventTimeUnixMs = 1_732_000_000_000, MeasurementId = "3f2b7c1e-0d5a-4c55-9a57-0b8f1d2e6a10",
        UserId = "user-000123", Value = 81.4, Unit = WeightUnit.Kg, Source = WeightSource.ConnectedScale,
    };
    private readonly AvroWeights.WeightMeasurement _avroMeasurement = new()
    {
        event_time_unix_ms = DateTime.UnixEpoch.AddMilliseconds(1_732_000_000_000), measurement_id = "3f2b7c1e-0d5a-4c55-9a57-0b8f1d2e6a10",
        user_id = "user-000123", value = 81.4, unit = AvroWeights.WeightUnit.WEIGHT_UNIT_KG,
        source = AvroWeights.WeightSource.WEIGHT_SOURCE_CONNECTED_SCALE, initialization_batch = [],
        declared_event = AvroWeights.WeightEvent.WEIGHT_EVENT_UNSPECIFIED,
    };
    // One fixed subject (bench.weights-value): every run registers the same schema again, idempotently.
    private static readonly SerializationContext ValueContext = new(MessageComponentType.Value, "bench.weights");
    private readonly byte[] _buffer = new byte[256];
    private byte[] _encoded = [];
    private byte[] _avroEncoded = [];
    private SchemaRegistryServer? _registry;
    private CachedSchemaRegistryClient? _client;
    private AvroSerDes<AvroWeights.WeightMeasurement> _avro = null!;

    [GlobalSetup]
    public void Setup()
    {
        _encoded = _measurement.ToByteArray();
        var pg = Environment.GetEnvironmentVariable("BENCH_PG") ?? "Host=127.0.0.1;Port=55432;Database=streamhealth;Username=postgres";
        PostgresMigrator.MigrateAsync(pg).GetAwaiter().GetResult();
        _registry = SchemaRegistryServer.StartAsync(pg, "http://127.0.0.1:0").GetAwaiter().GetResult();
        _client = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = _registry.Url });
        _avro = new AvroSerDes<AvroWeights.WeightMeasurement>(_client, autoRegister: true);
        _avroEncoded = _avro.Serialize(_avroMeasurement, ValueContext);   // registers the schema; its id is cached from here
        var subjects = new Confluent.SchemaRegistry.Serdes.AvroSerializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic };
        _confluentSerializer = new(_client, subjects);
        _confluentDeserializer = new(_client, new Confluent.SchemaRegistry.Serdes.AvroDeserializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic });
        _ = ConfluentAvroSerialize();
        _ = ConfluentAvroDeserialize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client?.Dispose();
        _registry?.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    /// <summary>Into a reused buffer: no allocation per record.</summary>
    [Benchmark]
    public int SerializeIntoBuffer()
    {
        var size = _measurement.CalculateSize();
        _measurement.WriteTo(_buffer.AsSpan(0, size));
        return size;
    }

    [Benchmark]
    public WeightMeasurement Parse() => WeightMeasurement.Parser.ParseFrom(_encoded);

    /// <summary>AvroSerDes: Confluent's registry client (id cached), Apache.Avro's writer, the 5-byte header.</summary>
    [Benchmark]
    public byte[] AvroSerialize() => _avro.Serialize(_avroMeasurement, ValueContext);

    [Benchmark]
    public AvroWeights.WeightMeasurement AvroDeserialize() => _avro.Deserialize(_avroEncoded, ValueContext);

    // Confluent's own serializer/deserializer for the same record and registry: what AvroSerDes does not use, and why.
    private Confluent.SchemaRegistry.Serdes.AvroSerializer<AvroWeights.WeightMeasurement> _confluentSerializer = null!;
    private Confluent.SchemaRegistry.Serdes.AvroDeserializer<AvroWeights.WeightMeasurement> _confluentDeserializer = null!;

    [Benchmark]
    public byte[] ConfluentAvroSerialize() => _confluentSerializer.SerializeAsync(_avroMeasurement, ValueContext).GetAwaiter().GetResult();

    [Benchmark]
    public AvroWeights.WeightMeasurement ConfluentAvroDeserialize() =>
        _confluentDeserializer.DeserializeAsync(_avroEncoded, false, ValueContext).GetAwaiter().GetResult();
}
