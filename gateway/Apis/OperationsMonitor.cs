using System.Diagnostics;
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
/// host that stopped its heartbeat (or whose metrics cannot be read), as /health, /api/v1/streams and the dashboard name it. <see cref="Kind"/> is "sink", "task"
/// or "host"; <see cref="Name"/> is the sink's name, "{application id}/{topic-partition}" or the host id.</summary>
public sealed record StalledPart(
    string Kind, string Host, string Name, string? Topic, long Lag, long LastProgressUnixMs, string? LastError, long LastErrorUnixMs,
    string Summary);

/// <summary>Every live processing host's figures as last scraped from its <c>/metrics</c> (found through the host registry), with
/// what in them is stalled.</summary>
public sealed record StreamsReading(IReadOnlyList<StreamMetricsReport> Hosts, IReadOnlyList<StalledPart> Stalled, long ReadAtUnixMs, string? Error);

/// <summary>Catalogue topics with their record counts as last read from Kafka.</summary>
public sealed record TopicsReading(IReadOnlyList<TopicsApi.TopicInfo>? Topics, long ReadAtUnixMs, string? Error);

/// <summary>Reads everything the operational endpoints (/health, /api/v1/streams, /api/v1/topics) show, in the
/// background, once per <see cref="RefreshInterval"/>: request threads only read the last result from memory. A
/// probe or read per request was the cause of 500s under load (a synchronous Redis SCAN per /api/v1/streams request;
/// a blocking librdkafka metadata call per /health request held a pool thread each, and 200 concurrent callers
/// exhausted the pool). The pipeline's figures are the hosts' own metrics, scraped here once a second for every caller (a cache one
/// second deep: a scrape per request would multiply the hosts' load by the callers). Kafka, PostgreSQL and Redis (with the host
/// registry and the scrapes) are read in loops of their own so a dependency that hangs until
/// its timeout does not make the others' figures old.</summary>
public sealed class OperationsMonitor(
    KafkaClients kafka, NpgsqlDataSource postgres, IConnectionMultiplexer redis, StreamHealthOptions options, ILogger<OperationsMonitor> log)
    : BackgroundService
{
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(1);
    /// <summary>A reading older than this comes from a loop that is stuck: not trusted (a probe reads as failed).</summary>
    public static readonly TimeSpan MaxAge = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);

    private readonly PipelineReader _pipeline = new(log);

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

    public override void Dispose()
    {
        _pipeline.Dispose();
        base.Dispose();
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
            _streams = await _pipeline.ReadAsync(db, options.Streams.RegistryKey, ProbeTimeout);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _streams = _streams with { Error = "host registry: " + (e is TimeoutException ? $"no answer within {ProbeTimeout.TotalSeconds:F0} s" : OneLine(e.Message)) };
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
