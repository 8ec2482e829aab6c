using System.Diagnostics;
using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using StreamHealth.Runtime.Observability;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Runtime.Sinks;

/// <summary>One output record as a sink sees it.</summary>
public readonly record struct SinkRecord(
    string Topic, int Partition, long Offset, byte[]? Key, byte[]? Value, long TimestampUnixMs, string OutputId)
{
    /// <summary>The trace context the record's headers carry, the parent of its sink span (<see cref="StreamTracing.RecordSinkWrites"/>);
    /// read only while sink spans are recorded, default otherwise.</summary>
    public ActivityContext TraceContext { get; init; }
}

/// <summary>Writes batches to an external system. Must be idempotent by <see cref="SinkRecord.OutputId"/>
/// (replays and producer retries deliver a record more than once) and all-or-nothing per batch; throwing
/// means "nothing written": the runner retries later (an outage) or, when <see cref="SinkErrors.IsPermanent"/>
/// says the records themselves are refused, writes the batch again in parts to find and archive them.</summary>
public interface ISinkWriter
{
    string Name { get; }
    void Write(IReadOnlyList<SinkRecord> batch);
}

public sealed class SinkOptions
{
    public required string BootstrapServers { get; init; }
    public required string Topic { get; init; }
    /// <summary>The sink's consumer group; each sink of a topic has its own so each sees every record.</summary>
    public required string GroupId { get; init; }
    /// <summary>Records written per batch; also the queue bound at which input is paused while writes fail.</summary>
    public int BatchSize { get; init; } = 500;
    /// <summary>How long a partial batch may wait for more records.</summary>
    public int LingerMs { get; init; } = 20;
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(100);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(5);
    public int SessionTimeoutMs { get; init; } = 6_000;
    /// <summary>fetch.wait.max.ms of the sink's consumer (Streams:FetchWaitMaxMs, as the stream threads use); null leaves the
    /// client's 500 ms. The embedded broker answers a waiting fetch only when this expires, not when data arrives, so there
    /// 500 ms is up to half a second per hop before the sink even sees a record.</summary>
    public int? FetchWaitMaxMs { get; init; }
    /// <summary>How long a sink with input waiting may go without progress before <see cref="SinkRunner.Health"/>
    /// calls it stalled (Streams:StallAfterMs).</summary>
    public TimeSpan StallAfter { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>Moves a topic into an <see cref="ISinkWriter"/> (the Kafka Connect sink shape, in-process).
/// Offsets are committed only after a batch is written, so nothing is lost; while the writer fails
/// (e.g. PostgreSQL down) the runner pauses every assigned partition — the queue stops growing, the
/// consumer keeps polling so it stays in the group — retries with exponential backoff, and resumes
/// when a write succeeds. A batch the store refuses because of its records (<see cref="SinkErrors.IsPermanent"/>: a NUL
/// PostgreSQL cannot store, a value Redis answers WRONGTYPE to, a record that does not decode) is written again in halves
/// until each refused record stands alone; those go to streamhealth.dead_letters with the error, the rest are written,
/// and the sink commits and moves on: one record never stops a sink.</summary>
public sealed class SinkRunner : ISinkHealthSource, IDisposable
{
    /// <summary>How often the sink's consumer emits librdkafka's statistics (its lag per partition, bytes, broker round trips),
    /// exported with the processors' metrics (<see cref="KafkaClientMetrics"/>).</summary>
    private const int StatisticsIntervalMs = 5_000;

    private readonly SinkOptions _options;
    private readonly ISinkWriter _writer;
    private readonly ISinkDeadLetters? _deadLetters;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<SinkRecord> _buffer = [];
    private Thread? _thread;
    private IConsumer<byte[]?, byte[]?>? _consumer;
    private bool _paused;
    private long _written, _batches, _failedAttempts, _pauses, _deadLettered;
    private bool _pausePending;   // set by the assignment callback, acted on by the loop
    // Records [0, _resolved) of _buffer are written or archived: an outage met part-way through splitting a refused
    // batch resumes after them instead of writing them again.
    private int _resolved;
    // Health, written by the loop thread and read by any: the lag as last computed there (the consumer is not
    // thread-safe to share, and a caller must never wait on the broker), times in Unix ms.
    private long _lag, _lagComputedAtTicks, _lastProgressUnixMs, _lastErrorUnixMs;
    private string? _lastError;

    /// <param name="deadLetters">Where records the store refuses are archived; without one such a record is treated as
    /// an outage (the sink stalls, loudly, rather than drop it).</param>
    public SinkRunner(SinkOptions options, ISinkWriter writer, ILoggerFactory? logs = null, ISinkDeadLetters? deadLetters = null)
    {
        _options = options;
        _writer = writer;
        _deadLetters = deadLetters;
        _log = (logs ?? NullLoggerFactory.Instance).CreateLogger($"StreamHealth.Sinks.{writer.Name}");
        StallAfter = options.StallAfter;
        _lastProgressUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
    }

    /// <summary>A sink with the default batching: <paramref name="writer"/> over <paramref name="topic"/> in its own
    /// consumer group (what every pipeline's result sinks are), archiving the records its store refuses in
    /// streamhealth.dead_letters of <paramref name="deadLetters"/> (PostgreSQL for every sink, whatever its store).</summary>
    public static SinkRunner For(string bootstrapServers, string topic, string groupId, ISinkWriter writer, NpgsqlDataSource deadLetters,
        ILoggerFactory logs, int sessionTimeoutMs = 6_000, int? fetchWaitMaxMs = null) =>
        new(new SinkOptions
            {
                BootstrapServers = bootstrapServers, Topic = topic, GroupId = groupId, SessionTimeoutMs = sessionTimeoutMs, FetchWaitMaxMs = fetchWaitMaxMs,
            },
            writer, logs, new PostgresSinkDeadLetters(deadLetters, logs.CreateLogger($"StreamHealth.Sinks.{writer.Name}")));

    public string Name => _writer.Name;
    public string Topic => _options.Topic;
    public string GroupId => _options.GroupId;

    /// <summary>See <see cref="SinkOptions.StallAfter"/>; settable so a host applies Streams:StallAfterMs to sinks that a
    /// pipeline built.</summary>
    public TimeSpan StallAfter { get; set; }

    public long Written => Interlocked.Read(ref _written);
    public long Batches => Interlocked.Read(ref _batches);
    public long FailedAttempts => Interlocked.Read(ref _failedAttempts);
    /// <summary>Times the input was paused because the writer was failing.</summary>
    public long Pauses => Interlocked.Read(ref _pauses);
    public bool IsPaused => Volatile.Read(ref _paused);
    /// <summary>Records archived in streamhealth.dead_letters because the store refused them.</summary>
    public long DeadLettered => Interlocked.Read(ref _deadLettered);

    /// <summary>The sink's progress for /health and /api/v1/streams: cheap, never blocks on the broker or the store
    /// (lag is the loop thread's latest figure). Stalled: input waits and nothing advanced for <see cref="StallAfter"/>.</summary>
    public SinkHealth Health()
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var lag = Interlocked.Read(ref _lag);
        var lastProgress = Interlocked.Read(ref _lastProgressUnixMs);
        var stalled = lag > 0 && now - lastProgress >= (long)StallAfter.TotalMilliseconds;
        return new SinkHealth(_writer.Name, _options.Topic, _options.GroupId, lag, Written, DeadLettered, IsPaused, lastProgress,
            Volatile.Read(ref _lastError), Interlocked.Read(ref _lastErrorUnixMs), stalled);
    }

    public void Start()
    {
        _thread = new Thread(Run) { Name = $"sink-{_writer.Name}", IsBackground = true };
        _thread.Start();
    }

    private void Run()
    {
        _consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
            {
                BootstrapServers = _options.BootstrapServers,
                GroupId = _options.GroupId,
                EnableAutoCommit = false,
                AutoOffsetReset = AutoOffsetReset.Earliest,
                PartitionAssignmentStrategy = PartitionAssignmentStrategy.CooperativeSticky,
                SessionTimeoutMs = _options.SessionTimeoutMs,
                HeartbeatIntervalMs = Math.Max(100, _options.SessionTimeoutMs / 3),
                FetchWaitMaxMs = _options.FetchWaitMaxMs,
                StatisticsIntervalMs = StatisticsIntervalMs,
            })
            .SetStatisticsHandler((_, json) => KafkaClientMetrics.PublishStatistics(this, _options.GroupId, json))
            .SetPartitionsAssignedHandler((_, partitions) =>
            {
                // New partitions arriving while the writer is failing start paused too.
                if (_paused && partitions.Count > 0) _pausePending = true;
            })
            .SetPartitionsRevokedHandler((_, partitions) => OnRevoked(partitions))
            .SetPartitionsLostHandler((_, partitions) => OnRevoked(partitions, tryWrite: false))
            .Build();
        var backoff = _options.InitialBackoff;
        var nextAttempt = 0L;
        var firstBufferedAt = 0L;
        try
        {
            _consumer.Subscribe(_options.Topic);
            while (!_stop.IsCancellationRequested)
            {
                if (_pausePending)
                {
                    _consumer.Pause(_consumer.Assignment);
                    _pausePending = false;
                }
                ConsumeResult<byte[]?, byte[]?>? r = null;
                try
                {
                    r = _consumer.Consume(TimeSpan.FromMilliseconds(_paused ? 100 : Math.Max(1, _options.LingerMs)));
                }
                catch (ConsumeException e)
                {
                    _log.LogWarning("sink {Sink}: consume failed ({Reason}); retrying", _writer.Name, e.Error.Reason);
                }
                if (r is { IsPartitionEOF: false })
                {
                    if (_buffer.Count == 0) firstBufferedAt = Environment.TickCount64;
                    _buffer.Add(ToSinkRecord(r));
                }
                var now = Environment.TickCount64;
                if (now - _lagComputedAtTicks >= LagIntervalMs) UpdateLag(now);
                var due = _buffer.Count >= _options.BatchSize || (_buffer.Count > 0 && now - firstBufferedAt >= _options.LingerMs);
                if (!due || now < nextAttempt) continue;
                // Fresh before every attempt: a write that hangs (a locked table, a store that stopped answering) must
                // leave a lag that counts what it holds, or the sink could never be reported stalled.
                UpdateLag(now);
                if (Drain(_buffer))
                {
                    Commit(_buffer);
                    _buffer.Clear();
                    _resolved = 0;
                    backoff = _options.InitialBackoff;
                    nextAttempt = 0;
                    if (_paused)
                    {
                        _consumer.Resume(_consumer.Assignment);
                        Volatile.Write(ref _paused, false);
                        _log.LogInformation("sink {Sink}: writes succeed again; input resumed", _writer.Name);
                    }
                }
                else
                {
                    if (!_paused)
                    {
                        _consumer.Pause(_consumer.Assignment);
                        Volatile.Write(ref _paused, true);
                        Interlocked.Increment(ref _pauses);
                        _log.LogWarning("sink {Sink}: writer failing; input paused with {Count} records queued", _writer.Name, _buffer.Count);
                    }
                    nextAttempt = now + (long)backoff.TotalMilliseconds;
                    backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, _options.MaxBackoff.TotalMilliseconds));
                }
            }
            // Graceful stop: one last attempt; anything unwritten is re-read by the next owner.
            if (_buffer.Count > 0 && Drain(_buffer)) Commit(_buffer);
            _consumer.Close();
        }
        finally
        {
            _consumer.Dispose();
            KafkaClientMetrics.ForgetStatistics(this);
        }
    }

    /// <summary>Writes or archives every record of <paramref name="batch"/> after <see cref="_resolved"/>; false on an
    /// outage (what was done stays done, <see cref="_resolved"/> says how far).</summary>
    private bool Drain(List<SinkRecord> batch) => WriteRange(batch, _resolved, batch.Count - _resolved);

    /// <summary>Writes records [start, start + count); a permanent refusal splits the range (at the record the writer
    /// named, else in halves) until the refused records stand alone and are archived. O(k log n) writes for k refused
    /// records in n; none on the path where the batch is written whole.</summary>
    private bool WriteRange(List<SinkRecord> batch, int start, int count)
    {
        if (count == 0) return true;
        var slice = start == 0 && count == batch.Count ? batch : batch.GetRange(start, count);
        var startedAt = StreamTracing.Sinks.HasListeners() ? DateTimeOffset.UtcNow : default;
        try
        {
            _writer.Write(slice);
            StreamTracing.RecordSinkWrites(_writer.Name, _options.GroupId, batch, start, count, startedAt);
            Interlocked.Add(ref _written, count);
            Interlocked.Increment(ref _batches);
            _resolved = start + count;
            Interlocked.Exchange(ref _lastProgressUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Interlocked.Increment(ref _failedAttempts);
            var error = SinkErrors.Describe(e);
            NoteError(error);
            if (!SinkErrors.IsPermanent(e))
            {
                _log.LogWarning("sink {Sink}: write of {Count} records failed: {Error}", _writer.Name, count, error);
                return false;
            }
            if (_deadLetters is null)
            {
                _log.LogWarning("sink {Sink}: {Count} records refused ({Error}) and no dead-letter archive: retrying", _writer.Name, count, error);
                return false;
            }
            if (count == 1) return Archive(batch, start, error);
            if (e is SinkRecordException named && IndexOf(batch, start, count, named.Record) is var at and >= 0)
            {
                _log.LogInformation("sink {Sink}: record at offset {Offset} refused in a batch of {Count}", _writer.Name, named.Record.Offset, count);
                return WriteRange(batch, start, at - start)
                    && Archive(batch, at, error)
                    && WriteRange(batch, at + 1, start + count - at - 1);
            }
            _log.LogInformation("sink {Sink}: batch of {Count} refused ({Error}); splitting it to find the refused records", _writer.Name, count, error);
            var half = count / 2;
            return WriteRange(batch, start, half) && WriteRange(batch, start + half, count - half);
        }
    }

    private bool Archive(List<SinkRecord> batch, int index, string error)
    {
        try
        {
            var startedAt = StreamTracing.Sinks.HasListeners() ? DateTimeOffset.UtcNow : default;
            if (_deadLetters!.Archive(batch[index], _writer.Name, error)) Interlocked.Increment(ref _deadLettered);
            StreamTracing.RecordSinkWrites(_writer.Name, _options.GroupId, batch, index, 1, startedAt, error);
            _resolved = index + 1;
            Interlocked.Exchange(ref _lastProgressUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The archive down is an outage like any other: the record is neither written nor kept, so nothing moves.
            var why = "dead-letter archive: " + SinkErrors.Describe(e);
            NoteError(why);
            _log.LogWarning("sink {Sink}: cannot archive the refused record at {Topic}[{Partition}]@{Offset}: {Error}",
                _writer.Name, batch[index].Topic, batch[index].Partition, batch[index].Offset, why);
            return false;
        }
    }

    private static int IndexOf(List<SinkRecord> batch, int start, int count, SinkRecord record)
    {
        for (var i = start; i < start + count; i++)
            if (batch[i].Partition == record.Partition && batch[i].Offset == record.Offset && batch[i].Topic == record.Topic) return i;
        return -1;
    }

    private void NoteError(string error)
    {
        Volatile.Write(ref _lastError, error);
        Interlocked.Exchange(ref _lastErrorUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }

    // librdkafka's cached figures are cheap, but Assignment allocates: a few times a second is plenty for health.
    private const long LagIntervalMs = 250;

    /// <summary>Lag over the assigned partitions: from the first record not yet written (buffered) or else the
    /// consumer's position, to the high watermark librdkafka last saw (both local, no broker call). Partitions whose
    /// position or watermark is not known yet count as caught up.</summary>
    private void UpdateLag(long nowTicks)
    {
        _lagComputedAtTicks = nowTicks;
        long lag = 0;
        try
        {
            foreach (var tp in _consumer!.Assignment)
            {
                var high = _consumer.GetWatermarkOffsets(tp).High.Value;
                var position = _consumer.Position(tp).Value;
                var from = position >= 0 ? position : long.MaxValue;
                foreach (var r in _buffer)
                    if (r.Partition == tp.Partition.Value && r.Offset < from) from = r.Offset;
                if (high >= 0 && from != long.MaxValue && high > from) lag += high - from;
            }
        }
        catch (KafkaException)
        {
            return;   // keep the last figure; the next round tries again
        }
        Interlocked.Exchange(ref _lag, lag);
        if (lag == 0) Interlocked.Exchange(ref _lastProgressUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }

    private void Commit(List<SinkRecord> written)
    {
        var next = new Dictionary<int, long>();
        foreach (var r in written) next[r.Partition] = Math.Max(next.GetValueOrDefault(r.Partition), r.Offset + 1);
        try
        {
            _consumer!.Commit(next.Select(kv => new TopicPartitionOffset(_options.Topic, kv.Key, kv.Value)));
        }
        catch (KafkaException e)
        {
            // Written but not committed: the next owner writes these again, and the writer drops them by output id.
            _log.LogInformation("sink {Sink}: offset commit skipped ({Reason})", _writer.Name, e.Error.Reason);
        }
    }

    private void OnRevoked(List<TopicPartitionOffset> partitions, bool tryWrite = true)
    {
        var revoked = partitions.Select(p => p.Partition.Value).ToHashSet();
        var leaving = _buffer.Where(r => revoked.Contains(r.Partition)).ToList();
        if (leaving.Count == 0) return;
        // Unwritten records are simply dropped here: the new owner re-reads them from the committed offset.
        // The leaving records are drained on their own; what stays is written from its start again (idempotent).
        _resolved = 0;
        if (tryWrite && Drain(leaving)) Commit(leaving);
        _buffer.RemoveAll(r => revoked.Contains(r.Partition));
        _resolved = 0;
    }

    private static SinkRecord ToSinkRecord(ConsumeResult<byte[]?, byte[]?> r)
    {
        var id = r.Message.Headers is { } h && h.TryGetLastBytes(StreamHeaders.OutputId, out var bytes)
            ? Encoding.UTF8.GetString(bytes)
            : $"{r.Topic}:{r.Partition.Value}:{r.Offset.Value}";   // records from producers without ids: their position is the id
        return new SinkRecord(r.Topic, r.Partition.Value, r.Offset.Value, r.Message.Key, r.Message.Value,
            r.Message.Timestamp.UnixTimestampMs, id) { TraceContext = StreamTracing.ContextForSink(r.Message.Headers) };
    }

    /// <summary>Graceful stop: writes what it holds if it can, commits, leaves the group.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _thread?.Join();
    }
}
