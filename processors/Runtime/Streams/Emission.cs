using Confluent.Kafka;
using Streamiz.Kafka.Net.Processors;
using Streamiz.Kafka.Net.SerDes;

namespace StreamHealth.Runtime.Streams;

/// <summary>One output of a <see cref="StreamProcessor{TKey,TValue}"/>: a serialised value for a topic with its
/// timestamp. A topology's single sink node routes each one by <see cref="Topic"/> (results and dead letters alike),
/// so every output of a task goes through the task's producer and is flushed before the task commits its input.</summary>
public sealed class Emission(string topic, byte[] value, long timestampUnixMs)
{
    public string Topic { get; } = topic;
    public byte[] Value { get; } = value;
    public long TimestampUnixMs { get; } = timestampUnixMs;
}

/// <summary>Writes an <see cref="Emission"/>'s bytes as they are.</summary>
public sealed class EmissionSerDes : AbstractSerDes<Emission>
{
    public static readonly EmissionSerDes Instance = new();
    public override byte[] Serialize(Emission data, SerializationContext context) => data.Value;
    public override Emission Deserialize(byte[] data, SerializationContext context) =>
        throw new NotSupportedException("emissions are only written");
}

internal sealed class EmissionRouting : ITopicNameExtractor<byte[], Emission>, IRecordTimestampExtractor<byte[], Emission>
{
    public static readonly EmissionRouting Instance = new();
    public string Extract(byte[] key, Emission value, IRecordContext recordContext) => value.Topic;
    long IRecordTimestampExtractor<byte[], Emission>.Extract(byte[] key, Emission value, IRecordContext recordContext) => value.TimestampUnixMs;
}
