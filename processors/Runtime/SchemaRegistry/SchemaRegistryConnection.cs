using Avro.Specific;
using Confluent.SchemaRegistry;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>What every producer, topology and sink of an Avro topic needs from the schema registry: one client (its
/// schema and id caches shared by everything the process serialises) and whether serializers may register a schema
/// the registry does not have yet (<see cref="SchemaRegistryOptions.EffectiveAutoRegister"/>). One per process:
/// topologies get it through <see cref="StreamHostOptions.SchemaRegistry"/> (<see cref="ProcessorServices.Schemas"/>),
/// sinks and the gateway as a constructor parameter / DI singleton.</summary>
public sealed class SchemaRegistryConnection : IDisposable
{
    private readonly bool _ownsClient;

    /// <summary>Over a client the caller keeps (and disposes).</summary>
    public SchemaRegistryConnection(ISchemaRegistryClient client, bool autoRegister) : this(client, autoRegister, ownsClient: false) { }

    private SchemaRegistryConnection(ISchemaRegistryClient client, bool autoRegister, bool ownsClient)
    {
        Client = client;
        AutoRegister = autoRegister;
        _ownsClient = ownsClient;
    }

    public ISchemaRegistryClient Client { get; }
    public bool AutoRegister { get; }

    /// <summary>A Confluent CachedSchemaRegistryClient at <see cref="SchemaRegistryOptions.Url"/>, disposed with this.</summary>
    public static SchemaRegistryConnection Connect(SchemaRegistryOptions options) =>
        Connect(options.Url, options.EffectiveAutoRegister);

    public static SchemaRegistryConnection Connect(string url, bool autoRegister) =>
        new(new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = url }), autoRegister, ownsClient: true);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<Type, object> _serdes = new();

    /// <summary>The serde of <typeparamref name="T"/> in the Confluent wire format over this client (TopicNameStrategy): one
    /// per type, so the schema ids it resolves are resolved once per process (a new serde per call asked the registry
    /// client again every time).</summary>
    public AvroSerDes<T> SerDes<T>() where T : ISpecificRecord, new() =>
        (AvroSerDes<T>)_serdes.GetOrAdd(typeof(T), _ => new AvroSerDes<T>(Client, AutoRegister));

    public void Dispose()
    {
        if (_ownsClient) Client.Dispose();
    }
}
