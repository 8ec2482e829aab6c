using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>The stream host settings every harness on the embedded Kafka uses. The embedded broker cannot create topics
/// on request, so the host creates each topology's changelogs (<c>{appId}-{store}-changelog</c>) through the cluster.
/// Tunings for trying Streamiz settings without a rebuild (defaults = the host's defaults):
/// HARNESS_THREADS (stream threads per topology, 1), HARNESS_COMMIT_MS (1000), HARNESS_MAX_POLL (max.poll.records, 500),
/// HARNESS_FETCH_WAIT_MS (fetch.wait.max.ms, 2), HARNESS_POLL_MS (Streamiz poll.ms, 10). HARNESS_LOG=Information (or Debug, Warning...) writes the host's and
/// Streamiz's log to stderr, for diagnosing a run that does not finish.</summary>
internal static class HarnessHost
{
    public static StreamHostOptions Options(EmbeddedKafkaCluster cluster, string stateDirectory, int? commitIntervalMs = null,
        SchemaRegistryConnection? registry = null) => new()
    {
        SchemaRegistry = registry,
        BootstrapServers = cluster.BootstrapServers,
        StateDirectory = stateDirectory,
        CreateInternalTopic = (topic, partitions) => cluster.CreateTopic(topic, partitions),
        ThreadsPerTopology = Setting("HARNESS_THREADS", 1),
        CommitIntervalMs = commitIntervalMs ?? Setting("HARNESS_COMMIT_MS", 1_000),
        MaxPollRecords = Setting("HARNESS_MAX_POLL", 500),
        FetchWaitMaxMs = Setting("HARNESS_FETCH_WAIT_MS", 2),
        PollMs = Setting("HARNESS_POLL_MS", 10),
    };

    /// <summary>The stand-in schema registry for a harness whose topics are Avro (the weights'), over the PostgreSQL at
    /// BENCH_PG (default the local stack's, 127.0.0.1:55432), with auto-registration; dispose the server after the connection.</summary>
    /// <summary>The PostgreSQL the harnesses use (BENCH_PG, else the dev stack's).</summary>
    public static string Postgres => Environment.GetEnvironmentVariable("BENCH_PG") ?? "Host=127.0.0.1;Port=55432;Database=streamhealth;Username=postgres";

    /// <summary>The dev Redis (`compose/local/services.sh start dev`), or BENCH_REDIS.</summary>
    public static string Redis => Environment.GetEnvironmentVariable("BENCH_REDIS") ?? "127.0.0.1:56379";

    public static (SchemaRegistryServer Server, SchemaRegistryConnection Connection) Registry()
    {
        var pg = Postgres;
        PostgresMigrator.MigrateAsync(pg).GetAwaiter().GetResult();
        var server = SchemaRegistryServer.StartAsync(pg, "http://127.0.0.1:0").GetAwaiter().GetResult();
        return (server, SchemaRegistryConnection.Connect(server.Url, autoRegister: true));
    }

    /// <summary>The host's log: nothing unless HARNESS_LOG names a level.</summary>
    public static ILoggerFactory Logs() =>
        Enum.TryParse<LogLevel>(Environment.GetEnvironmentVariable("HARNESS_LOG"), ignoreCase: true, out var level)
            ? new StderrLogs(level) : NullLoggerFactory.Instance;

    /// <summary>Waits for the host's first processed record, then times it to <paramref name="records"/>: records per second from
    /// the first processed record to the last (pre-produced input, so the clock measures processing, not producing).</summary>
    public static double RecordsPerSecond(StreamHost host, long records)
    {
        while (host.Metrics.Processed == 0) Thread.Sleep(1);
        var first = host.Metrics.Processed;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (host.Metrics.Processed < records) Thread.Sleep(1);
        return (records - first) / sw.Elapsed.TotalSeconds;
    }

    /// <summary>The settings a run used, for its report line.</summary>
    public static string Describe(StreamHostOptions o) =>
        $"Streamiz, {o.ThreadsPerTopology} stream thread{(o.ThreadsPerTopology == 1 ? "" : "s")}, commit every {o.CommitIntervalMs} ms, " +
        $"max.poll.records {o.MaxPollRecords}, fetch.wait.max.ms {o.FetchWaitMaxMs}, poll.ms {o.PollMs}";

    private static int Setting(string name, int fallback) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? int.Parse(value, System.Globalization.CultureInfo.InvariantCulture) : fallback;

    private sealed class StderrLogs(LogLevel minimum) : ILoggerFactory
    {
        public ILogger CreateLogger(string categoryName) => new StderrLogger(categoryName, minimum);
        public void AddProvider(ILoggerProvider provider) { }
        public void Dispose() { }
    }

    private sealed class StderrLogger(string category, LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel,-11} {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
        }
    }
}

/// <summary>An open-loop load: requests sent at a fixed rate whatever the answers' latency (a closed loop would slow down with
/// the server and hide its tail), each timed from when it was sent.</summary>
internal static class OpenLoop
{
    /// <summary>Sends <paramref name="count"/> requests at <paramref name="perSecond"/>; returns their tasks and when each went out
    /// (seconds from the start).</summary>
    public static List<Task<(double Ms, int Status)>> Paced(int perSecond, int count, Func<Task<(double Ms, int Status)>> send, out double[] sentAtSeconds)
    {
        var sent = new List<Task<(double Ms, int Status)>>(count);
        sentAtSeconds = new double[count];
        var paced = System.Diagnostics.Stopwatch.StartNew();
        for (var n = 0; n < count; n++)
        {
            var due = TimeSpan.FromSeconds((double)n / perSecond);
            // Whole milliseconds only: a shorter Thread.Sleep is a sched_yield, and a loop of them kept a core busy (the
            // pacer took CPU from the gateway it measures). A request goes out at most 1 ms before its time.
            var wait = (due - paced.Elapsed).TotalMilliseconds;
            if (wait >= 1) Thread.Sleep((int)wait);
            sentAtSeconds[n] = paced.Elapsed.TotalSeconds;
            sent.Add(send());
        }
        return sent;
    }
}
