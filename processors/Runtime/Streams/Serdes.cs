using System.Text;
using Google.Protobuf;

namespace StreamHealth.Runtime.Streams;

/// <summary>Key/value (de)serialiser for a topic or a state store.</summary>
public interface ISerde<T>
{
    byte[] Serialize(T value);
    T Deserialize(ReadOnlySpan<byte> data);

    /// <summary><paramref name="prefix"/> followed by the serialised value, in one allocation (state-store
    /// keys are store prefix + key, built once or twice per record).</summary>
    byte[] SerializeWithPrefix(ReadOnlySpan<byte> prefix, T value)
    {
        var bytes = Serialize(value);
        var full = new byte[prefix.Length + bytes.Length];
        prefix.CopyTo(full);
        bytes.CopyTo(full, prefix.Length);
        return full;
    }
}

public sealed class ProtobufSerde<T> : ISerde<T> where T : IMessage<T>, new()
{
    public static readonly ProtobufSerde<T> Instance = new();
    private static readonly MessageParser<T> Parser = new(() => new T());

    public byte[] Serialize(T value) => value.ToByteArray();

    public T Deserialize(ReadOnlySpan<byte> data) => Parser.ParseFrom(data);

    public byte[] SerializeWithPrefix(ReadOnlySpan<byte> prefix, T value)
    {
        var full = new byte[prefix.Length + value.CalculateSize()];
        prefix.CopyTo(full);
        value.WriteTo(full.AsSpan(prefix.Length));
        return full;
    }
}

public sealed class Utf8Serde : ISerde<string>
{
    public static readonly Utf8Serde Instance = new();
    public byte[] Serialize(string value) => Encoding.UTF8.GetBytes(value);
    public string Deserialize(ReadOnlySpan<byte> data) => Encoding.UTF8.GetString(data);

    public byte[] SerializeWithPrefix(ReadOnlySpan<byte> prefix, string value)
    {
        var full = new byte[prefix.Length + Encoding.UTF8.GetByteCount(value)];
        prefix.CopyTo(full);
        Encoding.UTF8.GetBytes(value, full.AsSpan(prefix.Length));
        return full;
    }
}

public sealed class Int64Serde : ISerde<long>
{
    public static readonly Int64Serde Instance = new();
    public byte[] Serialize(long value)
    {
        var bytes = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes, value);
        return bytes;
    }
    public long Deserialize(ReadOnlySpan<byte> data) => System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(data);

    public byte[] SerializeWithPrefix(ReadOnlySpan<byte> prefix, long value)
    {
        var full = new byte[prefix.Length + 8];
        prefix.CopyTo(full);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(full.AsSpan(prefix.Length), value);
        return full;
    }
}
