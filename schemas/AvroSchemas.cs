using AvroRecordSchema = global::Avro.RecordSchema;
using ISpecificRecord = global::Avro.Specific.ISpecificRecord;

namespace StreamHealth.Schemas;

/// <summary>A topic's Avro key and value: the classes generated from schemas/avro and their schemas
/// (the classes' <c>_SCHEMA</c>).</summary>
public sealed record AvroTopicSchemas(string Topic, Type KeyType, AvroRecordSchema Key, Type ValueType, AvroRecordSchema Value);

/// <summary>The Avro schemas of the topics in <see cref="Topics"/>, for the move from Protobuf to Avro in the
/// Confluent wire format. Dead-letter topics have none: they hold the failed record's bytes as they arrived.</summary>
/// <remarks>Inside <c>StreamHealth.Schemas</c>, <c>Avro</c> names the generated classes' namespace
/// (<c>StreamHealth.Schemas.Avro</c>); Apache.Avro itself is <c>global::Avro</c> here.</remarks>
public static class AvroSchemas
{
    /// <summary>One entry per topic of <see cref="Topics.Ingest"/> and <see cref="Topics.Results"/>, in that order.</summary>
    public static readonly IReadOnlyList<AvroTopicSchemas> All =
    [
        Of<Avro.Common.UserKey, Avro.Weights.WeightMeasurement>(Topics.WeightsRaw),
        Of<Avro.Common.UserKey, Avro.Cgm.CgmReading>(Topics.CgmReadings),
        Of<Avro.Common.UserKey, Avro.Cgm.CgmForecastRequest>(Topics.CgmForecastRequests),
        Of<Avro.Common.CallKey, Avro.CallLogs.CallCompleted>(Topics.CallLogsRaw),
        Of<Avro.Common.SensorKey, Avro.Sensors.SensorReading>(Topics.SensorsReadings),
        Of<Avro.Common.UserKey, Avro.Insights.HealthMetric>(Topics.InsightsMetrics),
        Of<Avro.Common.UserKey, Avro.Insights.NutritionLog>(Topics.InsightsNutrition),

        Of<Avro.Common.UserKey, Avro.Weights.WeightResult>(Topics.WeightsFiltered),
        Of<Avro.Common.UserKey, Avro.Cgm.CgmForecast>(Topics.CgmForecasts),
        Of<Avro.Common.UserKey, Avro.Cgm.CgmLatest>(Topics.CgmLatest),
        Of<Avro.Common.CallKey, Avro.CallLogs.CallLog>(Topics.CallLogsCalls),
        Of<Avro.Common.UserKey, Avro.CallLogs.HealthEntry>(Topics.CallLogsEntries),
        Of<Avro.Common.UserKey, Avro.CallLogs.CheckInCreated>(Topics.CallLogsCheckins),
        Of<Avro.Common.UserKey, Avro.CallLogs.DashboardRefreshNeeded>(Topics.CallLogsDashboardRefresh),
        Of<Avro.Common.SensorKey, Avro.Sensors.SensorMetric>(Topics.SensorsMetrics),
        Of<Avro.Common.DistrictKey, Avro.Sensors.SensorMetric>(Topics.SensorsDistrictWindows),
        Of<Avro.Common.DistrictKey, Avro.Sensors.SensorAnomaly>(Topics.SensorsAnomalies),
        Of<Avro.Common.SensorKey, Avro.Sensors.SensorQuality>(Topics.SensorsQuality),
        Of<Avro.Common.DistrictKey, Avro.Sensors.DistrictEfficiency>(Topics.SensorsEfficiency),
        Of<Avro.Common.SensorKey, Avro.Sensors.SensorPrediction>(Topics.SensorsPredictions),
        Of<Avro.Common.UserKey, Avro.Insights.DailyMetricAggregate>(Topics.InsightsDaily),
    ];

    private static readonly Dictionary<string, AvroTopicSchemas> ByTopic = All.ToDictionary(t => t.Topic, StringComparer.Ordinal);

    public static bool TryFor(string topic, out AvroTopicSchemas schemas) => ByTopic.TryGetValue(topic, out schemas!);

    /// <summary>The topic's key and value schemas; <see cref="UnknownTopicException"/> for a name that is not a
    /// StreamHealth topic, <see cref="ArgumentException"/> for a dead-letter topic.</summary>
    public static AvroTopicSchemas For(string topic)
    {
        if (TryFor(topic, out var schemas)) return schemas;
        var spec = Topics.Get(topic);
        throw new ArgumentException(spec.IsDeadLetter
            ? $"'{topic}' is a dead-letter topic: it holds failed records' bytes as they arrived and has no Avro schema"
            : $"'{topic}' has no Avro schemas in {nameof(AvroSchemas)}", nameof(topic));
    }

    private static AvroTopicSchemas Of<TKey, TValue>(string topic)
        where TKey : ISpecificRecord, new()
        where TValue : ISpecificRecord, new() =>
        new(topic, typeof(TKey), (AvroRecordSchema)new TKey().Schema, typeof(TValue), (AvroRecordSchema)new TValue().Schema);
}
