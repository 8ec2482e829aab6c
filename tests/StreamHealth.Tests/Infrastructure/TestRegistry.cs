using Confluent.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Weight.Pipeline;
using AvroRecords = StreamHealth.Schemas.Avro;
using Proto = StreamHealth.Schemas;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>The embedded schema registry over a test database (as <see cref="SchemaRegistry.RegistryFixture"/>), with the
/// connection (auto-registration on) that what a test starts is given, and the weights topics' records in the Confluent
/// wire format as every producer and reader writes and reads them (<see cref="WeightWire"/>). <see cref="Shared"/>: one per
/// test run, for tests that have no database of their own.</summary>
public sealed class TestRegistry : IDisposable
{
    private readonly AvroSerDes<AvroRecords.Common.UserKey> _keys;
    private readonly AvroSerDes<AvroRecords.Weights.WeightMeasurement> _measurements;
    private readonly AvroSerDes<AvroRecords.Weights.WeightResult> _results;

    private TestRegistry(SchemaRegistryServer server)
    {
        Server = server;
        Connection = SchemaRegistryConnection.Connect(server.Url, autoRegister: true);
        _keys = Connection.SerDes<AvroRecords.Common.UserKey>();
        _measurements = Connection.SerDes<AvroRecords.Weights.WeightMeasurement>();
        _results = Connection.SerDes<AvroRecords.Weights.WeightResult>();
    }

    public SchemaRegistryServer Server { get; }
    public SchemaRegistryConnection Connection { get; }
    public string Url => Server.Url;

    /// <summary>A registry over <paramref name="connectionString"/> (a migrated database).</summary>
    public static TestRegistry Start(string connectionString) =>
        new(SchemaRegistryServer.StartAsync(connectionString, "http://127.0.0.1:0").GetAwaiter().GetResult());

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

    public void Dispose()
    {
        Connection.Dispose();
        Server.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
