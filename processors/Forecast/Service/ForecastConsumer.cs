using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Runtime.InteropServices;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Quantiles;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.Forecast.Service;

/// <summary>Topic and group names of one forecaster (production uses <see cref="Default"/>; tests give each their own).</summary>
public sealed record ForecastNames(string RequestsTopic, string ForecastsTopic, string GroupId)
{
    public const string DefaultGroupId = "cgm-forecaster";
    public static readonly ForecastNames Default = new(Topics.CgmForecastRequests, Topics.CgmForecasts, DefaultGroupId);
    public string DeadLetterTopic => Topics.DeadLetterOf(RequestsTopic);
    public string PostgresSinkGroup => GroupId + "-postgres-sink";
    public string RedisSinkGroup => GroupId + "-redis-sink";
}

/// <summary>Kafka settings of the consumer that the <c>Forecast</c> options do not hold (they come from the host).</summary>
public sealed record ForecastConsumerSettings(string BootstrapServers, int SessionTimeoutMs = 6_000, int FetchWaitMaxMs = 100);

/// <summary>The forecast consumer group: cgm.forecast-requests → micro-batches → one ONNX Runtime call per batch
/// (requests × Monte Carlo samples rows) → mixture median and bands per step → cgm.forecasts, keyed by user.
/// <list type="bullet">
/// <item>Batching: a batch runs when <see cref="ForecastOptions.MaxBatchSize"/> requests are queued or the oldest has
/// waited <see cref="ForecastOptions.MaxWaitMs"/>. The consumer reads up to two batches ahead, and interactive
/// requests (<c>CgmForecastRequest.interactive</c>) leave the queue before background ones, so under load an
/// interactive request overtakes up to a batch of queued background work (not records still in Kafka).</item>
/// <item>Delivery: at least once. A record's offset is committed only when its forecast or dead letter is
/// acknowledged by the broker, and never past a record still queued or in flight (requests complete out of order).
/// A crash repeats the unacknowledged tail; forecasts carry the request id, on which the sinks deduplicate.</item>
/// <item>Records: both topics are Avro in the Confluent wire format (key UserKey; CgmForecastRequest in,
/// CgmForecast out), read and written through the process's <see cref="SchemaRegistryConnection"/>.</item>
/// <item>Bad input: a request that does not decode (not that format, a schema id the registry does not know, a body
/// that does not match its schema) or fails <see cref="ForecastRequests.Validate"/> goes to
/// <c>cgm.forecast-requests.dlq</c> with the stream runtime's dead-letter headers (and <see cref="StreamHeaders.SchemaId"/>
/// when its value names one), and the batch goes on.</item>
/// <item>Registry outage: a request whose writer schema cannot be fetched because the registry cannot answer is not the
/// record's fault: it is kept, its partition paused (nothing behind it is read, nothing from it committed) and decoded
/// again after a back-off (doubling to <see cref="MaxRegistryBackoff"/>); other partitions go on.</item>
/// <item>Scale-out: every member of the group <see cref="ForecastNames.GroupId"/> owns some partitions; the members share
/// nothing, so adding members (processes or pods) adds throughput up to one per partition.</item>
/// </list></summary>
public sealed class ForecastConsumer : IDisposable
{
    public const string ProcessorName = "cgm-forecaster";
    public static readonly TimeSpan InitialRegistryBackoff = TimeSpan.FromMilliseconds(200);
    public static readonly TimeSpan MaxRegistryBackoff = TimeSpan.FromSeconds(5);

    private readonly ForecastOptions _options;
    private readonly ForecastNames _names;
    private readonly ForecastConsumerSettings _settings;
    private readonly OnnxGlucoseForecaster _forecaster;
    private readonly ILogger _log;
    private readonly AvroSerDes<AvroRecords.Common.UserKey> _keys;
    private readonly AvroSerDes<AvroRecords.Cgm.CgmForecastRequest> _requests;
    private readonly AvroSerDes<AvroRecords.Cgm.CgmForecast> _forecastSerDes;
    private readonly CancellationTokenSource _stop = new();
    private readonly IProducer<byte[]?, byte[]?> _producer;
    private IConsumer<byte[]?, byte[]?>? _consumer;
    private Thread? _thread;

    // Requests decoded and valid, waiting for a batch (interactive ones leave first).
    private readonly ForecastQueue _queue = new();
    // Batches and dead letters handed to the producer and not yet all acknowledged.
    private readonly List<InFlight> _inFlight = [];
    private readonly ConcurrentQueue<(string Topic, Message<byte[]?, byte[]?> Message, InFlight Owner, Error Error)> _failed = new();
    // Per assigned partition: the offset after the last record consumed, and the offset last committed.
    private readonly Dictionary<int, long> _nextConsumed = [];
    private readonly Dictionary<int, long> _committed = [];
    // Per paused partition: the record that could not be decoded while the schema registry was unreachable, and when to
    // try it again. The partition stays paused (librdkafka resumes after the last record returned) until it decodes.
    private readonly Dictionary<int, (ConsumeResult<byte[]?, byte[]?> Record, long DueMs)> _held = [];
    private TimeSpan _registryBackoff = InitialRegistryBackoff;

    // Per-batch scratch, reused: the batch's requests, and one forecast record (with its key) refilled per request: its
    // median and band series are these arrays, copied into the output bytes when it is serialised.
    private readonly List<QueuedRequest> _batch = [];
    private readonly float[] _lastInputs;
    private readonly float[] _median;
    private readonly float[] _bands;
    private readonly float[][] _bandSeries;
    private readonly AvroRecords.Cgm.CgmForecast _forecast = new();
    private readonly AvroRecords.Common.UserKey _key = new();

    private long _consumed, _forecasts, _deadLettered, _batches, _batchedRequests, _inferenceTicks, _summaryTicks, _commitFailures, _deliveryFailures;
    private Exception? _failure;

    /// <summary>Reads requests and writes forecasts as Avro through <paramref name="registry"/> (the process's connection).</summary>
    public ForecastConsumer(ForecastOptions options, OnnxGlucoseForecaster forecaster, ForecastConsumerSettings settings,
        SchemaRegistryConnection registry, ForecastNames? names = null, ILoggerFactory? logs = null)
    {
        _options = options.ThrowIfInvalid();
        _forecaster = forecaster;
        _settings = settings;
        _names = names ?? ForecastNames.Default;
        _log = (logs ?? NullLoggerFactory.Instance).CreateLogger("StreamHealth.Forecast.Consumer");
        _keys = registry.SerDes<AvroRecords.Common.UserKey>();
        _requests = registry.SerDes<AvroRecords.Cgm.CgmForecastRequest>();
        _forecastSerDes = registry.SerDes<AvroRecords.Cgm.CgmForecast>();
        var levels = options.EffectiveQuantiles;
        _lastInputs = new float[options.MaxBatchSize];
        _median = new float[options.HorizonSteps];
        _bands = new float[levels.Count * options.HorizonSteps];
        _bandSeries = [.. levels.Select(_ => new float[options.HorizonSteps])];
        _forecast.median_mg_dl = _median;
        _forecast.bands = [.. levels.Select((q, k) => new AvroRecords.Cgm.CgmQuantileBand { quantile = (float)q, glucose_mg_dl = _bandSeries[k] })];
        _forecast.model_version = forecaster.ModelVersion;
        _forecast.mc_samples = forecaster.McSamples;
        _producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig
        {
            BootstrapServers = settings.BootstrapServers,
            EnableIdempotence = true,     // retries keep order and add no duplicates of their own
            LingerMs = 2,                 // a batch's forecasts are produced together anyway
            QueueBufferingMaxMessages = 1_000_000,
        }).Build();
    }

    public ForecastNames Names => _names;
    public OnnxGlucoseForecaster Forecaster => _forecaster;
    /// <summary>Records read from the requests topic (valid or not).</summary>
    public long Consumed => Interlocked.Read(ref _consumed);
    /// <summary>Forecasts handed to the producer.</summary>
    public long Forecasts => Interlocked.Read(ref _forecasts);
    public long DeadLettered => Interlocked.Read(ref _deadLettered);
    public long Batches => Interlocked.Read(ref _batches);
    public long BatchedRequests => Interlocked.Read(ref _batchedRequests);
    /// <summary>Time in ONNX Runtime and in the mixture quantiles, summed over batches.</summary>
    public TimeSpan InferenceTime => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _inferenceTicks));
    public TimeSpan SummaryTime => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _summaryTicks));
    public long CommitFailures => Interlocked.Read(ref _commitFailures);
    public long DeliveryFailures => Interlocked.Read(ref _deliveryFailures);
    /// <summary>Why the consumer loop stopped on its own (null while it runs or after a graceful stop).</summary>
    public Exception? Failure => Volatile.Read(ref _failure);

    public ForecastConsumer Start()
    {
        _thread = new Thread(Run) { Name = "forecaster", IsBackground = true };
        _thread.Start();
        return this;
    }

    private void Run()
    {
        _consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
            {
                BootstrapServers = _settings.BootstrapServers,
                GroupId = _names.GroupId,
                EnableAutoCommit = false,
                AutoOffsetReset = AutoOffsetReset.Earliest,
                PartitionAssignmentStrategy = PartitionAssignmentStrategy.CooperativeSticky,
                SessionTimeoutMs = _settings.SessionTimeoutMs,
                HeartbeatIntervalMs = Math.Max(100, _settings.SessionTimeoutMs / 3),
                FetchWaitMaxMs = _settings.FetchWaitMaxMs,
                // librdkafka's statistics (lag per partition, bytes, broker round trips) for the processors' /metrics.
                StatisticsIntervalMs = 5_000,
            })
            .SetStatisticsHandler((_, json) => KafkaClientMetrics.PublishStatistics(this, _names.GroupId, json))
            .SetPartitionsAssignedHandler((_, partitions) =>
            {
                if (partitions.Count > 0)
                    _log.LogInformation("forecaster: partitions {Partitions} of {Topic} assigned", string.Join(",", partitions.Select(p => p.Partition.Value).Order()),
                        _names.RequestsTopic);
            })
            .SetPartitionsRevokedHandler((_, partitions) => OnRevoked(partitions, lost: false))
            .SetPartitionsLostHandler((_, partitions) => OnRevoked(partitions, lost: true))
            .Build();
        try
        {
            // The forecasts' schema ids before anything is read: serialising never waits on the registry after this, so a
            // registry outage can only hold requests back (see Accept), never fail a batch already run.
            if (ResolveOutputSchemas()) _consumer.Subscribe(_names.RequestsTopic);
            var readAhead = 2 * _options.MaxBatchSize;
            var maxWait = TimeSpan.FromMilliseconds(_options.MaxWaitMs);
            var nextCommit = Environment.TickCount64 + _options.CommitIntervalMs;
            while (!_stop.IsCancellationRequested)
            {
                RetryHeld();
                var r = TryConsume(_queue.Count == 0 ? TimeSpan.FromMilliseconds(100) : _queue.TimeUntilDue(maxWait));
                while (r is not null)
                {
                    Intake(r);
                    if (_queue.Count >= readAhead) break;
                    r = TryConsume(TimeSpan.Zero);
                }
                ResendFailed();
                if (_queue.Count >= _options.MaxBatchSize || (_queue.Count > 0 && _queue.TimeUntilDue(maxWait) == TimeSpan.Zero)) RunBatch();
                if (Environment.TickCount64 >= nextCommit)
                {
                    CommitDone();
                    nextCommit = Environment.TickCount64 + _options.CommitIntervalMs;
                }
            }
            // Graceful stop: what is queued is forecast, every output waited for, the offsets committed.
            while (_queue.Count > 0) RunBatch();
            AwaitAcknowledged(TimeSpan.FromSeconds(10), partition: null);
            CommitDone();
            _consumer.Close();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Nothing past the last commit is lost: the group's next owner re-reads it. The host sees Failure and exits.
            Volatile.Write(ref _failure, e);
            _log.LogError(e, "forecaster stopped: {Error}", e.Message);
        }
        finally
        {
            _consumer.Dispose();
            KafkaClientMetrics.ForgetStatistics(this);
        }
    }

    /// <summary>Resolves (registering, where allowed) the forecasts topic's key and value schema ids, retrying with back-off
    /// while the registry cannot answer; false when stopped first. Any other failure (e.g. the schema not registered where
    /// auto-registration is off) throws: the consumer cannot produce at all.</summary>
    private bool ResolveOutputSchemas()
    {
        var backoff = InitialRegistryBackoff;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                _keys.PrepareAsync(_names.ForecastsTopic, MessageComponentType.Key).GetAwaiter().GetResult();
                _forecastSerDes.PrepareAsync(_names.ForecastsTopic, MessageComponentType.Value).GetAwaiter().GetResult();
                return true;
            }
            catch (Exception e) when (ConfluentWire.IsRegistryUnavailable(e))
            {
                _log.LogWarning("forecaster: schema registry unavailable resolving the {Topic} schemas ({Error}); retrying in {Backoff} ms before joining the group",
                    _names.ForecastsTopic, e.Message, backoff.TotalMilliseconds);
                _stop.Token.WaitHandle.WaitOne(backoff);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxRegistryBackoff.Ticks));
            }
        }
        return false;
    }

    private ConsumeResult<byte[]?, byte[]?>? TryConsume(TimeSpan timeout)
    {
        try
        {
            return _consumer!.Consume(timeout);
        }
        catch (ConsumeException e)
        {
            _log.LogWarning("forecaster: consume failed ({Reason}); retrying", e.Error.Reason);
            return null;
        }
    }

    /// <summary>Decodes and validates one record: queued for a batch, dead-lettered with the reason, or (the schema registry
    /// unreachable) held with its partition paused until it can be decoded.</summary>
    private void Intake(ConsumeResult<byte[]?, byte[]?> r)
    {
        // Behind a held record (fetched before its partition was paused): read again from there once it is resumed.
        if (_held.TryGetValue(r.Partition.Value, out var held) && r.Offset.Value > held.Record.Offset.Value) return;
        Interlocked.Increment(ref _consumed);
        if (!Accept(r)) Hold(r);
    }

    /// <summary>False when the record cannot be decoded now because the schema registry cannot answer (an outage: the
    /// record is not at fault and must not be dead-lettered).</summary>
    private bool Accept(ConsumeResult<byte[]?, byte[]?> r)
    {
        AvroRecords.Cgm.CgmForecastRequest request;
        string keyUser;
        try
        {
            keyUser = _keys.ReadKey(r.Message.Key, r.Topic).user_id;
            request = _requests.ReadValue(r.Message.Value, r.Topic);
        }
        catch (FormatException e)
        {
            _nextConsumed[r.Partition.Value] = r.Offset.Value + 1;
            DeadLetter(r, $"cannot decode record at {r.Topic}[{r.Partition.Value}]@{r.Offset.Value}: {e.Message}", StreamHeaders.DeserializationError);
            return true;
        }
        catch (Exception e) when (ConfluentWire.IsRegistryUnavailable(e))
        {
            _log.LogWarning("forecaster: schema registry unavailable decoding {Topic}[{Partition}]@{Offset} ({Error}); partition paused, retrying in {Backoff} ms",
                r.Topic, r.Partition.Value, r.Offset.Value, e.Message, _registryBackoff.TotalMilliseconds);
            return false;
        }
        _registryBackoff = InitialRegistryBackoff;
        _nextConsumed[r.Partition.Value] = r.Offset.Value + 1;
        var timestampMs = r.Message.Timestamp.UnixTimestampMs;
        var wallMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var receivedAtMs = EventTimeRule.ReceivedAt(timestampMs, wallMs);
        if (ForecastRequests.Validate(keyUser, request, _options, receivedAtMs) is { } reason)
        {
            DeadLetter(r, reason, nameof(ForecastRequestException));
            return true;
        }
        _queue.Enqueue(new QueuedRequest(request, r, Stopwatch.GetTimestamp()));
        return true;
    }

    /// <summary>Keeps <paramref name="r"/> for another try and pauses its partition: nothing behind it is read meanwhile,
    /// and the commit frontier stays at it.</summary>
    private void Hold(ConsumeResult<byte[]?, byte[]?> r)
    {
        var partition = r.Partition.Value;
        _nextConsumed[partition] = r.Offset.Value;
        _held[partition] = (r, Environment.TickCount64 + (long)_registryBackoff.TotalMilliseconds);
        _consumer!.Pause([r.TopicPartition]);
        _registryBackoff = TimeSpan.FromTicks(Math.Min(_registryBackoff.Ticks * 2, MaxRegistryBackoff.Ticks));
    }

    /// <summary>Decodes the held records that are due again; a partition whose record now decodes is resumed.</summary>
    private void RetryHeld()
    {
        if (_held.Count == 0) return;
        var now = Environment.TickCount64;
        List<int>? due = null;
        foreach (var (partition, held) in _held)
            if (held.DueMs <= now) (due ??= []).Add(partition);
        if (due is null) return;
        foreach (var partition in due)
        {
            var record = _held[partition].Record;
            if (!Accept(record))
            {
                _held[partition] = (record, Environment.TickCount64 + (long)_registryBackoff.TotalMilliseconds);
                _registryBackoff = TimeSpan.FromTicks(Math.Min(_registryBackoff.Ticks * 2, MaxRegistryBackoff.Ticks));
                continue;
            }
            _held.Remove(partition);
            _consumer!.Resume([record.TopicPartition]);
            // Fetching goes on right after the held record whatever was fetched (and skipped) around the pause.
            _consumer.Seek(new TopicPartitionOffset(record.TopicPartition, record.Offset.Value + 1));
            _log.LogInformation("forecaster: {Topic}[{Partition}] resumed at offset {Offset}", record.Topic, partition, record.Offset.Value);
        }
    }

    /// <summary>Takes up to MaxBatchSize requests (interactive first), runs the model once, emits one forecast each.</summary>
    private void RunBatch()
    {
        _batch.Clear();
        _queue.TakeBatch(_options.MaxBatchSize, _batch);
        if (_batch.Count == 0) return;

        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < _batch.Count; i++)
        {
            var window = _forecaster.Window(i);
            var values = _batch[i].Request.glucose_mg_dl;
            // The Avro reader fills a List<float>: copied as a span (validation saw exactly the window's length).
            if (values is List<float> list) CollectionsMarshal.AsSpan(list)[..window.Length].CopyTo(window);
            else for (var t = 0; t < window.Length; t++) window[t] = values[t];
            _lastInputs[i] = window[^1];   // picks the calibration band
        }
        var samples = _forecaster.Run(_batch.Count);
        var inferred = Stopwatch.GetTimestamp();

        var owner = new InFlight(this);
        foreach (var p in _batch) owner.Track(p.Partition, p.Offset);
        long summaryTicks = 0;
        for (var i = 0; i < _batch.Count; i++)
        {
            var p = _batch[i];
            var summaryStarted = Stopwatch.GetTimestamp();
            var ok = _forecaster.Quantiles.Summarize(_lastInputs[i], samples.MeansOf(i), samples.StdsOf(i), samples.Samples, _median, _bands);
            summaryTicks += Stopwatch.GetTimestamp() - summaryStarted;
            if (!ok)
            {
                // Valid input, unusable output: the model is at fault, but one request must not stop the stream.
                DeadLetter(p.Record, "the model returned a non-finite mean or standard deviation for this window", nameof(ForecastModelException), owner);
                continue;
            }
            var (key, value) = Encode(p.Request);
            Send(_names.ForecastsTopic, new Message<byte[]?, byte[]?>
            {
                Key = key,
                Value = value,
                Timestamp = new Timestamp(p.Record.Message.Timestamp.UnixTimestampMs, TimestampType.CreateTime),
                Headers = new Headers { { StreamHeaders.OutputId, Encoding.UTF8.GetBytes("forecast:" + p.Request.request_id) } },
            }, owner);
            Interlocked.Increment(ref _forecasts);
        }
        _inFlight.Add(owner);
        owner.Sealed();
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _batchedRequests, _batch.Count);
        Interlocked.Add(ref _inferenceTicks, inferred - started);
        Interlocked.Add(ref _summaryTicks, summaryTicks);
    }

    /// <summary>The forecast of <paramref name="request"/> (this batch's <see cref="_median"/> and <see cref="_bands"/>) as
    /// cgm.forecasts key and value bytes: the key serialised for the forecasts topic (its own subject), not copied.</summary>
    private (byte[] Key, byte[] Value) Encode(AvroRecords.Cgm.CgmForecastRequest request)
    {
        var f = _forecast;
        f.event_time_unix_ms = request.event_time_unix_ms;
        f.request_id = request.request_id;
        f.user_id = request.user_id;
        f.step_minutes = request.step_minutes;
        var horizon = _median.Length;
        for (var k = 0; k < _bandSeries.Length; k++) _bands.AsSpan(k * horizon, horizon).CopyTo(_bandSeries[k]);
        _key.user_id = request.user_id;   // validated: the record key's user
        var topic = _names.ForecastsTopic;
        return (_keys.Serialize(_key, new SerializationContext(MessageComponentType.Key, topic)),
            _forecastSerDes.Serialize(f, new SerializationContext(MessageComponentType.Value, topic)));
    }

    /// <summary>The record as it arrived (key, value, timestamp, headers) to the dead-letter topic, with the stream
    /// processors' headers; its offset is done once the dead letter is acknowledged.</summary>
    private void DeadLetter(ConsumeResult<byte[]?, byte[]?> r, string error, string errorType, InFlight? batch = null)
    {
        var owner = batch ?? new InFlight(this);
        owner.Track(r.Partition.Value, r.Offset.Value);
        Send(_names.DeadLetterTopic, new Message<byte[]?, byte[]?>
        {
            Key = r.Message.Key, Value = r.Message.Value, Timestamp = r.Message.Timestamp,
            Headers = DeadLetterHeaders(r, error, errorType),
        }, owner);
        if (batch is null)
        {
            _inFlight.Add(owner);
            owner.Sealed();
        }
        Interlocked.Increment(ref _deadLettered);
        _log.LogWarning("forecaster: record {Topic}[{Partition}]@{Offset} dead-lettered: {Error}", r.Topic, r.Partition.Value, r.Offset.Value, error);
    }

    /// <summary>The stream runtime's dead-letter headers, and the schema id the value's Confluent wire header names (as a
    /// stream processor's dead letter of an Avro topic carries it).</summary>
    private static Headers DeadLetterHeaders(ConsumeResult<byte[]?, byte[]?> r, string error, string errorType)
    {
        var headers = StreamHeaders.DeadLetter(r.Message.Headers, r.Topic, r.Partition.Value, r.Offset.Value, error, errorType, ProcessorName);
        if (ConfluentWire.SchemaId(r.Message.Value ?? []) is { } schemaId)
            headers.Add(StreamHeaders.SchemaId, Encoding.UTF8.GetBytes(schemaId.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        return headers;
    }

    /// <summary>Hands one output to the producer; a full producer queue means the broker is slower than the model:
    /// wait for it (back-pressure) rather than fail the record.</summary>
    private void Send(string topic, Message<byte[]?, byte[]?> message, InFlight owner)
    {
        owner.Launched();
        while (true)
        {
            try
            {
                _producer.Produce(topic, message, owner.OnDelivered);
                return;
            }
            catch (ProduceException<byte[]?, byte[]?> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                Thread.Sleep(5);
            }
        }
    }

    /// <summary>Outputs whose delivery failed (after librdkafka's own retries) are produced again; their records
    /// stay uncommitted meanwhile. The same output id makes a duplicate harmless downstream.</summary>
    private void ResendFailed()
    {
        while (_failed.TryDequeue(out var f))
        {
            Interlocked.Increment(ref _deliveryFailures);
            _log.LogWarning("forecaster: delivery to {Topic} failed ({Reason}); sending again", f.Topic, f.Error.Reason);
            while (true)
            {
                try
                {
                    _producer.Produce(f.Topic, f.Message, f.Owner.OnDelivered);
                    break;
                }
                catch (ProduceException<byte[]?, byte[]?> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    Thread.Sleep(5);
                }
            }
        }
    }

    /// <summary>Commits, per assigned partition, the lowest offset not yet done: below every queued request and every
    /// output not yet acknowledged, else after the last record consumed.</summary>
    private void CommitDone(ICollection<int>? only = null)
    {
        _inFlight.RemoveAll(b => b.Done);
        if (_nextConsumed.Count == 0) return;
        var frontier = new Dictionary<int, long>(_nextConsumed);
        _queue.LowerFrontier(frontier);
        foreach (var b in _inFlight) b.LowerFrontier(frontier);
        var offsets = new List<TopicPartitionOffset>();
        foreach (var (partition, offset) in frontier)
        {
            if (only is not null && !only.Contains(partition)) continue;
            if (_committed.TryGetValue(partition, out var done) && done >= offset) continue;
            offsets.Add(new TopicPartitionOffset(_names.RequestsTopic, partition, offset));
        }
        if (offsets.Count == 0) return;
        try
        {
            _consumer!.Commit(offsets);
            foreach (var o in offsets) _committed[o.Partition.Value] = o.Offset.Value;
        }
        catch (KafkaException e)
        {
            // Refused during a rebalance, or the broker is away: the next commit covers it; at worst a new owner repeats a few forecasts.
            Interlocked.Increment(ref _commitFailures);
            _log.LogInformation("forecaster: offset commit skipped ({Reason})", e.Error.Reason);
        }
    }

    /// <summary>Waits until every output (of <paramref name="partition"/>s, or all) is acknowledged, re-sending failures.</summary>
    private bool AwaitAcknowledged(TimeSpan timeout, ICollection<int>? partition)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            ResendFailed();
            _inFlight.RemoveAll(b => b.Done);
            if (!_inFlight.Exists(b => partition is null || b.Touches(partition))) return true;
            if (Environment.TickCount64 > deadline) return false;
            Thread.Sleep(1);
        }
    }

    /// <summary>Partitions leaving this member: outputs already made get a moment to land and their offsets are
    /// committed; queued requests are dropped — the next owner reads them again from the committed offset.</summary>
    private void OnRevoked(List<TopicPartitionOffset> partitions, bool lost)
    {
        var revoked = partitions.Select(p => p.Partition.Value).ToHashSet();
        if (revoked.Count == 0) return;
        if (!lost)
        {
            AwaitAcknowledged(TimeSpan.FromSeconds(5), revoked);
            CommitDone(revoked);
        }
        _queue.Drop(revoked);
        foreach (var p in revoked)
        {
            _nextConsumed.Remove(p);
            _committed.Remove(p);
            // A held record is read again by the partition's next owner (from the committed offset, at or before it).
            if (_held.Remove(p, out var held) && !lost) _consumer!.Resume([held.Record.TopicPartition]);
        }
        _log.LogInformation("forecaster: partitions {Partitions} of {Topic} {How}", string.Join(",", revoked.Order()), _names.RequestsTopic,
            lost ? "lost" : "revoked");
    }

    /// <summary>Graceful stop: forecasts what is queued, waits for the outputs, commits, leaves the group.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _thread?.Join();
        _producer.Flush(TimeSpan.FromSeconds(10));
        _producer.Dispose();
        _forecaster.Dispose();
    }

    /// <summary>Outputs of one batch (or one dead letter) and the lowest input offset per partition they cover. Done
    /// when every output is acknowledged; until then those offsets hold the partition's commit back.</summary>
    private sealed class InFlight
    {
        private readonly ForecastConsumer _owner;
        private readonly List<(int Partition, long Offset)> _lowest = new(4);
        private int _unacknowledged = 1;   // the batch itself, until Sealed: nothing is done while outputs are still being added

        public InFlight(ForecastConsumer owner)
        {
            _owner = owner;
            OnDelivered = Delivered;
        }

        public Action<DeliveryReport<byte[]?, byte[]?>> OnDelivered { get; }
        public bool Done => Volatile.Read(ref _unacknowledged) == 0;

        public void Track(int partition, long offset)
        {
            for (var i = 0; i < _lowest.Count; i++)
            {
                if (_lowest[i].Partition != partition) continue;
                if (offset < _lowest[i].Offset) _lowest[i] = (partition, offset);
                return;
            }
            _lowest.Add((partition, offset));
        }

        public void Launched() => Interlocked.Increment(ref _unacknowledged);
        public void Sealed() => Interlocked.Decrement(ref _unacknowledged);

        public bool Touches(ICollection<int> partitions) => _lowest.Exists(l => partitions.Contains(l.Partition));

        public void LowerFrontier(Dictionary<int, long> frontier)
        {
            if (Done) return;
            foreach (var (partition, offset) in _lowest) ForecastQueue.Lower(frontier, partition, offset);
        }

        private void Delivered(DeliveryReport<byte[]?, byte[]?> report)
        {
            // A failed output stays unacknowledged: the loop sends it again with this same callback.
            if (report.Error.IsError) _owner._failed.Enqueue((report.Topic, report.Message, this, report.Error));
            else Interlocked.Decrement(ref _unacknowledged);
        }
    }
}
