using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace StreamHealth.Runtime.Streams;

public sealed class StreamHostOptions
{
    public required string BootstrapServers { get; init; }
    public required string StateDirectory { get; init; }
    /// <summary>Stream threads per topology (consumer-group members in this process).</summary>
    public int ThreadsPerTopology { get; init; } = 1;
    public int CommitIntervalMs { get; init; } = 100;
    public int SessionTimeoutMs { get; init; } = 6_000;
}

/// <summary>Runs topologies in this process: N stream threads each, one task per owned partition.</summary>
public sealed class StreamHost : IDisposable
{
    private readonly List<StreamThread> _threads = [];
    private readonly List<Thread> _running = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly StreamHostOptions _options;

    public StreamMetrics Metrics { get; } = new();

    public StreamHost(StreamHostOptions options, IEnumerable<Topology> topologies, ILoggerFactory? logs = null)
    {
        _options = options;
        logs ??= NullLoggerFactory.Instance;
        foreach (var topology in topologies)
            for (var i = 0; i < options.ThreadsPerTopology; i++)
                _threads.Add(new StreamThread(topology, i, options, Metrics, logs));
    }

    public void Start()
    {
        foreach (var t in _threads)
        {
            var thread = new Thread(() => t.Run(_stop.Token)) { Name = t.Name, IsBackground = true };
            thread.Start();
            _running.Add(thread);
        }
    }

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
