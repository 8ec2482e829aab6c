using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using CheckInCreated = StreamHealth.Schemas.Avro.CallLogs.CheckInCreated;
using HealthEntry = StreamHealth.Schemas.Avro.CallLogs.HealthEntry;
using HealthEntryKind = StreamHealth.Schemas.Avro.CallLogs.HealthEntryKind;
using UserKey = StreamHealth.Schemas.Avro.Common.UserKey;

namespace StreamHealth.CallLogs.Pipeline;

/// <summary>calllogs.checkins → calllogs.checkins (<see cref="PostgresEventSink{T}"/>): one row per call id. The call id is claimed
/// in streamhealth.event_ids (workload <see cref="EventIdWorkload"/>), so a check-in is stored once whatever its time (the
/// partitioned table's key carries the time); a replay is the same claim and ON CONFLICT DO NOTHING.</summary>
public static class CheckInPostgresWriter
{
    public const string Name = "calllogs-checkins-postgres";
    public const string EventIdWorkload = "calllogs-checkin";

    public static ISinkWriter Create(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null)
    {
        var keys = registry.SerDes<UserKey>();
        var values = registry.SerDes<CheckInCreated>();
        return new PostgresEventSink<CheckInCreated>(db, new PostgresEventWorkload<CheckInCreated>
        {
            SinkName = Name,
            Decode = record => PostgresEventSink.KeyedBy(keys.ReadKey(PostgresEventSink.Key(record), record.Topic).user_id,
                values.ReadValue(PostgresEventSink.Value(record), record.Topic), "patient_id", static c => c.patient_id),
            DecodeFailure = "cannot decode CheckInCreated",
            // The topology checked the call; these guard a record produced straight onto the topic.
            Refuse = static (c, _) => InputRules.CheckId("call_id", c.call_id) ?? InputRules.CheckId("patient_id", c.patient_id)
                ?? (c.medication_count < 0 || c.food_count < 0 || c.symptom_count < 0 ? "entry counts must not be negative" : null),
            EventIdWorkload = EventIdWorkload,
            EventIdField = "call_id",
            EventKind = "check-in (time or entry counts differ)",
            EventId = static c => c.call_id,
            UserId = static c => c.patient_id,
            Fingerprint = static c => string.Create(CultureInfo.InvariantCulture,
                $"{AvroTime.ToUnixMs(c.event_time_unix_ms)}|{c.medication_count}|{c.food_count}|{c.symptom_count}"),
            InsertSql = """
                INSERT INTO calllogs.checkins (call_id, patient_id, event_time, provider, duration_s, medication_count, food_count, symptom_count, extractor)
                SELECT * FROM unnest(@calls, @patients, @times, @providers, @durations, @medications, @foods, @symptoms, @extractors)
                ON CONFLICT DO NOTHING
                """,
            AddParameters = static (p, rows) =>
            {
                p.Add(rows.Column("calls", static (_, c) => c.call_id));
                p.Add(rows.Column("patients", static (_, c) => c.patient_id));
                p.Add(rows.Timestamps("times", static (_, c) => AvroTime.ToUnixMs(c.event_time_unix_ms)));
                p.Add(rows.Column("providers", static (_, c) => c.provider));
                p.Add(rows.Column("durations", static (_, c) => c.duration_s));
                p.Add(rows.Column("medications", static (_, c) => c.medication_count));
                p.Add(rows.Column("foods", static (_, c) => c.food_count));
                p.Add(rows.Column("symptoms", static (_, c) => c.symptom_count));
                p.Add(rows.Column("extractors", static (_, c) => c.extractor));
            },
        }, log);
    }
}

/// <summary>calllogs.entries → calllogs.medication_entries, food_entries and symptom_entries (<see cref="PostgresEventSink{T}"/>):
/// one statement per batch routes each entry to its kind's table (data-modifying CTEs over one unnest), so a batch is stored
/// all or nothing like any other sink's. Entry ids are claimed in streamhealth.event_ids (workload <see cref="EventIdWorkload"/>);
/// a replay is the same claim and ON CONFLICT DO NOTHING.</summary>
public static class HealthEntryPostgresWriter
{
    public const string Name = "calllogs-entries-postgres";
    public const string EventIdWorkload = "calllogs-entry";

    public static ISinkWriter Create(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null)
    {
        var keys = registry.SerDes<UserKey>();
        var values = registry.SerDes<HealthEntry>();
        return new PostgresEventSink<HealthEntry>(db, new PostgresEventWorkload<HealthEntry>
        {
            SinkName = Name,
            Decode = record => PostgresEventSink.KeyedBy(keys.ReadKey(PostgresEventSink.Key(record), record.Topic).user_id,
                values.ReadValue(PostgresEventSink.Value(record), record.Topic), "patient_id", static e => e.patient_id),
            DecodeFailure = "cannot decode HealthEntry",
            Refuse = static (e, _) => Refuse(e),
            EventIdWorkload = EventIdWorkload,
            EventIdField = "entry_id",
            EventKind = "health entry (time, kind, name or span differ)",
            EventId = static e => e.entry_id,
            UserId = static e => e.patient_id,
            Fingerprint = static e => string.Create(CultureInfo.InvariantCulture,
                $"{AvroTime.ToUnixMs(e.event_time_unix_ms)}|{e.kind}|{e.text}|{e.span_start}|{e.span_length}"),
            InsertSql = """
                WITH e AS (
                  SELECT * FROM unnest(@kinds, @ids, @calls, @patients, @times, @names, @dose_values, @dose_units, @frequencies, @statuses,
                                       @quantity_values, @quantity_units, @meals, @presents, @severities, @onsets, @confidences,
                                       @span_starts, @span_lengths, @extractors)
                    AS e(kind, entry_id, call_id, patient_id, event_time, name, dose_value, dose_unit, frequency, status,
                         quantity_value, quantity_unit, meal, present, severity, onset, confidence, span_start, span_length, extractor)),
                medications AS (
                  INSERT INTO calllogs.medication_entries (entry_id, call_id, patient_id, event_time, generic_name, dose_value, dose_unit,
                                                          frequency, status, confidence, span_start, span_length, extractor)
                  SELECT entry_id, call_id, patient_id, event_time, name, dose_value, dose_unit, frequency, status, confidence,
                         span_start, span_length, extractor
                  FROM e WHERE kind = 'medication'
                  ON CONFLICT DO NOTHING),
                foods AS (
                  INSERT INTO calllogs.food_entries (entry_id, call_id, patient_id, event_time, item, quantity_value, quantity_unit, meal,
                                                    confidence, span_start, span_length, extractor)
                  SELECT entry_id, call_id, patient_id, event_time, name, quantity_value, quantity_unit, meal, confidence,
                         span_start, span_length, extractor
                  FROM e WHERE kind = 'food'
                  ON CONFLICT DO NOTHING)
                INSERT INTO calllogs.symptom_entries (entry_id, call_id, patient_id, event_time, name, present, severity, onset,
                                                     confidence, span_start, span_length, extractor)
                SELECT entry_id, call_id, patient_id, event_time, name, present, severity, onset, confidence, span_start, span_length, extractor
                FROM e WHERE kind = 'symptom'
                ON CONFLICT DO NOTHING
                """,
            AddParameters = static (p, rows) =>
            {
                p.Add(rows.Column("kinds", static (_, e) => KindOf(e.kind)));
                p.Add(rows.Column("ids", static (_, e) => e.entry_id));
                p.Add(rows.Column("calls", static (_, e) => e.call_id));
                p.Add(rows.Column("patients", static (_, e) => e.patient_id));
                p.Add(rows.Timestamps("times", static (_, e) => AvroTime.ToUnixMs(e.event_time_unix_ms)));
                p.Add(rows.Column("names", static (_, e) => e.text));
                p.Add(rows.Column("dose_values", static (_, e) => e.dose_value, NpgsqlDbType.Double));
                p.Add(rows.Column("dose_units", static (_, e) => e.dose_unit, NpgsqlDbType.Text));
                p.Add(rows.Column("frequencies", static (_, e) => e.frequency, NpgsqlDbType.Text));
                p.Add(rows.Column("statuses", static (_, e) => StatusOf(e), NpgsqlDbType.Text));
                p.Add(rows.Column("quantity_values", static (_, e) => e.quantity_value, NpgsqlDbType.Double));
                p.Add(rows.Column("quantity_units", static (_, e) => e.quantity_unit, NpgsqlDbType.Text));
                p.Add(rows.Column("meals", static (_, e) => MealOf(e), NpgsqlDbType.Text));
                p.Add(rows.Column("presents", static (_, e) => e.present, NpgsqlDbType.Boolean));
                p.Add(rows.Column("severities", static (_, e) => e.severity, NpgsqlDbType.Text));
                p.Add(rows.Column("onsets", static (_, e) => e.onset, NpgsqlDbType.Text));
                p.Add(rows.Column("confidences", static (_, e) => e.confidence));
                p.Add(rows.Column("span_starts", static (_, e) => e.span_start));
                p.Add(rows.Column("span_lengths", static (_, e) => e.span_length));
                p.Add(rows.Column("extractors", static (_, e) => e.extractor));
            },
        }, log);
    }

    /// <summary>Why an entry cannot be stored: what the tables' checks would refuse, named (a record produced straight onto the topic).</summary>
    internal static string? Refuse(HealthEntry e) =>
        InputRules.CheckId("call_id", e.call_id) ?? InputRules.CheckId("patient_id", e.patient_id)
        ?? (KindOf(e.kind) is null ? $"kind = {e.kind}: not a medication, food or symptom" : null)
        ?? InputRules.CheckText("text", e.text, 256, required: true)
        ?? InputRules.CheckRange("confidence", e.confidence, 0, 1, "")
        ?? (e.span_start < 0 || e.span_length < 0 ? $"span {e.span_start}+{e.span_length}: must not be negative" : null)
        ?? (e.kind == HealthEntryKind.HEALTH_ENTRY_KIND_SYMPTOM && e.present is null ? "present is required for a symptom" : null);

    private static string? KindOf(HealthEntryKind kind) => kind switch
    {
        HealthEntryKind.HEALTH_ENTRY_KIND_MEDICATION => "medication",
        HealthEntryKind.HEALTH_ENTRY_KIND_FOOD => "food",
        HealthEntryKind.HEALTH_ENTRY_KIND_SYMPTOM => "symptom",
        _ => null,
    };

    // The column's words: the enum symbol without its prefix, lower case ("MEDICATION_STATUS_TAKEN" → "taken").
    private static string? StatusOf(HealthEntry e) => e.kind != HealthEntryKind.HEALTH_ENTRY_KIND_MEDICATION ? null
        : e.medication_status is { } s ? s.ToString()["MEDICATION_STATUS_".Length..].ToLowerInvariant() : "unspecified";

    private static string? MealOf(HealthEntry e) => e.meal is { } m ? m.ToString()["MEAL_".Length..].ToLowerInvariant() : null;
}

/// <summary>Names of one call-log pipeline's topics, application and sink groups (production uses <see cref="Default"/>; tests give
/// each their own).</summary>
public sealed record CallLogsPipelineNames(string ApplicationId, CallLogsTopics Topics)
{
    public static readonly CallLogsPipelineNames Default = new(CallLogsTopology.ApplicationId, CallLogsTopics.Default);
    public string CheckinsSinkGroup => ApplicationId + "-checkins-postgres-sink";
    public string EntriesSinkGroup => ApplicationId + "-entries-postgres-sink";
}

/// <summary>The sinks of the extraction's outputs, each its own consumer group. calllogs.dashboard-refresh has none yet: it is
/// for the dashboard's cache, which does not exist yet.</summary>
public static class CallLogSinks
{
    public static IReadOnlyList<SinkRunner> Create(CallLogsPipelineNames names, string bootstrapServers, NpgsqlDataSource postgres,
        SchemaRegistryConnection registry, ILoggerFactory logs, int sessionTimeoutMs = 6_000, int? fetchWaitMaxMs = null) =>
    [
        SinkRunner.For(bootstrapServers, names.Topics.Checkins, names.CheckinsSinkGroup,
            CheckInPostgresWriter.Create(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + CheckInPostgresWriter.Name)),
            postgres, logs, sessionTimeoutMs, fetchWaitMaxMs),
        SinkRunner.For(bootstrapServers, names.Topics.Entries, names.EntriesSinkGroup,
            HealthEntryPostgresWriter.Create(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + HealthEntryPostgresWriter.Name)),
            postgres, logs, sessionTimeoutMs, fetchWaitMaxMs),
    ];
}
