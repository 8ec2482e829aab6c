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

/// <summary>Cost of the value serde every record pays twice (consume and produce): today's Protobuf, and its successor,
/// Confluent's Avro serializer/deserializer in the registry's wire format (<see cref="AvroSerDes{T}"/>), for the same
/// weight measurement. The Avro pair runs against the stand-in registry (BENCH_PG, default the local stack's
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

    /// <summary>Confluent's AvroSerializer (5-byte header + Avro binary) through the Streamiz serde.</summary>
    [Benchmark]
    public byte[] AvroSerialize() => _avro.Serialize(_avroMeasurement, ValueContext);

    [Benchmark]
    public AvroWeights.WeightMeasurement AvroDeserialize() => _avro.Deserialize(_avroEncoded, ValueContext);

    // Apache.Avro alone (no wire header, no registry): how much of the above is Avro's own cost.
    private readonly global::Avro.Specific.SpecificDatumWriter<AvroWeights.WeightMeasurement> _rawWriter = new(AvroWeights.WeightMeasurement._SCHEMA);
    private readonly global::Avro.Specific.SpecificDatumReader<AvroWeights.WeightMeasurement> _rawReader =
        new(AvroWeights.WeightMeasurement._SCHEMA, AvroWeights.WeightMeasurement._SCHEMA);
    private readonly MemoryStream _rawStream = new(256);

    [Benchmark]
    public long AvroBinaryWriteOnly()
    {
        _rawStream.Position = 0;
        _rawWriter.Write(_avroMeasurement, new global::Avro.IO.BinaryEncoder(_rawStream));
        return _rawStream.Position;
    }

    [Benchmark]
    public AvroWeights.WeightMeasurement AvroBinaryReadOnly() =>
        _rawReader.Read(null!, new global::Avro.IO.BinaryDecoder(new MemoryStream(_avroEncoded, ConfluentWire.HeaderBytes, _avroEncoded.Length - ConfluentWire.HeaderBytes)));
}
