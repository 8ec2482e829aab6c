using Confluent.Kafka;
using Google.Protobuf;
using StreamHealth.Schemas;

namespace StreamHealth.Host.Samples;

/// <summary>Synthetic health metrics for the local stack: a few people's steps and resting heart
/// rate, paced, so the dashboard and `streamhealth dump insights.metrics` show data moving.</summary>
internal static class HealthMetricSamples
{
    private static readonly string[] Users = ["demo-alice", "demo-bob", "demo-chen", "demo-dara", "demo-eli"];

    public static async Task RunAsync(string bootstrap, int perSecond, CancellationToken ct)
    {
        if (perSecond <= 0) return;
        var config = new ProducerConfig { BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5 };
        using var producer = new ProducerBuilder<byte[], byte[]>(config).Build();
        var random = new Random(42);
        var interval = TimeSpan.FromSeconds(1.0 / perSecond);
        long sequence = 0;
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                var user = Users[sequence % Users.Length];
                var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                var steps = sequence % 2 == 0;
                var metric = new HealthMetric
                {
                    SchemaVersion = 1,
                    EventTimeUnixMs = now,
                    MetricId = $"sample-{sequence}",
                    UserId = user,
                    Metric = steps ? "steps" : "resting_heart_rate_bpm",
                    Value = steps ? random.Next(0, 400) : 55 + random.NextDouble() * 20,
                    Unit = steps ? "{steps}" : "/min",
                };
                producer.Produce(Topics.InsightsMetrics, new Message<byte[], byte[]>
                {
                    Key = new UserKey { UserId = user }.ToByteArray(),
                    Value = metric.ToByteArray(),
                    Timestamp = new Timestamp(now, TimestampType.CreateTime),
                });
                sequence++;
            }
        }
        catch (OperationCanceledException) { }
        producer.Flush(TimeSpan.FromSeconds(5));
    }
}
