using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Schemas;

namespace StreamHealth.Weight.Pipeline;

/// <summary>weights.filtered → weights.measurements: one row per measurement, raw and filtered side by side.
/// Idempotent (ON CONFLICT DO NOTHING on measurement id + time) and all-or-nothing per batch; a record
/// that does not decode goes to streamhealth.dead_letters in the same transaction, never dropped.</summary>
public sealed class WeightPostgresWriter(NpgsqlDataSource db, ILogger? log = null) : ISinkWriter
{
    public string Name => "weights-postgres";

    public void Write(IReadOnlyList<SinkRecord> batch)
    {
        var n = batch.Count;
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
        var dead = new List<(SinkRecord Record, string Error)>();
        foreach (var record in batch)
        {
            WeightResult r;
            try
            {
                r = WeightResult.Parser.ParseFrom(record.Value ?? throw new FormatException("record has no value"));
            }
            catch (Exception e) when (e is FormatException or Google.Protobuf.InvalidProtocolBufferException)
            {
                dead.Add((record, e.Message));
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
        using var connection = db.OpenConnection();
        using var tx = connection.BeginTransaction();
        if (ids.Count > 0)
        {
            using var insert = new NpgsqlCommand("""
                INSERT INTO weights.measurements (measurement_id, user_id, measured_at, source, raw_weight_kg, accepted,
                    filtered_weight_kg, trend_kg_per_week, confidence, prediction_error_kg, normalized_innovation,
                    needs_initialization, needs_reinitialization, reasons, source_partition, source_offset)
                SELECT id, u, t, s, raw, acc, f, tr, c, e, ni, init, reinit, string_to_array(nullif(rs, ''), ','), p, o
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
            DeadLetters.Insert(connection, tx, record, Name, "cannot decode WeightResult: " + message, log);
        tx.Commit();
    }

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
