using System.Globalization;
using StackExchange.Redis;
using StreamHealth.Gateway.Observability;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Gateway.Apis;

/// <summary>Reads the pipeline as the processing hosts export it: the discovery registry (<see cref="StreamHostRegistry"/>) names
/// the live hosts and their endpoints, and each distinct endpoint's <c>/metrics</c> is scraped once (several hosts of one process
/// share one, told apart by the <c>host</c> label) and read back into a <see cref="StreamMetricsReport"/> per host. A host whose
/// heartbeat stopped is silent; one whose endpoint does not answer, or serves nothing for it, is reported too: either way its
/// tasks make no progress anyone would see.</summary>
public sealed class PipelineReader(ILogger log) : IDisposable
{
    private static readonly TimeSpan ScrapeTimeout = TimeSpan.FromSeconds(2);

    private readonly HttpClient _http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(2), ConnectTimeout = TimeSpan.FromSeconds(1) })
    {
        Timeout = ScrapeTimeout,
        // A scrape of one host is tens of kilobytes; a registry entry pointing elsewhere must not fill the gateway's memory.
        MaxResponseContentBufferSize = 16 << 20,
    };

    /// <summary>Each registered host's last report read from its endpoint, and when: one scrape that misses its 2 s (a busy host,
    /// a loaded machine) shows the host as last read instead of as unreachable, for as long as its heartbeat would count it live
    /// (three intervals, at least 10 s); an endpoint that stays unreadable longer is reported. Its lag also goes into the summary
    /// of a host that then falls silent.</summary>
    private readonly Dictionary<string, (StreamMetricsReport Report, long ReadAtUnixMs)> _lastRead = new(StringComparer.Ordinal);

    public async Task<StreamsReading> ReadAsync(IDatabase redis, string registryKey, TimeSpan timeout)
    {
        var unreadable = new List<string>();
        var registered = await StreamHostRegistry.ReadAsync(redis, registryKey, timeout, unreadable);
        foreach (var id in unreadable) log.LogWarning("host registry {Key}: entry {Host} does not parse; ignored", registryKey, id);
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var live = registered.Where(h => !h.IsSilentAt(now)).ToList();
        var scrapes = live.Select(h => h.Url).Distinct(StringComparer.Ordinal).ToDictionary(u => u, ScrapeAsync, StringComparer.Ordinal);
        await Task.WhenAll(scrapes.Values);

        var hosts = new List<StreamMetricsReport>(live.Count);
        var unreachable = new List<StalledPart>();
        foreach (var registration in live)
        {
            var (samples, error) = scrapes[registration.Url].Result;
            var report = samples is null ? null : FromSamples(registration, samples, now);
            if (report is not null)
                lock (_lastRead) _lastRead[registration.HostId] = (report, now);
            else if (samples is null)
                lock (_lastRead)
                    if (_lastRead.TryGetValue(registration.HostId, out var last) && now - last.ReadAtUnixMs <= registration.LiveWindowMs())
                        report = last.Report;
            if (report is null)
            {
                var why = error ?? $"its endpoint {registration.Url}/metrics serves no figures for it";
                unreachable.Add(new StalledPart("host", registration.HostId, registration.HostId, null, LastLag(registration.HostId), registration.HeartbeatUnixMs,
                    why, now, $"host {registration.HostId}: its metrics cannot be read ({why})"));
                continue;
            }
            hosts.Add(report);
        }
        lock (_lastRead)
            foreach (var gone in _lastRead.Keys.Where(id => !registered.Any(h => h.HostId == id)).ToList()) _lastRead.Remove(gone);
        var stalled = FindStalled(hosts);
        stalled.AddRange(unreachable);
        foreach (var silent in registered.Where(h => h.IsSilentAt(now)))
        {
            // A host stopping gracefully deregisters, so a silent one crashed, hangs, or cannot reach Redis: its tasks and sinks
            // make no progress that anyone would see, which is a stall of its own.
            var lag = LastLag(silent.HostId);
            stalled.Add(new StalledPart("host", silent.HostId, silent.HostId, null, lag, silent.HeartbeatUnixMs, "no heartbeat", silent.HeartbeatUnixMs,
                $"host {silent.HostId} has not reported for {(now - silent.HeartbeatUnixMs) / 1000} s (every {silent.IntervalMs / 1000.0:0.#} s expected); " +
                $"its last reading had {lag} record(s) waiting"));
        }
        return new StreamsReading(hosts, stalled, now, null);
    }

    private long LastLag(string hostId)
    {
        lock (_lastRead) return _lastRead.TryGetValue(hostId, out var last) ? last.Report.ConsumerLag : 0;
    }

    private async Task<(List<PrometheusSample>? Samples, string? Error)> ScrapeAsync(string url)
    {
        try
        {
            var text = await _http.GetStringAsync(url + "/metrics");
            var samples = PrometheusText.Parse(text, out var malformed);
            if (malformed > 0) log.LogWarning("metrics of {Url}: {Count} line(s) do not parse; skipped", url, malformed);
            return (samples, null);
        }
        // A URL in the registry is input like any other: one that is not a usable http(s) address fails that host alone.
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or InvalidOperationException or UriFormatException)
        {
            return (null, $"{url}/metrics did not answer ({e.Message.ReplaceLineEndings(" ")})");
        }
    }

    /// <summary>One host's figures from its endpoint's samples (those labelled with its id), or null when there are none (the
    /// endpoint belongs to another process now, or the host has not taken its first figures yet).</summary>
    public static StreamMetricsReport? FromSamples(HostRegistration registration, IReadOnlyList<PrometheusSample> samples, long nowUnixMs)
    {
        var byName = new Dictionary<string, List<PrometheusSample>>(StringComparer.Ordinal);
        foreach (var s in samples)
            if (s.Label("host") == registration.HostId)
            {
                if (!byName.TryGetValue(s.Name, out var list)) byName[s.Name] = list = [];
                list.Add(s);
            }
        if (!byName.ContainsKey(StreamTelemetry.Processed)) return null;

        List<PrometheusSample> Series(string name) => byName.GetValueOrDefault(name) ?? [];
        double Value(string name) => Series(name) is [var first, ..] ? first.Value : 0;
        long Count(string name) => (long)Value(name);

        var tasks = new List<StreamTaskHealth>();
        foreach (var lag in Series(StreamTelemetry.TaskLag))
        {
            string app = lag.Label("application") ?? "", task = lag.Label("task") ?? "";
            bool Same(PrometheusSample s) => s.Label("application") == app && s.Label("task") == task;
            var error = Series(StreamTelemetry.TaskLastError).FirstOrDefault(Same);
            tasks.Add(new StreamTaskHealth(app, task, int.TryParse(lag.Label("partition"), CultureInfo.InvariantCulture, out var p) ? p : -1, "",
                (long)lag.Value, UnixMs(Series(StreamTelemetry.TaskLastProgress).FirstOrDefault(Same)), error?.Label("error"), UnixMs(error),
                Series(StreamTelemetry.TaskStalled).FirstOrDefault(Same)?.Value == 1));
        }
        tasks.Sort((a, b) => string.CompareOrdinal(a.ApplicationId + "/" + a.Task, b.ApplicationId + "/" + b.Task));

        var sinks = new List<SinkHealth>();
        foreach (var lag in Series(StreamTelemetry.SinkLag))
        {
            var name = lag.Label("sink") ?? "";
            bool Same(PrometheusSample s) => s.Label("sink") == name;
            double Of(string series) => Series(series).FirstOrDefault(Same)?.Value ?? 0;
            var error = Series(StreamTelemetry.SinkLastError).FirstOrDefault(Same);
            sinks.Add(new SinkHealth(name, lag.Label("topic") ?? "", lag.Label("group") ?? "", (long)lag.Value, (long)Of(StreamTelemetry.SinkWritten),
                (long)Of(StreamTelemetry.SinkDeadLettered), Of(StreamTelemetry.SinkPaused) == 1, UnixMs(Series(StreamTelemetry.SinkLastProgress).FirstOrDefault(Same)),
                error?.Label("error"), UnixMs(error), Of(StreamTelemetry.SinkStalled) == 1));
        }

        var queryable = Series(StreamTelemetry.StoreSourcePartitions)
            .Select(s => new QueryableStore(s.Label("application") ?? "", s.Label("store") ?? "", s.Label("source_topic") ?? "", (int)s.Value)).ToList();
        var topologies = Series(StreamTelemetry.Topology).Select(s => s.Label("application") ?? "").Order(StringComparer.Ordinal).ToList();

        return new StreamMetricsReport(registration.HostId, topologies, nowUnixMs,
            Value(StreamTelemetry.RecordsIn), Value(StreamTelemetry.RecordsOut), Value(StreamTelemetry.ProcessP50) * 1e6, Value(StreamTelemetry.ProcessP99) * 1e6,
            Count(StreamTelemetry.ConsumerLag), tasks.Count, Value(StreamTelemetry.RestoreProgress),
            Count(StreamTelemetry.Processed), Count(StreamTelemetry.Emitted), Count(StreamTelemetry.DeadLettered), Count(StreamTelemetry.Commits),
            Count(StreamTelemetry.ThreadRestarts), registration.IntervalMs, tasks, sinks, registration.Url, queryable);
    }

    private static long UnixMs(PrometheusSample? seconds) => seconds is null ? 0 : (long)Math.Round(seconds.Value * 1000);

    private static List<StalledPart> FindStalled(List<StreamMetricsReport> hosts)
    {
        var stalled = new List<StalledPart>();
        foreach (var host in hosts)
        {
            foreach (var s in host.Sinks)
                if (s.Stalled)
                    stalled.Add(new StalledPart("sink", host.HostId, s.Name, s.Topic, s.Lag, s.LastProgressUnixMs, s.LastError, s.LastErrorUnixMs,
                        Summary("sink", s.Name, host.HostId, s.Lag, s.LastProgressUnixMs, s.LastError)));
            foreach (var t in host.Tasks)
                if (t.Stalled)
                {
                    var name = $"{t.ApplicationId}/{t.Task}";
                    stalled.Add(new StalledPart("task", host.HostId, name, t.Task, t.Lag, t.LastProgressUnixMs, t.LastError, t.LastErrorUnixMs,
                        Summary("stream task", name, host.HostId, t.Lag, t.LastProgressUnixMs, t.LastError)));
                }
        }
        return stalled;
    }

    private static string Summary(string kind, string name, string host, long lag, long lastProgressUnixMs, string? lastError) =>
        $"{kind} {name} on {host}: {lag} record(s) waiting, no progress since " +
        $"{DateTimeOffset.FromUnixTimeMilliseconds(lastProgressUnixMs):yyyy-MM-ddTHH:mm:ssZ}; last error: {lastError ?? "none"}";

    public void Dispose() => _http.Dispose();
}
