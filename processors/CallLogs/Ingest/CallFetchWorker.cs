using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using StreamHealth.Runtime.Observability;
using StreamHealth.Runtime.Resilience;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using CallCompleted = StreamHealth.Schemas.Avro.CallLogs.CallCompleted;
using CallKey = StreamHealth.Schemas.Avro.Common.CallKey;
using CallLog = StreamHealth.Schemas.Avro.CallLogs.CallLog;

namespace StreamHealth.CallLogs.Ingest;

/// <summary>The topics and consumer group of one fetch worker (production uses <see cref="Default"/>; tests give each their own).</summary>
public sealed record CallFetchNames(string RawTopic, string CallsTopic, string GroupId)
{
    public static readonly CallFetchNames Default = new(Topics.CallLogsRaw, Topics.CallLogsCalls, CallFetchWorker.ProcessorName);
    public string DeadLetterTopic => Topics.DeadLetterOf(RawTopic);
}

/// <summary>calllogs.raw (<see cref="CallCompleted"/> notices, ids only) → <c>GET {provider}/calls/{call_id}</c> → a <see cref="CallLog"/>
/// with the provider's transcript on calllogs.calls, keyed by the call id.
/// <para>Why a consumer-group worker and not a Streamiz topology: each record waits on another company's HTTP API, for seconds when
/// it is slow and for hours when it is down. In a stream thread that wait stalls every task the thread owns (and a wait past
/// max.poll.interval.ms costs a rebalance), while what an outage needs is per-partition back-pressure: stop reading, keep
/// the group membership, come back later. A plain consumer does that directly (Pause/Seek/Resume, the <c>SinkRunner</c>
/// shape), with the offset committed only after the CallLog (or the dead letter) is acknowledged, so a crash repeats a notice
/// and never loses one; the extraction reading calllogs.calls keeps each call id once, so a repeat is harmless.</para>
/// <list type="bullet">
/// <item>Each try has its own timeout (<see cref="CallFetchOptions.RequestTimeoutMs"/>); 5xx, 408, 429, 401/403, timeouts and
/// connection errors are tried again after an exponential, fully jittered wait, up to <see cref="CallFetchOptions.MaxAttempts"/>
/// tries within <see cref="CallFetchOptions.RetryBudgetMs"/>.</item>
/// <item>A round that ends with the provider still unavailable pauses the notice's partition for
/// <see cref="CallFetchOptions.OutagePauseMs"/>, positioned back at the notice, and tries it again: an outage delays calls and
/// never drops one (nor dead-letters it). Other partitions go on.</item>
/// <item>A notice the provider cannot answer (another 4xx; a malformed answer; no patient id anywhere; a 404/410 for a call that
/// ended more than <see cref="CallFetchOptions.TranscriptWaitMs"/> ago) or that does not decode goes to calllogs.raw.dlq as it
/// arrived, with the reason in the runtime's dead-letter headers (<see cref="StreamHeaders.DeadLetter"/>), and the next notice
/// goes on. A 404 for a recent call is a transcript not ready yet: it is waited for like an outage.</item>
/// <item>A call is fetched once: the ledger (<see cref="CallLedger"/>, calllogs.provider_calls) records it after its CallLog is
/// acknowledged, and a later notice of a call already fetched (a webhook with a new event id, the hybrid poller's safety net,
/// a poller's notice repeated by a crash) is committed without a fetch.</item>
/// </list>
/// One notice at a time per worker: a transcript fetch is a few hundred ms, far above what a webhook rate needs; more
/// throughput is more workers in the group (one per partition at most).</summary>
public sealed class CallFetchWorker : ISinkHealthSource, IDisposable
{
    public const string ProcessorName = "calllogs-fetch";
    public const string RefusedErrorType = "call-fetch-refused";

    private readonly CallFetchOptions _options;
    private readonly CallFetchNames _names;
    private readonly CallLedger _ledger;
    private readonly string _bootstrapServers;
    private readonly int _sessionTimeoutMs;
    private readonly int? _fetchWaitMaxMs;
    private readonly ILogger _log;
    private readonly AvroSerDes<CallKey> _keys;
    private readonly AvroSerDes<CallCompleted> _notices;
    private readonly AvroSerDes<CallLog> _calls;
    private readonly Dictionary<string, CallProviderClient> _providers = new(StringComparer.Ordinal);
    private readonly Dictionary<TopicPartition, DateTime> _pausedUntil = [];
    /// <summary>Per partition, the notice waiting to be done again (the consumer's position is already past it).</summary>
    private readonly Dictionary<TopicPartition, long> _waitingAt = [];
    private readonly CancellationTokenSource _stop = new();
    private Thread? _thread;
    private long _fetched, _deadLettered, _retries, _pauses, _alreadyFetched;
    private long _lag, _lastProgressUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), _lastErrorUnixMs, _lagComputedAtMs;
    private int _pausedPartitions;
    private string? _lastError;

    public CallFetchWorker(CallFetchOptions options, CallFetchNames names, string bootstrapServers, CallLedger ledger, SchemaRegistryConnection registry,
        ILoggerFactory logs, int sessionTimeoutMs = 6_000, int? fetchWaitMaxMs = null)
    {
        options.Validate();
        _options = options;
        _names = names;
        _ledger = ledger;
        _bootstrapServers = bootstrapServers;
        _sessionTimeoutMs = sessionTimeoutMs;
        _fetchWaitMaxMs = fetchWaitMaxMs;
        _log = logs.CreateLogger("StreamHealth.CallLogs." + ProcessorName);
        _keys = registry.SerDes<CallKey>();
        _notices = registry.SerDes<CallCompleted>();
        _calls = registry.SerDes<CallLog>();
        foreach (var (name, endpoint) in options.Providers)
            _providers[name] = new CallProviderClient(name, endpoint, TimeSpan.FromMilliseconds(options.RequestTimeoutMs));
    }

    /// <summary>CallLogs produced (each acknowledged before its notice's offset was committed).</summary>
    public long Fetched => Interlocked.Read(ref _fetched);
    public long DeadLettered => Interlocked.Read(ref _deadLettered);
    /// <summary>Tries after the first, over all notices.</summary>
    public long Retries => Interlocked.Read(ref _retries);
    /// <summary>Rounds that ended with the provider unavailable, each pausing a partition.</summary>
    public long Pauses => Interlocked.Read(ref _pauses);
    /// <summary>Notices committed without a fetch because the ledger already had the call's transcript published.</summary>
    public long AlreadyFetched => Interlocked.Read(ref _alreadyFetched);

    public TimeSpan StallAfter { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>The worker's progress for /health and /api/v1/streams, as a sink's: notices waiting, CallLogs written, dead letters,
    /// whether a partition is paused (the provider down or the ledger unreachable) and the last reason. Stalled: notices wait and
    /// none was done for <see cref="StallAfter"/> (an outage that lasts shows as "degraded" until it ends).</summary>
    public SinkHealth Health()
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var lag = Interlocked.Read(ref _lag);
        var lastProgress = Interlocked.Read(ref _lastProgressUnixMs);
        return new SinkHealth(ProcessorName, _names.RawTopic, _names.GroupId, lag, Fetched, DeadLettered, Volatile.Read(ref _pausedPartitions) > 0,
            lastProgress, Volatile.Read(ref _lastError), Interlocked.Read(ref _lastErrorUnixMs),
            lag > 0 && now - lastProgress >= (long)StallAfter.TotalMilliseconds);
    }

    private void Progressed() => Interlocked.Exchange(ref _lastProgressUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

    private void Failed(string reason)
    {
        Volatile.Write(ref _lastError, reason);
        Interlocked.Exchange(ref _lastErrorUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }

    /// <summary>Notices between the worker's position and the high watermark over its partitions (local figures, no broker call),
    /// a few times a second.</summary>
    private void UpdateLag(IConsumer<byte[]?, byte[]?> consumer)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        if (now - _lagComputedAtMs < 250) return;
        _lagComputedAtMs = now;
        long lag = 0;
        try
        {
            foreach (var tp in consumer.Assignment)
            {
                var high = consumer.GetWatermarkOffsets(tp).High.Value;
                var position = consumer.Position(tp).Value;
                var from = _waitingAt.TryGetValue(tp, out var waiting) && (position < 0 || waiting < position) ? waiting : position;
                if (high >= 0 && from >= 0 && high > from) lag += high - from;
            }
        }
        catch (KafkaException)
        {
            return;
        }
        Interlocked.Exchange(ref _lag, lag);
        Volatile.Write(ref _pausedPartitions, _pausedUntil.Count);
        if (lag == 0) Progressed();
    }

    public CallFetchWorker Start()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = ProcessorName };
        _thread.Start();
        return this;
    }

    private void Run()
    {
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
        {
            BootstrapServers = _bootstrapServers, EnableIdempotence = true, Acks = Acks.All, LingerMs = 0,
        }).Build();
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = _bootstrapServers, GroupId = _names.GroupId, EnableAutoCommit = false, EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Earliest, SessionTimeoutMs = _sessionTimeoutMs,
            // Streams:FetchWaitMaxMs: the embedded broker answers a waiting fetch only when it expires (null: the client's 500 ms).
            FetchWaitMaxMs = _fetchWaitMaxMs,
        })
            // A partition handed to another worker starts there from its committed offset: our pause for it is void.
            .SetPartitionsRevokedHandler((_, revoked) => Forget(revoked))
            .SetPartitionsLostHandler((_, lost) => Forget(lost))
            .Build();
        consumer.Subscribe(_names.RawTopic);
        var stop = _stop.Token;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                ResumeDue(consumer);
                UpdateLag(consumer);
                var r = consumer.Consume(TimeSpan.FromMilliseconds(100));
                if (r is null || r.IsPartitionEOF) continue;
                var done = Handle(r, producer, stop);
                try
                {
                    if (done)
                    {
                        consumer.Commit([new TopicPartitionOffset(r.TopicPartition, r.Offset + 1)]);
                        _waitingAt.Remove(r.TopicPartition);
                        Progressed();
                    }
                    else if (!stop.IsCancellationRequested)
                    {
                        // Back to this notice and wait: the partition's later notices wait behind it, none is skipped.
                        consumer.Seek(r.TopicPartitionOffset);
                        _waitingAt[r.TopicPartition] = r.Offset.Value;
                        consumer.Pause([r.TopicPartition]);
                        _pausedUntil[r.TopicPartition] = DateTime.UtcNow.AddMilliseconds(_options.OutagePauseMs);
                        Interlocked.Increment(ref _pauses);
                    }
                }
                catch (KafkaException e)
                {
                    // The partition moved to another worker meanwhile (a rebalance): it starts there from the committed offset, so
                    // this notice is handled again there (its CallLog twice at worst, which the extraction keeps once).
                    _log.LogInformation("{Worker}: {Topic}[{Partition}]@{Offset}: offset commit or pause skipped ({Reason})", ProcessorName,
                        r.Topic, r.Partition.Value, r.Offset.Value, e.Error.Reason);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
        catch (Exception e)
        {
            _log.LogCritical(e, "{Worker} stopped", ProcessorName);
            throw;
        }
        finally
        {
            consumer.Close();
        }
    }

    private void Forget(List<TopicPartitionOffset> partitions)
    {
        foreach (var p in partitions)
        {
            _pausedUntil.Remove(p.TopicPartition);
            _waitingAt.Remove(p.TopicPartition);
        }
    }

    private void ResumeDue(IConsumer<byte[]?, byte[]?> consumer)
    {
        if (_pausedUntil.Count == 0) return;
        var now = DateTime.UtcNow;
        List<TopicPartition>? due = null;
        foreach (var (partition, until) in _pausedUntil)
            if (until <= now) (due ??= []).Add(partition);
        if (due is null) return;
        foreach (var p in due) _pausedUntil.Remove(p);
        consumer.Resume(due);
    }

    /// <summary>True when the notice is done (its CallLog or its dead letter acknowledged), false when it must wait (the provider,
    /// the registry or Kafka unavailable).</summary>
    private bool Handle(ConsumeResult<byte[]?, byte[]?> r, IProducer<byte[], byte[]> producer, CancellationToken stop)
    {
        var topic = r.Topic;
        CallKey key;
        CallCompleted notice;
        try
        {
            key = _keys.ReadKey(r.Message.Key, topic);
            notice = _notices.ReadValue(r.Message.Value, topic);
        }
        catch (Exception e) when (ConfluentWire.IsRegistryUnavailable(e))
        {
            Failed("schema registry unavailable");
            _log.LogWarning("{Worker}: schema registry unavailable reading {Topic}[{Partition}]@{Offset}; waiting", ProcessorName, topic,
                r.Partition.Value, r.Offset.Value);
            return false;
        }
        catch (Exception e)
        {
            return DeadLetter(r, producer, "cannot decode CallCompleted: " + e.Message);
        }

        var callId = key.call_id;
        var bad = (InputRules.CheckId("call_id", callId) is { } badKey ? "record key: " + badKey : null)
            ?? (notice.call_id != callId ? $"call_id {InputRules.Quote(notice.call_id ?? "")} does not match the record key {InputRules.Quote(callId)}" : null)
            ?? (notice.patient_id is null ? null : InputRules.CheckId("patient_id", notice.patient_id));
        if (bad is not null) return DeadLetter(r, producer, bad);
        if (!_providers.TryGetValue(notice.provider, out var provider))
        {
            // The gateway accepts notices only from providers it is configured for: one missing here is our configuration,
            // so its calls wait for it rather than being dead-lettered.
            Failed($"provider {notice.provider} has no {CallFetchOptions.Section}:Providers entry");
            _log.LogError("{Worker}: provider {Provider} of call {CallId} has no {Section}:Providers entry; its notices wait", ProcessorName,
                notice.provider, callId, CallFetchOptions.Section);
            return false;
        }

        var polled = notice.origin == Schemas.Avro.CallLogs.CallLogOrigin.CALL_LOG_ORIGIN_POLLING;
        try
        {
            if (_ledger.IsFetchedAsync(notice.provider, callId, stop).GetAwaiter().GetResult())
            {
                Interlocked.Increment(ref _alreadyFetched);
                _log.LogInformation("{Worker}: call {CallId} of {Provider} was fetched before; notice {EventId} committed without a fetch", ProcessorName,
                    callId, notice.provider, notice.event_id);
                return true;
            }
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            Failed("PostgreSQL unavailable reading the call ledger: " + e.Message);
            _log.LogWarning("{Worker}: PostgreSQL unavailable reading the call ledger ({Reason}); the notice waits", ProcessorName, e.Message);
            return false;
        }

        var endedAtMs = AvroTime.ToUnixMs(notice.event_time_unix_ms);
        var result = FetchWithRetries(provider, callId, endedAtMs, stop);
        if (result.Outcome == FetchOutcome.Refused) return DeadLetter(r, producer, result.Reason!);
        if (result.Outcome == FetchOutcome.Unavailable)
        {
            Failed(result.Reason!);
            _log.LogWarning("{Worker}: {Reason}; {Topic}[{Partition}] paused {PauseMs} ms at offset {Offset}", ProcessorName, result.Reason, topic,
                r.Partition.Value, _options.OutagePauseMs, r.Offset.Value);
            return false;
        }

        var call = result.Call!;
        var patientId = call.PatientId ?? notice.patient_id;
        if (patientId is null) return DeadLetter(r, producer, $"call {callId}: no patient_id, neither in the notice nor in provider {provider.Provider}'s answer");
        if (InputRules.CheckId("patient_id", patientId) is { } badPatient)
            return DeadLetter(r, producer, $"provider {provider.Provider}'s answer for call {callId}: {badPatient}");
        var log = new CallLog
        {
            // The call's start: the provider's, else the notice's end less the duration.
            event_time_unix_ms = AvroTime.FromUnixMs(call.StartedAtUnixMs ?? AvroTime.ToUnixMs(notice.event_time_unix_ms) - call.DurationSeconds * 1000L),
            call_id = callId, patient_id = patientId, duration_s = call.DurationSeconds, transcript = call.Transcript,
            origin = notice.origin, provider = notice.provider,
        };
        try
        {
            var message = new Message<byte[], byte[]>
            {
                Key = _keys.Serialize(key, new SerializationContext(MessageComponentType.Key, _names.CallsTopic)),
                Value = _calls.Serialize(log, new SerializationContext(MessageComponentType.Value, _names.CallsTopic)),
                Timestamp = new Timestamp(AvroTime.ToUnixMs(log.event_time_unix_ms), TimestampType.CreateTime),
                Headers = new Headers { { StreamHeaders.OutputId, Encoding.UTF8.GetBytes("calllogs-call:" + callId) } },
            };
            // The webhook's trace continues into the extraction topology (this worker records no span of its own).
            StreamTracing.CopyContext(r.Message.Headers, message.Headers);
            producer.ProduceAsync(_names.CallsTopic, message, stop).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is ProduceException<byte[], byte[]> || ConfluentWire.IsRegistryUnavailable(e))
        {
            Failed($"call {callId} not acknowledged on {_names.CallsTopic}: {e.Message}");
            _log.LogWarning(e, "{Worker}: call {CallId} not acknowledged on {Topic}; the notice waits", ProcessorName, callId, _names.CallsTopic);
            return false;
        }
        Interlocked.Increment(ref _fetched);
        try
        {
            _ledger.MarkFetchedAsync(notice.provider, callId, DateTimeOffset.FromUnixTimeMilliseconds(endedAtMs), polled, stop).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            // The CallLog is out: at worst a later notice of this call is fetched again, and the extraction keeps the call once.
            _log.LogWarning("{Worker}: call {CallId} published but not recorded in the ledger ({Reason})", ProcessorName, callId, e.Message);
        }
        return true;
    }

    private FetchResult FetchWithRetries(CallProviderClient provider, string callId, long endedAtMs, CancellationToken stop)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(_options.RetryBudgetMs);
        var backoff = new FullJitterBackoff(_options.InitialBackoffMs, _options.MaxBackoffMs);
        for (var attempt = 1; ; attempt++)
        {
            var result = provider.FetchAsync(callId, stop).GetAwaiter().GetResult();
            if (result.Outcome == FetchOutcome.Missing)
                result = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - endedAtMs < _options.TranscriptWaitMs
                    ? FetchResult.Unavailable($"{result.Reason}: the call ended at {DateTimeOffset.FromUnixTimeMilliseconds(endedAtMs):O}, " +
                                              $"its transcript is waited for {_options.TranscriptWaitMs} ms")
                    : FetchResult.Refused(result.Reason!);
            if (result.Outcome != FetchOutcome.Unavailable || attempt >= _options.MaxAttempts) return result;
            var waitMs = backoff.NextWaitMs();
            // No try that could not finish within the budget: the round ends, the partition pauses.
            if (DateTime.UtcNow.AddMilliseconds(waitMs + _options.RequestTimeoutMs) > deadline) return result;
            _log.LogInformation("{Worker}: {Reason}; try {Attempt} of {Max} in {WaitMs:0} ms", ProcessorName, result.Reason, attempt + 1,
                _options.MaxAttempts, waitMs);
            stop.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(waitMs));
            stop.ThrowIfCancellationRequested();
            Interlocked.Increment(ref _retries);
        }
    }

    private bool DeadLetter(ConsumeResult<byte[]?, byte[]?> r, IProducer<byte[], byte[]> producer, string reason)
    {
        try
        {
            producer.ProduceAsync(_names.DeadLetterTopic, new Message<byte[], byte[]>
            {
                Key = r.Message.Key!, Value = r.Message.Value!,
                Headers = StreamHeaders.DeadLetter(r.Message.Headers, r.Topic, r.Partition.Value, r.Offset.Value, reason, RefusedErrorType, ProcessorName),
            }).GetAwaiter().GetResult();
        }
        catch (ProduceException<byte[], byte[]> e)
        {
            _log.LogWarning(e, "{Worker}: dead letter for {Topic}[{Partition}]@{Offset} not acknowledged; the notice waits", ProcessorName, r.Topic,
                r.Partition.Value, r.Offset.Value);
            return false;
        }
        Failed(reason);
        _log.LogWarning("{Worker}: {Topic}[{Partition}]@{Offset}: {Reason}; sent to {DeadLetterTopic}", ProcessorName, r.Topic, r.Partition.Value,
            r.Offset.Value, reason, _names.DeadLetterTopic);
        Interlocked.Increment(ref _deadLettered);
        return true;
    }

    public void Dispose()
    {
        _stop.Cancel();
        _thread?.Join(TimeSpan.FromSeconds(30));
        foreach (var client in _providers.Values) client.Dispose();
        _stop.Dispose();
    }
}
