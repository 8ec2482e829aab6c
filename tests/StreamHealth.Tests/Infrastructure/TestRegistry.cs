using Confluent.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Weight.Pipeline;
using AvroRecords = StreamHealth.Schemas.Avro;
using Proto = StreamHealth.Schemas;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>The embedded schema registry over a test database (as <see cref="SchemaRegistry.RegistryFixture"/>), with the
/// connection (auto-registration on) that what a test starts is given, and the Avro topics' records in the Confluent
/// wire format as every producer and reader writes and reads them (the weights' through <see cref="WeightWire"/>, the
/// others' generated records as they are). <see cref="Shared"/>: one per
/// test run, for tests that have no database of their own.</summary>
public sealed class TestRegistry : IDisposable
{
    private readonly AvroSerDes<AvroRecords.Common.UserKey> _keys;
    private readonly AvroSerDes<AvroRecords.Weights.WeightMeasurement> _measurements;
    private readonly AvroSerDes<AvroRecords.Weights.WeightResult> _results;

    private readonly SchemaRegistryServer? _server;

    private TestRegistry(SchemaRegistryServer? server, string url)
    {
        _server = server;
        Url = url;
        Connection = SchemaRegistryConnection.Connect(url, autoRegister: true);
        _keys = Connection.SerDes<AvroRecords.Common.UserKey>();
        _measurements = Connection.SerDes<AvroRecords.Weights.WeightMeasurement>();
        _results = Connection.SerDes<AvroRecords.Weights.WeightResult>();
    }

    /// <summary>The stand-in this registry runs (none for <see cref="Connect"/>).</summary>
    public SchemaRegistryServer Server => _server ?? throw new InvalidOperationException($"{Url} is a registry this test did not start");
    public SchemaRegistryConnection Connection { get; }
    public string Url { get; }

    /// <summary>A registry over <paramref name="connectionString"/> (a migrated database).</summary>
    public static TestRegistry Start(string connectionString)
    {
        var server = SchemaRegistryServer.StartAsync(connectionString, "http://127.0.0.1:0").GetAwaiter().GetResult();
        return new(server, server.Url);
    }

    /// <summary>A registry that runs elsewhere (Confluent's, in the container suite); disposing closes only the connection.</summary>
    public static TestRegistry Connect(string url) => new(null, url);

    private static readonly Lazy<TestRegistry> SharedRegistry = new(() =>
    {
        var cs = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("registry_shared"));
        PostgresMigrator.MigrateAsync(cs).GetAwaiter().GetResult();
        return Start(cs);
    });

    /// <summary>One registry for the test run (never disposed: it lives as long as the test process).</summary>
    public static TestRegistry Shared => SharedRegistry.Value;

    /// <summary><paramref name="settings"/> (e.g. <see cref="LocalServices.Overrides"/>) pointing SchemaRegistry:Url here.</summary>
    public Dictionary<string, string?> With(Dictionary<string, string?> settings)
    {
        settings["SchemaRegistry:Url"] = Url;
        settings["SchemaRegistry:AutoRegister"] = "true";
        return settings;
    }

    public byte[] Key(string topic, string userId) => WeightWire.Key(_keys, topic, userId);

    public string UserOf(string topic, byte[] key) =>
        _keys.Deserialize(key, new SerializationContext(MessageComponentType.Key, topic)).user_id;

    public byte[] Value(string topic, Proto.WeightMeasurement m) => WeightWire.Measurement(_measurements, topic, m);

    public byte[] Value(string topic, Proto.WeightResult r) => WeightWire.Value(_results, topic, WeightWire.ToAvro(r));

    public Proto.WeightMeasurement Measurement(string topic, byte[] value) => WeightWire.ToProto(_measurements.ReadValue(value, topic));

    public Proto.WeightResult Result(string topic, byte[] value) => WeightWire.Result(_results, topic, value);

    /// <summary>An Avro record (a generated class, e.g. the CGM topics' records) as a value of <paramref name="topic"/>,
    /// serialised as every producer of the topic does.</summary>
    public byte[] Value<T>(string topic, T record) where T : global::Avro.Specific.ISpecificRecord, new() =>
        Connection.SerDes<T>().Serialize(record, new SerializationContext(MessageComponentType.Value, topic));

    /// <summary>A value of <paramref name="topic"/> read as <typeparamref name="T"/> (a <see cref="FormatException"/> when it is not one).</summary>
    public T Read<T>(string topic, byte[] value) where T : global::Avro.Specific.ISpecificRecord, new() =>
        Connection.SerDes<T>().ReadValue(value, topic);

    /// <summary>A well-formed record of <paramref name="topic"/> whose header names a schema id the registry never issued.</summary>
    public byte[] WithUnknownSchemaId<T>(string topic, T record, int schemaId = 987_654) where T : global::Avro.Specific.ISpecificRecord, new()
    {
        var bytes = Value(topic, record);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(1), schemaId);
        return bytes;
    }

    public void Dispose()
    {
        Connection.Dispose();
        _server?.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
