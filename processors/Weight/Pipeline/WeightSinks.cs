using Microsoft.Extensions.Logging;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Weight.Filter;

namespace StreamHealth.Weight.Pipeline;

/// <summary>weights.filtered → weights.measurements (<see cref="PostgresEventSink{T}"/>): one row per measurement, raw
/// and filtered side by side. A measurement id is one measurement of one user whatever its time; a record that does
/// not decode or that reuses an id for another user or another measurement is dead-lettered.</summary>
public static class WeightPostgresWriter
{
    public const string Name = "weights-postgres";

    /// <summary>The workload name of weight measurement ids in streamhealth.event_ids (the gateway claims with it too).</summary>
    public const string EventIdWorkload = "weight";

    /// <summary>The sink's own table.</summary>
    public const string Table = "weights.measurements";

    /// <summary>Values are Avro WeightResults (Confluent wire format) read through <paramref name="registry"/>, stored in
    /// <paramref name="table"/> (another table of the same columns when a replay re-materialises the measurements beside
    /// the live table: <see cref="SinkTables"/>).</summary>
    public static ISinkWriter Create(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null, string table = Table) =>
        new PostgresEventSink<WeightResult>(db, Workload(registry.SerDes<StreamHealth.Schemas.Avro.Weights.WeightResult>(), SinkTables.Checked(table)), log);

    private static PostgresEventWorkload<WeightResult> Workload(AvroSerDes<StreamHealth.Schemas.Avro.Weights.WeightResult> values, string table) => new()
    {
        SinkName = Name,
        Decode = record => WeightWire.ToProto(values.ReadValue(record.Value, record.Topic)),
        DecodeFailure = "cannot decode WeightResult",
        EventIdWorkload = EventIdWorkload,
        EventIdField = "measurement_id",
        EventKind = "measurement (time, value, unit or source differ)",
        EventId = static r => r.MeasurementId,
        UserId = static r => r.UserId,
        Fingerprint = Fingerprint,
        // ON CONFLICT: a retry or a replay of a measurement already stored (same id, hence same time).
        InsertSql = $$"""
            INSERT INTO {{table}} (measurement_id, user_id, measured_at, source, raw_weight_kg, accepted,
                filtered_weight_kg, trend_kg_per_week, confidence, prediction_error_kg, normalized_innovation,
                needs_initialization, needs_reinitialization, reasons, source_partition, source_offset)
            SELECT id, u, t, s, raw, acc, f, tr, c, e, ni, init, reinit, coalesce(string_to_array(nullif(rs, ''), ','), '{}'), p, o
            FROM unnest(@ids, @users, @times, @sources, @raw, @accepted, @filtered, @trend, @confidence, @error,
                        @innovation, @needsInit, @needsReinit, @reasons, @partitions, @offsets)
                 AS x(id, u, t, s, raw, acc, f, tr, c, e, ni, init, reinit, rs, p, o)
            ON CONFLICT (measurement_id, measured_at) DO NOTHING
            """,
        AddParameters = static (p, rows) =>
        {
            p.Add(rows.Column("ids", static (_, r) => r.MeasurementId));
            p.Add(rows.Column("users", static (_, r) => r.UserId));
            p.Add(rows.Timestamps("times", static (_, r) => r.EventTimeUnixMs));
            p.Add(rows.Column("sources", static (_, r) => SourceName(r.Source)));
            p.Add(rows.Column("raw", static (_, r) => r.RawWeightKg));
            p.Add(rows.Column("accepted", static (_, r) => r.Accepted));
            p.Add(rows.Column("filtered", static (_, r) => r.FilteredWeightKg));
            p.Add(rows.Column("trend", static (_, r) => r.TrendKgPerWeek));
            p.Add(rows.Column("confidence", static (_, r) => r.Confidence));
            p.Add(rows.Column("error", static (_, r) => r.PredictionErrorKg));
            p.Add(rows.Column("innovation", static (_, r) => r.NormalizedInnovation));
            p.Add(rows.Column("needsInit", static (_, r) => r.NeedsInitialization));
            p.Add(rows.Column("needsReinit", static (_, r) => r.NeedsReinitialization));
            // text[][] cannot be unnested row by row; reasons travel as one comma-joined string per row.
            p.Add(rows.Column("reasons", static (_, r) => string.Join(',', r.Reasons.Select(ReasonName))));
            // The measurement's position on the input topic (the result carries it), not the result's own.
            p.Add(rows.Column("partitions", static (_, r) => r.SourcePartition));
            p.Add(rows.Column("offsets", static (_, r) => r.SourceOffset));
        },
    };

    /// <summary>The fingerprint the topology put on the result; results written before it did get one from what
    /// they carry (the value in kg), which only a result of that era can match.</summary>
    private static string Fingerprint(WeightResult r) =>
        r.MeasurementFingerprint.Length > 0 ? r.MeasurementFingerprint
        : MeasurementFingerprint.Text(MeasurementFingerprint.Of(new WeightObservation(r.EventTimeUnixMs, r.RawWeightKg, WeightUnit.Kg, r.Source)));

    public static string SourceName(WeightSource source) => source switch
    {
        WeightSource.CareTeam => "care_team",
        WeightSource.ConnectedScale => "connected_scale",
        WeightSource.PatientReported => "patient_reported",
        _ => "unspecified",
    };

    /// <summary>WeightReason.ReanchoredAfterStepChange → "reanchored_after_step_change" (the proto name without its prefix).</summary>
    public static string ReasonName(WeightReason reason) =>
        (int)reason < ReasonNames.Length ? ReasonNames[(int)reason] : reason.ToString();

    private static readonly string[] ReasonNames = Enum.GetValues<WeightReason>()
        .Select(r => System.Text.RegularExpressions.Regex.Replace(r.ToString(), "(?<!^)([A-Z])", "_$1").ToLowerInvariant()).ToArray();
}

/// <summary>weights.filtered → Redis latest-weight hashes (<see cref="WeightLatestCache"/>); results without an
/// estimate (still buffering) are skipped.</summary>
public static class WeightRedisWriter
{
    public const string Name = "weights-redis";

    /// <summary>Values are Avro WeightResults (Confluent wire format) read through <paramref name="registry"/>.</summary>
    public static ISinkWriter Create(IConnectionMultiplexer redis, SchemaRegistryConnection registry)
    {
        var values = registry.SerDes<StreamHealth.Schemas.Avro.Weights.WeightResult>();
        return new RedisWriteThrough<WeightResult>(Name, "latest-weight", redis,
            record => WeightWire.ToProto(values.ReadValue(record.Value, record.Topic)), WeightLatestCache.HasEstimate, WeightLatestCache.WriteAsync);
    }
}
