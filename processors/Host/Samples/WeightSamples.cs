using Confluent.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;
using StreamHealth.Weight.Pipeline;
using StreamHealth.Weight.Samples;

namespace StreamHealth.Host.Samples;

/// <summary>Weigh-ins for the local stack: the synthetic cohort (a year of irregular measurements per
/// person, with noise, outliers, step changes and gaps) replayed onto weights.raw at a steady pace, so
/// filtered weights appear through the gateway within seconds. Event times are the cohort's own (2025).</summary>
internal static class WeightSamples
{
    public const int Users = 20;

    public static string ExampleUser => new SyntheticWeightCohort(Users).UserId(0);

    /// <summary>Records in Avro (the Confluent wire format) through <paramref name="registry"/>, as every weights.raw producer.</summary>
    public static async Task RunAsync(string bootstrap, SchemaRegistryConnection registry, int perSecond, CancellationToken ct)
    {
        if (perSecond <= 0) return;
        var keys = registry.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var values = registry.SerDes<StreamHealth.Schemas.Avro.Weights.WeightMeasurement>();
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
                    Key = WeightWire.Key(keys, Topics.WeightsRaw, weighIn.UserId),
                    Value = WeightWire.Measurement(values, Topics.WeightsRaw, measurement),
                    Timestamp = new Timestamp(o.TimeUnixMs, TimestampType.CreateTime),
                });
            }
        }
        catch (OperationCanceledException) { }
        producer.Flush(TimeSpan.FromSeconds(5));
    }
}
