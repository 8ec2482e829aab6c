using System.Buffers.Binary;
using Confluent.Kafka;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;

namespace StreamHealth.Runtime.Streams.Reference;

/// <summary>The reference topology: a running sum of 64-bit big-endian amounts per UTF-8 key (a count when every
/// amount is 1). A fold whose final state shows any lost or doubly applied update, so the crash and rebalance tests
/// and the end-to-end load harness all use it. Each input emits the key's new sum to <c>{source}.sums</c> with the
/// input's timestamp and id <c>partition:offset</c>. A record the state already reflects (replayed after a crash)
/// emits nothing: its sum was sent before the crash or is no longer the key's sum; the state is what counts.</summary>
public static class KeySumTopology
{
    public const string Store = "sums";

    public static string OutputTopic(string sourceTopic) => sourceTopic + ".sums";

    public static StreamTopology Create(string sourceTopic, string applicationId, StoreFaults? faults = null) => new()
    {
        ApplicationId = applicationId,
        SourceTopic = sourceTopic,
        ProcessorName = "key-sum",
        SinkTopics = [OutputTopic(sourceTopic)],
        Processor = services => TransformerBuilder.New<byte[], byte[], byte[], Emission>()
            .Transformer<KeySumProcessor>(services, OutputTopic(sourceTopic))
            .StateStore(Stores.KeyValueStoreBuilder(
                    faults is null ? Stores.PersistentKeyValueStore(Store) : new FaultInjectingStoreSupplier(Store, faults),
                    new StringSerDes(), new FencedSerDes<RunningSum>(RunningSum.SerDes))
                .WithCachingEnabled())
            .Build(),
    };

    /// <summary>Reads a key's sum from a host that owns it (interactive query).</summary>
    public static bool TryQuery(StreamHost host, string applicationId, string key, out long sum)
    {
        var found = host.TryQuery<string, Fenced<RunningSum>>(applicationId, Store, key, out var value);
        sum = found ? value.Value.Sum : 0;
        return found;
    }

    /// <summary>A key's sum (a class: Streamiz stores and queries reference values).</summary>
    public sealed record RunningSum(long Sum)
    {
        public static readonly BigEndianInt64SerDes<RunningSum> SerDes = new(s => s.Sum, v => new RunningSum(v));
    }

    public sealed class KeySumProcessor : StreamProcessor<string, long>
    {
        private readonly string _outputTopic = "";
        private IKeyValueStore<string, Fenced<RunningSum>> _sums = null!;

        public KeySumProcessor() : base(null!, null!, null!, "") { }

        public KeySumProcessor(ProcessorServices services, string outputTopic)
            : base(services, new StringSerDes(), BigEndianInt64SerDes.Instance, "key-sum") => _outputTopic = outputTopic;

        protected override void Init() => _sums = (IKeyValueStore<string, Fenced<RunningSum>>)Context.GetStateStore(Store);

        protected override void Process(in InputRecord<string, long> record)
        {
            var entry = _sums.Get(record.Key);
            if (entry is not null && record.Offset <= entry.AppliedOffset)
            {
                SkipAlreadyApplied();
                return;
            }
            var sum = (entry?.Value.Sum ?? 0) + record.Value;
            _sums.Put(record.Key, new Fenced<RunningSum>(record.Offset, new RunningSum(sum)));
            EmitBytes(_outputTopic, System.Text.Encoding.UTF8.GetBytes(record.Key), BigEndianInt64SerDes.Encode(sum), record.TimestampUnixMs,
                $"{record.Partition}:{record.Offset}");
        }
    }
}

/// <summary>A 64-bit integer, big-endian (sorts like the number for non-negative values).</summary>
public sealed class BigEndianInt64SerDes : AbstractSerDes<long>
{
    public static readonly BigEndianInt64SerDes Instance = new();

    public static byte[] Encode(long value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(bytes, value);
        return bytes;
    }

    public override byte[] Serialize(long data, SerializationContext context) => Encode(data);

    public static long Decode(ReadOnlySpan<byte> data) =>
        data.Length == 8 ? BinaryPrimitives.ReadInt64BigEndian(data) : throw new FormatException($"an Int64 is 8 bytes, not {data.Length}");

    public override long Deserialize(byte[] data, SerializationContext context) => Decode(data);
}

/// <summary>A reference value holding one 64-bit integer, big-endian.</summary>
public sealed class BigEndianInt64SerDes<T>(Func<T, long> get, Func<long, T> create) : CodecSerDes<T>
{
    public override byte[] Encode(T value, int headroom)
    {
        var bytes = new byte[headroom + 8];
        BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(headroom), get(value));
        return bytes;
    }

    public override T Decode(ReadOnlySpan<byte> data) => create(BigEndianInt64SerDes.Decode(data));
}
