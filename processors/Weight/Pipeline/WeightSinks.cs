using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Weight.Filter;

namespace StreamHealth.Weight.Pipeline;

/// <summary>weights.filtered → weights.measurements: one row per measurement, raw and filtered side by side.
/// Each measurement id is claimed in streamhealth.event_ids (<see cref="EventIds"/>) so it is stored once
/// whatever its time; idempotent (a retry or replay is the same claim and ON CONFLICT DO NOTHING) and
/// all-or-nothing per batch; a record that does not decode or that reuses an id for another user or another
/// measurement goes to streamhealth.dead_letters with the reason in the same transaction, never dropped.</summary>
public sealed class WeightPostgresWriter(NpgsqlDataSource db, ILogger? log = null) : ISinkWriter
{
    public string Name => "weights-postgres";

    /// <summary>The workload name of weight measurement ids in streamhealth.event_ids (the gateway claims with it too).</summary>
    public const string EventIdWorkload = "weight";

    public void Write(IReadOnlyList<SinkRecord> batch)
    {
        var decoded = new List<(SinkRecord Record, WeightResult Result)>(batch.Count);
        var dead = new List<(SinkRecord Record, string Error)>();
        foreach (var record in batch)
        {
            try
            {
                decoded.Add((record, WeightResult.Parser.ParseFrom(record.Value ?? throw new FormatException("record has no value"))));
            }
            catch (Exception e) when (e is FormatException or Google.Protobuf.InvalidProtocolBufferException)
            {
                dead.Add((record, "cannot decode WeightResult: " + e.Message));
            }
        }
        using var connection = db.OpenConnection();
        using var tx = connection.BeginTransaction();
        // A measurement id is one measurement of one user whatever its time; the table's key (id, time) cannot say
        // so, the registry does. A conflicting record (another user's id, or this user's id for another measurement,
        // produced straight onto the topic) is dead-lettered in this transaction, never stored beside the first.
        var claimIds = new List<string>(decoded.Count);
        var claimUsers = new List<string>(decoded.Count);
        var claimFingerprints = new List<string>(decoded.Count);
        foreach (var (_, r) in decoded)
        {
            claimIds.Add(r.MeasurementId);
            claimUsers.Add(r.UserId);
            claimFingerprints.Add(Fingerprint(r));
        }
        var claims = EventIds.Claim(connection, tx, EventIdWorkload, claimIds, claimUsers, claimFingerprints);

        var n = decoded.Count;
        var ids = new List<string>(n);
        var users = new List<string>(n);
        var times = new List<DateTime>(n);
        var sources = new List<string>(n);
        var raw = new List<double>(n);
        var accepted = new List<bool>(n);
        var filtered = new List<double>(n);
        var trend = new List<double>(n);
        var confidence = new List<double>(n);
        var error = new List<double>(n);
        var innovation = new List<double>(n);
        var needsInit = new List<bool>(n);
        var needsReinit = new List<bool>(n);
        var reasons = new List<string>(n);
        var partitions = new List<int>(n);
        var offsets = new List<long>(n);
        for (var i = 0; i < n; i++)
        {
            var (record, r) = decoded[i];
            if (EventIds.ConflictReason(claims[i], "measurement_id", r.MeasurementId, "measurement (time, value, unit or source differ)") is { } conflict)
            {
                dead.Add((record, conflict));
                continue;
            }
            ids.Add(r.MeasurementId);
            users.Add(r.UserId);
            times.Add(DateTime.UnixEpoch.AddMilliseconds(r.EventTimeUnixMs));
            sources.Add(SourceName(r.Source));
            raw.Add(r.RawWeightKg);
            accepted.Add(r.Accepted);
            filtered.Add(r.FilteredWeightKg);
            trend.Add(r.TrendKgPerWeek);
            confidence.Add(r.Confidence);
            error.Add(r.PredictionErrorKg);
            innovation.Add(r.NormalizedInnovation);
            needsInit.Add(r.NeedsInitialization);
            needsReinit.Add(r.NeedsReinitialization);
            // text[][] cannot be unnested row by row; reasons travel as one comma-joined string per row.
            reasons.Add(string.Join(',', r.Reasons.Select(ReasonName)));
            partitions.Add(r.SourcePartition);
            offsets.Add(r.SourceOffset);
        }
        if (ids.Count > 0)
        {
            // ON CONFLICT: a retry or a replay of a measurement already stored (same id, hence same time).
            using var insert = new NpgsqlCommand("""
                INSERT INTO weights.measurements (measurement_id, user_id, measured_at, source, raw_weight_kg, accepted,
                    filtered_weight_kg, trend_kg_per_week, confidence, prediction_error_kg, normalized_innovation,
                    needs_initialization, needs_reinitialization, reasons, source_partition, source_offset)
                SELECT id, u, t, s, raw, acc, f, tr, c, e, ni, init, reinit, coalesce(string_to_array(nullif(rs, ''), ','), '{}'), p, o
                FROM unnest(@ids, @users, @times, @sources, @raw, @accepted, @filtered, @trend, @confidence, @error,
                            @innovation, @needsInit, @needsReinit, @reasons, @partitions, @offsets)
                     AS x(id, u, t, s, raw, acc, f, tr, c, e, ni, init, reinit, rs, p, o)
                ON CONFLICT (measurement_id, measured_at) DO NOTHING
                """, connection, tx);
            insert.Parameters.AddWithValue("ids", ids);
            insert.Parameters.AddWithValue("users", users);
            insert.Parameters.Add(new NpgsqlParameter("times", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = times });
            insert.Parameters.AddWithValue("sources", sources);
            insert.Parameters.AddWithValue("raw", raw);
            insert.Parameters.AddWithValue("accepted", accepted);
            insert.Parameters.AddWithValue("filtered", filtered);
            insert.Parameters.AddWithValue("trend", trend);
            insert.Parameters.AddWithValue("confidence", confidence);
            insert.Parameters.AddWithValue("error", error);
            insert.Parameters.AddWithValue("innovation", innovation);
            insert.Parameters.AddWithValue("needsInit", needsInit);
            insert.Parameters.AddWithValue("needsReinit", needsReinit);
            insert.Parameters.AddWithValue("reasons", reasons);
            insert.Parameters.AddWithValue("partitions", partitions);
            insert.Parameters.AddWithValue("offsets", offsets);
            insert.ExecuteNonQuery();
        }
        foreach (var (record, message) in dead)
            DeadLetters.Insert(connection, tx, record, Name, message, log);
        tx.Commit();
    }

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
    public static ISinkWriter Create(IConnectionMultiplexer redis) => new RedisWriteThrough<WeightResult>(
        "weights-redis", "latest-weight", redis, WeightResult.Parser, WeightLatestCache.HasEstimate, WeightLatestCache.WriteAsync);
}
