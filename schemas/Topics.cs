using Google.Protobuf.Reflection;

namespace StreamHealth.Schemas;

/// <summary>One Kafka topic: its name, key and value schema and default partition count.</summary>
/// <remarks>A dead-letter topic has no schema of its own: it holds the failed record's bytes as they
/// arrived, with headers naming the error (so <see cref="Key"/> and <see cref="Value"/> are null).
/// An <see cref="IsAvro"/> topic carries Avro in the Confluent wire format (its schemas: <see cref="AvroSchemas"/>);
/// its <see cref="Key"/> and <see cref="Value"/> still name the Protobuf messages it carried before the move, which the
/// Protobuf baseline still checks until the catalogue drops Protobuf (the weights code also keeps using its messages
/// inside; the CGM code uses the generated Avro records and no longer touches its Protobuf messages).</remarks>
public sealed record TopicSpec(string Name, MessageDescriptor? Key, MessageDescriptor? Value, int Partitions)
{
    public bool IsDeadLetter => Value is null;

    /// <summary>Whether its records are Avro (Confluent wire format, Schema Registry) rather than Protobuf.</summary>
    public bool IsAvro => Topics.AvroTopics.Contains(Name);
}

/// <summary>The catalogue of every topic StreamHealth owns. Provisioning, the dump tool and
/// configuration validation all read it, so a topic exists in exactly one place.</summary>
public static class Topics
{
    public const string WeightsRaw = "weights.raw";
    public const string WeightsFiltered = "weights.filtered";
    public const string CgmReadings = "cgm.readings";
    public const string CgmForecastRequests = "cgm.forecast-requests";
    public const string CgmForecasts = "cgm.forecasts";
    public const string CgmLatest = "cgm.latest";
    public const string CallLogsRaw = "calllogs.raw";
    public const string CallLogsEntries = "calllogs.entries";
    public const string SensorsReadings = "sensors.readings";
    public const string SensorsMetrics = "sensors.metrics";
    public const string SensorsAnomalies = "sensors.anomalies";
    public const string InsightsMetrics = "insights.metrics";

    /// <summary>The topics already moved from Protobuf to Avro in the Confluent wire format; a topic carries one format
    /// only, so a workload's topics move together (producers, topology, sinks and readers in one change).</summary>
    public static readonly IReadOnlySet<string> AvroTopics = new HashSet<string>(StringComparer.Ordinal)
    {
        WeightsRaw, WeightsFiltered, InsightsMetrics, CgmReadings, CgmLatest, CgmForecastRequests, CgmForecasts,
    };

    public const string DeadLetterSuffix = ".dlq";
    public const int DefaultPartitions = 4;

    /// <summary>Topics fed from outside (producers, gateway uploads): each has a dead-letter topic.</summary>
    public static readonly IReadOnlyList<TopicSpec> Ingest =
    [
        new(WeightsRaw, UserKey.Descriptor, WeightMeasurement.Descriptor, DefaultPartitions),
        new(CgmReadings, UserKey.Descriptor, CgmReading.Descriptor, DefaultPartitions),
        new(CgmForecastRequests, UserKey.Descriptor, CgmForecastRequest.Descriptor, DefaultPartitions),
        new(CallLogsRaw, CallKey.Descriptor, CallLog.Descriptor, DefaultPartitions),
        new(SensorsReadings, SensorKey.Descriptor, SensorReading.Descriptor, DefaultPartitions),
        new(InsightsMetrics, UserKey.Descriptor, HealthMetric.Descriptor, DefaultPartitions),
    ];

    /// <summary>Topics written by processors.</summary>
    public static readonly IReadOnlyList<TopicSpec> Results =
    [
        new(WeightsFiltered, UserKey.Descriptor, WeightResult.Descriptor, DefaultPartitions),
        new(CgmForecasts, UserKey.Descriptor, CgmForecast.Descriptor, DefaultPartitions),
        new(CgmLatest, UserKey.Descriptor, Schemas.CgmLatest.Descriptor, DefaultPartitions),
        new(CallLogsEntries, UserKey.Descriptor, HealthEntry.Descriptor, DefaultPartitions),
        new(SensorsMetrics, SensorKey.Descriptor, SensorMetric.Descriptor, DefaultPartitions),
        new(SensorsAnomalies, SensorKey.Descriptor, SensorAnomaly.Descriptor, DefaultPartitions),
    ];

    public static readonly IReadOnlyList<TopicSpec> All = BuildAll();

    private static readonly Dictionary<string, TopicSpec> ByName = All.ToDictionary(t => t.Name, StringComparer.Ordinal);

    public static string DeadLetterOf(string topic) => topic + DeadLetterSuffix;

    public static bool TryGet(string name, out TopicSpec spec) => ByName.TryGetValue(name, out spec!);

    /// <summary>The topic, or an exception whose one-line message lists the known names.</summary>
    public static TopicSpec Get(string name) =>
        TryGet(name, out var spec)
            ? spec
            : throw new UnknownTopicException(name);

    public static string KnownNames => string.Join(", ", All.Select(t => t.Name));

    private static List<TopicSpec> BuildAll()
    {
        var all = new List<TopicSpec>(Ingest);
        all.AddRange(Results);
        foreach (var t in Ingest)
            all.Add(new TopicSpec(DeadLetterOf(t.Name), null, null, t.Partitions));
        return all;
    }
}

public sealed class UnknownTopicException(string name)
    : ArgumentException($"'{name}' is not a StreamHealth topic; known topics: {Topics.KnownNames}")
{
    public string TopicName { get; } = name;
}
