using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Processors;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using Streamiz.Kafka.Net.Stream;

namespace StreamHealth.Runtime.Streams;

/// <summary>A StreamHealth topology: source topic → one <see cref="StreamProcessor{TKey,TValue}"/> (a Streamiz transformer
/// with its RocksDB stores) → one sink node that routes each <see cref="Emission"/> to its topic (results and
/// <c>{source}.dlq</c>). A workload with two stages is two topologies joined by a topic, which is also how it scales
/// and replays.</summary>
public sealed class StreamTopology
{
    /// <summary>Streamiz application id: consumer group, state directory and changelog prefix.</summary>
    public required string ApplicationId { get; init; }
    public required string SourceTopic { get; init; }
    public required string ProcessorName { get; init; }
    /// <summary>Topics the processor emits to (besides the dead-letter topic), created with the catalogue.</summary>
    public IReadOnlyList<string> SinkTopics { get; init; } = [];
    /// <summary>The processor and its stores, given the host's services (one processor instance per task).</summary>
    public required Func<ProcessorServices, TransformerSupplier<byte[], byte[], byte[], Emission>> Processor { get; init; }

    /// <summary>State stores of the processor beyond the one its <c>TransformerBuilder</c> carries (which takes one): added to the
    /// topology and connected to the processor by name (Streamiz's <c>AddStateStore</c> and <c>Transform</c>'s store names).</summary>
    public IReadOnlyList<IStoreBuilder> MoreStores { get; init; } = [];

    /// <summary>Whether the processor's serdes need the host's schema registry connection (an Avro source or sink topic):
    /// a host without one refuses the topology instead of dead-lettering every record.</summary>
    public bool RequiresSchemaRegistry { get; init; }

    /// <summary>Stores other processes may read through this host (the gateway, via <see cref="StoreQueryApi"/>).</summary>
    public IReadOnlyList<StoreQuery> Queries { get; init; } = [];

    public string DeadLetterTopic => Schemas.Topics.DeadLetterOf(SourceTopic);

    public Topology Build(ProcessorServices services)
    {
        var builder = new StreamBuilder();
        foreach (var store in MoreStores) builder.AddStateStore(store);
        // Bytes in: the processor decodes, so an undecodable record is dead-lettered like any other (see StreamProcessor).
        // No stream partitioner: the producer partitions by key (librdkafka's default, see KeyPartitioner). Streamiz's DSL
        // otherwise gives the sink its DefaultStreamPartitioner, which with its default setting (reshuffle every key) answers
        // "any partition" too, but only after asking the record collector for the topic's partition count on every record,
        // which rebuilds the admin configuration each time: 7.5 % of the sensors stream thread (perf, 2026-12-04).
        builder.Stream(SourceTopic, new ByteArraySerDes(), new ByteArraySerDes(), ApplicationId + "-source")
            .Transform(Processor(services), ProcessorName, [.. MoreStores.Select(store => store.Name)])
            .To(EmissionRouting.Instance, new ByteArraySerDes(), EmissionSerDes.Instance, EmissionRouting.Instance,
                (IStreamPartitioner<byte[], Emission>?)null, ApplicationId + "-sink");
        return builder.Build();
    }

    /// <summary>The changelog topics of this topology (see <see cref="ChangelogTopics(Topology)"/>), for provisioning.</summary>
    public IReadOnlyList<string> ChangelogTopics() =>
        ChangelogTopics(Build(new ProcessorServices(new StreamMetrics(), Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance)));

    /// <summary>The changelog topic of each state store of <paramref name="topology"/>, read from its description
    /// (Streamiz names them <c>{applicationId}-{store}-changelog</c>). On the embedded broker they must exist before
    /// the stream starts: Streamiz's CreateTopics request never reaches librdkafka's mock cluster.</summary>
    public IReadOnlyList<string> ChangelogTopics(Topology topology) =>
    [
        .. topology.Describe().SubTopologies
            .SelectMany(s => s.Nodes)
            .OfType<Streamiz.Kafka.Net.Stream.IProcessorNodeDescription>()
            .SelectMany(n => n.Stores)
            .Distinct(StringComparer.Ordinal)
            .Select(store => $"{ApplicationId}-{store}-changelog"),
    ];
}

/// <summary>A state store readable by key from outside the process (interactive query): how a key becomes the source
/// record's key bytes (so the gateway can tell which partition, hence which host, holds it) and how a stored value becomes
/// the JSON view served (the stored value has fences and codec details a reader should not depend on).</summary>
public sealed class StoreQuery
{
    private StoreQuery(string store, Func<ProcessorServices, string, byte[]> sourceKey, Func<StreamHost, string, string, TimeSpan, object?> read)
    {
        Store = store;
        SourceKey = sourceKey;
        Read = read;
    }

    public string Store { get; }
    /// <summary>The serialized key a producer gives a record for this key (partitioning hashes these bytes), given the
    /// host's services (an Avro key's bytes carry the key schema's id, from the host's registry connection).</summary>
    public Func<ProcessorServices, string, byte[]> SourceKey { get; }
    internal Func<StreamHost, string, string, TimeSpan, object?> Read { get; }

    /// <summary>A query over a store whose values are <typeparamref name="TStored"/>, served as <paramref name="view"/>.</summary>
    public static StoreQuery Of<TStored>(string store, Func<ProcessorServices, string, byte[]> sourceKey, Func<string, TStored, object> view) where TStored : class =>
        new(store, sourceKey, (host, applicationId, key, wait) =>
            host.TryQuery<string, TStored>(applicationId, store, key, out var value, wait) ? view(key, value) : null);
}
