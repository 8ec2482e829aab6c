using System.Text;
using Google.Protobuf;

namespace StreamHealth.Runtime.Streams;

/// <summary>Key/value (de)serialiser for a topic or a state store.</summary>
public interface ISerde<T>
{
    byte[] Serialize(T value);
    T Deserialize(ReadOnlySpan<byte> data);
}

public sealed class ProtobufSerde<T> : ISerde<T> where T : IMessage<T>, new()
{
    public static readonly ProtobufSerde<T> Instance = new();
    private static readonly MessageParser<T> Parser = new(() => new T());

    public byte[] Serialize(T value) => value.ToByteArray();

    public T Deserialize(ReadOnlySpan<byte> data) => Parser.ParseFrom(data);
}

public sealed class Utf8Serde : ISerde<string>
{
    public static readonly Utf8Serde Instance = new();
    public byte[] Serialize(string value) => Encoding.UTF8.GetBytes(value);
    public string Deserialize(ReadOnlySpan<byte> data) => Encoding.UTF8.GetString(data);
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
}
