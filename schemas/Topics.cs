namespace StreamHealth.Schemas;

/// <summary>One Kafka topic: its name, its Avro key and value (records in the Confluent wire format, schemas in
/// <see cref="AvroSchemas"/>, registered under TopicNameStrategy subjects) and its default partition count.</summary>
/// <remarks>A dead-letter topic has no schema of its own: it holds the failed record's bytes as they arrived, with
/// headers naming the error (so <see cref="Avro"/> is null).</remarks>
public sealed record TopicSpec(string Name, AvroTopicSchemas? Avro, int Partitions)
{
    public bool IsDeadLetter => Avro is null;
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
    /// <summary>A provider's notice that a call ended (ids only: the signed webhook's content).</summary>
    public const string CallLogsRaw = "calllogs.raw";
    /// <summary>The call with its transcript, fetched from the provider by the call id of a calllogs.raw notice.</summary>
    public const string CallLogsCalls = "calllogs.calls";
    /// <summary>The health entries extracted from each call (HealthEntry: the HealthEntryExtracted event, one per entry).</summary>
    public const string CallLogsEntries = "calllogs.entries";
    /// <summary>One CheckInCreated per extracted call.</summary>
    public const string CallLogsCheckins = "calllogs.checkins";
    /// <summary>DashboardRefreshNeeded: a patient's dashboard has changed (one topic per event type: TopicNameStrategy subjects
    /// register one value schema per topic).</summary>
    public const string CallLogsDashboardRefresh = "calllogs.dashboard-refresh";
    public const string SensorsReadings = "sensors.readings";
    public const string SensorsMetrics = "sensors.metrics";
    public const string SensorsAnomalies = "sensors.anomalies";
    /// <summary>sensors.metrics' windows again, keyed by district: the repartition the district analysis reads.</summary>
    public const string SensorsDistrictWindows = "sensors.district-windows";
    public const string SensorsQuality = "sensors.quality";
    public const string SensorsEfficiency = "sensors.efficiency";
    public const string SensorsPredictions = "sensors.predictions";
    public const string InsightsMetrics = "insights.metrics";
    public const string InsightsNutrition = "insights.nutrition";
    public const string InsightsDaily = "insights.daily";

    public const string DeadLetterSuffix = ".dlq";
    public const int DefaultPartitions = 4;

    /// <summary>Topics fed from outside (producers, gateway uploads): each has a dead-letter topic.</summary>
    public static readonly IReadOnlyList<TopicSpec> Ingest =
    [
        new(WeightsRaw, AvroSchemas.For(WeightsRaw), DefaultPartitions),
        new(CgmReadings, AvroSchemas.For(CgmReadings), DefaultPartitions),
        new(CgmForecastRequests, AvroSchemas.For(CgmForecastRequests), DefaultPartitions),
        new(CallLogsRaw, AvroSchemas.For(CallLogsRaw), DefaultPartitions),
        new(SensorsReadings, AvroSchemas.For(SensorsReadings), DefaultPartitions),
        new(InsightsMetrics, AvroSchemas.For(InsightsMetrics), DefaultPartitions),
        new(InsightsNutrition, AvroSchemas.For(InsightsNutrition), DefaultPartitions),
    ];

    /// <summary>Topics written by processors.</summary>
    public static readonly IReadOnlyList<TopicSpec> Results =
    [
        new(WeightsFiltered, AvroSchemas.For(WeightsFiltered), DefaultPartitions),
        new(CgmForecasts, AvroSchemas.For(CgmForecasts), DefaultPartitions),
        new(CgmLatest, AvroSchemas.For(CgmLatest), DefaultPartitions),
        new(CallLogsCalls, AvroSchemas.For(CallLogsCalls), DefaultPartitions),
        new(CallLogsEntries, AvroSchemas.For(CallLogsEntries), DefaultPartitions),
        new(CallLogsCheckins, AvroSchemas.For(CallLogsCheckins), DefaultPartitions),
        new(CallLogsDashboardRefresh, AvroSchemas.For(CallLogsDashboardRefresh), DefaultPartitions),
        new(SensorsMetrics, AvroSchemas.For(SensorsMetrics), DefaultPartitions),
        new(SensorsDistrictWindows, AvroSchemas.For(SensorsDistrictWindows), DefaultPartitions),
        new(SensorsAnomalies, AvroSchemas.For(SensorsAnomalies), DefaultPartitions),
        new(SensorsQuality, AvroSchemas.For(SensorsQuality), DefaultPartitions),
        new(SensorsEfficiency, AvroSchemas.For(SensorsEfficiency), DefaultPartitions),
        new(SensorsPredictions, AvroSchemas.For(SensorsPredictions), DefaultPartitions),
        new(InsightsDaily, AvroSchemas.For(InsightsDaily), DefaultPartitions),
    ];

    /// <summary>Results that a later stage's topology reads: like the ingest topics, each has a dead-letter topic. A call's
    /// transcript is the provider's text, fetched from outside: the extraction that reads calllogs.calls dead-letters what it cannot parse.</summary>
    public static readonly IReadOnlyList<string> StageInputs = [SensorsDistrictWindows, CallLogsCalls];

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
        foreach (var t in Ingest.Concat(Results.Where(r => StageInputs.Contains(r.Name))))
            all.Add(new TopicSpec(DeadLetterOf(t.Name), null, t.Partitions));
        return all;
    }
}

public sealed class UnknownTopicException(string name)
    : ArgumentException($"'{name}' is not a StreamHealth topic; known topics: {Topics.KnownNames}")
{
    public string TopicName { get; } = name;
}
