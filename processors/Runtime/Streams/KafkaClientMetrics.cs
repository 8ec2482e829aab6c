using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text.Json;
using Streamiz.Kafka.Net.Metrics;

namespace StreamHealth.Runtime.Streams;

/// <summary>One figure of a host's Kafka clients, read from Streamiz's sensors: librdkafka's statistics (which Streamiz turns into
/// sensors with <c>ExposeLibrdKafkaStats</c>, every <see cref="StreamHostOptions.KafkaStatisticsIntervalMs"/>) and Streamiz's own
/// stream-thread sensors. <see cref="Partition"/> is -1 and <see cref="Topic"/>/<see cref="Label"/> null where they do not apply.</summary>
public readonly record struct KafkaClientMetric(string Instrument, string Application, string? Topic, int Partition, string? Label, double Value);

/// <summary>Maps Streamiz's sensors (named as Kafka's Java client names them), and the statistics of plain librdkafka clients such
/// as the sinks' consumers (<see cref="PublishStatistics"/>), to a small set of OpenTelemetry instruments with stable,
/// low-cardinality names and units in their names, and registers them on the processors' meter (<see cref="StreamTelemetry"/>).
/// The sensors are read once a second by the host's lag probe thread (<see cref="Collect"/>), never by a scrape, so Streamiz's
/// registry has one reader; a scrape observes the last copy.</summary>
public static class KafkaClientMetrics
{
    // Prometheus names (see StreamTelemetry): what the Grafana dashboard and the tests read.
    public const string ConsumerLag = "streamhealth_kafka_consumer_lag_records";
    public const string BrokerRtt = "streamhealth_kafka_broker_rtt_seconds";
    public const string ConsumedBytes = "streamhealth_kafka_consumer_received_bytes_total";
    public const string ConsumedMessages = "streamhealth_kafka_consumer_received_messages_total";
    public const string ProducedBytes = "streamhealth_kafka_producer_sent_bytes_total";
    public const string ProducedMessages = "streamhealth_kafka_producer_sent_messages_total";
    public const string ProducerQueueMessages = "streamhealth_kafka_producer_queue_messages";
    public const string ProducerQueueBytes = "streamhealth_kafka_producer_queue_bytes";
    public const string Rebalances = "streamhealth_kafka_consumer_rebalances_total";
    public const string ThreadOperations = "streamhealth_streamiz_thread_operations_total";
    public const string ThreadLatency = "streamhealth_streamiz_thread_latency_avg_seconds";

    private enum Kind { PartitionGauge, BrokerGauge, Counter, Gauge, Operation, OperationLatency }

    /// <summary>Streamiz sensor metric → (our instrument, its shape, the factor to our unit). librdkafka's are Streamiz's names in
    /// the groups "stream-librdkafka-consumer-metrics" and "-producer-metrics" (per partition: tags topic and partition_id, -1 for
    /// librdkafka's internal "unassigned" partition; per broker: broker_id); the thread ones, in "stream-thread-metrics", are
    /// "{operation}-total" and "{operation}-latency-avg" (milliseconds). Streamiz 1.8.2 counts no "process-total" per thread
    /// (our own streamhealth_stream_processed_total does).</summary>
    private static readonly Dictionary<string, (string Instrument, Kind Kind, double Scale)> Map = new(StringComparer.Ordinal)
    {
        ["consumer-lag"] = (ConsumerLag, Kind.PartitionGauge, 1),
        ["broker-latency-avg-micros"] = (BrokerRtt, Kind.BrokerGauge, 1e-6),
        ["bytes-consumed-total"] = (ConsumedBytes, Kind.Counter, 1),
        ["messages-consumed-total"] = (ConsumedMessages, Kind.Counter, 1),
        ["bytes-produced-total"] = (ProducedBytes, Kind.Counter, 1),
        ["messages-produced-total"] = (ProducedMessages, Kind.Counter, 1),
        ["messages-queue-current-total"] = (ProducerQueueMessages, Kind.Gauge, 1),
        ["bytes-queue-current-total"] = (ProducerQueueBytes, Kind.Gauge, 1),
        ["rebalance-total"] = (Rebalances, Kind.Counter, 1),
        ["commit-total"] = (ThreadOperations, Kind.Operation, 1),
        ["poll-total"] = (ThreadOperations, Kind.Operation, 1),
        ["punctuate-total"] = (ThreadOperations, Kind.Operation, 1),
        ["commit-latency-avg"] = (ThreadLatency, Kind.OperationLatency, 1e-3),
        ["poll-latency-avg"] = (ThreadLatency, Kind.OperationLatency, 1e-3),
        ["process-latency-avg"] = (ThreadLatency, Kind.OperationLatency, 1e-3),
        ["punctuate-latency-avg"] = (ThreadLatency, Kind.OperationLatency, 1e-3),
    };

    /// <summary><see cref="Collect"/> of the sensors <paramref name="sensors"/> gives, or null when every one of
    /// <paramref name="attempts"/> reads met a write. Streamiz's librdkafka sensors are rewritten, without a lock, by the clients'
    /// statistics callbacks (a stream thread's poll, a producer's poll thread) while the lag probe reads them from its own
    /// thread: a read that meets a write throws ("Collection was modified" from the sensor's Metrics, a duplicate key from its
    /// ToDictionary) or trips over a half-made entry. Such a read is simply taken again; a caller given null keeps its previous
    /// figures, so a counter never drops to a partial sum.</summary>
    public static IReadOnlyList<KafkaClientMetric>? TryCollect(string applicationId, Func<IEnumerable<Sensor>> sensors, int attempts = 3)
    {
        for (var attempt = 0; attempt < attempts; attempt++)
        {
            try
            {
                return Collect(applicationId, sensors());
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or NullReferenceException or IndexOutOfRangeException)
            {
            }
        }
        return null;
    }

    /// <summary>The figures of one topology's stream client. Several clients of one kind (a thread's main and restore consumers,
    /// threads) add up per label set; a broker's round trip is the worst client's. librdkafka's -1 ("not known yet") is left out.</summary>
    public static IReadOnlyList<KafkaClientMetric> Collect(string applicationId, IEnumerable<Sensor> sensors)
    {
        var merged = new Dictionary<(string, string?, int, string?), double>();
        foreach (var sensor in sensors)
            foreach (var metric in sensor.Metrics.Values)
            {
                if (!Map.TryGetValue(metric.Name, out var target) || !TryNumber(metric.Value, out var raw)) continue;
                var threadMetric = target.Kind is Kind.Operation or Kind.OperationLatency;
                if (threadMetric ? metric.Group != "stream-thread-metrics" : !metric.Group.Contains("librdkafka", StringComparison.Ordinal)) continue;
                if (raw < 0 || double.IsNaN(raw) || double.IsInfinity(raw)) continue;
                var value = raw * target.Scale;
                var (topic, partition, label) = target.Kind switch
                {
                    Kind.PartitionGauge => (Tag(metric, "topic"), int.TryParse(Tag(metric, "partition_id"), CultureInfo.InvariantCulture, out var p) ? p : -1, null),
                    Kind.BrokerGauge => ((string?)null, -1, Tag(metric, "broker_id")),
                    Kind.Operation or Kind.OperationLatency => (null, -1, metric.Name[..metric.Name.IndexOf('-')]),
                    _ => (null, -1, (string?)null),
                };
                if (target.Kind == Kind.PartitionGauge && (topic is null || partition < 0)) continue;
                var key = (target.Instrument, topic, partition, label);
                merged[key] = merged.TryGetValue(key, out var before)
                    ? target.Kind is Kind.BrokerGauge or Kind.OperationLatency ? Math.Max(before, value) : before + value
                    : value;
            }
        var result = new List<KafkaClientMetric>(merged.Count);
        foreach (var ((instrument, topic, partition, label), value) in merged)
            result.Add(new KafkaClientMetric(instrument, applicationId, topic, partition, label, value));
        return result;
    }

    /// <summary>The latest statistics of each plain librdkafka client (a sink's consumer), keyed by the client's owner.</summary>
    private static readonly ConcurrentDictionary<object, IReadOnlyList<KafkaClientMetric>> PlainClients = new(ReferenceEqualityComparer.Instance);

    /// <summary>A plain client's statistics handler (Confluent.Kafka's SetStatisticsHandler, every statistics.interval.ms): its
    /// figures are exported, labelled by <paramref name="group"/> (the consumer group) and without a host, until
    /// <see cref="ForgetStatistics"/>. A document that does not parse is ignored: the next one comes.</summary>
    public static void PublishStatistics(object owner, string group, string statisticsJson)
    {
        try
        {
            PlainClients[owner] = FromStatistics(group, statisticsJson);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
        }
    }

    public static void ForgetStatistics(object owner) => PlainClients.TryRemove(owner, out _);

    /// <summary>librdkafka's statistics document (STATISTICS.md) as figures: messages and bytes received (a consumer) or sent (a
    /// producer), each partition's consumer_lag (-1, not known yet, and the internal partition -1 left out), each broker's
    /// average round trip (rtt.avg, µs; the bootstrap entries, node id -1, left out).</summary>
    public static IReadOnlyList<KafkaClientMetric> FromStatistics(string group, string statisticsJson)
    {
        using var document = JsonDocument.Parse(statisticsJson);
        var root = document.RootElement;
        var consumer = root.TryGetProperty("type", out var type) && type.GetString() == "consumer";
        var result = new List<KafkaClientMetric>();
        void Total(string field, string instrument)
        {
            if (root.TryGetProperty(field, out var v) && v.TryGetInt64(out var n)) result.Add(new KafkaClientMetric(instrument, group, null, -1, null, n));
        }
        if (consumer)
        {
            Total("rxmsgs", ConsumedMessages);
            Total("rxmsg_bytes", ConsumedBytes);
        }
        else
        {
            Total("txmsgs", ProducedMessages);
            Total("txmsg_bytes", ProducedBytes);
            Total("msg_cnt", ProducerQueueMessages);
            Total("msg_size", ProducerQueueBytes);
        }
        if (consumer && root.TryGetProperty("topics", out var topics))
            foreach (var topic in topics.EnumerateObject())
                if (topic.Value.TryGetProperty("partitions", out var partitions))
                    foreach (var partition in partitions.EnumerateObject())
                        if (int.TryParse(partition.Name, CultureInfo.InvariantCulture, out var p) && p >= 0
                            && partition.Value.TryGetProperty("consumer_lag", out var lag) && lag.TryGetInt64(out var records) && records >= 0)
                            result.Add(new KafkaClientMetric(ConsumerLag, group, topic.Name, p, null, records));
        if (root.TryGetProperty("brokers", out var brokers))
            foreach (var broker in brokers.EnumerateObject())
                if (broker.Value.TryGetProperty("nodeid", out var node) && node.TryGetInt32(out var id) && id >= 0
                    && broker.Value.TryGetProperty("rtt", out var rtt) && rtt.TryGetProperty("avg", out var avg) && avg.TryGetInt64(out var micros))
                    result.Add(new KafkaClientMetric(BrokerRtt, group, null, -1, id.ToString(CultureInfo.InvariantCulture), micros * 1e-6));
        return result;
    }

    private static string? Tag(StreamMetric metric, string name) => metric.Tags.TryGetValue(name, out var v) ? v : null;

    private static bool TryNumber(object? value, out double number)
    {
        number = 0;
        if (value is not IConvertible convertible) return false;
        try
        {
            number = convertible.ToDouble(CultureInfo.InvariantCulture);
            return true;
        }
        catch (Exception e) when (e is FormatException or InvalidCastException or OverflowException)
        {
            return false;
        }
    }

    internal static void Register(Meter meter, Func<IEnumerable<(string HostId, StreamHost Host)>> hosts)
    {
        IEnumerable<Measurement<double>> Of(string instrument) =>
            hosts().SelectMany(h => h.Host.KafkaClientMetrics.Where(m => m.Instrument == instrument).Select(m => Measure(h.HostId, m)))
                .Concat(PlainClients.Values.SelectMany(c => c.Where(m => m.Instrument == instrument).Select(m => Measure(null, m))));

        Gauge(meter, ConsumerLag, "{record}", "librdkafka: records between a partition's high watermark and the consumer's position", Of);
        Gauge(meter, BrokerRtt, "s", "librdkafka: average round trip to a broker over the last statistics interval", Of);
        Counter(meter, ConsumedBytes, "By", "librdkafka: bytes the host's stream consumers received", Of);
        Counter(meter, ConsumedMessages, "{message}", "librdkafka: messages the host's stream consumers received", Of);
        Counter(meter, ProducedBytes, "By", "librdkafka: bytes the host's stream producers sent", Of);
        Counter(meter, ProducedMessages, "{message}", "librdkafka: messages the host's stream producers sent", Of);
        Gauge(meter, ProducerQueueMessages, "{message}", "librdkafka: messages waiting in the producers' queues", Of);
        Gauge(meter, ProducerQueueBytes, "By", "librdkafka: bytes waiting in the producers' queues", Of);
        Counter(meter, Rebalances, "{rebalance}", "librdkafka: partition assignments and revocations of the host's stream consumers", Of);
        Counter(meter, ThreadOperations, "{operation}", "Streamiz: commits, polls and punctuations of the stream threads", Of);
        Gauge(meter, ThreadLatency, "s", "Streamiz: average time of one commit, poll, process or punctuate call of the stream threads", Of);
    }

    // The instrument's name is the Prometheus name less the suffixes the exporter appends (the unit's, and _total for a counter).
    private static void Gauge(Meter meter, string name, string unit, string description, Func<string, IEnumerable<Measurement<double>>> of) =>
        meter.CreateObservableGauge(Instrument(name, unit), () => of(name), unit, description);

    private static void Counter(Meter meter, string name, string unit, string description, Func<string, IEnumerable<Measurement<double>>> of) =>
        meter.CreateObservableCounter(Instrument(name, unit), () => of(name), unit, description);

    private static string Instrument(string prometheusName, string unit)
    {
        var name = prometheusName.EndsWith("_total", StringComparison.Ordinal) ? prometheusName[..^"_total".Length] : prometheusName;
        var suffix = unit switch { "s" => "_seconds", "By" => "_bytes", _ => "" };
        if (suffix.Length > 0 && name.EndsWith(suffix, StringComparison.Ordinal)) name = name[..^suffix.Length];
        return name.Replace('_', '.');
    }

    /// <summary>A stream host's figures carry its host id; a plain client's (a sink's) none: the scraped process is its instance.</summary>
    private static Measurement<double> Measure(string? hostId, KafkaClientMetric m)
    {
        var tags = new List<KeyValuePair<string, object?>>(5) { StreamTelemetry.Tag("group", m.Application) };
        if (hostId is not null) tags.Add(StreamTelemetry.Tag("host", hostId));
        if (m.Topic is not null) tags.Add(StreamTelemetry.Tag("topic", m.Topic));
        if (m.Partition >= 0) tags.Add(StreamTelemetry.Tag("partition", m.Partition));
        if (m.Label is not null)
            tags.Add(StreamTelemetry.Tag(m.Instrument == BrokerRtt ? "broker" : "operation", m.Label));
        return new Measurement<double>(m.Value, tags);
    }
}
