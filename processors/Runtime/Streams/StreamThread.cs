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

    public StreamThread(Topology topology, int index, StreamHostOptions options, StreamMetrics metrics, ILoggerFactory logs)
    {
        _topology = topology;
        _options = options;
        _metrics = metrics;
        Name = $"{topology.ApplicationId}-{index}";
        _log = logs.CreateLogger($"StreamHealth.Streams.{Name}");
    }

    /// <summary>Snapshot of the tasks this thread owns now (for interactive queries).</summary>
    public StreamTask[] Tasks
    {
        get { lock (_tasksGate) return [.. _tasks.Values]; }
    }

    public void Run(CancellationToken stop)
    {
        _producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig
        {
            BootstrapServers = _options.BootstrapServers,
            EnableIdempotence = true,     // no duplicates from producer retries; replays are handled by output ids
            LingerMs = 2,
            ClientId = Name,
        }).Build();
        _consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
            {
                BootstrapServers = _options.BootstrapServers,
                GroupId = _topology.ApplicationId,
                ClientId = Name,
                EnableAutoCommit = false,
                AutoOffsetReset = AutoOffsetReset.Earliest,
                PartitionAssignmentStrategy = PartitionAssignmentStrategy.CooperativeSticky,
                SessionTimeoutMs = _options.SessionTimeoutMs,
                HeartbeatIntervalMs = Math.Max(100, _options.SessionTimeoutMs / 3),
                MaxPollIntervalMs = Math.Max(_options.SessionTimeoutMs, 30_000),
            })
            .SetPartitionsAssignedHandler((_, partitions) => OnAssigned(partitions))
            .SetPartitionsRevokedHandler((_, partitions) => OnRevoked(partitions, commit: true))
            .SetPartitionsLostHandler((_, partitions) => OnRevoked(partitions, commit: false))
            .SetErrorHandler((_, e) => _log.LogWarning("{Thread}: Kafka error {Code}: {Reason}", Name, e.Code, e.Reason))
            .Build();
        try
        {
            _consumer.Subscribe(_topology.SourceTopic);
            var lastCommit = Environment.TickCount64;
            while (!stop.IsCancellationRequested)
            {
                ConsumeResult<byte[]?, byte[]?>? r = null;
                try
                {
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
                    task?.Process(r);
                }
                var now = Environment.TickCount64;
                if (now - lastCommit >= _options.CommitIntervalMs)
                {
                    CommitAll();
                    foreach (var t in Tasks) t.MaybePunctuate(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                    lastCommit = now;
                }
            }
            CommitAll();   // graceful shutdown: finish the in-flight cycle
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
        }
    }

    private void CommitAll()
    {
        List<TopicPartitionOffset>? offsets = null;
        foreach (var task in Tasks)
        {
            if (!task.HasUncommitted) continue;
            if (CommitTask(task) is { } o) (offsets ??= []).Add(o);
        }
        if (offsets is not null) CommitOffsets(offsets);
    }

    /// <summary>Runs a task's commit, retrying with backoff: a slow or failing broker stalls the
    /// thread (back-pressure on the input) rather than losing or skipping anything.</summary>
    private TopicPartitionOffset? CommitTask(StreamTask task)
    {
        var backoff = TimeSpan.FromMilliseconds(100);
        while (true)
        {
            try
            {
                var o = task.Commit(TimeSpan.FromSeconds(10));
                _metrics.OnCommitted();
                return o;
            }
            catch (StreamCommitException e)
            {
                _metrics.OnCommitFailed();
                _log.LogWarning("{Thread}: {Error}; retrying in {Backoff}", Name, e.Message, backoff);
                Thread.Sleep(backoff);
                backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, 5_000));
            }
        }
    }

    private void CommitOffsets(List<TopicPartitionOffset> offsets)
    {
        try
        {
            _consumer!.Commit(offsets);
        }
        catch (KafkaException e) when (e.Error.Code is ErrorCode.RebalanceInProgress or ErrorCode.IllegalGeneration
                                           or ErrorCode.UnknownMemberId or ErrorCode.Local_State or ErrorCode.RequestTimedOut
                                           or ErrorCode.Local_TimedOut or ErrorCode.Local_Transport or ErrorCode.Local_AllBrokersDown)
        {
            // Safe to skip: the offset is already stored with the state; the next owner skips what it reflects.
            _log.LogInformation("{Thread}: group commit skipped ({Reason}); state already holds the offset", Name, e.Error.Reason);
        }
    }

    private IEnumerable<TopicPartitionOffset> OnAssigned(List<TopicPartition> partitions)
    {
        var result = new List<TopicPartitionOffset>(partitions.Count);
        foreach (var tp in partitions)
        {
            var task = new StreamTask(_topology, tp.Partition.Value, _options.StateDirectory, _producer!, _metrics, _log);
            task.Initialize(_options.BootstrapServers, TimeSpan.FromSeconds(30));
            lock (_tasksGate) _tasks[tp.Partition.Value] = task;
            // Resume at the offset the state reflects, whatever the group last committed.
            result.Add(new TopicPartitionOffset(tp, task.State.NextOffset > 0 ? new Offset(task.State.NextOffset) : Offset.Unset));
            _log.LogInformation("{Thread}: task {Task} assigned at offset {Offset}", Name, task.TaskId, task.State.NextOffset);
        }
        return result;
    }

    private void OnRevoked(List<TopicPartitionOffset> partitions, bool commit)
    {
        var offsets = new List<TopicPartitionOffset>();
        foreach (var tp in partitions)
        {
            StreamTask? task;
            lock (_tasksGate)
            {
                if (!_tasks.Remove(tp.Partition.Value, out task)) continue;
            }
            try
            {
                if (commit && task.HasUncommitted && CommitTask(task) is { } o) offsets.Add(o);
            }
            finally
            {
                task.Dispose();
            }
            _log.LogInformation("{Thread}: task {Task} {How}", Name, task.TaskId, commit ? "revoked" : "lost");
        }
        if (offsets.Count > 0) CommitOffsets(offsets);
    }
}
