using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace StreamHealth.Runtime.Streams;

/// <summary>One input partition of one topology: its processor instance, its state, its outputs.
/// Commit protocol (at-least-once delivery, exactly-once state; no Kafka transactions needed):
/// 1. produce the cycle's outputs and its changelog run (store writes, then an offset marker),
///    and wait until all are acknowledged;
/// 2. write the store writes + next input offset + changelog position in one RocksDB batch;
/// 3. commit the input offset to the group.
/// A crash after 1 re-produces outputs on replay (sinks drop them by output id); restore applies the
/// changelog only in whole marker-terminated runs, and the task skips inputs below the stored offset.</summary>
internal sealed class StreamTask : IProcessorContext, IDisposable
{
    private readonly Topology _topology;
    private readonly ITaskProcessor _processor;
    private readonly IProducer<byte[]?, byte[]?> _producer;
    private readonly StreamMetrics _metrics;
    private readonly ILogger _log;
    private readonly List<(string Topic, Message<byte[]?, byte[]?> Message)> _outputs = [];
    private readonly List<(TimeSpan Interval, PunctuationType Type, long NextUnixMs)> _schedules = [];
    private int _uncommitted;

    public TaskState State { get; }
    public string ApplicationId => _topology.ApplicationId;
    public string TaskId { get; }
    public int Partition { get; }
    public long StreamTimeUnixMs { get; private set; } = long.MinValue;
    /// <summary>Serialises interactive queries with processing (queries come from gateway threads).</summary>
    public Lock Gate { get; } = new();

    public StreamTask(Topology topology, int partition, string stateDirectory, IProducer<byte[]?, byte[]?> producer,
        StreamMetrics metrics, ILogger log)
    {
        _topology = topology;
        _producer = producer;
        _metrics = metrics;
        _log = log;
        Partition = partition;
        TaskId = $"{topology.SourceTopic}-{partition}";
        State = new TaskState(Path.Combine(stateDirectory, topology.ApplicationId, TaskId));
        _processor = topology.CreateProcessor();
    }

    public void Initialize(string bootstrapServers, TimeSpan timeout)
    {
        Restore(bootstrapServers, timeout);
        _processor.Init(this);
    }

    /// <summary>Brings local state up to the changelog's last complete run.</summary>
    private void Restore(string bootstrapServers, TimeSpan timeout)
    {
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = $"{ApplicationId}-restore",   // assign() only, never commits
            EnableAutoCommit = false,
            EnablePartitionEof = true,
        }).Build();
        var tp = new TopicPartition(_topology.ChangelogTopic, Partition);
        var marks = consumer.QueryWatermarkOffsets(tp, timeout);
        var from = Math.Max(State.ChangelogPosition, marks.Low.Value);
        if (State.ChangelogPosition > marks.High.Value)
            _log.LogWarning("task {Task}: local state is ahead of changelog {Topic} ({Local} > {High}); keeping local state",
                TaskId, tp.Topic, State.ChangelogPosition, marks.High.Value);
        if (from >= marks.High.Value) return;

        _log.LogInformation("task {Task}: restoring {Count} changelog records from {Topic}[{Partition}]@{From}",
            TaskId, marks.High.Value - from, tp.Topic, Partition, from);
        _metrics.OnRestoreStarted(marks.High.Value - from);
        consumer.Assign(new TopicPartitionOffset(tp, from));
        var run = new List<KeyValuePair<byte[], byte[]?>>();
        long restored = 0;
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r is null)
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"task {TaskId}: changelog restore stalled at {from + restored}");
                continue;
            }
            if (r.IsPartitionEOF) break;
            deadline = DateTime.UtcNow + timeout;
            var key = r.Message.Key ?? [];
            if (key.AsSpan().SequenceEqual(TaskState.NextOffsetKey))
            {
                State.ApplyRestored(run, TaskState.DecodeLong(r.Message.Value), r.Offset.Value + 1);
                run.Clear();
            }
            else
            {
                run.Add(new(key, r.Message.Value));
            }
            restored++;
            if (restored % 10_000 == 0) _metrics.OnRestored(10_000);
        }
        // Writes after the last marker belong to a commit that never finished: dropped, and their
        // inputs (at or after NextOffset) will be processed again.
        _metrics.OnRestored(restored % 10_000);
        _log.LogInformation("task {Task}: restored to input offset {Offset} ({Dropped} unfinished records ignored)",
            TaskId, State.NextOffset, run.Count);
    }

    /// <summary>Processes one input record unless state already reflects it.</summary>
    public void Process(ConsumeResult<byte[]?, byte[]?> r)
    {
        if (r.Offset.Value < State.NextOffset)
        {
            _metrics.OnSkipped();
            return;   // applied before a crash: state and offset were written together
        }
        StreamTimeUnixMs = Math.Max(StreamTimeUnixMs, r.Message.Timestamp.UnixTimestampMs);
        var outputsBefore = _outputs.Count;
        lock (Gate)
        {
            try
            {
                _processor.Process(r);
                State.AcceptRecord(r.Offset.Value);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                State.DiscardRecord(r.Offset.Value);
                _outputs.RemoveRange(outputsBefore, _outputs.Count - outputsBefore);
                DeadLetter(r, e);
            }
        }
        _uncommitted++;
        _metrics.OnProcessed();
    }

    private void DeadLetter(ConsumeResult<byte[]?, byte[]?> r, Exception e)
    {
        var headers = new Headers();
        if (r.Message.Headers is { } original) foreach (var h in original) headers.Add(h.Key, h.GetValueBytes());
        headers.Add(StreamHeaders.Error, Encoding.UTF8.GetBytes(e.Message));
        headers.Add(StreamHeaders.ErrorType, Encoding.UTF8.GetBytes(e is RecordDecodeException ? "deserialization" : e.GetType().Name));
        headers.Add(StreamHeaders.Processor, Encoding.UTF8.GetBytes(_processor.Name));
        headers.Add(StreamHeaders.SourceTopic, Encoding.UTF8.GetBytes(r.Topic));
        headers.Add(StreamHeaders.SourcePartition, Encoding.UTF8.GetBytes(r.Partition.Value.ToString()));
        headers.Add(StreamHeaders.SourceOffset, Encoding.UTF8.GetBytes(r.Offset.Value.ToString()));
        headers.Add(StreamHeaders.OutputId, Encoding.UTF8.GetBytes($"dlq:{r.Topic}:{r.Partition.Value}:{r.Offset.Value}"));
        _outputs.Add((_topology.DeadLetterTopic, new Message<byte[]?, byte[]?>
        {
            Key = r.Message.Key, Value = r.Message.Value, Timestamp = r.Message.Timestamp, Headers = headers,
        }));
        _metrics.OnDeadLettered();
        _log.LogWarning("task {Task}: record {Topic}[{Partition}]@{Offset} dead-lettered: {Error}",
            TaskId, r.Topic, r.Partition.Value, r.Offset.Value, e.Message);
    }

    public bool HasUncommitted => _uncommitted > 0;

    /// <summary>Runs the commit protocol; returns the input offset to commit to the group.</summary>
    public TopicPartitionOffset? Commit(TimeSpan timeout)
    {
        if (_uncommitted == 0) return null;
        Error? failure = null;
        long markerOffset = -1;
        void OnDelivery(DeliveryReport<byte[]?, byte[]?> report)
        {
            if (report.Error.IsError) failure ??= report.Error;
        }
        foreach (var (topic, message) in _outputs) _producer.Produce(topic, message, OnDelivery);
        var changelog = new TopicPartition(_topology.ChangelogTopic, Partition);
        foreach (var (k, v) in State.Dirty) _producer.Produce(changelog, new Message<byte[]?, byte[]?> { Key = k, Value = v }, OnDelivery);
        _producer.Produce(changelog, new Message<byte[]?, byte[]?> { Key = TaskState.NextOffsetKey, Value = TaskState.EncodeLong(State.NextOffset) },
            report =>
            {
                OnDelivery(report);
                if (!report.Error.IsError) markerOffset = report.Offset.Value;
            });
        if (_producer.Flush(timeout) > 0) throw new StreamCommitException($"task {TaskId}: outputs not acknowledged within {timeout}");
        if (failure is not null) throw new StreamCommitException($"task {TaskId}: produce failed: {failure.Reason}");
        lock (Gate) State.Commit(markerOffset + 1);
        _metrics.OnEmitted(_outputs.Count);
        _outputs.Clear();
        _uncommitted = 0;
        return new TopicPartitionOffset(_topology.SourceTopic, Partition, State.NextOffset);
    }

    public void MaybePunctuate(long wallClockUnixMs)
    {
        for (var i = 0; i < _schedules.Count; i++)
        {
            var (interval, type, next) = _schedules[i];
            var now = type == PunctuationType.WallClock ? wallClockUnixMs : StreamTimeUnixMs;
            if (now == long.MinValue) continue;
            if (next == 0) next = now + (long)interval.TotalMilliseconds;
            if (now >= next)
            {
                lock (Gate) _processor.Punctuate(type, now);
                next = now + (long)interval.TotalMilliseconds;
            }
            _schedules[i] = (interval, type, next);
        }
    }

    public KeyValueStore<TK, TV> GetStore<TK, TV>(string name, ISerde<TK> keySerde, ISerde<TV> valueSerde)
    {
        if (!_topology.StoreNames.Contains(name))
            throw new InvalidOperationException($"topology {ApplicationId} declares no store '{name}'");
        return new KeyValueStore<TK, TV>(State, name, keySerde, valueSerde);
    }

    public void Forward(string sinkTopic, Google.Protobuf.IMessage key, Google.Protobuf.IMessage value, long timestampUnixMs, string outputId)
    {
        if (!_topology.SinkTopics.Contains(sinkTopic))
            throw new InvalidOperationException($"topology {ApplicationId} declares no sink '{sinkTopic}'");
        _outputs.Add((sinkTopic, new Message<byte[]?, byte[]?>
        {
            Key = Google.Protobuf.MessageExtensions.ToByteArray(key), Value = Google.Protobuf.MessageExtensions.ToByteArray(value), Timestamp = new Timestamp(timestampUnixMs, TimestampType.CreateTime),
            Headers = new Headers { { StreamHeaders.OutputId, Encoding.UTF8.GetBytes(outputId) } },
        }));
    }

    public void Schedule(TimeSpan interval, PunctuationType type) => _schedules.Add((interval, type, 0));

    public void Dispose()
    {
        try { _processor.Close(); }
        finally { State.Dispose(); }
    }
}

public sealed class StreamCommitException(string message) : Exception(message);
