using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace StreamHealth.Runtime.Streams;

/// <summary>One input partition of one topology: its processor instance, its state, its outputs.
/// Commit protocol (at-least-once delivery, exactly-once state; no Kafka transactions needed):
/// 0. outputs are produced as soon as the record that made them succeeds (low latency);
/// 1. at commit, wait until every output is acknowledged (re-sending failed ones), then produce the
///    changelog run — a begin marker, the store writes, an end marker holding the next input offset —
///    and wait for it;
/// 2. write the store writes + next input offset + changelog position in one RocksDB batch;
/// 3. commit the input offset to the group.
/// A crash after 0 or 1 re-produces outputs on replay (sinks drop them by output id); restore applies the
/// changelog only in whole begin…end runs, and the task skips inputs below the stored offset.</summary>
internal sealed class StreamTask : IProcessorContext, IDisposable
{
    private readonly Topology _topology;
    private readonly ITaskProcessor _processor;
    private readonly IProducer<byte[]?, byte[]?> _producer;
    private readonly StreamMetrics _metrics;
    private readonly TaskProgress _progress;
    private readonly ILogger _log;
    /// <summary>Outputs of the record being processed: sent only if it succeeds.</summary>
    private readonly List<(string Topic, Message<byte[]?, byte[]?> Message)> _pending = [];
    // Headers of the input record being processed (null in punctuation): Forward copies its request id from here.
    private Headers? _input;
    /// <summary>Outputs whose delivery failed (filled by the producer's delivery thread); re-sent at commit.</summary>
    private readonly ConcurrentQueue<(string Topic, Message<byte[]?, byte[]?> Message, Error Error)> _failed = new();
    private readonly Action<DeliveryReport<byte[]?, byte[]?>> _onOutputDelivered;
    private readonly Action<DeliveryReport<byte[]?, byte[]?>> _onRunDelivered;
    private readonly Action<DeliveryReport<byte[]?, byte[]?>> _onMarkerDelivered;
    private readonly List<PunctuationSchedule> _schedules = [];
    private int _uncommitted;
    private int _emittedSinceCommit;

    public TaskState State { get; }
    public string ApplicationId => _topology.ApplicationId;
    public string TaskId { get; }
    public int Partition { get; }
    public long StreamTimeUnixMs { get; private set; } = long.MinValue;
    /// <summary>Serialises interactive queries with processing (queries come from gateway threads).</summary>
    public Lock Gate { get; } = new();

    public StreamTask(Topology topology, int partition, string stateDirectory, IProducer<byte[]?, byte[]?> producer,
        StreamMetrics metrics, TaskProgress progress, ILogger log)
    {
        _topology = topology;
        _producer = producer;
        _metrics = metrics;
        _progress = progress;
        _log = log;
        Partition = partition;
        TaskId = $"{topology.SourceTopic}-{partition}";
        State = new TaskState(Path.Combine(stateDirectory, topology.ApplicationId, TaskId));
        _processor = topology.CreateProcessor();
        _onRunDelivered = OnRunDelivered;
        _onMarkerDelivered = OnMarkerDelivered;
        _onOutputDelivered = report =>
        {
            if (report.Error.IsError) _failed.Enqueue((report.Topic, report.Message, report.Error));
            Landed();
        };
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
        if (State.ChangelogPosition > marks.High.Value)
        {
            // The changelog is shorter than what this state has seen: it is not the changelog this state was
            // built from (a recreated topic or cluster). Its offsets would make the task skip new input; start over.
            _log.LogWarning("task {Task}: local state is ahead of changelog {Topic} ({Local} > {High}): wiping it and restoring from the changelog",
                TaskId, tp.Topic, State.ChangelogPosition, marks.High.Value);
            State.Wipe();
        }
        var from = Math.Max(State.ChangelogPosition, marks.Low.Value);
        if (from >= marks.High.Value) return;

        var total = marks.High.Value - from;
        _log.LogInformation("task {Task}: restoring {Count} changelog records from {Topic}[{Partition}]@{From}",
            TaskId, total, tp.Topic, Partition, from);
        _metrics.OnRestoreStarted(total);
        var started = Stopwatch.GetTimestamp();
        consumer.Assign(new TopicPartitionOffset(tp, from));
        var run = new List<KeyValuePair<byte[], byte[]?>>();
        long restored = 0, runs = 0;
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
            if (key.AsSpan().SequenceEqual(TaskState.RunBeginKey))
            {
                run.Clear();   // whatever preceded it belongs to a commit that never finished
            }
            else if (key.AsSpan().SequenceEqual(TaskState.NextOffsetKey))
            {
                State.ApplyRestored(run, TaskState.DecodeLong(r.Message.Value), r.Offset.Value + 1);
                run.Clear();
                runs++;
            }
            else
            {
                run.Add(new(key, r.Message.Value));
            }
            restored++;
            if (restored % 10_000 == 0)
            {
                _metrics.OnRestored(10_000);
                _log.LogInformation("task {Task}: restore {Done}/{Total}", TaskId, restored, total);
            }
        }
        // Writes after the last end marker belong to a commit that never finished: dropped, and their
        // inputs (at or after NextOffset) will be processed again.
        _metrics.OnRestored(restored % 10_000);
        _log.LogInformation("task {Task}: restored {Runs} commits ({Records} records, {Ms:F0} ms) to input offset {Offset}; {Dropped} unfinished records ignored",
            TaskId, runs, restored, Stopwatch.GetElapsedTime(started).TotalMilliseconds, State.NextOffset, run.Count);
    }

    /// <summary>Processes one input record unless state already reflects it.</summary>
    public void Process(ConsumeResult<byte[]?, byte[]?> r)
    {
        if (r.Offset.Value < State.NextOffset)
        {
            _metrics.OnSkipped();
            _progress.Advanced();
            return;   // applied before a crash: state and offset were written together
        }
        var started = Stopwatch.GetTimestamp();
        var timestamp = r.Message.Timestamp.UnixTimestampMs;
        if (timestamp > StreamTimeUnixMs) StreamTimeUnixMs = timestamp;
        lock (Gate)
        {
            _input = r.Message.Headers;
            try
            {
                _processor.Process(r);
                State.AcceptRecord(r.Offset.Value);
                SendPending();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                State.DiscardRecord(r.Offset.Value);
                _pending.Clear();
                DeadLetter(r, e);
            }
            finally
            {
                _input = null;
            }
        }
        _uncommitted++;
        _metrics.OnProcessed(Stopwatch.GetTimestamp() - started);
        _progress.Advanced();
        if (_schedules.Count > 0) Punctuate(PunctuationType.StreamTime, StreamTimeUnixMs);
    }

    private void SendPending()
    {
        foreach (var (topic, message) in _pending) Send(topic, message);
        _emittedSinceCommit += _pending.Count;
        _pending.Clear();
    }

    /// <summary>Hands one output to the producer. A full producer queue means the broker is slower than
    /// we are: wait for it (back-pressure on the input) instead of failing the record.</summary>
    private void Send(string topic, Message<byte[]?, byte[]?> message)
    {
        while (true)
        {
            try
            {
                Launched();
                try
                {
                    _producer.Produce(topic, message, _onOutputDelivered);
                }
                catch
                {
                    Landed();
                    throw;
                }
                return;
            }
            catch (ProduceException<byte[]?, byte[]?> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                _metrics.OnProducerQueueFull();
                Thread.Sleep(5);   // the producer's delivery thread drains the queue meanwhile
            }
        }
    }

    private void DeadLetter(ConsumeResult<byte[]?, byte[]?> r, Exception e)
    {
        var headers = StreamHeaders.DeadLetter(r, e.Message, e is RecordDecodeException ? StreamHeaders.DeserializationError : e.GetType().Name,
            _processor.Name);
        Send(_topology.DeadLetterTopic, new Message<byte[]?, byte[]?>
        {
            Key = r.Message.Key, Value = r.Message.Value, Timestamp = r.Message.Timestamp, Headers = headers,
        });
        _emittedSinceCommit++;
        _metrics.OnDeadLettered();
        _log.LogWarning("task {Task}: record {Topic}[{Partition}]@{Offset} dead-lettered: {Error}",
            TaskId, r.Topic, r.Partition.Value, r.Offset.Value, e.Message);
    }

    public bool HasUncommitted => _uncommitted > 0;

    /// <summary>When this task last advanced and its last error (for stall reports).</summary>
    public TaskProgress Progress => _progress;

    /// <summary>Runs the commit protocol; returns the input offset to commit to the group. Safe to call
    /// again after it throws: a repeated changelog run is the same writes again, and a run cut short is
    /// discarded by the next begin marker. A thread commits several tasks in phases instead
    /// (<see cref="AwaitOutputs"/> for all, <see cref="SendChangelogRun"/> for all, <see cref="CompleteCommit"/>
    /// for all) so the tasks' acknowledgement waits overlap rather than add up.</summary>
    public TopicPartitionOffset? Commit(TimeSpan timeout)
    {
        if (_uncommitted == 0) return null;
        AwaitOutputs(timeout);
        SendChangelogRun();
        return CompleteCommit(timeout);
    }

    /// <summary>Phase 1: every output so far acknowledged (failed ones re-sent, then this throws). Outputs
    /// must land before the changelog run that records their input as processed.</summary>
    public void AwaitOutputs(TimeSpan timeout)
    {
        if (!WaitLanded(timeout)) throw new StreamCommitException($"task {TaskId}: outputs not acknowledged within {timeout}");
        if (_failed.IsEmpty) return;
        var n = 0;
        Error? first = null;
        while (_failed.TryDequeue(out var f))
        {
            first ??= f.Error;
            Send(f.Topic, f.Message);
            n++;
        }
        throw new StreamCommitException($"task {TaskId}: {n} output(s) failed delivery ({first!.Reason}); re-sent");
    }

    // The changelog run in flight: set by delivery handlers (another thread), read after WaitLanded.
    private Error? _runFailure;
    private long _runMarkerOffset = -1;

    /// <summary>Phase 2: produces the changelog run (begin marker, the dirty writes, end marker with the next
    /// input offset) without waiting for it.</summary>
    public void SendChangelogRun()
    {
        // Write-behind state joins this commit; a flush that fails fails the commit, which is retried.
        lock (Gate)
        {
            try
            {
                _processor.Flush();
                State.AcceptPunctuation();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                State.DiscardPunctuation();
                throw new StreamCommitException($"task {TaskId}: processor flush failed: {e.Message}");
            }
        }
        _runFailure = null;
        Volatile.Write(ref _runMarkerOffset, -1);
        var changelog = new TopicPartition(_topology.ChangelogTopic, Partition);
        Launched();
        _producer.Produce(changelog, new Message<byte[]?, byte[]?> { Key = TaskState.RunBeginKey, Value = null }, _onRunDelivered);
        foreach (var (k, v) in State.Dirty)
        {
            Launched();
            _producer.Produce(changelog, new Message<byte[]?, byte[]?> { Key = k, Value = v }, _onRunDelivered);
        }
        Launched();
        _producer.Produce(changelog, new Message<byte[]?, byte[]?> { Key = TaskState.NextOffsetKey, Value = TaskState.EncodeLong(State.NextOffset) },
            _onMarkerDelivered);
    }

    /// <summary>Phase 3: waits for the run, then writes state + input offset + changelog position in one
    /// RocksDB batch; returns the offset for the group.</summary>
    public TopicPartitionOffset CompleteCommit(TimeSpan timeout)
    {
        if (!WaitLanded(timeout)) throw new StreamCommitException($"task {TaskId}: changelog not acknowledged within {timeout}");
        if (_runFailure is { } failure) throw new StreamCommitException($"task {TaskId}: changelog produce failed: {failure.Reason}");
        var marker = Volatile.Read(ref _runMarkerOffset);
        if (marker < 0) throw new StreamCommitException($"task {TaskId}: changelog end marker has no offset");
        lock (Gate) State.Commit(marker + 1);
        _metrics.OnEmitted(_emittedSinceCommit);
        _emittedSinceCommit = 0;
        _uncommitted = 0;
        _progress.Advanced();
        return new TopicPartitionOffset(_topology.SourceTopic, Partition, State.NextOffset);
    }

    private void OnRunDelivered(DeliveryReport<byte[]?, byte[]?> report)
    {
        if (report.Error.IsError) _runFailure ??= report.Error;
        Landed();
    }

    private void OnMarkerDelivered(DeliveryReport<byte[]?, byte[]?> report)
    {
        // Before Landed(): that releases the committing thread, which then reads the marker offset.
        if (!report.Error.IsError) Volatile.Write(ref _runMarkerOffset, report.Offset.Value);
        OnRunDelivered(report);
    }

    // Records of this task handed to the producer and not yet acknowledged. Waiting on this count rather
    // than Producer.Flush: flush covers every task of the thread and, measured here, cost 10-12 ms per
    // call even with nothing to send, which put a 25 ms pause into every commit.
    private readonly object _flightGate = new();   // a Monitor, for Wait/PulseAll
    private int _inFlight;

    private void Launched() => Interlocked.Increment(ref _inFlight);

    private void Landed()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0)
            lock (_flightGate) Monitor.PulseAll(_flightGate);
    }

    /// <summary>Waits until every record this task handed to the producer is acknowledged. Waits in 1 ms
    /// slices so a pulse that lands between the check and the wait costs at most a millisecond.</summary>
    private bool WaitLanded(TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (Volatile.Read(ref _inFlight) > 0)
        {
            if (Environment.TickCount64 > deadline) return false;
            lock (_flightGate)
                if (Volatile.Read(ref _inFlight) > 0) Monitor.Wait(_flightGate, 1);
        }
        return true;
    }

    /// <summary>Fires the schedules of <paramref name="type"/> that are due at <paramref name="nowUnixMs"/>
    /// (stream time after each record; wall-clock time once per poll cycle). A schedule that missed several
    /// intervals fires once, as in Kafka Streams.</summary>
    public void Punctuate(PunctuationType type, long nowUnixMs)
    {
        if (nowUnixMs == long.MinValue) return;
        for (var i = 0; i < _schedules.Count; i++)
        {
            var s = _schedules[i];
            if (s.Type != type) continue;
            if (s.NextUnixMs == long.MinValue)
            {
                _schedules[i] = s with { NextUnixMs = nowUnixMs + s.IntervalMs };
                continue;
            }
            if (nowUnixMs < s.NextUnixMs) continue;
            lock (Gate)
            {
                try
                {
                    _processor.Punctuate(type, nowUnixMs);
                    State.AcceptPunctuation();
                    SendPending();
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // Nothing to dead-letter: a punctuation has no input. Its writes are dropped and it runs again next interval.
                    State.DiscardPunctuation();
                    _pending.Clear();
                    _log.LogError(e, "task {Task}: {Type} punctuation failed", TaskId, type);
                }
            }
            _uncommitted++;
            _schedules[i] = s with { NextUnixMs = nowUnixMs + s.IntervalMs };
        }
    }

    public KeyValueStore<TK, TV> GetStore<TK, TV>(string name, ISerde<TK> keySerde, ISerde<TV> valueSerde)
    {
        if (!_topology.StoreNames.Contains(name))
            throw new InvalidOperationException($"topology {ApplicationId} declares no store '{name}'");
        return new KeyValueStore<TK, TV>(State, name, keySerde, valueSerde);
    }

    public void Forward(string sinkTopic, Google.Protobuf.IMessage key, Google.Protobuf.IMessage value, long timestampUnixMs, string outputId) =>
        Forward(sinkTopic, Google.Protobuf.MessageExtensions.ToByteArray(key), Google.Protobuf.MessageExtensions.ToByteArray(value), timestampUnixMs, outputId);

    public void Forward(string sinkTopic, byte[] key, byte[] value, long timestampUnixMs, string outputId)
    {
        if (!_topology.SinkTopics.Contains(sinkTopic))
            throw new InvalidOperationException($"topology {ApplicationId} declares no sink '{sinkTopic}'");
        var headers = new Headers { { StreamHeaders.OutputId, Encoding.UTF8.GetBytes(outputId) } };
        if (_input is not null && _input.TryGetLastBytes(StreamHeaders.RequestId, out var requestId)) headers.Add(StreamHeaders.RequestId, requestId);
        _pending.Add((sinkTopic, new Message<byte[]?, byte[]?>
        {
            Key = key, Value = value, Timestamp = new Timestamp(timestampUnixMs, TimestampType.CreateTime), Headers = headers,
        }));
    }

    public void Schedule(TimeSpan interval, PunctuationType type)
    {
        if (interval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(interval), interval, "punctuation interval must be positive");
        _schedules.Add(new PunctuationSchedule(type, (long)interval.TotalMilliseconds, long.MinValue));
    }

    public void Dispose()
    {
        try { _processor.Close(); }
        finally { State.Dispose(); }
    }

    private readonly record struct PunctuationSchedule(PunctuationType Type, long IntervalMs, long NextUnixMs);
}

public sealed class StreamCommitException(string message) : Exception(message);
