using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using SensorKey = StreamHealth.Schemas.Avro.Common.SensorKey;
using SensorMetric = StreamHealth.Schemas.Avro.Sensors.SensorMetric;

namespace StreamHealth.Sensors.Metrics;

/// <summary>One closed window of one metric of one node as the API serves it (sensors.window_metrics, the latest-windows
/// cache). Statistics are null for a window without readings.</summary>
public sealed record NodeWindowView(
    [property: JsonPropertyName("node_id")] string NodeId,
    [property: JsonPropertyName("district_id")] string DistrictId,
    [property: JsonPropertyName("metric")] string Metric,
    [property: JsonPropertyName("unit")] string Unit,
    [property: JsonPropertyName("window_minutes")] int WindowMinutes,
    [property: JsonPropertyName("window_start")] DateTimeOffset WindowStart,
    [property: JsonPropertyName("window_end")] DateTimeOffset WindowEnd,
    [property: JsonPropertyName("reading_count")] int ReadingCount,
    [property: JsonPropertyName("duplicate_count")] int DuplicateCount,
    [property: JsonPropertyName("late_count")] int LateCount,
    [property: JsonPropertyName("min")] double? Min,
    [property: JsonPropertyName("max")] double? Max,
    [property: JsonPropertyName("mean")] double? Mean,
    [property: JsonPropertyName("stddev")] double? StdDev,
    [property: JsonPropertyName("p50")] double? P50,
    [property: JsonPropertyName("p95")] double? P95)
{
    public static NodeWindowView From(SensorMetric m) => new(m.node_id, m.district_id, m.metric, m.unit, m.window_minutes,
        DateTimeOffset.FromUnixTimeMilliseconds(AvroTime.ToUnixMs(m.window_start_unix_ms)), DateTimeOffset.FromUnixTimeMilliseconds(AvroTime.ToUnixMs(m.event_time_unix_ms)),
        m.reading_count, m.duplicate_count, m.late_count, Stat(m.min), Stat(m.max), Stat(m.mean), Stat(m.stddev), Stat(m.p50), Stat(m.p95));

    /// <summary>NaN is how the topic says "no readings"; the column and the JSON say it with null.</summary>
    public static double? Stat(double v) => double.IsFinite(v) ? v : null;
}

/// <summary>Names of one sensors pipeline's topics, applications and sink groups (production uses <see cref="Default"/>; tests give
/// each its own).</summary>
public sealed record SensorsPipelineNames(string ApplicationId, string ReadingsTopic, string MetricsTopic, StreamHealth.Sensors.Districts.DistrictTopics Districts)
{
    public static readonly SensorsPipelineNames Default =
        new(SensorsTopology.ApplicationId, Topics.SensorsReadings, Topics.SensorsMetrics, StreamHealth.Sensors.Districts.DistrictTopics.Default);
    /// <summary>The district analysis' application (sensors-districts by default).</summary>
    public string DistrictsApplicationId => ApplicationId + "-districts";
    public string PostgresSinkGroup => ApplicationId + "-metrics-postgres-sink";
    public string RedisSinkGroup => ApplicationId + "-metrics-redis-sink";
}

/// <summary>sensors.metrics → sensors.window_metrics (<see cref="PostgresEventSink{T}"/>): one row per node, metric, window size
/// and window start. A window's result is final when emitted and a replay emits the same values under the same key, so the
/// insert is ON CONFLICT DO NOTHING; no event id to claim (the key is the identity). A record that does not decode, or whose
/// value names another node than its key, is dead-lettered with the reason.</summary>
public static class SensorMetricsPostgresWriter
{
    public const string Name = "sensors-metrics-postgres";

    public static ISinkWriter Create(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null) =>
        new PostgresEventSink<SensorMetric>(db, Describe(registry.SerDes<SensorKey>(), registry.SerDes<SensorMetric>()), log);

    private static PostgresEventWorkload<SensorMetric> Describe(AvroSerDes<SensorKey> keys, AvroSerDes<SensorMetric> values) => new()
    {
        SinkName = Name,
        Decode = record => PostgresEventSink.KeyedBy(keys.ReadKey(record.Key, record.Topic).node_id, values.ReadValue(record.Value, record.Topic),
            "node_id", static m => m.node_id),
        DecodeFailure = "cannot decode sensors.metrics record",
        Refuse = static (m, _) => m.window_minutes is 1 or 15 or 60 ? null : $"window_minutes = {m.window_minutes}: not 1, 15 or 60",
        UserId = static m => m.node_id,
        InsertSql = """
            INSERT INTO sensors.window_metrics (node_id, district_id, metric, unit, window_minutes, window_start, window_end, reading_count,
                duplicate_count, late_count, min, max, mean, stddev, p50, p95, source_partition, source_offset)
            SELECT * FROM unnest(@nodes, @districts, @metrics, @units, @minutes, @starts, @ends, @counts, @duplicates, @lates,
                                 @mins, @maxes, @means, @stddevs, @p50s, @p95s, @partitions, @offsets)
            ON CONFLICT (node_id, metric, window_minutes, window_start) DO NOTHING
            """,
        AddParameters = static (p, rows) =>
        {
            p.Add(rows.Column("nodes", static (_, m) => m.node_id));
            p.Add(rows.Column("districts", static (_, m) => m.district_id));
            p.Add(rows.Column("metrics", static (_, m) => m.metric));
            p.Add(rows.Column("units", static (_, m) => m.unit));
            p.Add(rows.Column("minutes", static (_, m) => m.window_minutes));
            p.Add(rows.Timestamps("starts", static (_, m) => AvroTime.ToUnixMs(m.window_start_unix_ms)));
            p.Add(rows.Timestamps("ends", static (_, m) => AvroTime.ToUnixMs(m.event_time_unix_ms)));
            p.Add(rows.Column("counts", static (_, m) => m.reading_count));
            p.Add(rows.Column("duplicates", static (_, m) => m.duplicate_count));
            p.Add(rows.Column("lates", static (_, m) => m.late_count));
            p.Add(rows.Column("mins", static (_, m) => NodeWindowView.Stat(m.min), NpgsqlDbType.Double));
            p.Add(rows.Column("maxes", static (_, m) => NodeWindowView.Stat(m.max), NpgsqlDbType.Double));
            p.Add(rows.Column("means", static (_, m) => NodeWindowView.Stat(m.mean), NpgsqlDbType.Double));
            p.Add(rows.Column("stddevs", static (_, m) => NodeWindowView.Stat(m.stddev), NpgsqlDbType.Double));
            p.Add(rows.Column("p50s", static (_, m) => NodeWindowView.Stat(m.p50), NpgsqlDbType.Double));
            p.Add(rows.Column("p95s", static (_, m) => NodeWindowView.Stat(m.p95), NpgsqlDbType.Double));
            p.Add(rows.Column("partitions", static (record, _) => record.Partition));
            p.Add(rows.Column("offsets", static (record, _) => record.Offset));
        },
    };
}

/// <summary>Redis hash <c>streamhealth:sensors:latest:{nodeId}</c>: a node's newest closed window per metric and size (field
/// <c>{metric}:{minutes}</c>, value <c>{window start ms}|{JSON of <see cref="NodeWindowView"/>}</c>), what
/// GET /api/v1/nodes/{node_id}/metrics serves with one HGETALL. Each field is a compare-and-set on its window start, so a
/// replayed or re-emitted older window never replaces a newer one; the hash expires 7 days after its last write.</summary>
public static class SensorLatestCache
{
    public const string KeyPrefix = "streamhealth:sensors:latest:";
    public static readonly TimeSpan Ttl = TimeSpan.FromDays(7);

    private static readonly JsonSerializerOptions Json = new() { NumberHandling = JsonNumberHandling.Strict };

    // KEYS[1] = hash; ARGV[1] = ttl seconds, then (field, window start, JSON) triples.
    private const string CompareAndSet = """
        local written = 0
        for i = 2, #ARGV, 3 do
          local current = redis.call('HGET', KEYS[1], ARGV[i])
          local start = current and tonumber(string.match(current, '^(%-?%d+)|'))
          if not start or start < tonumber(ARGV[i + 1]) then
            redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. '|' .. ARGV[i + 2])
            written = written + 1
          end
        end
        redis.call('EXPIRE', KEYS[1], ARGV[1])
        return written
        """;

    public static RedisKey Key(string nodeId) => KeyPrefix + nodeId;

    public static Task<RedisResult> WriteAsync(IDatabaseAsync redis, SensorMetric m)
    {
        var view = NodeWindowView.From(m);
        return redis.ScriptEvaluateAsync(CompareAndSet, [Key(m.node_id)],
        [
            (long)Ttl.TotalSeconds, $"{m.metric}:{m.window_minutes}", view.WindowStart.ToUnixTimeMilliseconds(), JsonSerializer.Serialize(view, Json),
        ]);
    }

    /// <summary>The node's newest window per metric and size, ordered by metric then size; empty when nothing is cached.</summary>
    public static async Task<List<NodeWindowView>> ReadAsync(IDatabaseAsync redis, string nodeId)
    {
        var fields = await redis.HashGetAllAsync(Key(nodeId));
        var windows = new List<NodeWindowView>(fields.Length);
        foreach (var field in fields)
        {
            var text = (string)field.Value!;
            var bar = text.IndexOf('|');
            if (bar > 0 && JsonSerializer.Deserialize<NodeWindowView>(text.AsSpan(bar + 1), Json) is { } view) windows.Add(view);
        }
        windows.Sort((a, b) => string.CompareOrdinal(a.Metric, b.Metric) is var byMetric and not 0 ? byMetric : a.WindowMinutes.CompareTo(b.WindowMinutes));
        return windows;
    }
}

/// <summary>sensors.metrics → <see cref="SensorLatestCache"/>.</summary>
public static class SensorMetricsRedisWriter
{
    public const string Name = "sensors-metrics-redis";

    public static ISinkWriter Create(IConnectionMultiplexer redis, SchemaRegistryConnection registry)
    {
        var values = registry.SerDes<SensorMetric>();
        return new RedisWriteThrough<SensorMetric>(Name, "latest sensor window", redis, record => values.ReadValue(record.Value, record.Topic),
            static m => !string.IsNullOrEmpty(m.node_id), SensorLatestCache.WriteAsync);
    }
}

/// <summary>The two sinks of sensors.metrics, each its own consumer group.</summary>
public static class SensorMetricsSinks
{
    public static (SinkRunner Postgres, SinkRunner Redis) Create(SensorsPipelineNames names, string bootstrapServers, NpgsqlDataSource postgres,
        IConnectionMultiplexer redis, SchemaRegistryConnection registry, ILoggerFactory logs, int sessionTimeoutMs = 6_000) =>
    (
        SinkRunner.For(bootstrapServers, names.MetricsTopic, names.PostgresSinkGroup,
            SensorMetricsPostgresWriter.Create(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + SensorMetricsPostgresWriter.Name)),
            postgres, logs, sessionTimeoutMs),
        SinkRunner.For(bootstrapServers, names.MetricsTopic, names.RedisSinkGroup, SensorMetricsRedisWriter.Create(redis, registry), postgres, logs,
            sessionTimeoutMs)
    );
}
