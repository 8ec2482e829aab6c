using System.Diagnostics;

namespace StreamHealth.Runtime.Streams;

/// <summary>Counters of one host, read by the gateway and logged periodically. Updated with
/// Interlocked from stream threads; reading is lock-free and may be a moment stale.</summary>
public sealed class StreamMetrics
{
    private long _processed, _skipped, _emitted, _deadLettered, _commits, _streamFailures, _restoreTotal, _restored;
    private readonly LatencyHistogram _processLatency = new();
    /// <summary>Keyed "{applicationId}/{taskId}". Outlives the task object: a task recreated by a thread restart
    /// keeps its last progress, so a restart loop cannot hide a stall by resetting the clock.</summary>
    private readonly Dictionary<string, TaskProgress> _taskProgress = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public long Processed => Interlocked.Read(ref _processed);
    public long SkippedAlreadyApplied => Interlocked.Read(ref _skipped);
    public long Emitted => Interlocked.Read(ref _emitted);
    public long DeadLettered => Interlocked.Read(ref _deadLettered);
    public long Commits => Interlocked.Read(ref _commits);
    /// <summary>Stream clients that failed (e.g. a commit whose store flush failed) and were restarted.</summary>
    public long StreamFailures => Interlocked.Read(ref _streamFailures);
    public long RestoreTotal => Interlocked.Read(ref _restoreTotal);
    public long Restored => Interlocked.Read(ref _restored);

    /// <summary>Records between the group's high watermark and what state reflects, over this host's tasks.</summary>
    public long ConsumerLag
    {
        get { lock (_gate) return _taskProgress.Values.Where(p => p.Owned).Sum(p => Math.Max(0, Interlocked.Read(ref p.Lag))); }
    }

    /// <summary>Tasks (input partitions) this host owns now.</summary>
    public int ActiveTasks
    {
        get { lock (_gate) return _taskProgress.Values.Count(p => p.Owned); }
    }

    /// <summary>The tasks this host owns now (for the lag probe).</summary>
    internal TaskProgress[] Tasks()
    {
        lock (_gate) return [.. _taskProgress.Values.Where(p => p.Owned)];
    }

    /// <summary>Whether this host owns the task of <paramref name="applicationId"/> that reads source partition
    /// <paramref name="partition"/>, and whether its store is restored (queryable).</summary>
    internal TaskOwnership Ownership(string applicationId, int partition)
    {
        lock (_gate)
            foreach (var p in _taskProgress.Values)
                if (p.Owned && p.Partition == partition && p.ApplicationId == applicationId)
                    return p.Restored ? TaskOwnership.Ready : TaskOwnership.Restoring;
        return TaskOwnership.NotOwned;
    }

    /// <summary>Whether every task of <paramref name="applicationId"/> this host owns has its store restored.</summary>
    internal bool AllRestored(string applicationId)
    {
        lock (_gate)
            foreach (var p in _taskProgress.Values)
                if (p.Owned && !p.Restored && p.ApplicationId == applicationId) return false;
        return true;
    }

    /// <summary>A changelog partition of <paramref name="applicationId"/> finished restoring (Streamiz's restore-end event,
    /// which it raises for every changelog of a new task, empty or not): the task reading the same source partition (changelogs
    /// are co-partitioned with the source) is queryable. Streamiz itself lists a task among the queryable ones as soon as it is
    /// created, before its store is restored, and answers a miss there as "no such key".</summary>
    internal void OnTaskRestored(string applicationId, int partition)
    {
        lock (_gate)
            foreach (var p in _taskProgress.Values)
                if (p.Owned && p.Partition == partition && p.ApplicationId == applicationId) p.Restored = true;
    }

    internal void OnProcessed(long elapsedTicks)
    {
        Interlocked.Increment(ref _processed);
        _processLatency.Record(elapsedTicks);
    }

    internal void OnSkipped() => Interlocked.Increment(ref _skipped);
    internal void OnEmitted(int n) => Interlocked.Add(ref _emitted, n);
    internal void OnDeadLettered() => Interlocked.Increment(ref _deadLettered);
    /// <summary>Commits so far, as Streamiz's thread sensors count them (read by the host's probe).</summary>
    internal void SetCommits(long total) => Interlocked.Exchange(ref _commits, total);
    internal void OnRestoreStarted(long records) => Interlocked.Add(ref _restoreTotal, records);
    internal void OnRestored(long records) => Interlocked.Add(ref _restored, records);

    /// <summary>The progress record of a task this host was just assigned. Keyed "{applicationId}/{taskId}" and kept when
    /// the task goes (only marked not owned): a task that returns after a stream restart keeps its last progress, so a
    /// restart loop cannot hide a stall by resetting the clock.</summary>
    internal TaskProgress TrackTask(string applicationId, string taskId, int partition, string thread)
    {
        var key = applicationId + "/" + taskId;
        lock (_gate)
        {
            if (!_taskProgress.TryGetValue(key, out var progress))
                _taskProgress[key] = progress = new TaskProgress(applicationId, taskId, partition);
            progress.Thread = thread;
            progress.Owned = true;
            // A new task (Streamiz initialises its processors before restoring its stores): queryable once restored.
            progress.Restored = false;
            return progress;
        }
    }

    /// <summary>The task moved to another owner (or the host stops): its progress is no longer ours to report.</summary>
    internal void ForgetTask(TaskProgress progress)
    {
        lock (_gate) progress.Owned = false;
    }

    /// <summary>A topology's stream client failed and restarts: the reason is the last error of each of its tasks.</summary>
    internal void OnStreamFailed(string applicationId, string error)
    {
        Interlocked.Increment(ref _streamFailures);
        lock (_gate)
            foreach (var progress in _taskProgress.Values)
                if (progress.ApplicationId == applicationId) progress.Failed("stream restarted: " + error);
    }

    /// <summary>Each task of this host: its lag, when it last advanced, its last error, and whether it is stalled
    /// (input waits, lag &gt; 0, and nothing advanced for <paramref name="stallAfterMs"/>).</summary>
    public IReadOnlyList<StreamTaskHealth> TaskHealth(long stallAfterMs)
    {
        var nowTicks = Environment.TickCount64;
        var nowUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        lock (_gate)
        {
            var result = new List<StreamTaskHealth>(_taskProgress.Count);
            foreach (var p in _taskProgress.Values)
            {
                if (!p.Owned) continue;
                var sinceProgressMs = nowTicks - Volatile.Read(ref p.LastProgressTicks);
                var lag = Interlocked.Read(ref p.Lag);
                var (error, errorAt) = p.LastError;
                result.Add(new StreamTaskHealth(p.ApplicationId, p.TaskId, p.Partition, p.Thread, lag, nowUnixMs - sinceProgressMs, error, errorAt,
                    Stalled: lag > 0 && sinceProgressMs >= stallAfterMs));
            }
            result.Sort((a, b) => string.CompareOrdinal(a.ApplicationId + "/" + a.Task, b.ApplicationId + "/" + b.Task));
            return result;
        }
    }

    public StreamMetricsSnapshot Snapshot() => new(
        DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Processed, SkippedAlreadyApplied, Emitted, DeadLettered, Commits, StreamFailures,
        RestoreTotal, Restored, ConsumerLag, ActiveTasks,
        _processLatency.PercentileMicroseconds(0.50), _processLatency.PercentileMicroseconds(0.99));
}

/// <summary>When one task last advanced and what it last failed on. Written by its stream thread (progress on
/// every record: one volatile store, no allocation), read by the metrics reporter.</summary>
internal sealed class TaskProgress(string applicationId, string taskId, int partition)
{
    public string ApplicationId { get; } = applicationId;
    public string TaskId { get; } = taskId;
    /// <summary>The source partition the task reads.</summary>
    public int Partition { get; } = partition;
    /// <summary>The stream thread that owns the task now (changes hands within a host on rebalances).</summary>
    public string Thread { get; set; } = "";
    /// <summary>Whether this host owns the task now.</summary>
    public bool Owned { get; set; }
    /// <summary>Whether the task's store has been restored since it was assigned (see <see cref="StreamMetrics.OnTaskRestored"/>).</summary>
    public bool Restored { get; set; }
    /// <summary>Offset of the last input record processed (-1: none yet), read by the lag probe.</summary>
    public long LastOffset = -1;
    /// <summary><see cref="Environment.TickCount64"/> of the last record processed, commit completed, or moment
    /// found caught up. Starts at creation: a task that never advances stalls from its first assignment.</summary>
    public long LastProgressTicks = Environment.TickCount64;
    /// <summary>Records between the high watermark and what the task's state reflects, at the last thread report.</summary>
    public long Lag;
    private (string? Error, long AtUnixMs) _lastError;
    private readonly Lock _errorGate = new();

    public (string? Error, long AtUnixMs) LastError
    {
        get { lock (_errorGate) return _lastError; }
    }

    public void Advanced() => Volatile.Write(ref LastProgressTicks, Environment.TickCount64);

    public void Processed(long offset)
    {
        Volatile.Write(ref LastOffset, offset);
        Volatile.Write(ref LastProgressTicks, Environment.TickCount64);
    }

    public void Failed(string error)
    {
        lock (_errorGate) _lastError = (error, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }
}

internal enum TaskOwnership { NotOwned, Restoring, Ready }

/// <summary>One stream task's progress as operators see it (/health, /api/v1/streams, the dashboard); the stream
/// counterpart of <see cref="Sinks.SinkHealth"/>.</summary>
public sealed record StreamTaskHealth(
    string ApplicationId,
    /// <summary>Streamiz task id "subtopology-partition" of the task's input.</summary>
    string Task,
    /// <summary>The source partition the task reads (the gateway routes interactive queries by it).</summary>
    int Partition,
    string Thread,
    long Lag,
    long LastProgressUnixMs,
    string? LastError,
    long LastErrorUnixMs,
    bool Stalled);

/// <summary>A point-in-time copy of <see cref="StreamMetrics"/>; rates come from two snapshots.</summary>
public sealed record StreamMetricsSnapshot(
    long AtUnixMs, long Processed, long SkippedAlreadyApplied, long Emitted, long DeadLettered, long Commits, long StreamFailures,
    long RestoreTotal, long Restored, long ConsumerLag, int ActiveTasks,
    double ProcessP50Us, double ProcessP99Us)
{
    public double RecordsInPerSecond(StreamMetricsSnapshot previous) => Rate(Processed - previous.Processed, previous);
    public double RecordsOutPerSecond(StreamMetricsSnapshot previous) => Rate(Emitted - previous.Emitted, previous);
    public double RestoreProgress => RestoreTotal == 0 ? 1 : Math.Min(1, (double)Restored / RestoreTotal);

    private double Rate(long delta, StreamMetricsSnapshot previous) =>
        AtUnixMs > previous.AtUnixMs ? delta * 1000.0 / (AtUnixMs - previous.AtUnixMs) : 0;
}

/// <summary>Lock-free log-linear histogram of durations (4 buckets per power of two, ≤19% relative error),
/// cumulative since start: enough for p50/p99 in logs without allocating per record.</summary>
internal sealed class LatencyHistogram
{
    private const int SubBuckets = 4;
    private readonly long[] _counts = new long[64 * SubBuckets];
    private static readonly double TicksPerMicrosecond = Stopwatch.Frequency / 1e6;

    public void Record(long ticks)
    {
        var us = (ulong)Math.Max(1, (long)(ticks / TicksPerMicrosecond));
        Interlocked.Increment(ref _counts[Bucket(us)]);
    }

    private static int Bucket(ulong us)
    {
        var exponent = 63 - System.Numerics.BitOperations.LeadingZeroCount(us);
        var sub = exponent >= 2 ? (int)((us >> (exponent - 2)) & (SubBuckets - 1)) : (int)(us & (SubBuckets - 1));
        return exponent * SubBuckets + sub;
    }

    private static double UpperBoundMicroseconds(int bucket)
    {
        var exponent = bucket / SubBuckets;
        var sub = bucket % SubBuckets;
        if (exponent < 2) return sub + 1;   // 1–3 µs are stored exactly
        return Math.Pow(2, exponent) * (1 + (sub + 1) / (double)SubBuckets);
    }

    public double PercentileMicroseconds(double quantile)
    {
        long total = 0;
        for (var i = 0; i < _counts.Length; i++) total += Interlocked.Read(ref _counts[i]);
        if (total == 0) return 0;
        var rank = (long)Math.Ceiling(quantile * total);
        long seen = 0;
        for (var i = 0; i < _counts.Length; i++)
        {
            seen += Interlocked.Read(ref _counts[i]);
            if (seen >= rank) return UpperBoundMicroseconds(i);
        }
        return UpperBoundMicroseconds(_counts.Length - 1);
    }
}
