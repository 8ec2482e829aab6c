using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;
using StreamHealth.Insights.Metrics;
using StreamHealth.Runtime.Caching;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using DailyMetricAggregate = StreamHealth.Schemas.Avro.Insights.DailyMetricAggregate;

namespace StreamHealth.Insights.Aggregates;

/// <summary>The gateway's cached answers that a person's aggregates feed, dropped by exact key (never a pattern) once a batch's
/// rows are committed, through <see cref="CacheInvalidation"/> (Redis and every gateway's near copies), so the next read
/// recomputes them. The keys are the contract with the gateway's cache.</summary>
public sealed class InsightsCacheInvalidation(IConnectionMultiplexer redis, ILogger? log = null)
{
    public static string SummaryKey(string userId) => "insights:summary:" + userId;
    public static string RecommendationsKey(string userId) => "insights:recs:" + userId;

    private readonly ILogger _log = log ?? NullLogger.Instance;
    private long _failures, _deleted;

    /// <summary>Deletes that failed (Redis down or slow): the entries then live out their TTLs (5 min, 1 h).</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Keys Redis answered as deleted (existing ones only).</summary>
    public long Deleted => Interlocked.Read(ref _deleted);

    /// <summary>Drops the people's keys (one script per 1,000 keys) and returns without waiting: an outage must not hold the sink (the rows are
    /// already committed); a failure is logged and counted when it comes.</summary>
    public Task Invalidate(IReadOnlyCollection<string> userIds)
    {
        if (userIds.Count == 0) return Task.CompletedTask;
        var keys = new RedisKey[userIds.Count * 2];
        var i = 0;
        foreach (var user in userIds)
        {
            keys[i++] = SummaryKey(user);
            keys[i++] = RecommendationsKey(user);
        }
        Task<long> delete;
        try
        {
            delete = CacheInvalidation.DropAsync(redis.GetDatabase(), keys);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            Failed(e, keys.Length);
            return Task.CompletedTask;
        }
        return delete.ContinueWith(t =>
        {
            if (t.IsCompletedSuccessfully) Interlocked.Add(ref _deleted, t.Result);
            else Failed(t.Exception?.GetBaseException() ?? new TaskCanceledException(), keys.Length);
        }, TaskScheduler.Default);
    }

    private void Failed(Exception e, int keys)
    {
        Interlocked.Increment(ref _failures);
        _log.LogWarning("insights cache: dropping {Keys} keys failed ({Error}); the entries expire by their TTLs", keys, e.Message);
    }
}

/// <summary>insights.daily → insights.daily_metrics and insights.metric_summaries (<see cref="PostgresEventSink{T}"/>, upserts: the
/// topic carries each day's and each summary's latest state, so a batch keeps the last record of every key and a replay writes
/// the same rows again), then the gateway's cached summaries and recommendations of the people written are invalidated
/// (<see cref="InsightsCacheInvalidation"/>). A record that does not decode or breaks the type rules is dead-lettered.</summary>
public static class InsightsAggregatePostgresWriter
{
    public const string Name = "insights-daily-postgres";
    public const string SinkGroup = "streamhealth-insights-daily-postgres";

    public static ISinkWriter Create(NpgsqlDataSource db, SchemaRegistryConnection registry, InsightsCacheInvalidation cache, ILogger? log = null) =>
        new PostgresEventSink<DailyMetricAggregate>(db, Workload(registry.SerDes<DailyMetricAggregate>(), cache), log);

    /// <summary>The sink with its runner (own consumer group, dead letters in PostgreSQL), as every workload's result sinks are.</summary>
    public static SinkRunner CreateSink(string bootstrapServers, NpgsqlDataSource db, SchemaRegistryConnection registry, InsightsCacheInvalidation cache,
        ILoggerFactory logs, int sessionTimeoutMs = 6_000, string topic = Topics.InsightsDaily, string groupId = SinkGroup) =>
        SinkRunner.For(bootstrapServers, topic, groupId, Create(db, registry, cache, logs.CreateLogger("StreamHealth.Sinks." + Name)),
            db, logs, sessionTimeoutMs);

    private static PostgresEventWorkload<DailyMetricAggregate> Workload(AvroSerDes<DailyMetricAggregate> values, InsightsCacheInvalidation cache) => new()
    {
        SinkName = Name,
        Decode = record => values.ReadValue(PostgresEventSink.Value(record), record.Topic),
        DecodeFailure = "cannot decode DailyMetricAggregate",
        Refuse = static (a, _) =>
            InputRules.CheckId("user_id", a.user_id)
            ?? (HealthMetricTypes.Find(a.metric) is { } type
                ? a.unit == type.Unit ? null : $"unit = {InputRules.Quote(a.unit)}: {type.Name} is stored in {type.Unit}"
                : $"metric = {InputRules.Quote(a.metric)}: not a health metric type ({HealthMetricTypes.NamesText})")
            ?? (a.count < 1 || a.week.days_with_data is < 1 or > DailyFold.WeekDays || a.month.days_with_data is < 1 or > DailyFold.MonthDays
                ? $"count = {a.count}, days_with_data = {a.week.days_with_data}/{a.month.days_with_data}: an aggregate counts at least one record"
                : null),
        UserId = static a => a.user_id,
        // DISTINCT ON keeps each key's last record of the batch (ordinality = batch order): one upsert may not touch a row twice.
        // The two inserts are one statement (data-modifying CTEs), so one round trip per batch.
        InsertSql = """
            WITH input AS (
              SELECT * FROM unnest(@users, @metrics, @dates, @starts, @offsets, @counts, @totals, @mins, @maxs, @means, @lasts, @lastTimes,
                                   @weekThrough, @weekDays, @weekTotals, @weekPerDay, @weekValueMeans, @weekMins, @weekMaxs,
                                   @monthThrough, @monthDays, @monthTotals, @monthPerDay, @monthValueMeans, @monthMins, @monthMaxs)
                WITH ORDINALITY AS x(u, m, d, ds, o, c, t, mn, mx, me, lv, lt, wt, wd, wto, wp, wv, wmn, wmx, mt, md, mto, mp, mv, mmn, mmx, ord)
            ), days AS (
              INSERT INTO insights.daily_metrics AS dm
                (user_id, metric, local_date, day_start, utc_offset_minutes, count, total, min, max, mean, last_value, last_time, updated_at)
              SELECT DISTINCT ON (u, m, ds, d) u, m, d, ds, o, c, t, mn, mx, me, lv, lt, now() FROM input ORDER BY u, m, ds, d, ord DESC
              ON CONFLICT (user_id, metric, day_start, local_date) DO UPDATE SET
                utc_offset_minutes = excluded.utc_offset_minutes, count = excluded.count, total = excluded.total, min = excluded.min,
                max = excluded.max, mean = excluded.mean, last_value = excluded.last_value, last_time = excluded.last_time, updated_at = now()
            ), summaries AS (
              INSERT INTO insights.metric_summaries AS ms
                (user_id, metric, window_days, through_date, days_with_data, total, per_day_mean, value_mean, min, max, updated_at)
              SELECT DISTINCT ON (u, m, w) u, m, w, th, n, tot, pd, vm, lo, hi, now() FROM (
                SELECT u, m, 7 AS w, wt AS th, wd AS n, wto AS tot, wp AS pd, wv AS vm, wmn AS lo, wmx AS hi, ord FROM input
                UNION ALL
                SELECT u, m, 30, mt, md, mto, mp, mv, mmn, mmx, ord FROM input) s
              ORDER BY u, m, w, ord DESC
              ON CONFLICT (user_id, metric, window_days) DO UPDATE SET
                through_date = excluded.through_date, days_with_data = excluded.days_with_data, total = excluded.total,
                per_day_mean = excluded.per_day_mean, value_mean = excluded.value_mean, min = excluded.min, max = excluded.max, updated_at = now()
            )
            SELECT 1
            """,
        AddParameters = static (p, rows) =>
        {
            p.Add(rows.Column("users", static (_, a) => a.user_id));
            p.Add(rows.Column("metrics", static (_, a) => a.metric));
            p.Add(rows.Column("dates", static (_, a) => DateOnly.FromDateTime(a.local_date)));
            p.Add(rows.Timestamps("starts", static (_, a) => AvroTime.ToUnixMs(a.day_start_unix_ms)));
            p.Add(rows.Column("offsets", static (_, a) => a.utc_offset_minutes));
            p.Add(rows.Column("counts", static (_, a) => a.count));
            p.Add(rows.Column("totals", static (_, a) => a.total));
            p.Add(rows.Column("mins", static (_, a) => a.min));
            p.Add(rows.Column("maxs", static (_, a) => a.max));
            p.Add(rows.Column("means", static (_, a) => a.mean));
            p.Add(rows.Column("lasts", static (_, a) => a.last_value));
            p.Add(rows.Timestamps("lastTimes", static (_, a) => AvroTime.ToUnixMs(a.last_time_unix_ms)));
            AddSummary(p, rows, "week", static a => a.week);
            AddSummary(p, rows, "month", static a => a.month);
        },
        AfterCommit = rows =>
        {
            var users = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < rows.Count; i++) users.Add(rows[i].Value.user_id);
            cache.Invalidate(users);
        },
    };

    private static void AddSummary(NpgsqlParameterCollection p, EventRows<DailyMetricAggregate> rows, string prefix,
        Func<DailyMetricAggregate, StreamHealth.Schemas.Avro.Insights.MetricSummary> select)
    {
        p.Add(rows.Column(prefix + "Through", (_, a) => DateOnly.FromDateTime(select(a).through_date)));
        p.Add(rows.Column(prefix + "Days", (_, a) => select(a).days_with_data));
        p.Add(rows.Column(prefix + "Totals", (_, a) => select(a).total));
        p.Add(rows.Column(prefix + "PerDay", (_, a) => select(a).per_day_mean));
        p.Add(rows.Column(prefix + "ValueMeans", (_, a) => select(a).value_mean));
        p.Add(rows.Column(prefix + "Mins", (_, a) => select(a).min));
        p.Add(rows.Column(prefix + "Maxs", (_, a) => select(a).max));
    }
}
