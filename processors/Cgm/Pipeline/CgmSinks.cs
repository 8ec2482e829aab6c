using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>cgm.readings → cgm.readings table: one row per reading id, all-or-nothing per batch. Each reading id has
/// one owner whatever its time (<see cref="EventIds"/>, workload <see cref="Workload"/>): a retry of the same reading
/// is stored once, and an id already used by another user or for another reading (another time, type or value) goes
/// to streamhealth.dead_letters with the reason, in the batch's transaction. Records the CGM topology dead-letters
/// (same <see cref="CgmReadings.Validate"/> rule, judged at the same receiving time) are skipped here, and a record
/// that does not decode is dead-lettered too: nothing is dropped silently.</summary>
public sealed class CgmReadingsPostgresWriter(NpgsqlDataSource db, ILogger? log = null, EventTimeRule? timeRule = null) : ISinkWriter
{
    public const string Workload = "cgm-reading";
    private readonly EventTimeRule _timeRule = timeRule ?? EventTimeRule.Default;

    public string Name => "cgm-readings-postgres";

    public void Write(IReadOnlyList<SinkRecord> batch)
    {
        var n = batch.Count;
        var ids = new List<string>(n);
        var users = new List<string>(n);
        var times = new List<DateTime>(n);
        var originals = new List<DateTime>(n);
        var types = new List<string>(n);
        var glucose = new List<double?>(n);
        var flags = new List<short>(n);
        var formats = new List<string>(n);
        var carbs = new List<double?>(n);
        var slow = new List<double?>(n);
        var fast = new List<double?>(n);
        var exercise = new List<double?>(n);
        var partitions = new List<int>(n);
        var offsets = new List<long>(n);
        var fingerprints = new List<string>(n);
        var sources = new List<SinkRecord>(n);
        var dead = new List<(SinkRecord Record, string Error)>();
        var wallMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        foreach (var record in batch)
        {
            CgmReading r;
            string keyUser;
            try
            {
                keyUser = UserKey.Parser.ParseFrom(record.Key ?? throw new FormatException("record has no key")).UserId;
                r = CgmReading.Parser.ParseFrom(record.Value ?? throw new FormatException("record has no value"));
            }
            catch (Exception e) when (e is FormatException or Google.Protobuf.InvalidProtocolBufferException)
            {
                dead.Add((record, e.Message));
                continue;
            }
            // In cgm.readings.dlq with the reason: the topology judged the record by the same rule at the same receiving time.
            if (CgmReadings.Validate(keyUser, r, _timeRule, EventTimeRule.ReceivedAt(record.TimestampUnixMs, wallMs)) is not null) continue;
            ids.Add(r.ReadingId);
            users.Add(keyUser);
            times.Add(DateTime.UnixEpoch.AddMilliseconds(r.EventTimeUnixMs));
            originals.Add(DateTime.UnixEpoch.AddMilliseconds(r.OriginalTimeUnixMs == 0 ? r.EventTimeUnixMs : r.OriginalTimeUnixMs));
            types.Add(CgmReadings.EventTypeName(r.EventType));
            glucose.Add(Nullable(r.GlucoseMgDl));
            flags.Add((short)r.QualityFlags);
            formats.Add(r.SourceFormat.Length == 0 ? "producer" : r.SourceFormat);
            carbs.Add(Nullable(r.CarbsG));
            slow.Add(Nullable(r.InsulinSlowU));
            fast.Add(Nullable(r.InsulinFastU));
            exercise.Add(Nullable(r.ExerciseMin));
            partitions.Add(record.Partition);
            offsets.Add(record.Offset);
            fingerprints.Add(CgmReadings.Fingerprint(r));
            sources.Add(record);
        }
        using var connection = db.OpenConnection();
        using var tx = connection.BeginTransaction();
        var claims = EventIds.Claim(connection, tx, Workload, ids, users, fingerprints);
        for (var i = claims.Length - 1; i >= 0; i--)
        {
            if (EventIds.ConflictReason(claims[i], "reading_id", ids[i], "reading (another time, type or value)") is not { } conflict) continue;
            dead.Add((sources[i], conflict));
            RemoveAt(i, ids, users, times, originals, types, glucose, flags, formats, carbs, slow, fast, exercise, partitions, offsets);
        }
        if (ids.Count > 0)
        {
            using var insert = new NpgsqlCommand("""
                INSERT INTO cgm.readings (reading_id, user_id, reading_time, original_time, event_type, glucose_mg_dl,
                    quality_flags, source_format, carbs_g, insulin_slow_u, insulin_fast_u, exercise_min, source_partition, source_offset)
                SELECT * FROM unnest(@ids, @users, @times, @originals, @types, @glucose, @flags, @formats, @carbs, @slow, @fast,
                                     @exercise, @partitions, @offsets)
                ON CONFLICT (reading_id, reading_time) DO NOTHING
                """, connection, tx);
            insert.Parameters.AddWithValue("ids", ids);
            insert.Parameters.AddWithValue("users", users);
            insert.Parameters.Add(new NpgsqlParameter("times", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = times });
            insert.Parameters.Add(new NpgsqlParameter("originals", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = originals });
            insert.Parameters.AddWithValue("types", types);
            insert.Parameters.Add(new NpgsqlParameter("glucose", NpgsqlDbType.Array | NpgsqlDbType.Double) { Value = glucose });
            insert.Parameters.AddWithValue("flags", flags);
            insert.Parameters.AddWithValue("formats", formats);
            insert.Parameters.Add(new NpgsqlParameter("carbs", NpgsqlDbType.Array | NpgsqlDbType.Double) { Value = carbs });
            insert.Parameters.Add(new NpgsqlParameter("slow", NpgsqlDbType.Array | NpgsqlDbType.Double) { Value = slow });
            insert.Parameters.Add(new NpgsqlParameter("fast", NpgsqlDbType.Array | NpgsqlDbType.Double) { Value = fast });
            insert.Parameters.Add(new NpgsqlParameter("exercise", NpgsqlDbType.Array | NpgsqlDbType.Double) { Value = exercise });
            insert.Parameters.AddWithValue("partitions", partitions);
            insert.Parameters.AddWithValue("offsets", offsets);
            insert.ExecuteNonQuery();
        }
        foreach (var (record, message) in dead)
            DeadLetters.Insert(connection, tx, record, Name, "cannot decode cgm.readings record: " + message, log);
        tx.Commit();
    }

    private static double? Nullable(double v) => double.IsNaN(v) ? null : v;

    /// <summary>Drops column entry <paramref name="i"/> (a rare conflict; lists keep the batch's parameter arrays).</summary>
    private static void RemoveAt(int i, params System.Collections.IList[] columns)
    {
        foreach (var column in columns) column.RemoveAt(i);
    }
}

/// <summary>A user's latest aligned glucose and trend as the gateway serves it.</summary>
public sealed record CgmLatestValue(string UserId, long EventTimeUnixMs, double GlucoseMgDl, double RateMgDlPerMin,
    string TrendArrow, uint QualityFlags, int WindowSteps, bool ForecastWindowComplete);

/// <summary>Redis hash <c>streamhealth:cgm:latest:{userId}</c>: the user's latest step and trend arrow, written
/// through from cgm.latest with compare-and-set on event time, expiring 7 days after the last write.</summary>
public static class CgmLatestCache
{
    public const string KeyPrefix = "streamhealth:cgm:latest:";
    public static readonly TimeSpan Ttl = TimeSpan.FromDays(7);

    public static RedisKey Key(string userId) => KeyPrefix + userId;

    public static Task<RedisResult> WriteAsync(IDatabaseAsync redis, CgmLatest latest) =>
        RedisLatestHash.WriteAsync(redis, Key(latest.UserId), latest.EventTimeUnixMs, Ttl,
        [
            "user_id", latest.UserId,
            RedisLatestHash.EventTimeField, latest.EventTimeUnixMs,
            "glucose_mg_dl", F(latest.GlucoseMgDl),
            "rate_mg_dl_per_min", F(latest.RateMgDlPerMin),
            "trend_arrow", latest.TrendArrow,
            "quality_flags", latest.QualityFlags,
            "window_steps", latest.WindowSteps,
            "forecast_window_complete", latest.ForecastWindowComplete ? 1 : 0,
        ]);

    public static async Task<CgmLatestValue?> ReadAsync(IDatabaseAsync redis, string userId)
    {
        var fields = await redis.HashGetAllAsync(Key(userId));
        if (fields.Length == 0) return null;
        var d = fields.ToDictionary(f => (string)f.Name!, f => (string)f.Value!);
        return new CgmLatestValue(d["user_id"], long.Parse(d[RedisLatestHash.EventTimeField], CultureInfo.InvariantCulture),
            P(d["glucose_mg_dl"]), P(d["rate_mg_dl_per_min"]), d["trend_arrow"], uint.Parse(d["quality_flags"], CultureInfo.InvariantCulture),
            int.Parse(d["window_steps"], CultureInfo.InvariantCulture), d["forecast_window_complete"] == "1");
    }

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
    private static double P(string s) => double.Parse(s, CultureInfo.InvariantCulture);
}

/// <summary>cgm.latest → <see cref="CgmLatestCache"/>.</summary>
public static class CgmLatestRedisWriter
{
    public static ISinkWriter Create(IConnectionMultiplexer redis) => new RedisWriteThrough<CgmLatest>(
        "cgm-latest-redis", "latest-glucose", redis, CgmLatest.Parser, l => l.UserId.Length > 0, CgmLatestCache.WriteAsync);
}
