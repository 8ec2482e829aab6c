using Confluent.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.Host.Samples;

/// <summary>Synthetic health metrics for the local stack: a few people's steps and resting heart
/// rate, paced, so the dashboard and `streamhealth dump insights.metrics` show data moving. Avro in the Confluent wire
/// format, like every producer of the topic.</summary>
internal static class HealthMetricSamples
{
    private static readonly string[] Users = ["demo-alice", "demo-bob", "demo-chen", "demo-dara", "demo-eli"];

    public static async Task RunAsync(string bootstrap, SchemaRegistryConnection registry, int perSecond, CancellationToken ct)
    {
        if (perSecond <= 0) return;
        var keys = registry.SerDes<AvroRecords.Common.UserKey>();
        var values = registry.SerDes<AvroRecords.Insights.HealthMetric>();
        var config = new ProducerConfig { BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5 };
        using var producer = new ProducerBuilder<byte[], byte[]>(config).Build();
        var random = new Random(42);
        var interval = TimeSpan.FromSeconds(1.0 / perSecond);
        long sequence = 0;
        // A metric id names one metric for good: a later `up` (the dev database keeps what earlier runs stored) must not
        // reuse an id for other values, or the sink would rightly dead-letter it as a conflict.
        var run = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString("x", System.Globalization.CultureInfo.InvariantCulture);
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                var user = Users[sequence % Users.Length];
                var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                var steps = sequence % 2 == 0;
                var metric = new AvroRecords.Insights.HealthMetric
                {
                    event_time_unix_ms = DateTime.UnixEpoch.AddMilliseconds(now),
                    metric_id = $"sample-{run}-{sequence}",
                    user_id = user,
                    metric = steps ? "steps" : "heart_rate",
                    value = steps ? random.Next(0, 400) : 55 + random.NextDouble() * 20,
                    // The types and units of POST /api/v1/health-metrics (HealthMetricTypes), which the sink stores.
                    unit = steps ? "steps" : "bpm",
                };
                producer.Produce(Topics.InsightsMetrics, new Message<byte[], byte[]>
                {
                    Key = keys.Serialize(new AvroRecords.Common.UserKey { user_id = user }, new SerializationContext(MessageComponentType.Key, Topics.InsightsMetrics)),
                    Value = values.Serialize(metric, new SerializationContext(MessageComponentType.Value, Topics.InsightsMetrics)),
                    Timestamp = new Timestamp(now, TimestampType.CreateTime),
                });
                sequence++;
            }
        }
        catch (OperationCanceledException) { }
        producer.Flush(TimeSpan.FromSeconds(5));
    }
}
