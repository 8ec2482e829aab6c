using Confluent.Kafka;

namespace StreamHealth.Runtime.Streams;

/// <summary>One input record, as the processor sees it.</summary>
public readonly record struct StreamRecord<TKey, TValue>(
    TKey Key, TValue Value, long TimestampUnixMs, string Topic, int Partition, long Offset, Headers? Headers);

/// <summary>A processor in the Kafka Streams shape: Init once per task, Process per record,
/// Punctuate on stream time or wall-clock schedules, Close when the task goes away.</summary>
public interface IProcessor<TKey, TValue>
{
    void Init(IProcessorContext context);
    void Process(in StreamRecord<TKey, TValue> record);
    void Punctuate(PunctuationType type, long timeUnixMs) { }

    /// <summary>Called before every commit: a processor that keeps decoded state in memory and writes it back
    /// lazily (rather than serialising it on every record) puts its changed entries into its stores here, so
    /// they join the commit with the input offsets they reflect. Process must then leave state untouched when
    /// it throws (the record is dead-lettered and its writes discarded). Interactive queries see the stores,
    /// so they lag such a processor by at most one commit interval.</summary>
    void Flush() { }

    void Close() { }
}

public enum PunctuationType { StreamTime, WallClock }

/// <summary>What a processor may touch: its task's stores, its outputs, and time.</summary>
public interface IProcessorContext
{
    string ApplicationId { get; }
    /// <summary>"topic-partition" of the input partition this task owns.</summary>
    string TaskId { get; }
    int Partition { get; }
    /// <summary>Highest record timestamp seen by this task (event time), ms since the Unix epoch.</summary>
    long StreamTimeUnixMs { get; }

    /// <summary>The task's store <paramref name="name"/> (declared in <see cref="Topology.StoreNames"/>).</summary>
    KeyValueStore<TK, TV> GetStore<TK, TV>(string name, ISerde<TK> keySerde, ISerde<TV> valueSerde);

    /// <summary>Emits a result to a sink topic. <paramref name="outputId"/> must be deterministic for
    /// the input (e.g. derived from its offset) so sinks can drop the duplicates a replay produces;
    /// it travels as the <see cref="StreamHeaders.OutputId"/> header. The input record's
    /// <see cref="StreamHeaders.RequestId"/> header, if any, is copied onto the output.</summary>
    void Forward(string sinkTopic, Google.Protobuf.IMessage key, Google.Protobuf.IMessage value, long timestampUnixMs, string outputId);

    /// <summary>As above, for keys and values already serialised (the caller gives up the arrays).</summary>
    void Forward(string sinkTopic, byte[] key, byte[] value, long timestampUnixMs, string outputId);

    /// <summary>Asks for <see cref="IProcessor{TKey,TValue}.Punctuate"/> every <paramref name="interval"/> of
    /// stream time (advanced only by records, so replays punctuate at the same points) or of wall-clock
    /// time (fires with no input, e.g. to close idle windows). Store writes and outputs made in Punctuate
    /// join the task's next commit like a record's.</summary>
    void Schedule(TimeSpan interval, PunctuationType type);
}

/// <summary>Header names the runtime writes.</summary>
public static class StreamHeaders
{
    public const string OutputId = "streamhealth-output-id";
    public const string Error = "streamhealth-error";
    public const string ErrorType = "streamhealth-error-type";
    public const string Processor = "streamhealth-processor";
    public const string SourceTopic = "streamhealth-source-topic";
    public const string SourcePartition = "streamhealth-source-partition";
    public const string SourceOffset = "streamhealth-source-offset";

    /// <summary>A request's correlation id (e.g. the gateway's, for request/reply over a topic pair). A task copies it
    /// from the input record onto every output it forwards while processing that record, so the reply finds its
    /// request whatever ids the client chose. Only this header travels: the runtime's own (output id, errors) describe
    /// one record and must not leak onto another.</summary>
    public const string RequestId = "streamhealth-request-id";

    /// <summary>The headers of a dead letter for input <paramref name="r"/>: the record's own headers, then the error,
    /// its type (<c>deserialization</c> for a record that does not decode, else the exception type), the processor,
    /// the source position, and an output id derived from that position (a re-sent dead letter is recognisable).</summary>
    public static Headers DeadLetter(ConsumeResult<byte[]?, byte[]?> r, string error, string errorType, string processor)
    {
        var headers = new Headers();
        if (r.Message.Headers is { } original) foreach (var h in original) headers.Add(h.Key, h.GetValueBytes());
        headers.Add(Error, System.Text.Encoding.UTF8.GetBytes(error));
        headers.Add(ErrorType, System.Text.Encoding.UTF8.GetBytes(errorType));
        headers.Add(Processor, System.Text.Encoding.UTF8.GetBytes(processor));
        headers.Add(SourceTopic, System.Text.Encoding.UTF8.GetBytes(r.Topic));
        headers.Add(SourcePartition, System.Text.Encoding.UTF8.GetBytes(r.Partition.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        headers.Add(SourceOffset, System.Text.Encoding.UTF8.GetBytes(r.Offset.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        headers.Add(OutputId, System.Text.Encoding.UTF8.GetBytes($"dlq:{r.Topic}:{r.Partition.Value}:{r.Offset.Value}"));
        return headers;
    }

    /// <summary>The <see cref="ErrorType"/> of a record that does not decode.</summary>
    public const string DeserializationError = "deserialization";
}
