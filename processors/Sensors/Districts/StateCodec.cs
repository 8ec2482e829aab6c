using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace StreamHealth.Sensors.Districts;

/// <summary>Little-endian writer of the analyser's state (its own format: it never leaves the store).</summary>
internal sealed class StateWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);

    public void Byte(byte value)
    {
        _buffer.GetSpan(1)[0] = value;
        _buffer.Advance(1);
    }
    public void Bool(bool value) => Byte(value ? (byte)1 : (byte)0);

    public void Int(int value)
    {
        BinaryPrimitives.WriteInt32LittleEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
    }

    public void Long(long value)
    {
        BinaryPrimitives.WriteInt64LittleEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
    }

    public void ULong(ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
    }

    public void Double(double value)
    {
        BinaryPrimitives.WriteDoubleLittleEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
    }

    /// <summary>Learned samples are kept as float: 7 significant digits are far beyond any sensor's, at half the bytes.</summary>
    public void Float(float value)
    {
        BinaryPrimitives.WriteSingleLittleEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
    }

    public void String(string value)
    {
        var length = Encoding.UTF8.GetByteCount(value);
        Int(length);
        Encoding.UTF8.GetBytes(value, _buffer.GetSpan(length));
        _buffer.Advance(length);
    }

    public void Floats(float[] values)
    {
        Int(values.Length);
        foreach (var v in values) Float(v);
    }

    public void Doubles(double[] values)
    {
        Int(values.Length);
        foreach (var v in values) Double(v);
    }

    public byte[] ToArray(int headroom)
    {
        var bytes = new byte[headroom + _buffer.WrittenCount];
        _buffer.WrittenSpan.CopyTo(bytes.AsSpan(headroom));
        return bytes;
    }
}

/// <summary>Reader of <see cref="StateWriter"/>'s format; a truncated or inconsistent state throws FormatException.</summary>
internal ref struct StateReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _at;

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || _at + count > _data.Length)
            throw new FormatException($"district analyser state: truncated at byte {_at} of {_data.Length} (wanted {count} more)");
        var span = _data.Slice(_at, count);
        _at += count;
        return span;
    }

    public byte Byte() => Take(1)[0];
    public bool Bool() => Byte() != 0;
    public int Int() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));
    public long Long() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));
    public ulong ULong() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
    public double Double() => BinaryPrimitives.ReadDoubleLittleEndian(Take(8));
    public float Float() => BinaryPrimitives.ReadSingleLittleEndian(Take(4));
    public string String() => Encoding.UTF8.GetString(Take(Count(1)));

    /// <summary>A length, checked against the bytes left (so a corrupt length cannot allocate gigabytes).</summary>
    public int Count(int bytesEach)
    {
        var count = Int();
        if (count < 0 || (long)count * bytesEach > _data.Length - _at)
            throw new FormatException($"district analyser state: a length of {count} at byte {_at - 4} exceeds the {_data.Length - _at} bytes left");
        return count;
    }

    public float[] Floats()
    {
        var values = new float[Count(4)];
        for (var i = 0; i < values.Length; i++) values[i] = Float();
        return values;
    }

    public double[] Doubles()
    {
        var values = new double[Count(8)];
        for (var i = 0; i < values.Length; i++) values[i] = Double();
        return values;
    }

    public void End()
    {
        if (_at != _data.Length) throw new FormatException($"district analyser state: {_data.Length - _at} bytes left over after the state");
    }
}
