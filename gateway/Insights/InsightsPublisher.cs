using Avro.Specific;
using Confluent.Kafka;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Observability;
using StreamHealth.Runtime.SchemaRegistry;
using UserKey = StreamHealth.Schemas.Avro.Common.UserKey;

namespace StreamHealth.Gateway.Insights;

/// <summary>The gateway's producer of the insights ingest topics (insights.metrics, insights.nutrition), created on first
/// use: Avro (Confluent wire format) through the gateway's schema registry connection, key UserKey so one person's records
/// stay in order on one partition. One producer for every insights topic: each holds broker connections and a thread.</summary>
public sealed class InsightsPublisher(StreamHealthOptions options, SchemaRegistryConnection registry) : IDisposable
{
    private readonly Lazy<IProducer<byte[], byte[]>> _producer = new(() => new ProducerBuilder<byte[], byte[]>(new ProducerConfig
    {
        // Idempotence implies acks=all: the delivery report a request waits for means every in-sync replica has it. Nagle off:
        // a request waits on each small produce, which Nagle would hold back for the previous one's ACK.
        BootstrapServers = options.Kafka.BootstrapServers, EnableIdempotence = true, LingerMs = 1, ClientId = "gateway-insights", SocketNagleDisable = true,
        // A request waits for its acknowledgement; past this the broker is treated as unreachable (503), not waited on.
        MessageTimeoutMs = 10_000,
    }).Build());

    public bool Configured => !string.IsNullOrEmpty(options.Kafka.BootstrapServers);

    /// <summary>Resolves the topic's key and value schema ids at the registry (cached after the first call): a handler calls it
    /// before it claims anything, so that a registry outage is a 503 with nothing written.</summary>
    public async Task PrepareAsync<TValue>(string topic) where TValue : ISpecificRecord, new()
    {
        await registry.SerDes<UserKey>().PrepareAsync(topic, MessageComponentType.Key);
        await registry.SerDes<TValue>().PrepareAsync(topic, MessageComponentType.Value);
    }

    /// <summary>Completes when the broker has acknowledged the record; throws <see cref="KafkaException"/> when it did not.</summary>
    public async Task ProduceAsync<TValue>(string topic, string userId, TValue value, CancellationToken ct) where TValue : ISpecificRecord, new()
    {
        await PrepareAsync<TValue>(topic);
        var keys = registry.SerDes<UserKey>();
        var values = registry.SerDes<TValue>();
        await _producer.Value.ProduceTracedAsync(StreamTracing.Gateway, topic, new Message<byte[], byte[]>
        {
            Key = keys.Serialize(new UserKey { user_id = userId }, new SerializationContext(MessageComponentType.Key, topic)),
            Value = values.Serialize(value, new SerializationContext(MessageComponentType.Value, topic)),
            Timestamp = Timestamp.Default,
        }, ct);
    }

    public void Dispose()
    {
        if (_producer.IsValueCreated) _producer.Value.Dispose();
    }
}
