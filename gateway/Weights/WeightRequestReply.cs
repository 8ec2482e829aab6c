using System.Collections.Concurrent;
using System.Text;
using Confluent.Kafka;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Observability;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Weight.Pipeline;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.Gateway.Weights;

/// <summary>Request/reply over Kafka for POST /api/weight/process: the measurement goes onto weights.raw
/// like any producer's, the weights topology (the only place a user's filter state lives) processes it in
/// order with everything else for that user, and this service waits for the result on weights.filtered.
/// Each request carries a server-generated id in the <see cref="StreamHeaders.RequestId"/> header, which the
/// topology copies onto its result; a reply is matched by that header alone (never by the client-chosen
/// measurement id, which two users may both send) and handed over only if it is for the request's user and
/// measurement. One reader per gateway replica, assigned every partition at its end (no consumer group, so
/// replicas do not split the replies); a reply for another replica's request is ignored. The reader also follows the
/// raw topic's dead-letter topic, whose records keep their input headers: a measurement the topology refuses answers its
/// caller at once with the topology's reason instead of a timeout.</summary>
public sealed class WeightRequestReply : IHostedService, IDisposable
{
    private readonly KafkaOptions _kafka;
    private readonly int _fetchWaitMaxMs;
    private readonly ILogger<WeightRequestReply> _log;
    private readonly ConcurrentDictionary<string, Waiter> _pending = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly AvroSerDes<AvroRecords.Common.UserKey> _keys;
    private readonly AvroSerDes<AvroRecords.Weights.WeightMeasurement> _measurements;
    private readonly AvroSerDes<AvroRecords.Weights.WeightResult> _results;
    private IProducer<byte[], byte[]>? _producer;
    private Thread? _reader;

    /// <summary>Both topics are Avro (Confluent wire format), serialised and read through <paramref name="registry"/>.</summary>
    public WeightRequestReply(StreamHealthOptions options, SchemaRegistryConnection registry, ILogger<WeightRequestReply> log)
    {
        _kafka = options.Kafka;
        _keys = registry.SerDes<AvroRecords.Common.UserKey>();
        _measurements = registry.SerDes<AvroRecords.Weights.WeightMeasurement>();
        _results = registry.SerDes<AvroRecords.Weights.WeightResult>();
        _fetchWaitMaxMs = options.Streams.EffectiveFetchWaitMaxMs(options.Kafka.Flavor);
        _log = log;
    }

    public string RawTopic { get; init; } = Topics.WeightsRaw;
    public string FilteredTopic { get; init; } = Topics.WeightsFiltered;
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);
    private string DeadLetterTopic => Topics.DeadLetterOf(RawTopic);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(_kafka.BootstrapServers)) return Task.CompletedTask;   // /health reports Kafka as unset
        _producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
        {
            BootstrapServers = _kafka.BootstrapServers, EnableIdempotence = true, LingerMs = 0, ClientId = "gateway-weights", SocketNagleDisable = true,
        }).Build();
        _reader = new Thread(ReadReplies) { Name = "weight-replies", IsBackground = true };
        _reader.Start();
        return Task.CompletedTask;
    }

    /// <summary>Sends <paramref name="measurement"/> and waits for its result; null on timeout (the
    /// measurement is on weights.raw by then and will still be processed and stored). Throws
    /// <see cref="WeightRejectedException"/> when the topology dead-letters it.</summary>
    public async Task<WeightResult?> SendAsync(WeightMeasurement measurement, CancellationToken ct)
    {
        await EnsureReadyAsync(ct);
        var producer = _producer ?? throw new ObjectDisposedException(nameof(WeightRequestReply));
        var requestId = Guid.NewGuid().ToString("N");
        var waiter = new Waiter(measurement.UserId, measurement.MeasurementId);
        _pending[requestId] = waiter;
        try
        {
            var (key, value) = (WeightWire.Key(_keys, RawTopic, measurement.UserId), WeightWire.Measurement(_measurements, RawTopic, measurement));
            await producer.ProduceTracedAsync(StreamTracing.Gateway, RawTopic, new Message<byte[], byte[]>
            {
                Key = key,
                Value = value,
                Timestamp = new Timestamp(measurement.EventTimeUnixMs, TimestampType.CreateTime),
                Headers = new Headers { { StreamHeaders.RequestId, Encoding.ASCII.GetBytes(requestId) } },
            }, ct);
            return await waiter.Reply.Task.WaitAsync(Timeout, ct);
        }
        catch (TimeoutException)
        {
            return null;
        }
        finally
        {
            _pending.TryRemove(requestId, out _);
        }
    }

    /// <summary>Waits (at most <see cref="Timeout"/>) until replies can be read and the raw topic's schema ids are known;
    /// throws <see cref="WeightPipelineUnavailableException"/> when replies cannot be read, and the registry client's
    /// exception when it cannot answer (a 503 naming it), so a caller can refuse before doing anything.</summary>
    public async Task EnsureReadyAsync(CancellationToken ct)
    {
        if (_producer is null) throw new InvalidOperationException("Kafka:BootstrapServers is not set");
        try
        {
            await _ready.Task.WaitAsync(Timeout, ct);   // the reply reader has its partitions
        }
        catch (TimeoutException)
        {
            throw new WeightPipelineUnavailableException(
                $"the gateway is not reading {FilteredTopic} yet (Kafka at {_kafka.BootstrapServers} unreachable?); nothing was sent");
        }
        // The first record of a subject waits for the registry, without blocking a thread (many concurrent first requests
        // blocking on it starve the pool); then the ids are cached and serialising is synchronous and quick.
        await _keys.PrepareAsync(RawTopic, Confluent.Kafka.MessageComponentType.Key);
        await _measurements.PrepareAsync(RawTopic, Confluent.Kafka.MessageComponentType.Value);
    }

    private void ReadReplies()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                using var consumer = new ConsumerBuilder<Ignore, byte[]>(new ConsumerConfig
                {
                    BootstrapServers = _kafka.BootstrapServers, GroupId = "gateway-weight-replies",   // assign() only; never commits
                    EnableAutoCommit = false, FetchWaitMaxMs = _fetchWaitMaxMs, ClientId = "gateway-weight-replies",
                }).Build();
                using (var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = _kafka.BootstrapServers }).Build())
                {
                    var assignment = new List<TopicPartitionOffset>();
                    foreach (var topic in new[] { FilteredTopic, DeadLetterTopic })
                    {
                        var partitions = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics[0].Partitions;
                        if (partitions.Count == 0) throw new KafkaException(ErrorCode.UnknownTopicOrPart);
                        // Start at the end as it is NOW: anything a request produces later is after this point.
                        foreach (var p in partitions)
                        {
                            var tp = new TopicPartition(topic, p.PartitionId);
                            assignment.Add(new TopicPartitionOffset(tp, consumer.QueryWatermarkOffsets(tp, TimeSpan.FromSeconds(10)).High));
                        }
                    }
                    consumer.Assign(assignment);
                }
                _ready.TrySetResult();
                while (!_stop.IsCancellationRequested)
                {
                    var r = consumer.Consume(TimeSpan.FromMilliseconds(100));
                    if (r?.Message?.Value is not { } value) continue;
                    // Results without a request id (other producers') or for another replica's request: not ours.
                    if (r.Message.Headers is not { } headers || !headers.TryGetLastBytes(StreamHeaders.RequestId, out var requestId)) continue;
                    if (!_pending.TryGetValue(Encoding.ASCII.GetString(requestId), out var waiter)) continue;
                    if (r.Topic == DeadLetterTopic)
                    {
                        // The header is a server-generated id, so this dead letter is this request's own measurement.
                        var reason = headers.TryGetLastBytes(StreamHeaders.Error, out var error) ? Encoding.UTF8.GetString(error) : "refused by the weights topology";
                        waiter.Reply.TrySetException(new WeightRejectedException(reason));
                        continue;
                    }
                    WeightResult result;
                    try { result = WeightWire.ToProto(_results.ReadValue(value, r.Topic)); }
                    catch (FormatException) { continue; }   // the sinks dead-letter it; no request waits on garbage
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        // The registry unreachable (the writer schema's id not cached yet): this request times out.
                        _log.LogWarning("weight reply for request {RequestId} not readable: {Error}", Encoding.ASCII.GetString(requestId), e.Message);
                        continue;
                    }
                    // The header is ours, but a caller must never get a result computed for anything but its own request.
                    if (result.UserId != waiter.UserId || result.MeasurementId != waiter.MeasurementId)
                    {
                        _log.LogError("weight reply for request {RequestId} is for another user or measurement; not handed over", Encoding.ASCII.GetString(requestId));
                        continue;
                    }
                    waiter.Reply.TrySetResult(result);
                }
            }
            catch (KafkaException e)
            {
                _log.LogWarning("weight replies: {Error}; reconnecting", e.Error.Reason);
                _stop.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(1));
            }
        }
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _stop.Cancel();
        _reader?.Join(TimeSpan.FromSeconds(5));
        try { _producer?.Flush(TimeSpan.FromSeconds(5)); }
        catch (ObjectDisposedException) { }
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        // The container may dispose this before or after StopAsync (both registrations point at it):
        // cancelling twice is harmless, so the token source is never disposed.
        _stop.Cancel();
        _reader?.Join(TimeSpan.FromSeconds(5));
        _producer?.Dispose();
        _producer = null;
    }
}

/// <summary>A request waiting for its reply, and what that reply must be about.</summary>
internal sealed record Waiter(string UserId, string MeasurementId)
{
    public TaskCompletionSource<WeightResult> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>The weights topology dead-lettered the measurement; <see cref="Exception.Message"/> is its reason.</summary>
public sealed class WeightRejectedException(string reason) : Exception(reason);

/// <summary>The request could not be sent at all (so, unlike a timeout, nothing is on weights.raw).</summary>
public sealed class WeightPipelineUnavailableException(string message) : Exception(message);
