using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace StreamHealth.Runtime.Streams;

/// <summary>One consumer-group member running one topology: tasks are created on assignment and
/// closed on revocation (cooperative-sticky, so a rebalance moves only the partitions that change
/// owner). The loop survives broker outages, RebalanceInProgress and failing commits; it never drops
/// a record, because the input offset lives with the state and is only committed after it.</summary>
internal sealed class StreamThread
{
    private readonly Topology _topology;
    private readonly StreamHostOptions _options;
    private readonly StreamMetrics _metrics;
    private readonly ILogger _log;
    private readonly Dictionary<int, StreamTask> _tasks = [];
    private readonly Lock _tasksGate = new();
    private IProducer<byte[]?, byte[]?>? _producer;
    private IConsumer<byte[]?, byte[]?>? _consumer;

    public string Name { get; }
    /// <summary>What the loop is doing now (for diagnosing a stuck thread).</summary>
    public volatile string Phase = "starting";
    /// <summary>Unique per process: names the group member in broker logs and in ours.</summary>
    public string ClientId { get; }

    public StreamThread(Topology topology, int index, StreamHostOptions options, StreamMetrics metrics, ILoggerFactory logs)
    {
        _topology = topology;
        _options = options;
        _metrics = metrics;
        Name = $"{topology.ApplicationId}-{index}";
        ClientId = $"{options.HostId}-{Name}";
        _log = logs.CreateLogger($"StreamHealth.Streams.{ClientId}");
    }

    /// <summary>Snapshot of the tasks this thread owns now (for interactive queries).</summary>
    public StreamTask[] Tasks
    {
        get { lock (_tasksGate) return [.. _tasks.Values]; }
    }

    // The token of the running Run, for the revocation callback (it runs inside Consume, on this thread).
    private CancellationToken _stop;

    public void Run(CancellationToken stop)
    {
        _stop = stop;
        _producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig
        {
            BootstrapServers = _options.BootstrapServers,
            EnableIdempotence = true,     // no duplicates from producer retries; replays are handled by output ids
            LingerMs = 2,
            ClientId = ClientId,
        }).Build();
        _consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
            {
                BootstrapServers = _options.BootstrapServers,
                GroupId = _topology.ApplicationId,
                ClientId = ClientId,
                // Offsets are stored only after the state that reflects them is durable (StoreOffset), and the
                // client commits stored offsets in the background: a synchronous commit was a round trip in
                // every commit pause. Revocation and shutdown still commit synchronously.
                EnableAutoCommit = true,
                EnableAutoOffsetStore = false,
                AutoCommitIntervalMs = _options.CommitIntervalMs,
                AutoOffsetReset = AutoOffsetReset.Earliest,
                PartitionAssignmentStrategy = PartitionAssignmentStrategy.CooperativeSticky,
                SessionTimeoutMs = _options.SessionTimeoutMs,
                HeartbeatIntervalMs = Math.Max(100, _options.SessionTimeoutMs / 3),
                MaxPollIntervalMs = Math.Max(_options.SessionTimeoutMs, 30_000),
                FetchWaitMaxMs = _options.FetchWaitMaxMs,
                // librdkafka's own tracing (e.g. "cgrp,fetch") when diagnosing group behaviour.
                Debug = Environment.GetEnvironmentVariable("STREAMHEALTH_KAFKA_DEBUG"),
            })
            .SetLogHandler((_, m) => _log.LogInformation("{Thread}: librdkafka {Facility}: {Message}", Name, m.Facility, m.Message))
            .SetPartitionsAssignedHandler((_, partitions) => OnAssigned(partitions))
            .SetPartitionsRevokedHandler((_, partitions) => OnRevoked(partitions, commit: true))
            .SetPartitionsLostHandler((_, partitions) => OnRevoked(partitions, commit: false))
            .SetErrorHandler((_, e) => _log.LogWarning("{Thread}: Kafka error {Code}: {Reason}", Name, e.Code, e.Reason))
            .Build();
        try
        {
            _consumer.Subscribe(_topology.SourceTopic);
            var lastCommit = Environment.TickCount64;
            var lastPunctuate = lastCommit;
            while (!stop.IsCancellationRequested)
            {
                ConsumeResult<byte[]?, byte[]?>? r = null;
                try
                {
                    Phase = "consume";
                    r = _consumer.Consume(TimeSpan.FromMilliseconds(50));
                }
                catch (ConsumeException e)
                {
                    _log.LogWarning("{Thread}: consume failed ({Reason}); retrying", Name, e.Error.Reason);
                    Thread.Sleep(100);
                }
                if (r is { IsPartitionEOF: false })
                {
                    StreamTask? task;
                    lock (_tasksGate) _tasks.TryGetValue(r.Partition.Value, out task);
                    Phase = "process";
                    if (task is not null) task.Process(r);
                    else _log.LogWarning("{Thread}: record for unowned partition {Topic}[{Partition}]@{Offset} ignored; it will be read by its owner",
                        Name, r.Topic, r.Partition.Value, r.Offset.Value);
                }
                var now = Environment.TickCount64;
                if (now - lastPunctuate >= 50)
                {
                    Phase = "punctuate";
                    var wallClock = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                    foreach (var t in Tasks) t.Punctuate(PunctuationType.WallClock, wallClock);
                    lastPunctuate = now;
                }
                if (now - lastCommit >= _options.CommitIntervalMs)
                {
                    Phase = "commit";
                    CommitAll(stop);
                    Phase = "report";
                    ReportState();
                    lastCommit = now;
                }
            }
            CommitAll(stop);   // graceful shutdown: finish the in-flight cycle (one try per task: see CommitTask)
            _consumer.Close();
        }
        finally
        {
            lock (_tasksGate)
            {
                foreach (var t in _tasks.Values) t.Dispose();
                _tasks.Clear();
            }
            _consumer.Dispose();
            _producer.Dispose();
            _metrics.OnThreadState(Name, 0, 0);
            // A graceful stop hands the tasks back; a failure keeps their progress (and lag) so that a thread
            // that fails again on every restart is reported as stalled rather than vanishing from the report.
            if (stop.IsCancellationRequested) _metrics.RetainTasks(Name, owned: null);
        }
    }

    /// <summary>Lag from the consumer's cached high watermarks (no broker round trip). A task found caught up
    /// has advanced as far as it can: no input waits, so it is not stalled however long it has been idle.</summary>
    private void ReportState()
    {
        long lag = 0;
        var tasks = Tasks;
        var owned = new TaskProgress[tasks.Length];
        for (var i = 0; i < tasks.Length; i++)
        {
            var task = tasks[i];
            owned[i] = task.Progress;
            var marks = _consumer!.GetWatermarkOffsets(new TopicPartition(_topology.SourceTopic, task.Partition));
            if (marks.High.Value < 0) continue;   // not fetched yet: lag unknown, keep the last figure
            var taskLag = Math.Max(0, marks.High.Value - task.State.NextOffset);
            Interlocked.Exchange(ref task.Progress.Lag, taskLag);
            if (taskLag == 0) task.Progress.Advanced();
            lag += taskLag;
        }
        _metrics.OnThreadState(Name, lag, tasks.Length);
        _metrics.RetainTasks(Name, owned);
    }

    /// <summary>Commits every task with work, in phases so their acknowledgement waits overlap (one
    /// linger + round trip per phase instead of two per task). Any failure falls back to committing the
    /// remaining tasks one by one with retry and backoff.</summary>
    private void CommitAll(CancellationToken stop)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var due = new List<StreamTask>();
        foreach (var task in Tasks) if (task.HasUncommitted) due.Add(task);
        if (due.Count == 0) return;
        var timeout = TimeSpan.FromSeconds(10);
        try
        {
            foreach (var task in due) task.AwaitOutputs(timeout);
            foreach (var task in due) task.SendChangelogRun();
            foreach (var task in due)
            {
                var o = task.CompleteCommit(timeout);
                _groupCommitDue[o.Partition.Value] = o;
                _metrics.OnCommitted(System.Diagnostics.Stopwatch.GetTimestamp() - started);
            }
        }
        catch (StreamCommitException e)
        {
            _metrics.OnCommitFailed();
            _log.LogWarning("{Thread}: {Error}; committing task by task", Name, e.Message);
            foreach (var task in due)
                if (task.HasUncommitted && CommitTask(task, stop) is { } o) _groupCommitDue[o.Partition.Value] = o;
        }
        StoreGroupOffsets();
    }

    /// <summary>Runs a task's commit, retrying with backoff: a slow or failing broker stalls the
    /// thread (back-pressure on the input) rather than losing or skipping anything.</summary>
    /// <summary>Commits one task, retrying with backoff while it fails; null when the thread is asked to stop and the
    /// commit still fails: a host that cannot commit must still be able to stop (SIGTERM, a rebalance, a test), and what
    /// it leaves uncommitted is input the next owner processes again (at least once; the sinks deduplicate).</summary>
    private TopicPartitionOffset? CommitTask(StreamTask task, CancellationToken stop)
    {
        var backoff = TimeSpan.FromMilliseconds(100);
        while (true)
        {
            try
            {
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                var o = task.Commit(TimeSpan.FromSeconds(10));
                _metrics.OnCommitted(System.Diagnostics.Stopwatch.GetTimestamp() - started);
                return o;
            }
            catch (StreamCommitException e)
            {
                _metrics.OnCommitFailed();
                task.Progress.Failed(e.Message);
                _log.LogWarning("{Thread}: {Error}; retrying in {Backoff}", Name, e.Message, backoff);
                // The thread consumes nothing while it retries: keep the lag current so a commit that never
                // succeeds shows as a stalled task with input waiting.
                ReportState();
                if (stop.IsCancellationRequested || stop.WaitHandle.WaitOne(backoff))
                {
                    _log.LogWarning("{Thread}: stopping with task {Task} uncommitted ({Error}); its input since the last commit will be processed again",
                        Name, task.TaskId, e.Message);
                    return null;
                }
                backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, 5_000));
            }
        }
    }

    /// <summary>Group offsets whose state is durable but which the group has not accepted yet. Kept
    /// until a commit succeeds: correctness does not need them (the offset lives with the state), but
    /// lag monitors and the next owner's starting point do, even when no new input arrives.</summary>
    private readonly Dictionary<int, TopicPartitionOffset> _groupCommitDue = [];

    /// <summary>Hands the due offsets to the client's background committer.</summary>
    private void StoreGroupOffsets()
    {
        if (_groupCommitDue.Count == 0) return;
        List<int>? stored = null;
        foreach (var (partition, offset) in _groupCommitDue)
        {
            try
            {
                _consumer!.StoreOffset(offset);
                (stored ??= []).Add(partition);
            }
            catch (KafkaException e) when (e.Error.Code is ErrorCode.Local_State or ErrorCode.Local_UnknownPartition)
            {
                // Not (yet) in the assignment, e.g. stored from the assignment callback: kept while we own the task.
                lock (_tasksGate)
                    if (!_tasks.ContainsKey(partition)) (stored ??= []).Add(partition);
            }
        }
        if (stored is not null) foreach (var p in stored) _groupCommitDue.Remove(p);
    }

    private void CommitGroupOffsets()
    {
        if (_groupCommitDue.Count == 0) return;
        try
        {
            _consumer!.Commit(_groupCommitDue.Values);
            _groupCommitDue.Clear();
        }
        catch (KafkaException e) when (e.Error.Code is ErrorCode.RebalanceInProgress or ErrorCode.IllegalGeneration
                                           or ErrorCode.UnknownMemberId or ErrorCode.Local_State or ErrorCode.RequestTimedOut
                                           or ErrorCode.Local_TimedOut or ErrorCode.Local_Transport or ErrorCode.Local_AllBrokersDown)
        {
            // Safe to defer: the offset is already stored with the state; retried next cycle.
            _log.LogInformation("{Thread}: group commit deferred ({Reason}); state already holds the offset", Name, e.Error.Reason);
        }
    }

    private IEnumerable<TopicPartitionOffset> OnAssigned(List<TopicPartition> partitions)
    {
        var result = new List<TopicPartitionOffset>(partitions.Count);
        foreach (var tp in partitions)
        {
            var task = new StreamTask(_topology, tp.Partition.Value, _options.StateDirectory, _producer!, _metrics,
                _metrics.TrackTask(_topology.ApplicationId, $"{_topology.SourceTopic}-{tp.Partition.Value}", Name), _log);
            task.Initialize(_options.BootstrapServers, TimeSpan.FromSeconds(30));
            lock (_tasksGate) _tasks[tp.Partition.Value] = task;
            // Resume at the offset the state reflects, whatever the group last committed.
            result.Add(new TopicPartitionOffset(tp, task.State.NextOffset > 0 ? new Offset(task.State.NextOffset) : Offset.Unset));
            // The group's committed offset may trail the state (a commit deferred by the rebalance): catch it up.
            if (task.State.NextOffset > 0) _groupCommitDue[tp.Partition.Value] = new TopicPartitionOffset(tp, task.State.NextOffset);
            _log.LogInformation("{Thread}: task {Task} assigned at offset {Offset}", Name, task.TaskId, task.State.NextOffset);
        }
        return result;
    }

    private void OnRevoked(List<TopicPartitionOffset> partitions, bool commit)
    {
        foreach (var tp in partitions)
        {
            StreamTask? task;
            lock (_tasksGate)
            {
                if (!_tasks.Remove(tp.Partition.Value, out task)) continue;
            }
            try
            {
                if (commit && task.HasUncommitted && CommitTask(task, _stop) is { } o) _groupCommitDue[o.Partition.Value] = o;
            }
            finally
            {
                task.Dispose();
                _metrics.ForgetTask(task.ApplicationId, task.TaskId);
            }
            _log.LogInformation("{Thread}: task {Task} {How}", Name, task.TaskId, commit ? "revoked" : "lost");
        }
        if (commit) CommitGroupOffsets();
        foreach (var tp in partitions) _groupCommitDue.Remove(tp.Partition.Value);   // the next owner commits them
    }
}
