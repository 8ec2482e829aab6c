using System.Buffers.Binary;
using Confluent.Kafka;
using Streamiz.Kafka.Net.SerDes;

namespace StreamHealth.Runtime.Streams;

/// <summary>A value in a state store together with the source offset its last update came from, so that a record
/// the state already reflects is recognised when it is processed again (see <see cref="FencedSerDes{T}"/>).</summary>
public sealed record Fenced<T>(long AppliedOffset, T Value) where T : class;

/// <summary>The applied-offset fence that makes at-least-once processing effectively once for state: a user's state
/// stores the offset (in the user's one source partition) of the last record it applied, in the same store value, so
/// the state and its fence reach RocksDB and the changelog in one write. A record at or below the fence was applied
/// before a crash (Streamiz keeps local state and restores the changelog past the last committed input offset) or
/// before a changelog restore, and is not applied again. Layout: [applied offset: int64 big-endian][inner value].</summary>
public sealed class FencedSerDes<T>(CodecSerDes<T> inner) : AbstractSerDes<Fenced<T>> where T : class
{
    private const int OffsetBytes = 8;

    // The inner value is encoded straight after room for the offset, and decoded from a span of the stored bytes: no copy
    // of the state on a Put (every record) or a Get.
    public override byte[] Serialize(Fenced<T> data, SerializationContext context)
    {
        var bytes = inner.Encode(data.Value, OffsetBytes);
        BinaryPrimitives.WriteInt64BigEndian(bytes, data.AppliedOffset);
        return bytes;
    }

    public override Fenced<T> Deserialize(byte[] data, SerializationContext context)
    {
        if (data.Length < OffsetBytes) throw new FormatException($"fenced state value of {data.Length} bytes: shorter than its 8-byte offset");
        return new Fenced<T>(BinaryPrimitives.ReadInt64BigEndian(data), inner.Decode(data.AsSpan(OffsetBytes)));
    }
}

/// <summary>A store value kept in a format of its own (a versioned codec) as a Streamiz serde.</summary>
public abstract class CodecSerDes<T> : AbstractSerDes<T>
{
    /// <summary>The encoded value at <paramref name="headroom"/>, the bytes before it left for the caller (a wrapping
    /// format's header, e.g. <see cref="FencedSerDes{T}"/>'s offset), so the wrapper does not copy the value.</summary>
    public abstract byte[] Encode(T value, int headroom);
    public abstract T Decode(ReadOnlySpan<byte> data);
    public byte[] Encode(T value) => Encode(value, 0);
    public override byte[] Serialize(T data, SerializationContext context) => Encode(data, 0);
    public override T Deserialize(byte[] data, SerializationContext context) => Decode(data);
}
