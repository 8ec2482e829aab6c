using System.Reflection;
using Streamiz.Kafka.Net.Metrics;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Tests.Streams;

/// <summary>The lag probe reads Streamiz's sensors from its own thread while the Kafka clients' statistics callbacks rewrite
/// them without a lock. One such read once threw out of the probe's thread and ended a test host (CI, 2026-12-05).</summary>
public sealed class KafkaClientMetricsTests
{
    [Fact]
    public void A_read_that_meets_a_write_is_taken_again_and_after_three_is_given_up_as_null_not_thrown()
    {
        var reads = 0;
        IEnumerable<Sensor> Racing(int failures, Exception race)
        {
            if (++reads <= failures) throw race;
            yield break;
        }

        var modified = new InvalidOperationException("Collection was modified; enumeration operation may not execute.");
        var result = KafkaClientMetrics.TryCollect("app", () => Racing(2, modified));
        Assert.NotNull(result);
        Assert.Empty(result);
        Assert.Equal(3, reads);

        reads = 0;
        var duplicate = new ArgumentException("An item with the same key has already been added.");
        Assert.Null(KafkaClientMetrics.TryCollect("app", () => Racing(int.MaxValue, duplicate)));
        Assert.Equal(3, reads);
    }

    /// <summary>Streamiz 1.8.2's own librdkafka sensor, scoped and pruned by one thread as a client's statistics callback does,
    /// read by another as the lag probe does. The sensor type is internal, so it is made and driven through reflection: the
    /// point is to race the real collection, not a stand-in for it.</summary>
    [Fact]
    public void Streamiz_librdkafka_sensors_rewritten_while_read_never_throw_out_of_the_read()
    {
        var assembly = typeof(Sensor).Assembly;
        var sensorType = assembly.GetType("Streamiz.Kafka.Net.Metrics.Librdkafka.LibrdKafkaSensor", throwOnError: true)!;
        const BindingFlags inside = BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public;
        var sensor = (Sensor)Activator.CreateInstance(sensorType, inside, null, ["messages-consumed-total", "test", MetricsRecordingLevel.INFO], null)!;
        var stat = Activator.CreateInstance(assembly.GetType("Streamiz.Kafka.Net.Metrics.Stats.CumulativeSum", throwOnError: true)!, inside, null, [], null)!;
        var addStat = sensorType.GetMethods(inside).Single(m => m.Name == "AddStatMetric" && m.GetParameters().Length == 3);
        addStat.Invoke(sensor, [new MetricName("messages-consumed-total", "stream-librdkafka-consumer-metrics", "test", new Dictionary<string, string>()), stat, null]);
        var scoped = sensorType.GetMethod("Scoped", inside)!;
        var prune = sensorType.GetMethod("RemoveOldScopeSensor", inside)!;

        using var stop = new CancellationTokenSource();
        Exception? writerFailed = null;
        var writer = new Thread(() =>
        {
            try
            {
                var round = 0L;
                while (!stop.IsCancellationRequested)
                {
                    for (var p = 0; p < 8; p++)
                        scoped.Invoke(sensor, [new[] { ("topic", "t"), ("partition_id", (round * 8 + p).ToString()) }]);
                    prune.Invoke(sensor, [long.MaxValue]);   // every scope recorded before "now": all pruned
                    round++;
                }
            }
            catch (Exception e)
            {
                writerFailed = e;   // kept for the assertion below: thrown here it would end the test host
            }
        }) { IsBackground = true };
        writer.Start();
        try
        {
            // The race is real: the plain read throws within a few tries.
            var plainThrew = false;
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (!plainThrew && DateTime.UtcNow < deadline)
            {
                try { KafkaClientMetrics.Collect("app", [sensor]); }
                catch (Exception e) when (e is InvalidOperationException or ArgumentException or NullReferenceException or IndexOutOfRangeException) { plainThrew = true; }
            }
            Assert.True(plainThrew, "the unguarded read never met a write in 20 s");

            // The guarded read gives figures or null, never an exception.
            int figures = 0, gaveUp = 0;
            for (var i = 0; i < 2_000; i++)
                if (KafkaClientMetrics.TryCollect("app", () => [sensor]) is null) gaveUp++;
                else figures++;
            Assert.Equal(2_000, figures + gaveUp);
            Assert.True(figures > 0, "every guarded read gave up");
        }
        finally
        {
            stop.Cancel();
            writer.Join();
        }
        Assert.Null(writerFailed);
    }
}
