using System.Text.Json;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;

namespace StreamHealth.Runtime.Streams;

/// <summary>Logs a host's stream metrics every interval and publishes them to Redis, where the gateway
/// (any replica) reads every host's latest figures: one hash (<see cref="DefaultRedisKey"/>), field = host id,
/// value = a JSON <see cref="StreamMetricsReport"/> stamped with its time and interval. One HGETALL reads every
/// host (a key per host needed a SCAN, which timed out under load); a host that stops reporting is dropped by
/// readers after three intervals (at least 10 s), reported as silent, and its field deleted after ten minutes, and a host that stops gracefully deletes its own.</summary>
public sealed class StreamMetricsReporter : IDisposable
{
    public const string DefaultRedisKey = "streamhealth:streams";

    private readonly string _hostId;
    private readonly IReadOnlyList<string> _topologies;
    private readonly StreamHost _host;
    private readonly ILogger _log;
    private readonly IDatabase? _redis;
    private readonly string _redisKey;
    private readonly TimeSpan _interval;
    private readonly Func<IReadOnlyList<SinkHealth>>? _sinks;
    private readonly string? _queryUrl;
    private readonly Timer _timer;
    private readonly Lock _reportGate = new();
    private StreamMetricsSnapshot _previous;

    /// <param name="sinks">The health of the sinks running beside this host's topologies (reported with them).</param>
    /// <param name="redisKey">The hash every host of one stack publishes to (Streams:MetricsKey).</param>
    /// <param name="queryUrl">Where this host's <see cref="StoreQueryServer"/> answers interactive queries (null: it serves none).</param>
    public StreamMetricsReporter(string hostId, IReadOnlyList<string> topologies, StreamHost host, ILogger log, IDatabase? redis, TimeSpan interval,
        Func<IReadOnlyList<SinkHealth>>? sinks = null, string redisKey = DefaultRedisKey, string? queryUrl = null)
    {
        _queryUrl = queryUrl;
        _hostId = hostId;
        _topologies = topologies;
        _host = host;
        _log = log;
        _redis = redis;
        _redisKey = redisKey;
        _interval = interval;
        _sinks = sinks;
        _previous = host.Metrics.Snapshot();
        // One-shot, re-armed after each report: a periodic timer would queue a callback per interval behind a slow report
        // (Redis waiting, a loaded machine), each holding a pool thread, until the pool starves.
        _timer = new Timer(_ => ReportOnTimer(), null, interval, Timeout.InfiniteTimeSpan);
    }

    private void ReportOnTimer()
    {
        // A timer callback that throws ends the process; a report that fails is a log line and the next one comes.
        try
        {
            Report();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _log.LogWarning("streams {Host}: metrics report failed ({Error})", _hostId, e.Message);
        }
        finally
        {
            try
            {
                _timer?.Change(_interval, Timeout.InfiniteTimeSpan);
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    public StreamMetricsReport Report()
    {
        // One report at a time: a slow Redis must not let timer callbacks pile up or publish out of order.
        lock (_reportGate)
        {
            var now = _host.Metrics.Snapshot();
            var tasks = _host.Metrics.TaskHealth(_host.StallAfterMs);
            var sinks = _sinks?.Invoke() ?? [];
            var report = new StreamMetricsReport(_hostId, _topologies, now.AtUnixMs,
                Math.Round(now.RecordsInPerSecond(_previous), 1), Math.Round(now.RecordsOutPerSecond(_previous), 1),
                now.ProcessP50Us, now.ProcessP99Us, now.ConsumerLag, now.ActiveTasks, Math.Round(now.RestoreProgress, 4),
                now.Processed, now.Emitted, now.DeadLettered, now.Commits, _host.ThreadRestarts,
                (long)_interval.TotalMilliseconds, tasks, sinks, _queryUrl, _queryUrl is null ? [] : _host.QueryableStores());
            _previous = now;
            StreamTelemetry.Publish(report);
            _log.LogInformation(
                "streams {Host}: in {InPerSecond}/s out {OutPerSecond}/s process p50 {P50} µs p99 {P99} µs lag {Lag} tasks {Tasks} restore {Restore:P0} dlq {Dlq} commits {Commits} restarts {Restarts}",
                _hostId, report.RecordsInPerSecond, report.RecordsOutPerSecond, report.ProcessP50Us, report.ProcessP99Us,
                report.ConsumerLag, report.ActiveTasks, report.RestoreProgress, report.DeadLettered, report.Commits, report.ThreadRestarts);
            foreach (var t in tasks)
                if (t.Stalled)
                    _log.LogWarning("streams {Host}: task {App}/{Task} stalled: lag {Lag}, no progress since {Since:O}, last error: {Error}", _hostId,
                        t.ApplicationId, t.Task, t.Lag, DateTimeOffset.FromUnixTimeMilliseconds(t.LastProgressUnixMs), t.LastError ?? "none");
            foreach (var s in sinks)
                if (s.Stalled)
                    _log.LogWarning("streams {Host}: sink {Sink} stalled: lag {Lag}, no progress since {Since:O}, last error: {Error}", _hostId,
                        s.Name, s.Lag, DateTimeOffset.FromUnixTimeMilliseconds(s.LastProgressUnixMs), s.LastError ?? "none");
            if (_redis is not null)
            {
                try
                {
                    _redis.HashSet(_redisKey, _hostId, JsonSerializer.Serialize(report, StreamMetricsReport.Json));
                }
                catch (RedisException e)
                {
                    _log.LogWarning("streams {Host}: metrics not published to Redis ({Error})", _hostId, e.Message);
                }
            }
            return report;
        }
    }

    /// <summary>Stops reporting and removes this host's report (readers would drop it after three intervals anyway).</summary>
    public void Dispose()
    {
        _timer.Dispose();
        StreamTelemetry.Forget(_hostId);
        if (_redis is null) return;
        try
        {
            lock (_reportGate) _redis.HashDelete(_redisKey, _hostId);
        }
        catch (RedisException e)
        {
            _log.LogInformation("streams {Host}: report not removed from Redis ({Error}); readers drop it when it goes stale", _hostId, e.Message);
        }
    }
}

/// <summary>What the gateway shows per processing host: throughput and latency, and the progress of every task
/// and sink it runs (<see cref="StreamTaskHealth.Stalled"/>, <see cref="SinkHealth.Stalled"/>: input waits and
/// nothing advanced for Streams:StallAfterMs).</summary>
public sealed record StreamMetricsReport(
    string HostId, IReadOnlyList<string> Topologies, long AtUnixMs,
    double RecordsInPerSecond, double RecordsOutPerSecond, double ProcessP50Us, double ProcessP99Us,
    long ConsumerLag, int ActiveTasks, double RestoreProgress,
    long Processed, long Emitted, long DeadLettered, long Commits, long ThreadRestarts,
    /// <summary>How often this host reports; a report older than three intervals is from a host that is gone.</summary>
    long IntervalMs,
    IReadOnlyList<StreamTaskHealth> Tasks,
    IReadOnlyList<SinkHealth> Sinks,
    /// <summary>Where this host answers interactive queries (<see cref="StoreQueryApi"/>), and for which stores; the
    /// owner of a key is the host whose <see cref="Tasks"/> hold the key's source partition.</summary>
    string? QueryUrl = null,
    IReadOnlyList<QueryableStore>? Queryable = null)
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Whether this report is from a host that stopped reporting: three intervals without a new one, and at least
    /// 10 s, so that a busy host whose timer runs late (GC, a starved thread pool on a small machine) is not called silent.</summary>
    public bool IsStaleAt(long nowUnixMs) => nowUnixMs - AtUnixMs > Math.Max(3 * IntervalMs, 10_000);

    /// <summary>How long a silent host stays reported (as stalled) before its report is deleted: a host that stops
    /// gracefully deletes its own report, so one that falls silent crashed, hangs or cannot reach Redis, and its
    /// partitions may be waiting for the group to move them; ten minutes is long enough to be seen and acted on.</summary>
    public const long SilentHostRetentionMs = 10 * 60_000;

    public bool IsForgottenAt(long nowUnixMs) => nowUnixMs - AtUnixMs > SilentHostRetentionMs;
}
