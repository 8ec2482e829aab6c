using Confluent.Kafka;
using Confluent.SchemaRegistry;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Observability;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;
using StreamHealth.Schemas.Avro.CallLogs;
using StreamHealth.Schemas.Avro.Common;

namespace StreamHealth.Gateway.CallLogs;

/// <summary>Produces the webhooks' <see cref="CallCompleted"/> notices to calllogs.raw, keyed by call id, Avro through the
/// registry. An answer waits for the delivery report, so a 202 means every in-sync replica has the record.</summary>
public sealed class CallCompletedPublisher(StreamHealthOptions options, SchemaRegistryConnection registry) : IDisposable
{
    private readonly Lazy<IProducer<byte[], byte[]>> _producer = new(() => new ProducerBuilder<byte[], byte[]>(new ProducerConfig
    {
        // Idempotence implies acks=all: the delivery report the 202 waits for means every in-sync replica has it. Nagle off:
        // each webhook waits on its own small produce.
        BootstrapServers = options.Kafka.BootstrapServers, EnableIdempotence = true, LingerMs = 1, ClientId = "gateway-call-webhooks",
        SocketNagleDisable = true,
        // Past this the broker is treated as unreachable (503, the provider retries), well inside the claim's pending lifetime.
        MessageTimeoutMs = 10_000,
    }).Build());

    public bool Configured => !string.IsNullOrEmpty(options.Kafka.BootstrapServers);

    /// <summary>Resolves the topic's schema ids (cached after the first call): called before the event id is claimed, so that a
    /// registry outage is a 503 with nothing claimed.</summary>
    public async Task PrepareAsync()
    {
        await registry.SerDes<CallKey>().PrepareAsync(Topics.CallLogsRaw, MessageComponentType.Key);
        await registry.SerDes<CallCompleted>().PrepareAsync(Topics.CallLogsRaw, MessageComponentType.Value);
    }

    /// <summary>Completes when the broker has acknowledged the record; throws <see cref="KafkaException"/> when it did not.
    /// Not cancellable: a provider that hangs up does not stop the record, so its fate is waited for and recorded either way.</summary>
    public async Task ProduceAsync(CallCompleted notice)
    {
        await PrepareAsync();
        var key = registry.SerDes<CallKey>().Serialize(new CallKey { call_id = notice.call_id },
            new SerializationContext(MessageComponentType.Key, Topics.CallLogsRaw));
        var value = registry.SerDes<CallCompleted>().Serialize(notice, new SerializationContext(MessageComponentType.Value, Topics.CallLogsRaw));
        await _producer.Value.ProduceTracedAsync(StreamTracing.Gateway, Topics.CallLogsRaw, new Message<byte[], byte[]> { Key = key, Value = value, Timestamp = Timestamp.Default });
    }

    public void Dispose()
    {
        if (_producer.IsValueCreated) _producer.Value.Dispose();
    }
}
