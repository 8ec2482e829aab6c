using System.Text.Json;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace StreamHealth.Runtime.Streams;

/// <summary>Logs a host's stream metrics every interval and publishes them to Redis, where the gateway
/// (any replica) reads every host's latest figures: key <c>streamhealth:streams:{hostId}</c>, a JSON
/// <see cref="StreamMetricsReport"/>, expiring after three intervals so a dead host disappears.</summary>
public sealed class StreamMetricsReporter : IDisposable
{
    public const string RedisKeyPrefix = "streamhealth:streams:";

    private readonly string _hostId;
    private readonly IReadOnlyList<string> _topologies;
    private readonly StreamHost _host;
    private readonly ILogger _log;
    private readonly IDatabase? _redis;
    private readonly TimeSpan _interval;
    private readonly Timer _timer;
    private StreamMetricsSnapshot _previous;

    public StreamMetricsReporter(string hostId, IReadOnlyList<string> topologies, StreamHost host, ILogger log, IDatabase? redis, TimeSpan interval)
    {
        _hostId = hostId;
        _topologies = topologies;
        _host = host;
        _log = log;
        _redis = redis;
        _interval = interval;
        _previous = host.Metrics.Snapshot();
        _timer = new Timer(_ => Report(), null, interval, interval);
    }

    public StreamMetricsReport Report()
    {
        var now = _host.Metrics.Snapshot();
        var report = new StreamMetricsReport(_hostId, _topologies, now.AtUnixMs,
            Math.Round(now.RecordsInPerSecond(_previous), 1), Math.Round(now.RecordsOutPerSecond(_previous), 1),
            now.ProcessP50Us, now.ProcessP99Us, now.ConsumerLag, now.ActiveTasks, Math.Round(now.RestoreProgress, 4),
            now.Processed, now.Emitted, now.DeadLettered, now.CommitFailures, now.ProducerQueueFull, _host.ThreadRestarts);
        _previous = now;
        _log.LogInformation(
            "streams {Host}: in {InPerSecond}/s out {OutPerSecond}/s process p50 {P50} µs p99 {P99} µs lag {Lag} tasks {Tasks} restore {Restore:P0} dlq {Dlq} commit-failures {CommitFailures}",
            _hostId, report.RecordsInPerSecond, report.RecordsOutPerSecond, report.ProcessP50Us, report.ProcessP99Us,
            report.ConsumerLag, report.ActiveTasks, report.RestoreProgress, report.DeadLettered, report.CommitFailures);
        if (_redis is not null)
        {
            try
            {
                _redis.StringSet(RedisKeyPrefix + _hostId, JsonSerializer.Serialize(report, StreamMetricsReport.Json), _interval * 3);
            }
            catch (RedisException e)
            {
                _log.LogWarning("streams {Host}: metrics not published to Redis ({Error})", _hostId, e.Message);
            }
        }
        return report;
    }

    public void Dispose() => _timer.Dispose();
}

/// <summary>What the gateway shows per processing host.</summary>
public sealed record StreamMetricsReport(
    string HostId, IReadOnlyList<string> Topologies, long AtUnixMs,
    double RecordsInPerSecond, double RecordsOutPerSecond, double ProcessP50Us, double ProcessP99Us,
    long ConsumerLag, int ActiveTasks, double RestoreProgress,
    long Processed, long Emitted, long DeadLettered, long CommitFailures, long ProducerQueueFull, long ThreadRestarts)
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
}
