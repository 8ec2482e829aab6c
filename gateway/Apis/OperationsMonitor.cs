using System.Diagnostics;
using System.Text.Json;
using Confluent.Kafka;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;

namespace StreamHealth.Gateway.Apis;

/// <summary>One dependency probe: whether it answered, how long it took, what it said, and when it was made.</summary>
public sealed record Probe(bool Ok, double LatencyMs, string Detail, long CheckedAtUnixMs);

/// <summary>A stream task or sink that has input waiting and has not advanced for Streams:StallAfterMs, or a processing
/// host that stopped reporting, as /health, /api/v1/streams and the dashboard name it. <see cref="Kind"/> is "sink", "task"
/// or "host"; <see cref="Name"/> is the sink's name, "{application id}/{topic-partition}" or the host id.</summary>
public sealed record StalledPart(
    string Kind, string Host, string Name, string? Topic, long Lag, long LastProgressUnixMs, string? LastError, long LastErrorUnixMs,
    string Summary);

/// <summary>The published host reports as last read from Redis, with what in them is stalled.</summary>
public sealed record StreamsReading(IReadOnlyList<StreamMetricsReport> Hosts, IReadOnlyList<StalledPart> Stalled, long ReadAtUnixMs, string? Error);

/// <summary>Catalogue topics with their record counts as last read from Kafka.</summary>
public sealed record TopicsReading(IReadOnlyList<TopicsApi.TopicInfo>? Topics, long ReadAtUnixMs, string? Error);

/// <summary>Reads everything the operational endpoints (/health, /api/v1/streams, /api/v1/topics) show, in the
/// background, once per <see cref="RefreshInterval"/>: request threads only read the last result from memory. A
/// probe or read per request was the cause of 500s under load (a synchronous Redis SCAN per /api/v1/streams request;
/// a blocking librdkafka metadata call per /health request held a pool thread each, and 200 concurrent callers
/// exhausted the pool). Kafka, PostgreSQL and Redis are read in loops of their own so a dependency that hangs until
/// its timeout does not make the others' figures old.</summary>
public sealed class OperationsMonitor(
    KafkaClients kafka, NpgsqlDataSource postgres, IConnectionMultiplexer redis, StreamHealthOptions options, ILogger<OperationsMonitor> log)
    : BackgroundService
{
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(1);
    /// <summary>A reading older than this comes from a loop that is stuck: not trusted (a probe reads as failed).</summary>
    public static readonly TimeSpan MaxAge = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);

    // Deletes a stale host's field only if it still holds the stale report: the host may have published a new one
    // between our read and this delete (a gateway replica racing another is harmless too).
    private const string DeleteIfUnchanged =
        "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

    private static Probe NotYet => new(false, 0, "not probed yet", 0);

    private volatile Probe _kafka = NotYet, _postgres = NotYet, _redis = NotYet;
    private volatile TopicsReading _topics = new(null, 0, "not read yet");
    private volatile StreamsReading _streams = new([], [], 0, "not read yet");
    private Task[] _first = [];

    public Probe Kafka => Aged(_kafka);
    public Probe Postgres => Aged(_postgres);
    public Probe Redis => Aged(_redis);
    public TopicsReading Topics => _topics;
    public StreamsReading Streams => _streams;

    /// <summary>Whether a reading made at <paramref name="readAtUnixMs"/> is recent enough to serve.</summary>
    public static bool IsFresh(long readAtUnixMs) =>
        readAtUnixMs > 0 && DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - readAtUnixMs <= MaxAge.TotalMilliseconds;

    private static Probe Aged(Probe p) =>
        p.CheckedAtUnixMs == 0 || IsFresh(p.CheckedAtUnixMs)
            ? p
            : p with { Ok = false, Detail = $"no probe result for {(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - p.CheckedAtUnixMs) / 1000} s (last: {p.Detail})" };

    /// <summary>Takes the first readings before the gateway serves requests (bounded: a dependency that does not
    /// answer is reported as down, it does not hold start-up).</summary>
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        _first = [RefreshKafkaAsync(CancellationToken.None), RefreshPostgresAsync(CancellationToken.None), RefreshRedisAsync()];
        try
        {
            await Task.WhenAll(_first).WaitAsync(ProbeTimeout * 3, cancellationToken);
        }
        catch (TimeoutException)
        {
            log.LogWarning("operational probes: first readings not complete after {Timeout}; serving what is known", ProbeTimeout * 3);
        }
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.WhenAll(
            Loop(_first[0], RefreshKafkaAsync, stoppingToken),
            Loop(_first[1], RefreshPostgresAsync, stoppingToken),
            Loop(_first[2], _ => RefreshRedisAsync(), stoppingToken));
    }

    private static async Task Loop(Task first, Func<CancellationToken, Task> refresh, CancellationToken stop)
    {
        try
        {
            await first.WaitAsync(stop);
            while (true)
            {
                await Task.Delay(RefreshInterval, stop);
                await refresh(stop);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    private static long NowUnixMs => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    // librdkafka's metadata and watermark calls block (a round trip per partition of every topic, each second): on a thread of
    // their own, never a pool thread. On two cores the pool has two threads to start with, and one held by this for tens of
    // milliseconds each second showed as bunches of slow requests (POST health metrics p99, RESULTS "Insights API").
    private Task RefreshKafkaAsync(CancellationToken ct) => Task.Factory.StartNew(() =>
    {
        if (!kafka.Configured)
        {
            _kafka = new Probe(false, 0, "Kafka:BootstrapServers is not set", NowUnixMs);
            _topics = new TopicsReading(null, NowUnixMs, "Kafka:BootstrapServers is not set");
            return;
        }
        var sw = Stopwatch.StartNew();
        Metadata metadata;
        try
        {
            metadata = kafka.Admin.GetMetadata(ProbeTimeout);
            _kafka = new Probe(true, sw.Elapsed.TotalMilliseconds,
                $"{metadata.Brokers.Count} broker(s), {metadata.Topics.Count} topic(s) at {kafka.BootstrapServers}", NowUnixMs);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _kafka = new Probe(false, sw.Elapsed.TotalMilliseconds, OneLine(e.Message), NowUnixMs);
            _topics = _topics with { Error = OneLine(e.Message) };
            return;
        }
        try
        {
            _topics = new TopicsReading(ReadTopics(metadata), NowUnixMs, null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _topics = _topics with { Error = OneLine(e.Message) };
        }
    }, ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private List<TopicsApi.TopicInfo> ReadTopics(Metadata metadata)
    {
        var byName = new Dictionary<string, TopicMetadata>(StringComparer.Ordinal);
        foreach (var t in metadata.Topics) byName[t.Topic] = t;
        var result = new List<TopicsApi.TopicInfo>(Schemas.Topics.All.Count);
        foreach (var spec in Schemas.Topics.All)
        {
            if (!byName.TryGetValue(spec.Name, out var topic)) continue;
            long records = 0, end = 0;
            foreach (var p in topic.Partitions)
            {
                var marks = kafka.WatermarkReader.QueryWatermarkOffsets(new TopicPartition(spec.Name, p.PartitionId), ProbeTimeout);
                records += marks.High.Value - marks.Low.Value;
                end += marks.High.Value;
            }
            var valueSchema = spec.Avro?.Value.Fullname;
            result.Add(new TopicsApi.TopicInfo(spec.Name, valueSchema, topic.Partitions.Count, records, end));
        }
        return result;
    }

    private async Task RefreshPostgresAsync(CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(ProbeTimeout);
        try
        {
            await using var cmd = postgres.CreateCommand("SELECT max(version) FROM public.streamhealth_migrations");
            var version = await cmd.ExecuteScalarAsync(timeout.Token);
            _postgres = new Probe(true, sw.Elapsed.TotalMilliseconds, $"schema V{version:D4}", NowUnixMs);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            _postgres = new Probe(false, sw.Elapsed.TotalMilliseconds, $"no answer within {ProbeTimeout.TotalSeconds:F0} s", NowUnixMs);
        }
        catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
        {
            _postgres = new Probe(false, sw.Elapsed.TotalMilliseconds, OneLine(e.Message), NowUnixMs);
        }
    }

    private async Task RefreshRedisAsync()
    {
        var sw = Stopwatch.StartNew();
        var db = redis.GetDatabase();
        try
        {
            var ping = await db.PingAsync().WaitAsync(ProbeTimeout);
            _redis = new Probe(true, sw.Elapsed.TotalMilliseconds, $"ping {ping.TotalMilliseconds:F1} ms", NowUnixMs);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _redis = new Probe(false, sw.Elapsed.TotalMilliseconds, e is TimeoutException ? $"no answer within {ProbeTimeout.TotalSeconds:F0} s" : OneLine(e.Message),
                NowUnixMs);
            _streams = _streams with { Error = "Redis: " + _redis.Detail };
            return;
        }
        try
        {
            _streams = await ReadStreamsAsync(db);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _streams = _streams with { Error = "Redis: " + (e is TimeoutException ? $"no answer within {ProbeTimeout.TotalSeconds:F0} s" : OneLine(e.Message)) };
        }
    }

    private async Task<StreamsReading> ReadStreamsAsync(IDatabase db)
    {
        var key = options.Streams.MetricsKey;
        var entries = await db.HashGetAllAsync(key).WaitAsync(ProbeTimeout);
        var now = NowUnixMs;
        var hosts = new List<StreamMetricsReport>(entries.Length);
        var silent = new List<StalledPart>();
        foreach (var entry in entries)
        {
            StreamMetricsReport? report;
            try
            {
                report = JsonSerializer.Deserialize<StreamMetricsReport>(entry.Value.ToString(), StreamMetricsReport.Json);
            }
            catch (JsonException e)
            {
                log.LogWarning("stream metrics of host {Host} in {Key} do not parse ({Error}); ignored", entry.Name.ToString(), key, e.Message);
                continue;
            }
            if (report is null) continue;
            if (report.IsForgottenAt(now))
            {
                await db.ScriptEvaluateAsync(DeleteIfUnchanged, [key], [entry.Name, entry.Value]).WaitAsync(ProbeTimeout);
                continue;
            }
            if (report.IsStaleAt(now))
            {
                // A host stopping gracefully deletes its report, so a silent one crashed, hangs, or cannot write to Redis:
                // its tasks and sinks make no progress that anyone would see, which is a stall of its own.
                silent.Add(new StalledPart("host", report.HostId, report.HostId, null, report.ConsumerLag, report.AtUnixMs,
                    "no metrics report", report.AtUnixMs,
                    $"host {report.HostId} ({string.Join(", ", report.Topologies)}) has not reported for {(now - report.AtUnixMs) / 1000} s " +
                    $"(every {report.IntervalMs / 1000.0:0.#} s expected); its last report had {report.ConsumerLag} record(s) waiting"));
                continue;
            }
            // Reports from hosts older than the task and sink fields carry neither.
            hosts.Add(report with { Tasks = report.Tasks ?? [], Sinks = report.Sinks ?? [] });
        }
        hosts.Sort((a, b) => string.CompareOrdinal(a.HostId, b.HostId));
        var stalled = FindStalled(hosts);
        stalled.AddRange(silent);
        return new StreamsReading(hosts, stalled, now, null);
    }

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

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
