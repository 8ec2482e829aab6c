using System.Diagnostics;
using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using StreamHealth.Runtime.Observability;
using StreamHealth.Runtime.SchemaRegistry;

namespace StreamHealth.Runtime.Streams;

/// <summary>What every processor of a host shares: its metrics, log and schema registry connection. Handed to a processor's
/// constructor through Streamiz's <c>TransformerBuilder.Transformer&lt;T&gt;(params)</c>, which creates one processor per task.</summary>
public sealed class ProcessorServices(StreamMetrics metrics, ILogger log, SchemaRegistryConnection? schemas = null)
{
    public StreamMetrics Metrics { get; } = metrics;
    public ILogger Log { get; } = log;

    /// <summary>The host's schema registry connection (<see cref="StreamHostOptions.SchemaRegistry"/>), for the serdes of
    /// Avro topics; throws when the host has none (a topology that needs one says so, see
    /// <see cref="StreamTopology.RequiresSchemaRegistry"/>, and the host refuses to start it without).</summary>
    public SchemaRegistryConnection Schemas => schemas
        ?? throw new InvalidOperationException("this stream host has no schema registry (StreamHostOptions.SchemaRegistry)");

}

/// <summary>One input record as a processor sees it, decoded.</summary>
public readonly record struct InputRecord<TKey, TValue>(
    TKey Key, TValue Value, long TimestampUnixMs, string Topic, int Partition, long Offset, Headers? Headers);

/// <summary>A Streamiz transformer (Processor API) with what every StreamHealth processor needs and Streamiz does not
/// give: it decodes the source itself, so a record that does not decode, like one the processor rejects, becomes a dead
/// letter on <c>{source}.dlq</c> with the reason in headers (<see cref="StreamHeaders.DeadLetter"/>), produced by the task's
/// own producer (flushed before the task commits the input, unlike a deserialization handler's side producer); outputs
/// carry a deterministic output id, the input's request id and its trace context (<see cref="StreamTracing"/>: the record's
/// "process" span when one is recorded, else the input's context as it came); metrics and task progress are recorded per record.
/// A record's outputs are held until it is processed, so a record that fails emits only its dead letter. A processor
/// must check a record before it writes state (there is no rollback of store writes): validate, compute, then Put.</summary>
public abstract class StreamProcessor<TKey, TValue> : ITransformer<byte[], byte[], byte[], Emission>
{
    private readonly ProcessorServices _services;
    private readonly ISerDes<TKey> _keySerDes;
    private readonly ISerDes<TValue> _valueSerDes;
    private readonly List<(byte[] Key, Emission Value, Headers Headers)> _pending = [];
    private Record<byte[], byte[]>? _current;
    private Activity? _span;   // the current record's "process" span; null when nothing samples it
    private TaskProgress _progress = null!;

    protected StreamProcessor(ProcessorServices services, ISerDes<TKey> keySerDes, ISerDes<TValue> valueSerDes, string name)
    {
        _services = services;
        _keySerDes = keySerDes;
        _valueSerDes = valueSerDes;
        Name = name;
    }

    /// <summary>Names the processor in dead letters and logs.</summary>
    public string Name { get; }

    protected ProcessorContext<byte[], Emission> Context { get; private set; } = null!;

    /// <summary>"applicationId/partition" of the task this instance serves.</summary>
    protected string TaskName { get; private set; } = "";

    public void Init(ProcessorContext<byte[], Emission> context)
    {
        Context = context;
        TaskName = $"{context.ApplicationId}/{context.Id}";
        _progress = _services.Metrics.TrackTask(context.ApplicationId, context.Id.ToString(), context.Id.Partition,
            Thread.CurrentThread.Name ?? "");
        _services.Log.LogInformation("task {Task} assigned ({Processor})", TaskName, Name);
        Init();
    }

    /// <summary>Gets stores (<c>Context.GetStateStore</c>) and schedules punctuations.</summary>
    protected abstract void Init();

    protected abstract void Process(in InputRecord<TKey, TValue> record);

    public Record<byte[], Emission>? Process(Record<byte[], byte[]> record)
    {
        var started = Stopwatch.GetTimestamp();
        var position = record.TopicPartitionOffset;
        _current = record;
        _span = StreamTracing.StartProcess(Context.ApplicationId, position.Topic, position.Partition.Value, position.Offset.Value, record.Headers);
        try
        {
            TKey key;
            TValue value;
            try
            {
                key = _keySerDes.Deserialize(record.Key ?? [], new SerializationContext(MessageComponentType.Key, position.Topic, record.Headers));
                value = _valueSerDes.Deserialize(record.Value ?? throw new FormatException("record has no value"),
                    new SerializationContext(MessageComponentType.Value, position.Topic, record.Headers));
            }
            catch (Exception e) when (e is not OutOfMemoryException && !ConfluentWire.IsRegistryUnavailable(e))
            {
                throw new RecordDecodeException($"cannot decode record at {position.Topic}[{position.Partition.Value}]@{position.Offset.Value}: {e.Message}", e);
            }
            Process(new InputRecord<TKey, TValue>(key, value, record.Timestamp.UnixTimestampMs, position.Topic, position.Partition.Value,
                position.Offset.Value, record.Headers));
            foreach (var (k, v, h) in _pending) Send(k, v, h);
        }
        // The schema registry unreachable is not the record's fault: the exception fails the stream client (nothing of this
        // record was committed) and the host restarts it, which processes the record again.
        catch (Exception e) when (e is not OutOfMemoryException && !ConfluentWire.IsRegistryUnavailable(e))
        {
            StreamTracing.Failed(_span, e);
            DeadLetter(record, e);
        }
        finally
        {
            _pending.Clear();
            _current = null;
            _span?.Dispose();
            _span = null;
        }
        _services.Metrics.OnProcessed(Stopwatch.GetTimestamp() - started);
        _progress.Processed(position.Offset.Value);
        return null;
    }

    /// <summary>Emits a result. <paramref name="outputId"/> must be deterministic for the input (derived from it or from
    /// its position) so sinks drop the duplicates a replay produces; it travels as <see cref="StreamHeaders.OutputId"/>.
    /// While a record is processed the output waits until the record succeeds and carries its request id and trace context;
    /// from a punctuation it goes out at once.</summary>
    /// <remarks>The key and value are serialised by the caller (an <see cref="AvroSerDes{T}"/> of the topic).</remarks>
    protected void EmitBytes(string topic, byte[] key, byte[] value, long timestampUnixMs, string outputId)
    {
        var headers = new Headers();
        if (_current?.Headers is { } input && input.TryGetLastBytes(StreamHeaders.RequestId, out var requestId))
            headers.Add(StreamHeaders.RequestId, requestId);
        // The output continues the input's trace: as a child of this record's span, or (unobserved here) under the same parent.
        if (_span is not null) StreamTracing.Inject(_span, headers);
        else StreamTracing.CopyContext(_current?.Headers, headers);
        headers.Add(StreamHeaders.OutputId, Encoding.UTF8.GetBytes(outputId));
        var output = (key, new Emission(topic, value, timestampUnixMs), headers);
        if (_current is not null) _pending.Add(output);
        else Send(output.Item1, output.Item2, output.Item3);
    }

    /// <summary>Counts a record that the state already reflects (see <see cref="FencedSerDes{T}"/>).</summary>
    protected void SkipAlreadyApplied() => _services.Metrics.OnSkipped();

    private void Send(byte[] key, Emission value, Headers headers)
    {
        Context.SetHeaders(headers);
        Context.Forward(key, value);
        _services.Metrics.OnEmitted(1);
    }

    private void DeadLetter(Record<byte[], byte[]> record, Exception e)
    {
        var position = record.TopicPartitionOffset;
        var headers = StreamHeaders.DeadLetter(record.Headers, position.Topic, position.Partition.Value, position.Offset.Value, e.Message,
            e is RecordDecodeException ? StreamHeaders.DeserializationError : e.GetType().Name, Name);
        // An Avro source: the schema id the record's value claims (an unknown one is a common reason it does not decode).
        if (_valueSerDes is IConfluentWireSerDes && ConfluentWire.SchemaId(record.Value ?? []) is { } schemaId)
            headers.Add(StreamHeaders.SchemaId, Encoding.UTF8.GetBytes(schemaId.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Send(record.Key ?? [], new Emission(Schemas.Topics.DeadLetterOf(position.Topic), record.Value ?? [], record.Timestamp.UnixTimestampMs), headers);
        _services.Metrics.OnDeadLettered();
        _services.Log.LogWarning("task {Task}: record {Topic}[{Partition}]@{Offset} dead-lettered: {Error}",
            TaskName, position.Topic, position.Partition.Value, position.Offset.Value, e.Message);
    }

    /// <summary>Runs a punctuation body; a failure is logged and counted against the task instead of stopping its thread.</summary>
    protected void Punctuation(Action<long> body, long timeUnixMs)
    {
        try
        {
            body(timeUnixMs);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _progress.Failed("punctuation failed: " + e.Message);
            _services.Log.LogError(e, "task {Task}: punctuation failed", TaskName);
        }
    }

    public virtual void Close()
    {
        _services.Metrics.ForgetTask(_progress);
        _services.Log.LogInformation("task {Task} closed", TaskName);
    }
}

public sealed class RecordDecodeException(string message, Exception inner) : Exception(message, inner);
