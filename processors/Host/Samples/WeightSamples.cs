using Confluent.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;
using StreamHealth.Weight.Pipeline;
using StreamHealth.Weight.Samples;

namespace StreamHealth.Host.Samples;

/// <summary>Weigh-ins for the local stack: the synthetic cohort (a year of irregular measurements per person, with noise,
/// outliers, step changes and gaps), dated so that its year ends within the coming week (<see cref="CohortStartUnixMs"/>).
/// What is already past is sent at once, at up to Samples:WeightsPerSecond, so the filtered trend of the last 90 days is
/// readable within seconds of `up`; each later weigh-in is sent when its time comes. Avro in the Confluent wire format.</summary>
internal static class WeightSamples
{
    public const int Users = 20;

    public static string ExampleUser => new SyntheticWeightCohort(Users).UserId(0);

    /// <summary>The Monday (00:00 UTC) on or before <paramref name="now"/> less 358 days: the cohort's 365 days end between now and
    /// a week from now, and it starts on a Monday as its weekly rhythm assumes.</summary>
    public static long CohortStartUnixMs(DateTimeOffset now)
    {
        var day = (long)Math.Floor((now.ToUnixTimeMilliseconds() - 358 * 86_400_000L) / 86_400_000.0);
        // 1970-01-01 was a Thursday: day 4 was a Monday.
        var monday = day - (((day - 4) % 7) + 7) % 7;
        return monday * 86_400_000L;
    }

    /// <summary>Records in Avro (the Confluent wire format) through <paramref name="registry"/>, as every weights.raw producer.</summary>
    public static async Task RunAsync(string bootstrap, SchemaRegistryConnection registry, int perSecond, CancellationToken ct)
    {
        if (perSecond <= 0) return;
        var keys = registry.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var values = registry.SerDes<StreamHealth.Schemas.Avro.Weights.WeightMeasurement>();
        var start = CohortStartUnixMs(DateTimeOffset.UtcNow);
        var cohort = new SyntheticWeightCohort(Users, startUnixMs: start);
        // The same start all week, so a restarted `up` sends the same measurements under the same ids, which the pipeline
        // keeps once; a new week's cohort has ids of its own (a measurement id never names two measurements).
        var run = DateTimeOffset.FromUnixTimeMilliseconds(start).ToString("yyyyMMdd", System.Globalization.CultureInfo.InvariantCulture);
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5 }).Build();
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1.0 / perSecond));
        long sequence = 0;
        try
        {
            foreach (var weighIn in cohort.Stream())
            {
                var o = weighIn.Observation;
                var dueInMs = o.TimeUnixMs - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                if (dueInMs > 0) await Task.Delay(TimeSpan.FromMilliseconds(dueInMs), ct);
                else if (!await timer.WaitForNextTickAsync(ct)) break;
                var measurement = new WeightMeasurement
                {
                    SchemaVersion = 1, EventTimeUnixMs = o.TimeUnixMs, MeasurementId = $"sample-{run}-{weighIn.UserId}-{sequence++}",
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
