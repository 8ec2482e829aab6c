using Microsoft.Extensions.Logging;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;

namespace StreamHealth.Runtime.Streams;

/// <summary>Every interval: takes the host's figures (<see cref="StreamMetricsReport"/>) for its meters (<see cref="StreamTelemetry"/>,
/// scraped at <c>/metrics</c>), logs them, and renews the host's entry in the discovery registry (<see cref="StreamHostRegistry"/>:
/// where its metrics and interactive queries are served, and the heartbeat by which a host that stops is seen). A host that
/// stops gracefully deregisters.</summary>
public sealed class StreamMetricsReporter : IDisposable
{
    private readonly string _hostId;
    private readonly IReadOnlyList<string> _topologies;
    private readonly StreamHost _host;
    private readonly ILogger _log;
    private readonly IDatabase? _redis;
    private readonly string _registryKey;
    private readonly TimeSpan _interval;
    private readonly Func<IReadOnlyList<SinkHealth>>? _sinks;
    private readonly string? _url;
    private readonly Timer _timer;
    private readonly Lock _reportGate = new();
    private StreamMetricsSnapshot _previous;

    /// <param name="sinks">The health of the sinks running beside this host's topologies (reported with them).</param>
    /// <param name="registryKey">The discovery hash every host of one stack registers in (Streams:RegistryKey).</param>
    /// <param name="url">Where this host's <see cref="StoreQueryServer"/> serves <c>/metrics</c> and interactive queries (null:
    /// nowhere, and the host is not registered: the gateway could not read it).</param>
    public StreamMetricsReporter(string hostId, IReadOnlyList<string> topologies, StreamHost host, ILogger log, IDatabase? redis, TimeSpan interval,
        Func<IReadOnlyList<SinkHealth>>? sinks = null, string registryKey = StreamHostRegistry.DefaultKey, string? url = null)
    {
        _url = url;
        _hostId = hostId;
        _topologies = topologies;
        _host = host;
        _log = log;
        _redis = redis;
        _registryKey = registryKey;
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
                (long)_interval.TotalMilliseconds, tasks, sinks, _url, _url is null ? [] : _host.QueryableStores());
            _previous = now;
            StreamTelemetry.Publish(report, _host);
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
            if (_redis is not null && _url is not null)
            {
                try
                {
                    StreamHostRegistry.Heartbeat(_redis, _registryKey, new HostRegistration(_hostId, _url, report.AtUnixMs, (long)_interval.TotalMilliseconds));
                }
                catch (RedisException e)
                {
                    _log.LogWarning("streams {Host}: heartbeat not written to the host registry ({Error})", _hostId, e.Message);
                }
            }
            return report;
        }
    }

    /// <summary>Stops reporting and deregisters the host (readers would call it silent after three intervals otherwise).</summary>
    public void Dispose()
    {
        _timer.Dispose();
        StreamTelemetry.Forget(_hostId);
        if (_redis is null || _url is null) return;
        try
        {
            lock (_reportGate) StreamHostRegistry.Deregister(_redis, _registryKey, _hostId);
        }
        catch (RedisException e)
        {
            _log.LogInformation("streams {Host}: not deregistered ({Error}); readers call it silent when its heartbeat is old", _hostId, e.Message);
        }
    }
}

/// <summary>What one processing host does, as its meters export it (<see cref="StreamTelemetry"/>) and as the gateway shows it
/// after reading them back from the host's <c>/metrics</c> (/api/v1/streams): throughput and latency, and the progress of every
/// task and sink it runs (<see cref="StreamTaskHealth.Stalled"/>, <see cref="SinkHealth.Stalled"/>: input waits and nothing
/// advanced for Streams:StallAfterMs).</summary>
public sealed record StreamMetricsReport(
    string HostId, IReadOnlyList<string> Topologies, long AtUnixMs,
    double RecordsInPerSecond, double RecordsOutPerSecond, double ProcessP50Us, double ProcessP99Us,
    long ConsumerLag, int ActiveTasks, double RestoreProgress,
    long Processed, long Emitted, long DeadLettered, long Commits, long ThreadRestarts,
    /// <summary>How often this host reports (its registry heartbeat interval).</summary>
    long IntervalMs,
    IReadOnlyList<StreamTaskHealth> Tasks,
    IReadOnlyList<SinkHealth> Sinks,
    /// <summary>Where this host answers interactive queries (<see cref="StoreQueryApi"/>), and for which stores; the
    /// owner of a key is the host whose <see cref="Tasks"/> hold the key's source partition.</summary>
    string? QueryUrl = null,
    IReadOnlyList<QueryableStore>? Queryable = null);
