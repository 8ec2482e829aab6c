using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Errors;
using Streamiz.Kafka.Net.Metrics;
using Streamiz.Kafka.Net.State;

namespace StreamHealth.Runtime.Streams;

public sealed class StreamHostOptions
{
    public required string BootstrapServers { get; init; }
    public required string StateDirectory { get; init; }
    /// <summary>Stream threads per topology (consumer-group members in this process).</summary>
    public int ThreadsPerTopology { get; init; } = 1;
    public int CommitIntervalMs { get; init; } = 1_000;
    public int SessionTimeoutMs { get; init; } = 6_000;
    /// <summary>Longest a fetch waits for data. The embedded broker answers a waiting fetch only when the
    /// wait expires (a real broker answers when data arrives), so this bounds per-record latency there.</summary>
    public int FetchWaitMaxMs { get; init; } = 2;
    /// <summary>A task with input waiting (lag &gt; 0) that has not advanced for this long is reported stalled.</summary>
    public int StallAfterMs { get; init; } = 30_000;
    /// <summary>How often librdkafka emits its statistics (consumer lag per partition, broker round trips, bytes, queues), which
    /// Streamiz turns into sensors and <see cref="KafkaClientMetrics"/> into the host's metrics. Each emission is a JSON document
    /// per client parsed on its poll thread: seconds, not milliseconds.</summary>
    public int KafkaStatisticsIntervalMs { get; init; } = 5_000;
    /// <summary>AT_LEAST_ONCE (with the applied-offset fence, <see cref="FencedSerDes{T}"/>) on the embedded broker, whose
    /// transactions do not isolate; EXACTLY_ONCE (v2) on real Kafka.</summary>
    public ProcessingGuarantee Guarantee { get; init; } = ProcessingGuarantee.AT_LEAST_ONCE;
    /// <summary>Creates a missing internal topic (changelogs) before a topology starts: set on the embedded broker, whose
    /// CreateTopics API never answers (Streamiz would wait for ever). Null: Streamiz creates them (real Kafka).</summary>
    public Action<string, int>? CreateInternalTopic { get; init; }
    /// <summary>On an embedded broker in another process (`streamhealth kafka`, which creates the catalogue topologies'
    /// internal topics): check that they exist and fail naming the missing ones, instead of hanging in Streamiz.</summary>
    public bool RequireInternalTopics { get; init; }

    /// <summary>Whether the broker is the embedded one (it creates no topics and answers no DescribeCluster), as the two
    /// settings above say.</summary>
    internal bool OnEmbeddedBroker => CreateInternalTopic is not null || RequireInternalTopics;
    /// <summary>Records a stream thread polls per loop (Streamiz's default is 500).</summary>
    public long MaxPollRecords { get; init; } = 500;
    /// <summary>Longest a stream thread collects records before processing them (Streamiz's poll.ms): at a steady rate
    /// below MaxPollRecords per this window it sets the median latency. Streamiz's 100 ms gave p50 44 ms at a paced 10k/s
    /// here; 10 ms gave 23 ms with the same throughput (benchmarks/RESULTS.md).</summary>
    public long PollMs { get; init; } = 10;
    /// <summary>The schema registry connection of the process, for topologies of Avro topics
    /// (<see cref="StreamTopology.RequiresSchemaRegistry"/>); the caller keeps and disposes it.</summary>
    public StreamHealth.Runtime.SchemaRegistry.SchemaRegistryConnection? SchemaRegistry { get; init; }
    /// <summary>Names this process in client ids and logs.</summary>
    public string HostId { get; init; } = $"{Environment.MachineName}-{Environment.ProcessId}-{Interlocked.Increment(ref s_instances)}";

    private static int s_instances;
}

/// <summary>Runs topologies in this process, one Streamiz <see cref="KafkaStream"/> per topology. What it adds to Streamiz:
/// internal topics created up front on the embedded broker, a supervisor that restarts a stream client that failed,
/// restore and lag figures for <see cref="StreamMetrics"/>, and interactive queries that wait out rebalances.</summary>
public sealed class StreamHost : IDisposable
{
    private readonly StreamHostOptions _options;
    private readonly ILoggerFactory _logs;
    private readonly ILogger _log;
    private readonly List<HostedStream> _streams = [];
    private readonly CancellationTokenSource _stop = new();
    private Thread? _lagProbe;
    private IConsumer<byte[], byte[]>? _watermarks;
    private long _restarts;

    public StreamMetrics Metrics { get; } = new();
    private volatile IReadOnlyList<KafkaClientMetric> _kafkaClientMetrics = [];

    /// <summary>The host's Kafka clients' statistics as last read by the lag probe (once a second).</summary>
    public IReadOnlyList<KafkaClientMetric> KafkaClientMetrics => _kafkaClientMetrics;

    public StreamHost(StreamHostOptions options, IEnumerable<StreamTopology> topologies, ILoggerFactory? logs = null)
    {
        _options = options;
        _logs = logs ?? NullLoggerFactory.Instance;
        _log = _logs.CreateLogger("StreamHealth.Streams.Host");
        foreach (var topology in topologies)
        {
            if (topology.RequiresSchemaRegistry && options.SchemaRegistry is null)
                throw new ArgumentException($"topology {topology.ApplicationId} reads or writes Avro topics: StreamHostOptions.SchemaRegistry must be set", nameof(options));
            _streams.Add(new HostedStream(topology));
        }
    }

    /// <summary>See <see cref="StreamHostOptions.StallAfterMs"/>.</summary>
    public int StallAfterMs => _options.StallAfterMs;

    /// <summary>How many times a stream client failed and was restarted.</summary>
    public long ThreadRestarts => Interlocked.Read(ref _restarts);

    public void Start()
    {
        // Directories of clients a previous process restarted (see OnStateChanged): stale now, their state is in the changelog.
        if (Directory.Exists(_options.StateDirectory))
            foreach (var stale in Directory.EnumerateDirectories(_options.StateDirectory, "restart-*")) Directory.Delete(stale, recursive: true);
        foreach (var hosted in _streams) StartStream(hosted);
        ReadSourcePartitions();
        WarmQueryKeys();
        _watermarks = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = _options.BootstrapServers, GroupId = "streamhealth-lag-probe", ClientId = _options.HostId + "-lag-probe",
            EnableAutoCommit = false, LogConnectionClose = false,
        }).SetLogHandler((_, _) => { }).Build();
        // A thread of its own, one probe at a time: a timer would pile blocking broker calls onto the thread pool
        // whenever the broker answers slowly (and starve everything else in the process).
        _lagProbe = new Thread(() =>
        {
            while (!_stop.Token.WaitHandle.WaitOne(1_000)) ProbeLag();
        }) { Name = "streamhealth-lag-probe", IsBackground = true };
        _lagProbe.Start();
    }

    private void StartStream(HostedStream hosted)
    {
        var topology = hosted.Topology;
        var services = new ProcessorServices(Metrics, _logs.CreateLogger("StreamHealth.Streams." + topology.ApplicationId), _options.SchemaRegistry);
        hosted.Services = services;
        var built = topology.Build(services);
        EnsureInternalTopics(topology, built);
        ForgetStateOfAnotherCluster(topology);
        var config = new StreamConfig
        {
            ApplicationId = topology.ApplicationId,
            ClientId = $"{_options.HostId}-{topology.ApplicationId}",
            BootstrapServers = _options.BootstrapServers,
            StateDir = StateDirectory(hosted),
            NumStreamThreads = _options.ThreadsPerTopology,
            // Before CommitIntervalMs: Streamiz's Guarantee setter resets the commit interval to its default for the guarantee
            // (30 s for AT_LEAST_ONCE, 100 ms for EXACTLY_ONCE), which would silently override the configured one.
            Guarantee = _options.Guarantee,
            CommitIntervalMs = _options.CommitIntervalMs,
            MaxPollRecords = _options.MaxPollRecords,
            PollMs = _options.PollMs,
            // Restoring reads this many changelog records per poll: the default 1000 restores ~9k records/s here, 20000 ~95k/s.
            MaxPollRestoringRecords = 20_000,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            SessionTimeoutMs = _options.SessionTimeoutMs,
            // librdkafka's default heartbeat (3 s) would let a short session time out between heartbeats.
            HeartbeatIntervalMs = Math.Max(100, _options.SessionTimeoutMs / 3),
            PartitionAssignmentStrategy = PartitionAssignmentStrategy.CooperativeSticky,
            // A stream thread that dies (e.g. its store cannot flush) leaves its consumer open: librdkafka keeps it in the
            // group with heartbeats and its partitions stay with it, so the restarted client gets none. It leaves only once
            // it has not polled for max.poll.interval.ms (default 5 min): keep that short. A healthy thread polls every
            // loop (at most PollMs plus one batch).
            MaxPollIntervalMs = Math.Max(10_000, 3 * _options.SessionTimeoutMs),
            FetchWaitMaxMs = _options.FetchWaitMaxMs,
            ExposeLibrdKafkaStats = true,
            StatisticsIntervalMs = _options.KafkaStatisticsIntervalMs,
            MetricsRecording = MetricsRecordingLevel.INFO,
            Logger = _logs,
            // A record a processor cannot handle is dead-lettered by StreamProcessor; what reaches this handler is a failure
            // of the stream itself (a store, the producer): fail the client, and the supervisor below restarts it.
            InnerExceptionHandler = e =>
            {
                hosted.LastError = e.Message.ReplaceLineEndings(" ");
                return ExceptionHandlerResponse.FAIL;
            },
        };
        // librdkafka's own debug contexts (e.g. "cgrp,topic") for diagnosing a client, logged through the stream's logger.
        if (Environment.GetEnvironmentVariable("STREAMHEALTH_KAFKA_DEBUG") is { Length: > 0 } debug) config.Debug = debug;
        var stream = new KafkaStream(built, config);
        stream.StateChanged += (_, state) => OnStateChanged(hosted, stream, state);
        // The start offset is -2 (the beginning) when the store has no checkpoint.
        stream.OnRestoreStartEvent += (changelog, _, from, to) =>
        {
            hosted.Restoring[changelog] = true;
            Metrics.OnRestoreStarted(Math.Max(0, to - Math.Max(0, from)));
        };
        stream.OnRestoreEndEvent += (changelog, _, _) =>
        {
            hosted.Restoring.TryRemove(changelog, out _);
            Metrics.OnTaskRestored(topology.ApplicationId, changelog.Partition.Value);
        };
        stream.OnRestoreBatchEvent += (_, _, _, restored) => Metrics.OnRestored(restored);
        hosted.Stream = stream;
        stream.StartAsync().GetAwaiter().GetResult();
        _log.LogInformation("topology {App} started on {Bootstrap}: {Source} → {Processor} → {Sinks}, state in {State}", topology.ApplicationId,
            _options.BootstrapServers, topology.SourceTopic, topology.ProcessorName, string.Join(", ", [.. topology.SinkTopics, topology.DeadLetterTopic]),
            config.StateDir);
    }

    /// <summary>Each topology's source partition count, which interactive-query routing hashes keys over. Read once: a
    /// source topic's partitions are not changed under a running topology (that would move keys between tasks).</summary>
    private void ReadSourcePartitions()
    {
        if (!_streams.Any(s => s.Topology.Queries.Count > 0)) return;
        try
        {
            using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = _options.BootstrapServers }).Build();
            var metadata = admin.GetMetadata(TimeSpan.FromSeconds(10));
            foreach (var hosted in _streams)
                if (metadata.Topics.FirstOrDefault(t => t.Topic == hosted.Topology.SourceTopic && t.Error.Code == ErrorCode.NoError) is { } topic)
                    hosted.SourcePartitions = topic.Partitions.Count;
        }
        catch (KafkaException e)
        {
            _log.LogWarning("interactive queries: source partition counts not read ({Error}); queries answer unavailable", e.Message);
        }
    }

    /// <summary>Serialises one key per queryable store now, at start, so the key schema's id is resolved here and not by
    /// the first burst of queries, each blocking a server thread on the registry. A failure is left to the queries.</summary>
    private void WarmQueryKeys()
    {
        foreach (var hosted in _streams)
            foreach (var query in hosted.Topology.Queries)
                if (hosted.Services is { } services)
                {
                    try
                    {
                        query.SourceKey(services, "warm-up");
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        _log.LogWarning("topology {App}: query keys not prepared at start ({Error})", hosted.Topology.ApplicationId, e.Message);
                    }
                }
    }

    /// <summary>The stores this host serves to other processes, with what routing needs (published in its metrics report).</summary>
    public IReadOnlyList<QueryableStore> QueryableStores() =>
    [
        .. _streams.Where(s => s.SourcePartitions > 0).SelectMany(s => s.Topology.Queries.Select(q =>
            new QueryableStore(s.Topology.ApplicationId, q.Store, s.Topology.SourceTopic, s.SourcePartitions))),
    ];

    /// <summary>An interactive query from another process (<see cref="StoreQueryApi"/>): <paramref name="key"/>'s view in
    /// <paramref name="store"/>, if this host owns the key's partition; waits up to <paramref name="wait"/> while the store
    /// is not queryable.</summary>
    public StoreQueryAnswer Query(string applicationId, string store, string key, TimeSpan wait)
    {
        var hosted = _streams.FirstOrDefault(s => s.Topology.ApplicationId == applicationId);
        var query = hosted?.Topology.Queries.FirstOrDefault(q => q.Store == store);
        if (hosted is null || query is null)
            return new(StoreQueryStatus.NoSuchStore, null, -1, $"this host serves no store '{store}' of topology '{applicationId}'");
        if (hosted.SourcePartitions <= 0)
            return new(StoreQueryStatus.Unavailable, null, -1, $"the partition count of {hosted.Topology.SourceTopic} is not known yet");
        if (hosted.Services is not { } services)
            return new(StoreQueryStatus.Unavailable, null, -1, $"topology {applicationId} has not started on this host yet");
        var partition = KeyPartitioner.PartitionOf(query.SourceKey(services, key), hosted.SourcePartitions);
        var deadline = DateTime.UtcNow + wait;
        while (true)
        {
            var ownership = Metrics.Ownership(applicationId, partition);
            if (ownership == TaskOwnership.NotOwned)
                return new(StoreQueryStatus.NotOwned, null, partition, $"partition {partition} of {hosted.Topology.SourceTopic} is not owned by this host");
            if (ownership == TaskOwnership.Ready) break;
            if (DateTime.UtcNow >= deadline)
                return new(StoreQueryStatus.Unavailable, null, partition, $"partition {partition} of {hosted.Topology.SourceTopic} is being restored on this host");
            Thread.Sleep(50);
        }
        try
        {
            var view = query.Read(this, applicationId, key, deadline > DateTime.UtcNow ? deadline - DateTime.UtcNow : TimeSpan.Zero);
            return new(view is null ? StoreQueryStatus.NotFound : StoreQueryStatus.Found, view, partition, null);
        }
        catch (StoreUnavailableException e)
        {
            return new(StoreQueryStatus.Unavailable, null, partition, e.Message);
        }
    }

    /// <summary>Creates the changelogs the topology's description names, with the source's partition count, when the broker
    /// needs it (see <see cref="StreamHostOptions.CreateInternalTopic"/>); they must exist before the stream starts.</summary>
    private void EnsureInternalTopics(StreamTopology topology, Streamiz.Kafka.Net.Stream.Topology built)
    {
        if (!_options.OnEmbeddedBroker) return;
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = _options.BootstrapServers }).Build();
        var metadata = admin.GetMetadata(TimeSpan.FromSeconds(10));
        var source = metadata.Topics.FirstOrDefault(t => t.Topic == topology.SourceTopic && t.Error.Code == ErrorCode.NoError)
                     ?? throw new InvalidOperationException($"topology {topology.ApplicationId}: source topic {topology.SourceTopic} does not exist");
        var missing = topology.ChangelogTopics(built)
            .Where(changelog => !metadata.Topics.Any(t => t.Topic == changelog && t.Error.Code == ErrorCode.NoError)).ToList();
        if (missing.Count == 0) return;
        if (_options.CreateInternalTopic is null)
            throw new InvalidOperationException($"topology {topology.ApplicationId}: internal topic(s) {string.Join(", ", missing)} do not exist " +
                $"(create them with {source.Partitions.Count} partitions; the embedded broker cannot create topics on request)");
        foreach (var changelog in missing) _options.CreateInternalTopic(changelog, source.Partitions.Count);
    }

    /// <summary>State written against another cluster (a recreated embedded broker, a restored disk) holds fences and
    /// checkpoints of offsets this cluster never had: kept, it would skip new input as "already applied". Each topology's
    /// state directory records the cluster id it belongs to; on a different one the directory is deleted and the state
    /// restored from this cluster's changelog.</summary>
    private void ForgetStateOfAnotherCluster(StreamTopology topology)
    {
        string clusterId;
        if (_options.OnEmbeddedBroker)
        {
            // The embedded broker answers no DescribeCluster; each one listens on a port of its own, so its address names it.
            clusterId = "embedded:" + _options.BootstrapServers;
        }
        else
        {
            try
            {
                using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = _options.BootstrapServers }).Build();
                clusterId = admin.DescribeClusterAsync(new DescribeClusterOptions { RequestTimeout = TimeSpan.FromSeconds(10) }).GetAwaiter().GetResult().ClusterId ?? "";
            }
            catch (KafkaException e)
            {
                _log.LogWarning("topology {App}: cluster id unknown ({Error}); local state kept as it is", topology.ApplicationId, e.Message);
                return;
            }
        }
        var directory = Path.Combine(_options.StateDirectory, topology.ApplicationId);
        var marker = Path.Combine(_options.StateDirectory, topology.ApplicationId + ".cluster-id");
        if (File.Exists(marker) && File.ReadAllText(marker).Trim() != clusterId && Directory.Exists(directory))
        {
            _log.LogWarning("topology {App}: local state belongs to cluster {Old}, not {New}: deleting it (restored from the changelog)",
                topology.ApplicationId, File.ReadAllText(marker).Trim(), clusterId);
            Directory.Delete(directory, recursive: true);
        }
        Directory.CreateDirectory(_options.StateDirectory);
        File.WriteAllText(marker, clusterId);
    }

    /// <summary>Where a client keeps its stores: the configured directory, or after an in-process restart one of its own.</summary>
    private string StateDirectory(HostedStream hosted) =>
        hosted.Generation == 0 ? _options.StateDirectory : Path.Combine(_options.StateDirectory, $"restart-{hosted.Generation}");

    private void OnStateChanged(HostedStream hosted, KafkaStream stream, KafkaStream.State state)
    {
        _log.LogInformation("topology {App}: {State}", hosted.Topology.ApplicationId, state);
        hosted.Entered(state);
        if (state != KafkaStream.State.ERROR || _stop.IsCancellationRequested) return;
        var error = hosted.LastError ?? "stream client failed";
        Interlocked.Increment(ref _restarts);
        Metrics.OnStreamFailed(hosted.Topology.ApplicationId, error);
        // Restart from durable state after a backoff, on a thread of its own: not Streamiz's (it is the one reporting the
        // state change, and disposing waits for it), not the pool's (closing and starting a stream block for seconds).
        new Thread(() =>
        {
            var backoff = hosted.NextBackoff();
            _log.LogError("topology {App} failed ({Error}); restarting in {Backoff}", hosted.Topology.ApplicationId, error, backoff);
            try
            {
                stream.Dispose();
                if (_stop.Token.WaitHandle.WaitOne(backoff)) return;
                // Streamiz does not close the tasks of a thread that died, so their RocksDB stores stay open and locked in this
                // process (RocksDB refuses a second open of the same path here, even after it is deleted): the new client keeps
                // its state under a directory of its own and restores it from the changelog; the applied-offset fence keeps the
                // replay from applying anything twice. The next process starts in the usual directory again.
                hosted.Generation++;
                _log.LogWarning("topology {App}: the failed client's stores stay open; the new one restores into {Directory}",
                    hosted.Topology.ApplicationId, StateDirectory(hosted));
                StartStream(hosted);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _log.LogError(e, "topology {App}: restart failed", hosted.Topology.ApplicationId);
                OnStateChanged(hosted, stream, KafkaStream.State.ERROR);
            }
        }) { Name = "streamhealth-restart-" + hosted.Topology.ApplicationId, IsBackground = true }.Start();
    }

    /// <summary>Each owned task's lag: the partition's high watermark minus the next offset its state reflects. A task
    /// with no lag counts as advancing (an idle task is not a stalled one).</summary>
    private void ProbeLag()
    {
        if (_watermarks is null || _stop.IsCancellationRequested) return;
        try
        {
            var clients = new List<KafkaClientMetric>();
            var previous = _kafkaClientMetrics;
            foreach (var hosted in _streams)
                if (hosted.Stream is { } stream)
                    clients.AddRange(Streams.KafkaClientMetrics.TryCollect(hosted.Topology.ApplicationId, stream.Metrics)
                        ?? previous.Where(m => m.Application == hosted.Topology.ApplicationId));
            _kafkaClientMetrics = clients;
            long commits = 0;
            foreach (var m in clients)
                if (m is { Instrument: Streams.KafkaClientMetrics.ThreadOperations, Label: "commit" }) commits += (long)m.Value;
            Metrics.SetCommits(commits);
            foreach (var task in Metrics.Tasks())
            {
                var hosted = _streams.FirstOrDefault(s => s.Topology.ApplicationId == task.ApplicationId);
                if (hosted is null) continue;
                var high = _watermarks.QueryWatermarkOffsets(new TopicPartition(hosted.Topology.SourceTopic, task.Partition), TimeSpan.FromSeconds(2)).High.Value;
                var next = Volatile.Read(ref task.LastOffset) + 1;
                var lag = next > 0 ? Math.Max(0, high - next) : high;
                Interlocked.Exchange(ref task.Lag, lag);
                if (lag == 0) task.Advanced();
            }
        }
        catch (KafkaException e)
        {
            _log.LogDebug("lag probe: {Error}", e.Message);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // This runs on a thread of its own, where an exception that escapes ends the process (it once did, from a read of
            // Streamiz's sensors that met a write): a failed probe is logged and the next one, a second later, tries again.
            _log.LogWarning(e, "lag probe failed; retrying in a second");
        }
    }

    /// <summary>Each topology's client state and the tasks this host owns (diagnostics).</summary>
    public string DescribeThreads() =>
        string.Join("; ", _streams.Select(s => $"{s.Topology.ApplicationId}: {s.Stream?.ToString() ?? "not started"}")) + "; tasks " +
        string.Join(",", Metrics.Tasks().Select(t => $"{t.ApplicationId}/{t.TaskId}@{Volatile.Read(ref t.LastOffset)}"));

    /// <summary>Interactive query: <paramref name="key"/>'s value in <paramref name="store"/> of topology
    /// <paramref name="applicationId"/>, from the tasks this process owns. While the store is not queryable (start-up, a
    /// rebalance, a restore) Streamiz throws <see cref="InvalidStateStoreException"/>: retried for up to
    /// <paramref name="wait"/> (default 10 s), then <see cref="StoreUnavailableException"/>. Multi-instance routing is
    /// described in README "Interactive queries".</summary>
    public bool TryQuery<TK, TV>(string applicationId, string store, TK key, out TV value, TimeSpan? wait = null) where TV : class
    {
        var hosted = _streams.FirstOrDefault(s => s.Topology.ApplicationId == applicationId)
                     ?? throw new ArgumentException($"no topology '{applicationId}' in this host", nameof(applicationId));
        var deadline = DateTime.UtcNow + (wait ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            try
            {
                var stream = hosted.Stream ?? throw new InvalidStateStoreException("stream not started");
                // Streamiz answers null (not an exception) for a key whose store is still being restored, or not yet (a new task
                // is queryable before its restore starts): wait until every task of this topology has finished restoring and the
                // client is running (not rebalancing), before trusting a miss.
                if (!hosted.IsRunning) throw new InvalidStateStoreException("stream client is not running (starting or rebalancing)");
                if (!hosted.Restoring.IsEmpty || !Metrics.AllRestored(applicationId))
                    throw new InvalidStateStoreException("a store is being restored from its changelog");
                var found = stream.Store(StoreQueryParameters.FromNameAndType(store, QueryableStoreTypes.KeyValueStore<TK, TV>())).Get(key);
                value = found!;
                return found is not null;
            }
            // Not queryable for now: a store being restored or moved (InvalidStateStoreException), or a stream client between
            // a failure and its restart ("KafkaStreams is not running", IllegalStateException).
            catch (Exception e) when (e is InvalidStateStoreException or IllegalStateException)
            {
                if (DateTime.UtcNow >= deadline)
                    throw new StoreUnavailableException($"store {store} of {applicationId} is not queryable on this host: {e.Message}", e);
                Thread.Sleep(50);
            }
        }
    }

    /// <summary>Graceful stop: each stream finishes its loop, commits and closes its tasks.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _lagProbe?.Join();
        foreach (var hosted in _streams) hosted.Stream?.Dispose();
        _watermarks?.Dispose();
    }

    private sealed class HostedStream(StreamTopology topology)
    {
        public StreamTopology Topology { get; } = topology;
        public KafkaStream? Stream { get; set; }
        /// <summary>What its processors were given (set when the stream first starts).</summary>
        public volatile ProcessorServices? Services;
        public string? LastError { get; set; }
        public volatile bool IsRunning;
        /// <summary>Changelog partitions being restored now (Streamiz's restore start/end events).</summary>
        public System.Collections.Concurrent.ConcurrentDictionary<TopicPartition, bool> Restoring { get; } = new();
        /// <summary>How many times this process restarted the client (each restart uses a state directory of its own).</summary>
        public int Generation { get; set; }
        /// <summary>The source topic's partition count (0: not read).</summary>
        public volatile int SourcePartitions;
        private TimeSpan _backoff = TimeSpan.FromSeconds(1);
        private long _runningSinceTicks = long.MaxValue;

        /// <summary>Records a state change of the client: whether it runs now (queries wait otherwise), and since when.</summary>
        public void Entered(KafkaStream.State state)
        {
            IsRunning = state == KafkaStream.State.RUNNING;
            if (IsRunning) Volatile.Write(ref _runningSinceTicks, Environment.TickCount64);
        }

        /// <summary>1 s doubling to 10 s while failures repeat; back to 1 s after a minute of running.</summary>
        public TimeSpan NextBackoff()
        {
            if (Environment.TickCount64 - Volatile.Read(ref _runningSinceTicks) > 60_000) _backoff = TimeSpan.FromSeconds(1);
            Volatile.Write(ref _runningSinceTicks, long.MaxValue);
            var b = _backoff;
            _backoff = TimeSpan.FromSeconds(Math.Min(_backoff.TotalSeconds * 2, 10));
            return b;
        }
    }
}

/// <summary>A store this host serves to other processes: interactive-query routing hashes a key's source bytes over
/// <see cref="SourcePartitions"/> and asks the host that owns that partition.</summary>
public sealed record QueryableStore(string ApplicationId, string Store, string SourceTopic, int SourcePartitions);

public enum StoreQueryStatus { Found, NotFound, NoSuchStore, NotOwned, Unavailable }

/// <summary>What <see cref="StreamHost.Query"/> found: the view when <see cref="Status"/> is Found, else why not.</summary>
public readonly record struct StoreQueryAnswer(StoreQueryStatus Status, object? View, int Partition, string? Detail);

/// <summary>An interactive query found the store not queryable for longer than it would wait (HTTP 503 at the gateway).</summary>
public sealed class StoreUnavailableException(string message, Exception inner) : Exception(message, inner);
