using Confluent.Kafka;
using Google.Protobuf;
using StreamHealth.Schemas;
using StreamHealth.Weight.Samples;

namespace StreamHealth.Host.Samples;

/// <summary>Weigh-ins for the local stack: the synthetic cohort (a year of irregular measurements per
/// person, with noise, outliers, step changes and gaps) replayed onto weights.raw at a steady pace, so
/// filtered weights appear through the gateway within seconds. Event times are the cohort's own (2025).</summary>
internal static class WeightSamples
{
    public const int Users = 20;

    public static string ExampleUser => new SyntheticWeightCohort(Users).UserId(0);

    public static async Task RunAsync(string bootstrap, int perSecond, CancellationToken ct)
    {
        if (perSecond <= 0) return;
        var cohort = new SyntheticWeightCohort(Users);
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5 }).Build();
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1.0 / perSecond));
        long sequence = 0;
        try
        {
            foreach (var weighIn in cohort.Stream())
            {
                if (!await timer.WaitForNextTickAsync(ct)) break;
                var o = weighIn.Observation;
                var measurement = new WeightMeasurement
                {
                    SchemaVersion = 1, EventTimeUnixMs = o.TimeUnixMs, MeasurementId = $"sample-{weighIn.UserId}-{sequence++}",
                    UserId = weighIn.UserId, Value = o.Value, Unit = o.Unit, Source = o.Source, SourceDetail = "synthetic cohort",
                };
                producer.Produce(Topics.WeightsRaw, new Message<byte[], byte[]>
                {
                    Key = new UserKey { UserId = weighIn.UserId }.ToByteArray(),
                    Value = measurement.ToByteArray(),
                    Timestamp = new Timestamp(o.TimeUnixMs, TimestampType.CreateTime),
                });
            }
        }
        catch (OperationCanceledException) { }
        producer.Flush(TimeSpan.FromSeconds(5));
    }
}
