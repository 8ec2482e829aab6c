using System.Buffers.Binary;
using System.Text;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Sensors.Metrics;

/// <summary>One node's metric (a series): its event time so far (the latest counted reading's, which windows close by), its
/// district, and per window size the start of the next window to emit.</summary>
public sealed class SensorSeriesState
{
    public long StreamTimeUnixMs { get; set; } = long.MinValue;
    public string DistrictId { get; set; } = "";
    /// <summary>Per <see cref="SensorWindows.SizesMinutes"/>: the next window to emit; <see cref="long.MinValue"/> before the first reading.</summary>
    public long[] NextWindowStartUnixMs { get; } = [long.MinValue, long.MinValue, long.MinValue];
    /// <summary>Start of the oldest hour whose minutes may still be in the minute store (they are kept a while after the
    /// hour is emitted, so a replay after a crash can emit its windows again); <see cref="long.MinValue"/> before the first reading.</summary>
    public long PurgeFromUnixMs { get; set; } = long.MinValue;
}

/// <summary>[format 1][stream time int64][next window start int64 × 3][purge from int64][district length uint8][district UTF-8], little-endian.</summary>
public sealed class SensorSeriesStateSerDes : CodecSerDes<SensorSeriesState>
{
    public static readonly SensorSeriesStateSerDes Instance = new();
    private const byte Format = 1;
    private const int Fixed = 1 + 8 + 3 * 8 + 8 + 1;

    public override byte[] Encode(SensorSeriesState value, int headroom)
    {
        var district = Encoding.UTF8.GetByteCount(value.DistrictId);
        var bytes = new byte[headroom + Fixed + district];
        var span = bytes.AsSpan(headroom);
        span[0] = Format;
        BinaryPrimitives.WriteInt64LittleEndian(span[1..], value.StreamTimeUnixMs);
        for (var i = 0; i < 3; i++) BinaryPrimitives.WriteInt64LittleEndian(span[(9 + 8 * i)..], value.NextWindowStartUnixMs[i]);
        BinaryPrimitives.WriteInt64LittleEndian(span[33..], value.PurgeFromUnixMs);
        span[41] = checked((byte)district);
        Encoding.UTF8.GetBytes(value.DistrictId, span[Fixed..]);
        return bytes;
    }

    public override SensorSeriesState Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < Fixed || data[0] != Format || data.Length != Fixed + data[41])
            throw new FormatException($"sensor series state: {data.Length} bytes, format {(data.Length > 0 ? data[0] : -1)}, expected format {Format}");
        var state = new SensorSeriesState
        {
            StreamTimeUnixMs = BinaryPrimitives.ReadInt64LittleEndian(data[1..]),
            PurgeFromUnixMs = BinaryPrimitives.ReadInt64LittleEndian(data[33..]),
            DistrictId = Encoding.UTF8.GetString(data[Fixed..]),
        };
        for (var i = 0; i < 3; i++) state.NextWindowStartUnixMs[i] = BinaryPrimitives.ReadInt64LittleEndian(data[(9 + 8 * i)..]);
        return state;
    }
}
