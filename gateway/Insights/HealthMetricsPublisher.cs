using Confluent.Kafka;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using HealthMetric = StreamHealth.Schemas.Avro.Insights.HealthMetric;
using UserKey = StreamHealth.Schemas.Avro.Common.UserKey;

namespace StreamHealth.Gateway.Insights;

/// <summary>The gateway's producer of insights.metrics, created on first use: Avro (Confluent wire format) through the
/// gateway's schema registry connection, key UserKey so one person's metrics stay in order on one partition.</summary>
public sealed class HealthMetricsPublisher(StreamHealthOptions options, SchemaRegistryConnection registry) : IDisposable
{
    private readonly Lazy<IProducer<byte[], byte[]>> _producer = new(() => new ProducerBuilder<byte[], byte[]>(new ProducerConfig
    {
        // Idempotence implies acks=all: the delivery report a request waits for means every in-sync replica has it.
        BootstrapServers = options.Kafka.BootstrapServers, EnableIdempotence = true, LingerMs = 1, ClientId = "gateway-health-metrics",
        // A request waits for its acknowledgement; past this the broker is treated as unreachable (503), not waited on.
        MessageTimeoutMs = 10_000,
    }).Build());

    public bool Configured => !string.IsNullOrEmpty(options.Kafka.BootstrapServers);

    /// <summary>Completes when the broker has acknowledged the record; throws <see cref="KafkaException"/> when it did not.</summary>
    public async Task ProduceAsync(HealthMetric metric, CancellationToken ct)
    {
        var keys = registry.SerDes<UserKey>();
        var values = registry.SerDes<HealthMetric>();
        await keys.PrepareAsync(Topics.InsightsMetrics, MessageComponentType.Key);
        await values.PrepareAsync(Topics.InsightsMetrics, MessageComponentType.Value);
        await _producer.Value.ProduceAsync(Topics.InsightsMetrics, new Message<byte[], byte[]>
        {
            Key = keys.Serialize(new UserKey { user_id = metric.user_id }, new SerializationContext(MessageComponentType.Key, Topics.InsightsMetrics)),
            Value = values.Serialize(metric, new SerializationContext(MessageComponentType.Value, Topics.InsightsMetrics)),
            Timestamp = Timestamp.Default,
        }, ct);
    }

    public void Dispose()
    {
        if (_producer.IsValueCreated) _producer.Value.Dispose();
    }
}
