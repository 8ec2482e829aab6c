using System.IO.Hashing;

namespace StreamHealth.Runtime.Streams;

/// <summary>The partition a keyed record lands on, computed the way our producers' librdkafka computes it: the default
/// partitioner <c>consistent_random</c> is CRC-32 (IEEE, as zlib) of the serialized key modulo the partition count.
/// The gateway uses it to find which processing host owns a user's state (the owner of that partition of the
/// topology's source topic) without asking every host. Producers must keep the default partitioner; a test produces
/// through Confluent.Kafka and checks every delivered partition against this.</summary>
public static class KeyPartitioner
{
    public static int PartitionOf(ReadOnlySpan<byte> key, int partitions)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(partitions, 1);
        return (int)(Crc32.HashToUInt32(key) % (uint)partitions);
    }
}
