namespace StreamHealth.Runtime.Streams;

/// <summary>Counters of one host, read by the gateway and logged periodically. Updated with
/// Interlocked from stream threads; reading is lock-free and may be a moment stale.</summary>
public sealed class StreamMetrics
{
    private long _processed, _skipped, _emitted, _deadLettered, _commits, _commitFailures, _restoreTotal, _restored;

    public long Processed => Interlocked.Read(ref _processed);
    public long SkippedAlreadyApplied => Interlocked.Read(ref _skipped);
    public long Emitted => Interlocked.Read(ref _emitted);
    public long DeadLettered => Interlocked.Read(ref _deadLettered);
    public long Commits => Interlocked.Read(ref _commits);
    public long CommitFailures => Interlocked.Read(ref _commitFailures);
    public long RestoreTotal => Interlocked.Read(ref _restoreTotal);
    public long Restored => Interlocked.Read(ref _restored);

    internal void OnProcessed(int n = 1) => Interlocked.Add(ref _processed, n);
    internal void OnSkipped() => Interlocked.Increment(ref _skipped);
    internal void OnEmitted(int n) => Interlocked.Add(ref _emitted, n);
    internal void OnDeadLettered() => Interlocked.Increment(ref _deadLettered);
    internal void OnCommitted() => Interlocked.Increment(ref _commits);
    internal void OnCommitFailed() => Interlocked.Increment(ref _commitFailures);
    internal void OnRestoreStarted(long records) => Interlocked.Add(ref _restoreTotal, records);
    internal void OnRestored(long records) => Interlocked.Add(ref _restored, records);
}
