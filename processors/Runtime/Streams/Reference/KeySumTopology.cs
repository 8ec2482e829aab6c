using System.Buffers.Binary;

namespace StreamHealth.Runtime.Streams.Reference;

/// <summary>The reference topology: a running sum of 64-bit amounts per UTF-8 key (a count when every
/// amount is 1). A fold whose final state shows any lost or doubly applied update, so the crash and
/// rebalance tests and the end-to-end load harness all use it. Each input emits the key's new sum to
/// <c>{source}.sums</c> with the input's timestamp and id <c>partition:offset</c>.</summary>
public static class KeySumTopology
{
    public const string Store = "sums";

    public static string OutputTopic(string sourceTopic) => sourceTopic + ".sums";

    public static Topology<string, long> Create(string sourceTopic, string applicationId) => new()
    {
        ApplicationId = applicationId,
        SourceTopic = sourceTopic,
        ProcessorName = "key-sum",
        SinkTopics = [OutputTopic(sourceTopic)],
        StoreNames = [Store],
        KeySerde = Utf8Serde.Instance,
        ValueSerde = Int64Serde.Instance,
        ProcessorFactory = () => new KeySumProcessor(OutputTopic(sourceTopic)),
    };

    /// <summary>Reads a key's sum from a host that owns it (interactive query).</summary>
    public static bool TryQuery(StreamHost host, string applicationId, string key, out long sum) =>
        host.TryQuery(applicationId, Store, key, Utf8Serde.Instance, Int64Serde.Instance, out sum);

    private sealed class KeySumProcessor(string outputTopic) : IProcessor<string, long>
    {
        private KeyValueStore<string, long> _sums = null!;
        private IProcessorContext _context = null!;

        public void Init(IProcessorContext context)
        {
            _context = context;
            _sums = context.GetStore(Store, Utf8Serde.Instance, Int64Serde.Instance);
        }

        public void Process(in StreamRecord<string, long> record)
        {
            _sums.TryGet(record.Key, out var sum);
            sum += record.Value;
            _sums.Put(record.Key, sum);
            var value = new byte[8];
            BinaryPrimitives.WriteInt64BigEndian(value, sum);
            _context.Forward(outputTopic, Utf8Serde.Instance.Serialize(record.Key), value, record.TimestampUnixMs,
                $"{record.Partition}:{record.Offset}");
        }
    }
}
