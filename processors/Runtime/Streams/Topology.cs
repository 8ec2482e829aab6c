namespace StreamHealth.Runtime.Streams;

/// <summary>Source topic → processor → sink topics, plus the stores the processor owns.
/// Kept to the one shape our workloads need; a workload with two stages is two topologies
/// joined by a topic, which is also how it scales and replays.</summary>
public abstract class Topology
{
    public required string ApplicationId { get; init; }
    public required string SourceTopic { get; init; }
    public required string ProcessorName { get; init; }
    public IReadOnlyList<string> SinkTopics { get; init; } = [];
    public IReadOnlyList<string> StoreNames { get; init; } = [];

    /// <summary>The changelog of every store of this topology: partition p holds task p's stores.
    /// One topic per topology (Kafka Streams has one per store) so that one commit's writes and its
    /// offset marker form one ordered run in one partition, which restore applies all or nothing.</summary>
    public string ChangelogTopic => $"{ApplicationId}-changelog";

    public string DeadLetterTopic => SourceTopic + Schemas.Topics.DeadLetterSuffix;

    internal abstract ITaskProcessor CreateProcessor();
}

/// <summary>Typed topology: how to decode the source and which processor to run per task.</summary>
public sealed class Topology<TKey, TValue> : Topology
{
    public required ISerde<TKey> KeySerde { get; init; }
    public required ISerde<TValue> ValueSerde { get; init; }
    public required Func<IProcessor<TKey, TValue>> ProcessorFactory { get; init; }

    internal override ITaskProcessor CreateProcessor() => new TypedTaskProcessor<TKey, TValue>(this, ProcessorFactory());
}

/// <summary>The untyped face of a processor that a task drives.</summary>
internal interface ITaskProcessor
{
    string Name { get; }
    void Init(IProcessorContext context);
    /// <summary>Decodes and processes; a decode failure throws <see cref="RecordDecodeException"/>.</summary>
    void Process(Confluent.Kafka.ConsumeResult<byte[]?, byte[]?> result);
    void Punctuate(PunctuationType type, long timeUnixMs);
    void Flush();
    void Close();
}

public sealed class RecordDecodeException(string message, Exception inner) : Exception(message, inner);

internal sealed class TypedTaskProcessor<TKey, TValue>(Topology<TKey, TValue> topology, IProcessor<TKey, TValue> processor) : ITaskProcessor
{
    public string Name => topology.ProcessorName;

    public void Init(IProcessorContext context) => processor.Init(context);

    public void Process(Confluent.Kafka.ConsumeResult<byte[]?, byte[]?> r)
    {
        TKey key;
        TValue value;
        try
        {
            key = topology.KeySerde.Deserialize(r.Message.Key ?? []);
            value = topology.ValueSerde.Deserialize(r.Message.Value ?? throw new FormatException("record has no value"));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new RecordDecodeException($"cannot decode record at {r.Topic}[{r.Partition.Value}]@{r.Offset.Value}: {e.Message}", e);
        }
        processor.Process(new StreamRecord<TKey, TValue>(key, value, r.Message.Timestamp.UnixTimestampMs,
            r.Topic, r.Partition.Value, r.Offset.Value, r.Message.Headers));
    }

    public void Punctuate(PunctuationType type, long timeUnixMs) => processor.Punctuate(type, timeUnixMs);

    public void Flush() => processor.Flush();

    public void Close() => processor.Close();
}
