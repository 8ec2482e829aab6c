using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
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

    public string DeadLetterTopic => Schemas.Topics.DeadLetterOf(SourceTopic);

    public Topology Build(ProcessorServices services)
    {
        var builder = new StreamBuilder();
        // Bytes in: the processor decodes, so an undecodable record is dead-lettered like any other (see StreamProcessor).
        builder.Stream(SourceTopic, new ByteArraySerDes(), new ByteArraySerDes(), ApplicationId + "-source")
            .Transform(Processor(services), ProcessorName)
            .To(EmissionRouting.Instance, new ByteArraySerDes(), EmissionSerDes.Instance, EmissionRouting.Instance, ApplicationId + "-sink");
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
