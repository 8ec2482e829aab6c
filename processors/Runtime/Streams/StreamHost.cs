using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

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
    /// <summary>Names this process in client ids and logs.</summary>
    public string HostId { get; init; } = $"{Environment.MachineName}-{Environment.ProcessId}-{Interlocked.Increment(ref s_instances)}";

    private static int s_instances;
}

/// <summary>Runs topologies in this process: N stream threads each, one task per owned partition.</summary>
public sealed class StreamHost : IDisposable
{
    private readonly List<StreamThread> _threads = [];
    private readonly List<Thread> _running = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly StreamHostOptions _options;
    private readonly ILogger _log;

    public StreamMetrics Metrics { get; } = new();

    public StreamHost(StreamHostOptions options, IEnumerable<Topology> topologies, ILoggerFactory? logs = null)
    {
        _options = options;
        logs ??= NullLoggerFactory.Instance;
        _log = logs.CreateLogger("StreamHealth.Streams.Host");
        foreach (var topology in topologies)
            for (var i = 0; i < options.ThreadsPerTopology; i++)
                _threads.Add(new StreamThread(topology, i, options, Metrics, logs));
    }

    public void Start()
    {
        foreach (var t in _threads)
        {
            var thread = new Thread(() => Supervise(t)) { Name = t.Name, IsBackground = true };
            thread.Start();
            _running.Add(thread);
        }
    }

    /// <summary>Keeps a stream thread alive: a failure it cannot handle (e.g. a state directory that
    /// became unwritable) closes its tasks and consumer, and it starts again from the durable state
    /// after a backoff — the loop never dies and, since offsets live with state, never skips input.</summary>
    private void Supervise(StreamThread thread)
    {
        var backoff = TimeSpan.FromSeconds(1);
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                thread.Run(_stop.Token);
                return;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Interlocked.Increment(ref _threadRestarts);
                Metrics.OnThreadFailed(thread.Name, e.Message.ReplaceLineEndings(" "));
                _log.LogError(e, "stream thread {Thread} failed; restarting in {Backoff}", thread.Name, backoff);
                _stop.Token.WaitHandle.WaitOne(backoff);
                backoff = TimeSpan.FromSeconds(Math.Min(backoff.TotalSeconds * 2, 30));
            }
        }
    }

    private long _threadRestarts;

    /// <summary>Each stream thread and what it is doing (diagnostics).</summary>
    public string DescribeThreads() => string.Join("; ", _threads.Select(t => $"{t.ClientId}: {t.Phase}, tasks [{string.Join(",", t.Tasks.Select(k => $"{k.Partition}@{k.State.NextOffset}{(k.HasUncommitted ? "*" : "")}"))}]"));

    /// <summary>See <see cref="StreamHostOptions.StallAfterMs"/>.</summary>
    public int StallAfterMs => _options.StallAfterMs;

    /// <summary>How many times a stream thread failed and was restarted.</summary>
    public long ThreadRestarts => Interlocked.Read(ref _threadRestarts);

    /// <summary>Interactive query: the current value of <paramref name="key"/> in <paramref name="store"/>
    /// of topology <paramref name="applicationId"/>, if a task in this process owns it. Multi-instance
    /// routing is described in README "Interactive queries".</summary>
    public bool TryQuery<TK, TV>(string applicationId, string store, TK key, ISerde<TK> keySerde, ISerde<TV> valueSerde, out TV value)
    {
        foreach (var thread in _threads)
        {
            if (!thread.Name.StartsWith(applicationId + "-", StringComparison.Ordinal)) continue;
            foreach (var task in thread.Tasks)
            {
                lock (task.Gate)
                {
                    if (task.GetStore(store, keySerde, valueSerde).TryGet(key, out value)) return true;
                }
            }
        }
        value = default!;
        return false;
    }

    /// <summary>Graceful stop: each thread finishes its cycle, commits and closes its tasks.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        foreach (var t in _running) t.Join();
    }
}
