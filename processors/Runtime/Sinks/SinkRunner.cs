using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Runtime.Sinks;

/// <summary>One output record as a sink sees it.</summary>
public readonly record struct SinkRecord(
    string Topic, int Partition, long Offset, byte[]? Key, byte[]? Value, long TimestampUnixMs, string OutputId);

/// <summary>Writes batches to an external system. Must be idempotent by <see cref="SinkRecord.OutputId"/>
/// (replays and producer retries deliver a record more than once) and all-or-nothing per batch; throwing
/// means "nothing written, try again later".</summary>
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
}

/// <summary>Moves a topic into an <see cref="ISinkWriter"/> (the Kafka Connect sink shape, in-process).
/// Offsets are committed only after a batch is written, so nothing is lost; while the writer fails
/// (e.g. PostgreSQL down) the runner pauses every assigned partition — the queue stops growing, the
/// consumer keeps polling so it stays in the group — retries with exponential backoff, and resumes
/// when a write succeeds.</summary>
public sealed class SinkRunner : IDisposable
{
    private readonly SinkOptions _options;
    private readonly ISinkWriter _writer;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<SinkRecord> _buffer = [];
    private Thread? _thread;
    private IConsumer<byte[]?, byte[]?>? _consumer;
    private bool _paused;
    private long _written, _batches, _failedAttempts, _pauses;
    private bool _pausePending;   // set by the assignment callback, acted on by the loop
    public SinkRunner(SinkOptions options, ISinkWriter writer, ILoggerFactory? logs = null)
    {
        _options = options;
        _writer = writer;
        _log = (logs ?? NullLoggerFactory.Instance).CreateLogger($"StreamHealth.Sinks.{writer.Name}");
    }

    /// <summary>A sink with the default batching: <paramref name="writer"/> over <paramref name="topic"/> in its own
    /// consumer group (what every pipeline's result sinks are).</summary>
    public static SinkRunner For(string bootstrapServers, string topic, string groupId, ISinkWriter writer, ILoggerFactory logs,
        int sessionTimeoutMs = 6_000) =>
        new(new SinkOptions { BootstrapServers = bootstrapServers, Topic = topic, GroupId = groupId, SessionTimeoutMs = sessionTimeoutMs },
            writer, logs);

    public long Written => Interlocked.Read(ref _written);
    public long Batches => Interlocked.Read(ref _batches);
    public long FailedAttempts => Interlocked.Read(ref _failedAttempts);
    /// <summary>Times the input was paused because the writer was failing.</summary>
    public long Pauses => Interlocked.Read(ref _pauses);
    public bool IsPaused => Volatile.Read(ref _paused);

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
            })
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
                var due = _buffer.Count >= _options.BatchSize || (_buffer.Count > 0 && now - firstBufferedAt >= _options.LingerMs);
                if (!due || now < nextAttempt) continue;
                if (TryWrite(_buffer))
                {
                    Commit(_buffer);
                    _buffer.Clear();
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
            if (_buffer.Count > 0 && TryWrite(_buffer)) Commit(_buffer);
            _consumer.Close();
        }
        finally
        {
            _consumer.Dispose();
        }
    }

    private bool TryWrite(List<SinkRecord> batch)
    {
        try
        {
            _writer.Write(batch);
            Interlocked.Add(ref _written, batch.Count);
            Interlocked.Increment(ref _batches);
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Interlocked.Increment(ref _failedAttempts);
            _log.LogWarning("sink {Sink}: write of {Count} records failed: {Error}", _writer.Name, batch.Count, e.Message);
            return false;
        }
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
        if (tryWrite && TryWrite(leaving)) Commit(leaving);
        _buffer.RemoveAll(r => revoked.Contains(r.Partition));
    }

    private static SinkRecord ToSinkRecord(ConsumeResult<byte[]?, byte[]?> r)
    {
        var id = r.Message.Headers is { } h && h.TryGetLastBytes(StreamHeaders.OutputId, out var bytes)
            ? Encoding.UTF8.GetString(bytes)
            : $"{r.Topic}:{r.Partition.Value}:{r.Offset.Value}";   // records from producers without ids: their position is the id
        return new SinkRecord(r.Topic, r.Partition.Value, r.Offset.Value, r.Message.Key, r.Message.Value,
            r.Message.Timestamp.UnixTimestampMs, id);
    }

    /// <summary>Graceful stop: writes what it holds if it can, commits, leaves the group.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _thread?.Join();
    }
}
