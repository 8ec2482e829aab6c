using System.Diagnostics;
using System.Text;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Runtime.Tools;

/// <summary>A replay the operator asked for that cannot be done as asked (an empty or impossible range, an active group,
/// an unknown topic on the broker): one line, exit code 2, nothing changed.</summary>
public sealed class ReplayException(string message) : Exception(message);

/// <summary>Offsets [<see cref="From"/>, <see cref="To"/>) of one partition.</summary>
public readonly record struct PartitionRange(int Partition, long From, long To)
{
    public long Count => Math.Max(0, To - From);
}

/// <summary>Where a replay starts and ends: an offset (the same on every partition, as kafka-consumer-groups'
/// --to-offset) or a time (each partition's first record at or after it); no end means each partition's end now.</summary>
public sealed record ReplaySpec(long? FromOffset = null, DateTimeOffset? FromTime = null, long? ToOffset = null, DateTimeOffset? ToTime = null)
{
    public void Validate()
    {
        if ((FromOffset is null) == (FromTime is null)) throw new ReplayException("give exactly one of --from-offset N and --from-time T");
        if (ToOffset is not null && ToTime is not null) throw new ReplayException("give at most one of --to-offset M and --to-time T");
        if (FromOffset < 0) throw new ReplayException($"--from-offset {FromOffset} is negative");
        if (ToOffset is { } to && FromOffset is { } from && to <= from) throw new ReplayException($"--to-offset {to} is not after --from-offset {from}");
        if (ToTime is { } toTime && FromTime is { } fromTime && toTime <= fromTime)
            throw new ReplayException($"--to-time {toTime:O} is not after --from-time {fromTime:O}");
    }
}

/// <summary>A topic's records to replay, per partition, resolved against the broker at one moment.</summary>
public sealed record ReplayRange(string Topic, IReadOnlyList<PartitionRange> Partitions)
{
    public long Total => Partitions.Sum(p => p.Count);

    /// <summary>"p0 12..40 (28)" per partition: what a dry run prints.</summary>
    public IEnumerable<string> Describe() =>
        Partitions.Select(p => $"{Topic}[{p.Partition}] from {p.From} to {p.To} ({p.Count} record(s))");
}

/// <summary>Progress of a running replay: records done of the total.</summary>
public delegate void ReplayProgress(long done, long total);

/// <summary>The operations behind `streamhealth replay`, `reset-sink`, `lag` and `dlq replay`, in the shape of Kafka's
/// kafka-consumer-groups --reset-offsets and kafka-streams-application-reset: resolve a range of a topic (by offset, or by
/// time, scanning where the broker cannot look offsets up by time), then copy it to another topic or point a consumer
/// group at its start so the group's consumers reprocess it. Sinks are idempotent by their records' ids, so a range
/// replayed twice stores nothing twice.</summary>
public static class TopicReplay
{
    private static readonly TimeSpan BrokerTimeout = TimeSpan.FromSeconds(10);

    public static IReadOnlyList<int> PartitionsOf(string bootstrap, string topic)
    {
        // Asked through a consumer, which never auto-creates the topic it asks about (a producer-side request would, on a
        // broker with auto-creation on: a typo must not make a topic).
        using var consumer = ReadOnlyConsumer(bootstrap);
        using var admin = new DependentAdminClientBuilder(consumer.Handle).Build();
        var metadata = admin.GetMetadata(topic, BrokerTimeout);
        var t = metadata.Topics.SingleOrDefault(x => x.Topic == topic);
        if (t is null || t.Error.IsError || t.Partitions.Count == 0)
            throw new ReplayException($"topic '{topic}' is not on the broker at {bootstrap}: {(t is null ? "no metadata" : t.Error.IsError ? t.Error.Reason : "no partitions")}");
        return t.Partitions.Select(p => p.PartitionId).Order().ToList();
    }

    /// <summary>The range <paramref name="spec"/> names on <paramref name="topic"/> now. Refuses a range with nothing in it
    /// (e.g. an offset past every partition's end), naming the partitions' ends.</summary>
    public static ReplayRange Resolve(string bootstrap, string topic, ReplaySpec spec, BrokerCapabilities capabilities)
    {
        spec.Validate();
        var partitions = PartitionsOf(bootstrap, topic);
        using var consumer = ReadOnlyConsumer(bootstrap);
        var marks = partitions.ToDictionary(p => p, p => consumer.QueryWatermarkOffsets(new TopicPartition(topic, p), BrokerTimeout));
        var from = new Dictionary<int, long>();
        var to = new Dictionary<int, long>();
        foreach (var p in partitions)
        {
            var (low, high) = (marks[p].Low.Value, marks[p].High.Value);
            from[p] = spec.FromOffset is { } f ? Math.Clamp(f, low, high) : low;
            to[p] = spec.ToOffset is { } t ? Math.Clamp(t, low, high) : high;
        }
        if (spec.FromTime is not null || spec.ToTime is not null)
        {
            var times = new List<DateTimeOffset>();
            if (spec.FromTime is { } ft) times.Add(ft);
            if (spec.ToTime is { } tt) times.Add(tt);
            var found = FirstOffsetsAtOrAfter(consumer, topic, partitions, marks, times, capabilities);
            var i = 0;
            if (spec.FromTime is not null) { foreach (var p in partitions) from[p] = found[i][p]; i++; }
            if (spec.ToTime is not null) foreach (var p in partitions) to[p] = Math.Min(to[p], found[i][p]);
        }
        var range = new ReplayRange(topic, partitions.Select(p => new PartitionRange(p, from[p], Math.Max(from[p], to[p]))).ToList());
        if (range.Total == 0)
            throw new ReplayException($"nothing to replay: the range is empty on every partition of {topic} (offsets now: " +
                string.Join(", ", partitions.Select(p => $"[{p}] {marks[p].Low.Value}..{marks[p].High.Value}")) + ")");
        return range;
    }

    /// <summary>Per time, per partition: the first offset whose timestamp is at or after it (the partition's end when none
    /// is). Real Kafka answers with its time index; the embedded broker answers the end offset, so there the
    /// partitions are scanned once for every time together.</summary>
    private static List<Dictionary<int, long>> FirstOffsetsAtOrAfter(IConsumer<byte[]?, byte[]?> consumer, string topic, IReadOnlyList<int> partitions,
        Dictionary<int, WatermarkOffsets> marks, List<DateTimeOffset> times, BrokerCapabilities capabilities)
    {
        var result = times.Select(_ => partitions.ToDictionary(p => p, p => marks[p].High.Value)).ToList();
        if (capabilities.TimestampLookup)
        {
            for (var i = 0; i < times.Count; i++)
            {
                var lookup = partitions.Select(p => new TopicPartitionTimestamp(topic, p, new Timestamp(times[i].UtcDateTime))).ToList();
                foreach (var o in consumer.OffsetsForTimes(lookup, BrokerTimeout))
                    if (o.Offset != Offset.End) result[i][o.Partition.Value] = o.Offset.Value;
            }
            return result;
        }
        var timesMs = times.Select(t => t.ToUnixTimeMilliseconds()).ToArray();
        var open = new Dictionary<int, int>();   // partition → times still looked for there
        var start = new List<TopicPartitionOffset>();
        foreach (var p in partitions)
            if (marks[p].High.Value > marks[p].Low.Value)
            {
                start.Add(new TopicPartitionOffset(topic, p, marks[p].Low));
                open[p] = times.Count;
            }
        if (start.Count == 0) return result;
        consumer.Assign(start);
        var found = times.Select(_ => new HashSet<int>()).ToList();
        while (open.Count > 0)
        {
            var r = consumer.Consume(BrokerTimeout) ?? throw new ReplayException($"scanning {topic} for the times: no record within {BrokerTimeout.TotalSeconds} s");
            var p = r.Partition.Value;
            if (!open.ContainsKey(p)) continue;
            for (var i = 0; i < timesMs.Length; i++)
                if (!found[i].Contains(p) && r.Message.Timestamp.UnixTimestampMs >= timesMs[i])
                {
                    found[i].Add(p);
                    result[i][p] = r.Offset.Value;
                    open[p]--;
                }
            if (open[p] == 0 || r.Offset.Value + 1 >= marks[p].High.Value)
            {
                open.Remove(p);
                consumer.IncrementalUnassign([r.TopicPartition]);
            }
        }
        consumer.Unassign();
        return result;
    }

    /// <summary>Copies the range's records (key, value, headers, timestamp) onto <paramref name="target"/> at up to
    /// <paramref name="recordsPerSecond"/> (0: as fast as the broker takes them), into the same partition number when the
    /// target has as many partitions, else by key. Returns the records copied, all acknowledged.</summary>
    public static long CopyToTopic(string bootstrap, ReplayRange range, string target, double recordsPerSecond, ReplayProgress? progress,
        CancellationToken ct)
    {
        var targetPartitions = PartitionsOf(bootstrap, target).Count;
        var samePartition = targetPartitions == PartitionsOf(bootstrap, range.Topic).Count;
        using var consumer = ReadOnlyConsumer(bootstrap);
        using var producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig
        {
            BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5, Acks = Acks.All,
            // Keyed records land where the topology's partitioner puts them (murmur2, as the Java clients and Streamiz).
            Partitioner = Partitioner.Murmur2Random,
        }).Build();
        var remaining = range.Partitions.Where(p => p.Count > 0).ToDictionary(p => p.Partition, p => p.To);
        consumer.Assign(range.Partitions.Where(p => p.Count > 0).Select(p => new TopicPartitionOffset(range.Topic, p.Partition, p.From)));
        long copied = 0, failed = 0;
        string? firstError = null;
        var clock = Stopwatch.StartNew();
        var lastReport = 0L;
        void Delivered(DeliveryReport<byte[]?, byte[]?> d)
        {
            if (d.Error.IsError)
            {
                Interlocked.Increment(ref failed);
                Interlocked.CompareExchange(ref firstError, d.Error.Reason, null);
            }
        }
        while (remaining.Count > 0 && !ct.IsCancellationRequested)
        {
            var r = consumer.Consume(BrokerTimeout) ?? throw new ReplayException($"reading {range.Topic}: no record within {BrokerTimeout.TotalSeconds} s");
            var p = r.Partition.Value;
            if (!remaining.TryGetValue(p, out var end)) continue;
            if (r.Offset.Value < end)
            {
                var message = new Message<byte[]?, byte[]?> { Key = r.Message.Key, Value = r.Message.Value, Headers = r.Message.Headers, Timestamp = r.Message.Timestamp };
                var to = samePartition ? new TopicPartition(target, p) : new TopicPartition(target, Partition.Any);
                while (true)
                {
                    try { producer.Produce(to, message, Delivered); break; }
                    catch (ProduceException<byte[]?, byte[]?> e) when (e.Error.Code == ErrorCode.Local_QueueFull) { producer.Poll(TimeSpan.FromMilliseconds(50)); }
                }
                copied++;
                Pace(copied, recordsPerSecond, clock);
            }
            if (r.Offset.Value + 1 >= end)
            {
                remaining.Remove(p);
                consumer.IncrementalUnassign([r.TopicPartition]);
            }
            if (progress is not null && clock.ElapsedMilliseconds - lastReport >= 200)
            {
                lastReport = clock.ElapsedMilliseconds;
                progress(copied, range.Total);
            }
        }
        producer.Flush(ct);
        if (failed > 0) throw new ReplayException($"{failed} of {copied} record(s) were not acknowledged by {target}: {firstError}");
        progress?.Invoke(copied, range.Total);
        return copied;
    }

    /// <summary>Sleeps while ahead of <paramref name="recordsPerSecond"/> (a rate over the whole run, so a slow broker
    /// moment is made up afterwards, never exceeded on average).</summary>
    private static void Pace(long done, double recordsPerSecond, Stopwatch clock)
    {
        if (recordsPerSecond <= 0) return;
        var dueMs = done * 1000.0 / recordsPerSecond;
        var aheadMs = dueMs - clock.Elapsed.TotalMilliseconds;
        if (aheadMs >= 1) Thread.Sleep(TimeSpan.FromMilliseconds(aheadMs));
    }

    /// <summary>Sets <paramref name="groupId"/>'s committed offsets on the range's topic to the start of the range (partitions
    /// outside the range keep theirs), so its consumers reprocess from there when they start. The group must be inactive:
    /// moving the offsets of running consumers is undone by their next commit (Kafka's tool refuses too). Real Kafka says
    /// whether it is (DescribeConsumerGroups); the embedded broker cannot describe groups, so there the replay joins the
    /// group itself (with the project's one assignment protocol) and commits as its only member: an assignment of fewer than
    /// every partition, or a refused join, means another member is there.</summary>
    public static void ResetGroup(string bootstrap, ReplayRange range, string groupId, BrokerCapabilities capabilities, TimeSpan joinTimeout)
    {
        var partitions = PartitionsOf(bootstrap, range.Topic);
        var offsets = range.Partitions.Select(p => new TopicPartitionOffset(range.Topic, p.Partition, p.From)).ToList();
        if (capabilities.GroupAdmin)
        {
            // Real Kafka: the coordinator knows the group's members; commit as a standalone consumer (no join, no rebalance).
            using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap }).Build();
            var description = admin.DescribeConsumerGroupsAsync([groupId], new DescribeConsumerGroupsOptions { RequestTimeout = BrokerTimeout })
                .GetAwaiter().GetResult().ConsumerGroupDescriptions.Single();
            if (description.Members.Count > 0)
                throw GroupActive(groupId, $"{description.Members.Count} member(s), state {description.State}");
            using var standalone = ReadOnlyConsumer(bootstrap, groupId);
            standalone.Commit(offsets);
            return;
        }
        string? joinError = null;
        using var member = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
            {
                BootstrapServers = bootstrap, GroupId = groupId, EnableAutoCommit = false, EnableAutoOffsetStore = false,
                // The protocol every group here speaks (sinks, stream hosts, the forecaster): the embedded broker aborts
                // (an assertion in its group code) when a member joins with another. A running member keeps its
                // partitions through the cooperative rebalance, so the replay is assigned fewer than all of them.
                PartitionAssignmentStrategy = PartitionAssignmentStrategy.CooperativeSticky,
                SessionTimeoutMs = 6_000, AutoOffsetReset = AutoOffsetReset.Latest,
            })
            .SetErrorHandler((_, e) => joinError ??= e.Reason)
            .Build();
        member.Subscribe(range.Topic);
        var deadline = Stopwatch.StartNew();
        List<TopicPartition> assigned = [];
        while (deadline.Elapsed < joinTimeout)
        {
            try
            {
                member.Consume(TimeSpan.FromMilliseconds(100));
            }
            catch (ConsumeException e) when (e.Error.Code is ErrorCode.InconsistentGroupProtocol or ErrorCode.RebalanceInProgress
                                                 or ErrorCode.UnknownMemberId or ErrorCode.IllegalGeneration)
            {
                joinError ??= e.Error.Reason;
            }
            catch (ConsumeException) { }
            assigned = member.Assignment;
            if (assigned.Count > 0 || joinError is not null) break;
        }
        if (assigned.Count < partitions.Count)
        {
            member.Close();
            throw GroupActive(groupId, joinError is not null ? $"the join was refused: {joinError}"
                : assigned.Count == 0 ? $"no partition of {range.Topic} was assigned within {joinTimeout.TotalSeconds:0} s"
                : $"another member holds {partitions.Count - assigned.Count} of {partitions.Count} partitions of {range.Topic}");
        }
        member.Commit(offsets);
        member.Close();
    }

    private static ReplayException GroupActive(string groupId, string why) =>
        new($"consumer group '{groupId}' is active ({why}): stop its consumers first (offsets moved under running consumers are overwritten by their next commit)");

    /// <summary>One partition's position of a group: committed offset (null: none yet), end offset, lag (records the group
    /// has not committed; from the start of the partition when it committed nothing).</summary>
    public readonly record struct PartitionLag(string Topic, int Partition, long? Committed, long End, long Lag);

    /// <summary>Committed offsets and lag of <paramref name="groupId"/> on <paramref name="topic"/> (an OffsetFetch: neither
    /// joins the group nor disturbs it).</summary>
    public static IReadOnlyList<PartitionLag> Lag(string bootstrap, string groupId, string topic)
    {
        var partitions = PartitionsOf(bootstrap, topic);
        using var consumer = ReadOnlyConsumer(bootstrap, groupId);
        var committed = consumer.Committed(partitions.Select(p => new TopicPartition(topic, p)), BrokerTimeout)
            .ToDictionary(o => o.Partition.Value, o => o.Offset.Value >= 0 ? o.Offset.Value : (long?)null);
        var result = new List<PartitionLag>(partitions.Count);
        foreach (var p in partitions)
        {
            var marks = consumer.QueryWatermarkOffsets(new TopicPartition(topic, p), BrokerTimeout);
            var c = committed.GetValueOrDefault(p);
            result.Add(new PartitionLag(topic, p, c, marks.High.Value, Math.Max(0, marks.High.Value - (c ?? marks.Low.Value))));
        }
        return result;
    }

    /// <summary>What a dead-letter replay did: records re-produced per target topic, and the dead letters left where they are
    /// with the reason (no source topic named and no --to, filtered out by the error text).</summary>
    public sealed record DeadLetterReplayResult(IReadOnlyDictionary<string, long> Produced, long FilteredOut, IReadOnlyList<string> Skipped)
    {
        public long Total => Produced.Values.Sum();
    }

    /// <summary>Re-produces the dead letters of <paramref name="deadLetterTopic"/> (everything up to its end now) onto the topic
    /// each names in its <see cref="StreamHeaders.SourceTopic"/> header (or <paramref name="to"/>), with their original key,
    /// value, headers (the dead-letter headers removed) and timestamp, so a fixed processor takes them again. Only those whose
    /// error contains <paramref name="whereError"/> when given. A dead letter naming no source is left and reported.</summary>
    public static DeadLetterReplayResult ReplayDeadLetters(string bootstrap, string deadLetterTopic, string? to, string? whereError, bool dryRun,
        ReplayProgress? progress, CancellationToken ct)
    {
        var range = Resolve(bootstrap, deadLetterTopic, new ReplaySpec(FromOffset: 0), BrokerCapabilities.Embedded);
        using var consumer = ReadOnlyConsumer(bootstrap);
        using var producer = dryRun ? null : new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig
        {
            BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5, Acks = Acks.All, Partitioner = Partitioner.Murmur2Random,
        }).Build();
        var produced = new Dictionary<string, long>(StringComparer.Ordinal);
        var skipped = new List<string>();
        var known = new HashSet<string>(StringComparer.Ordinal);
        long filteredOut = 0, seen = 0, failed = 0;
        string? firstError = null;
        var remaining = range.Partitions.Where(p => p.Count > 0).ToDictionary(p => p.Partition, p => p.To);
        consumer.Assign(range.Partitions.Where(p => p.Count > 0).Select(p => new TopicPartitionOffset(deadLetterTopic, p.Partition, p.From)));
        while (remaining.Count > 0 && !ct.IsCancellationRequested)
        {
            var r = consumer.Consume(BrokerTimeout) ?? throw new ReplayException($"reading {deadLetterTopic}: no record within {BrokerTimeout.TotalSeconds} s");
            if (!remaining.TryGetValue(r.Partition.Value, out var end)) continue;
            if (r.Offset.Value + 1 >= end)
            {
                remaining.Remove(r.Partition.Value);
                consumer.IncrementalUnassign([r.TopicPartition]);
            }
            if (r.Offset.Value >= end) continue;
            seen++;
            var headers = r.Message.Headers ?? [];
            var error = Header(headers, StreamHeaders.Error) ?? "";
            if (whereError is not null && !error.Contains(whereError, StringComparison.OrdinalIgnoreCase)) { filteredOut++; continue; }
            var target = to ?? Header(headers, StreamHeaders.SourceTopic);
            if (string.IsNullOrEmpty(target))
            {
                skipped.Add($"{deadLetterTopic}[{r.Partition.Value}]@{r.Offset.Value}: no {StreamHeaders.SourceTopic} header (not a dead letter of ours); pass --to TOPIC");
                continue;
            }
            if (known.Add(target)) PartitionsOf(bootstrap, target);   // an unknown target stops the replay before it is half done
            produced[target] = produced.GetValueOrDefault(target) + 1;
            if (producer is null) continue;
            var original = new Headers();
            foreach (var h in headers)
                if (!DeadLetterHeaders.Contains(h.Key)) original.Add(h.Key, h.GetValueBytes());
            var message = new Message<byte[]?, byte[]?> { Key = r.Message.Key, Value = r.Message.Value, Headers = original, Timestamp = r.Message.Timestamp };
            while (true)
            {
                try
                {
                    producer.Produce(target, message, d =>
                    {
                        if (!d.Error.IsError) return;
                        Interlocked.Increment(ref failed);
                        Interlocked.CompareExchange(ref firstError, d.Error.Reason, null);
                    });
                    break;
                }
                catch (ProduceException<byte[]?, byte[]?> e) when (e.Error.Code == ErrorCode.Local_QueueFull) { producer.Poll(TimeSpan.FromMilliseconds(50)); }
            }
            progress?.Invoke(seen, range.Total);
        }
        producer?.Flush(ct);
        if (failed > 0) throw new ReplayException($"{failed} re-produced dead letter(s) were not acknowledged: {firstError}");
        progress?.Invoke(seen, range.Total);
        return new DeadLetterReplayResult(produced, filteredOut, skipped);
    }

    /// <summary>The headers <see cref="StreamHeaders.DeadLetter"/> adds (the output id it sets names the dead letter's position,
    /// not the record's): what a re-produced record leaves behind.</summary>
    private static readonly HashSet<string> DeadLetterHeaders =
    [
        StreamHeaders.Error, StreamHeaders.ErrorType, StreamHeaders.Processor, StreamHeaders.SourceTopic, StreamHeaders.SourcePartition,
        StreamHeaders.SourceOffset, StreamHeaders.OutputId,
    ];

    private static string? Header(Headers headers, string key) =>
        headers.TryGetLastBytes(key, out var bytes) ? Encoding.UTF8.GetString(bytes) : null;

    /// <summary>A consumer that only assigns and reads (or reads a group's commits): it never joins a group.</summary>
    private static IConsumer<byte[]?, byte[]?> ReadOnlyConsumer(string bootstrap, string? groupId = null) =>
        new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = groupId ?? "streamhealth-replay-" + Guid.NewGuid().ToString("N"),
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            AllowAutoCreateTopics = false,
        }).Build();

    /// <summary>Real Kafka only (<see cref="BrokerCapabilities.GroupAdmin"/>): every consumer group the cluster has, with the
    /// topics it committed offsets for.</summary>
    public static IReadOnlyList<(string GroupId, string Topic)> ListGroupTopics(string bootstrap)
    {
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap }).Build();
        var groups = admin.ListConsumerGroupsAsync(new ListConsumerGroupsOptions { RequestTimeout = BrokerTimeout }).GetAwaiter().GetResult();
        var result = new List<(string, string)>();
        foreach (var g in groups.Valid)
        {
            var offsets = admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions(g.GroupId, null)],
                new ListConsumerGroupOffsetsOptions { RequestTimeout = BrokerTimeout }).GetAwaiter().GetResult();
            foreach (var topic in offsets.SelectMany(o => o.Partitions).Select(p => p.Topic).Distinct())
                result.Add((g.GroupId, topic));
        }
        return result;
    }
}
