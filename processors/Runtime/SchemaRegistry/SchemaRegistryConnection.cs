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

    private SchemaRegistryConnection(ISchemaRegistryClient client, bool autoRegister, bool ownsClient, string? url = null)
    {
        Client = client;
        AutoRegister = autoRegister;
        _ownsClient = ownsClient;
        Url = url;
    }

    public ISchemaRegistryClient Client { get; }
    public bool AutoRegister { get; }
    /// <summary>The registry's URL, when this connection made its client.</summary>
    public string? Url { get; }

    /// <summary>How the client retries a request the registry could not answer (unreachable, timed out, 408/429/5xx):
    /// up to <see cref="MaxTries"/> tries, waiting <see cref="RetryWaitMs"/> doubled each time (Confluent's exponential
    /// backoff, at most <see cref="RetryMaxWaitMs"/>), so a registry restart of a few seconds costs a delay, not a failure.
    /// Everything already resolved (schema ids by subject, writer schemas by id) is served from the client's caches and
    /// the serdes' without asking the registry at all.</summary>
    public const int MaxTries = 4, RetryWaitMs = 500, RetryMaxWaitMs = 4_000;

    /// <summary>Start-up check for a process that cannot work without the registry (a processing host, the forecaster):
    /// the registry answers <c>GET /config</c> (after the client's retries), or a <see cref="ConfigurationException"/>
    /// whose one-line message names the URL.</summary>
    public async Task EnsureReachableAsync()
    {
        try
        {
            await Client.GetCompatibilityAsync();
        }
        catch (Exception e) when (ConfluentWire.IsRegistryUnavailable(e))
        {
            throw new ConfigurationException($"SchemaRegistry:Url = {Url ?? "(client given)"}: the schema registry cannot be reached ({OneLine(e.Message)})");
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");

    /// <summary>A Confluent CachedSchemaRegistryClient at <see cref="SchemaRegistryOptions.Url"/>, disposed with this.</summary>
    public static SchemaRegistryConnection Connect(SchemaRegistryOptions options) =>
        Connect(options.Url, options.EffectiveAutoRegister);

    public static SchemaRegistryConnection Connect(string url, bool autoRegister) =>
        new(new CachedSchemaRegistryClient(new SchemaRegistryConfig
        {
            Url = url, MaxRetries = MaxTries, RetriesWaitMs = RetryWaitMs, RetriesMaxWaitMs = RetryMaxWaitMs,
        }), autoRegister, ownsClient: true, url);

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
