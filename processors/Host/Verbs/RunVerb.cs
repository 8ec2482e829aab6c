using StreamHealth.Runtime.SchemaRegistry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Insights.Aggregates;
using StreamHealth.Insights.Metrics;
using StreamHealth.Insights.Nutrition;
using StreamHealth.Weight.Pipeline;
using StackExchange.Redis;
using StreamHealth.Host.Topologies;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Observability;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth run --topology NAME [...]`: a processing host (one StreamHost) against the
/// configured Kafka; what a processors pod runs. SIGTERM/Ctrl-C stop it gracefully.</summary>
internal static class RunVerb
{
    public static async Task<int> RunAsync(string[] argv)
    {
        var args = new Args(argv);
        var options = StreamHealthOptions.Load();
        if (string.IsNullOrEmpty(options.Kafka.BootstrapServers))
            throw new ConfigurationException("Kafka:BootstrapServers is empty: `run` joins an existing cluster (start one with `streamhealth kafka`)");
        var names = args.Get("--topology")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    ?? [.. options.Streams.Topologies];
        if (names.Length == 0)
            throw new UsageException($"run needs --topology NAME[,NAME] or Streams:Topologies in the configuration (known: {string.Join(", ", TopologyCatalog.Names)})");
        var configuration = StreamHealthOptions.AddSources(new ConfigurationBuilder()).Build();
        using var postgres = NpgsqlDataSource.Create(options.Postgres.ConnectionString);
        var topologies = names.Select(n => TopologyCatalog.Create(n, args, configuration, postgres)).ToList();
        // Checked before anything starts: a bad provider setting is one clear line, not a half-started host.
        var callFetchOptions = names.Contains("calllogs") ? StreamHealth.CallLogs.Ingest.CallFetchOptions.Load(configuration) : null;
        var hostId = args.Get("--host-id") ?? $"{Environment.MachineName}-{Environment.ProcessId}";

        using var logs = ConsoleLogs.Create();
        var log = logs.CreateLogger("StreamHealth.Run");
        using var redis = ConnectionMultiplexer.Connect(options.Redis.ConnectionOptions());   // abortConnect=false: publishing retries
        using var schemas = SchemaRegistryConnection.Connect(options.SchemaRegistry);
        // One line naming the URL, not a stream client failing in a loop; only when a topology here reads or writes Avro
        // (weights, CGM and insights, whose sinks run beside them, do; the reference key-sum topology does not).
        if (topologies.Any(t => t.RequiresSchemaRegistry))
            await schemas.EnsureReachableAsync();
        using var host = new StreamHost(new StreamHostOptions
        {
            SchemaRegistry = schemas,
            BootstrapServers = options.Kafka.BootstrapServers,
            StateDirectory = options.State.Directory,
            HostId = hostId,
            ThreadsPerTopology = options.Streams.ThreadsPerTopology,
            CommitIntervalMs = options.Streams.CommitIntervalMs,
            SessionTimeoutMs = options.Streams.SessionTimeoutMs,
            FetchWaitMaxMs = options.Streams.EffectiveFetchWaitMaxMs(options.Kafka.Flavor),
            StallAfterMs = options.Streams.StallAfterMs,
            Guarantee = options.Streams.EffectiveGuarantee(options.Kafka.Flavor),
            // The embedded broker runs in another process (`streamhealth kafka`), which created the catalogue's internal topics.
            RequireInternalTopics = options.Kafka.Flavor == KafkaFlavor.Embedded,
        }, topologies, logs);
        // The sinks of each workload run beside its topology (own consumer groups, own back-pressure).
        var sinks = CreateSinks(names, options, postgres, redis, schemas, logs);
        using var sensorsRetention = names.Contains("sensors") ? StreamHealth.Sensors.Metrics.SensorsPipeline.Retention(postgres, logs) : null;
        host.Start();
        foreach (var sink in sinks) sink.Start();
        // The call-log extraction's input comes from the transcript fetch worker (calllogs.raw → provider → calllogs.calls).
        using var callIngest = names.Contains("calllogs")
            ? StreamHealth.CallLogs.Ingest.CallIngest.StartConfigured(callFetchOptions!, options.Kafka.BootstrapServers, postgres, schemas, logs,
                options.Streams.SessionTimeoutMs, options.Streams.EffectiveFetchWaitMaxMs(options.Kafka.Flavor))
            : null;
        log.LogInformation("host {Host} running {Topologies} on {Bootstrap}, state in {State}", hostId,
            string.Join(", ", topologies.Select(t => $"{t.ApplicationId} ({t.SourceTopic})")), options.Kafka.BootstrapServers, options.State.Directory);
        await using var queries = await StoreQueryServer.StartAsync([host], options.Streams.QueryListenUrl, options.Streams.QueryAdvertisedUrl, logs);
        // Its meters carry every task's and sink's progress (a stalled one makes the gateway's /health "degraded"), served at
        // /metrics beside the interactive queries; the registry tells the gateway where.
        using (new StreamMetricsReporter(hostId, [.. topologies.Select(t => t.ApplicationId)], host, log, redis.GetDatabase(),
                   TimeSpan.FromMilliseconds(options.Streams.MetricsIntervalMs), SinkHealths([.. sinks, .. callIngest?.HealthSources ?? []], options.Streams.StallAfterMs), options.Streams.RegistryKey,
                   queries.Url))
        {
            await Shutdown.WaitAsync();
        }
        log.LogInformation("host {Host} stopping: finishing the in-flight cycle, committing", hostId);
        host.Dispose();
        foreach (var sink in sinks) sink.Dispose();
        return 0;
    }

    /// <summary>The sinks that run beside the topologies <paramref name="names"/> (each workload's result sinks, and the
    /// insights metric and nutrition sinks beside any Avro workload). <see cref="SinkCatalog"/> names the same sinks for the
    /// operations verbs; a test holds the two together.</summary>
    internal static List<SinkRunner> CreateSinks(IReadOnlyCollection<string> names, StreamHealthOptions options, NpgsqlDataSource postgres,
        IConnectionMultiplexer redis, SchemaRegistryConnection schemas, ILoggerFactory logs)
    {
        var sinks = new List<SinkRunner>();
        if (names.Contains("weights"))
        {
            var (pg, cache) = WeightPipeline.CreateSinks(WeightPipelineNames.Default, options.Kafka.BootstrapServers, postgres, redis, schemas, logs,
                options.Streams.SessionTimeoutMs);
            sinks.Add(pg);
            sinks.Add(cache);
        }
        if (names.Contains("cgm"))
        {
            var (pg, cache) = CgmPipeline.CreateSinks(CgmPipelineNames.Default, options.Kafka.BootstrapServers, postgres, redis, schemas, logs,
                options.Streams.SessionTimeoutMs, options.Input.TimeRule);
            sinks.Add(pg);
            sinks.Add(cache);
        }
        if (names.Contains("insights"))
            sinks.Add(InsightsPipeline.CreateSink(InsightsPipelineNames.Default, options.Kafka.BootstrapServers, postgres, redis, schemas, logs,
                options.Streams.SessionTimeoutMs).Sink);
        if (names.Contains("sensors"))
        {
            var (pg, cache) = StreamHealth.Sensors.Metrics.SensorMetricsSinks.Create(StreamHealth.Sensors.Metrics.SensorsPipelineNames.Default,
                options.Kafka.BootstrapServers, postgres, redis, schemas, logs, options.Streams.SessionTimeoutMs);
            sinks.Add(pg);
            sinks.Add(cache);
        }
        if (names.Contains("sensors-districts"))
            sinks.AddRange(StreamHealth.Sensors.Districts.DistrictSinks.Create(StreamHealth.Sensors.Districts.DistrictTopics.Default,
                StreamHealth.Sensors.Districts.DistrictTopology.ApplicationId, options.Kafka.BootstrapServers, postgres, schemas, logs, options.Streams.SessionTimeoutMs));
        if (names.Contains("calllogs"))
            sinks.AddRange(StreamHealth.CallLogs.Pipeline.CallLogSinks.Create(StreamHealth.CallLogs.Pipeline.CallLogsPipelineNames.Default,
                options.Kafka.BootstrapServers, postgres, schemas, logs, options.Streams.SessionTimeoutMs,
                options.Streams.EffectiveFetchWaitMaxMs(options.Kafka.Flavor)));
        // insights.metrics and insights.nutrition have no topology of theirs, only PostgreSQL sinks: they run beside the Avro
        // workloads (every such host joins each sink's one consumer group, so the partitions are shared, not read twice).
        if (names.Contains("weights") || names.Contains("cgm") || names.Contains("insights"))
        {
            sinks.Add(HealthMetricPostgresWriter.CreateSink(options.Kafka.BootstrapServers, postgres, schemas, logs,
                options.Streams.SessionTimeoutMs, options.Input.TimeRule));
            sinks.Add(NutritionLogPostgresWriter.CreateSink(options.Kafka.BootstrapServers, postgres, schemas, logs,
                options.Streams.SessionTimeoutMs, options.Input.TimeRule));
        }
        return sinks;
    }

    /// <summary>What a host's metrics report says about the sinks running beside it, each judged stalled after
    /// Streams:StallAfterMs like the stream tasks.</summary>
    internal static Func<IReadOnlyList<SinkHealth>> SinkHealths(IReadOnlyList<ISinkHealthSource> sinks, int stallAfterMs)
    {
        foreach (var sink in sinks) sink.StallAfter = TimeSpan.FromMilliseconds(stallAfterMs);
        return () =>
        {
            var result = new SinkHealth[sinks.Count];
            for (var i = 0; i < sinks.Count; i++) result[i] = sinks[i].Health();
            return result;
        };
    }
}

internal static class ConsoleLogs
{
    /// <summary>Human single lines, or JSON lines with trace ids when Logging:Format / STREAMHEALTH_LOG_FORMAT is json
    /// (<see cref="LogFormat"/>).</summary>
    public static ILoggerFactory Create() => LoggerFactory.Create(b =>
    {
        b.SetMinimumLevel(LogLevel.Information);
        if (b.AddJsonConsoleIfAsked(Configuration())) return;
        b.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
    });

    // A missing or broken configuration file is reported by the verb that needs it; the log format then falls back to the
    // environment variable alone.
    private static IConfiguration? Configuration()
    {
        try { return StreamHealthOptions.AddSources(new ConfigurationBuilder()).Build(); }
        catch (Exception e) when (e is FileNotFoundException or InvalidDataException or FormatException) { return null; }
    }
}
