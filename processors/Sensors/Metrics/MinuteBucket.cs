using System.Buffers.Binary;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Sensors.Metrics;

/// <summary>One reading kept in a minute: its event time, its value in the canonical unit and the source offset it came
/// from (a node's records all live in one partition, so the offset identifies the record).</summary>
public readonly record struct BucketReading(long TimeUnixMs, double Value, long SourceOffset);

/// <summary>What one node's metric received in one minute: its distinct readings (by event time) and how many repeats and
/// late arrivals there were. The 1-minute window is one bucket; the 15- and 60-minute windows are read from their
/// buckets when they close, so every size is computed from the same readings.</summary>
public sealed class MinuteBucket
{
    public List<BucketReading> Readings { get; } = [];
    public int DuplicateCount { get; set; }
    public int LateCount { get; set; }

    /// <summary>How a reading changed the bucket.</summary>
    public enum Outcome { Added, Duplicate, AlreadyApplied }

    /// <summary>Adds a reading. The same source offset again is a replay (after a crash) and changes nothing; another
    /// reading with an event time already counted is a duplicate: counted as such, its value kept out (the first counts).</summary>
    public Outcome Add(long timeUnixMs, double value, long sourceOffset, bool late)
    {
        foreach (var r in Readings)
        {
            if (r.SourceOffset == sourceOffset) return Outcome.AlreadyApplied;
            if (r.TimeUnixMs == timeUnixMs)
            {
                DuplicateCount++;
                return Outcome.Duplicate;
            }
        }
        Readings.Add(new BucketReading(timeUnixMs, value, sourceOffset));
        if (late) LateCount++;
        return Outcome.Added;
    }
}

/// <summary>[format 1][duplicates int32][late int32][count int32] then per reading [time int64][value float64][offset int64],
/// little-endian. A format of its own (not Avro): it never leaves the store.</summary>
public sealed class MinuteBucketSerDes : CodecSerDes<MinuteBucket>
{
    public static readonly MinuteBucketSerDes Instance = new();
    private const byte Format = 1;
    private const int Header = 13;
    private const int ReadingBytes = 24;

    public override byte[] Encode(MinuteBucket value, int headroom)
    {
        var bytes = new byte[headroom + Header + value.Readings.Count * ReadingBytes];
        var span = bytes.AsSpan(headroom);
        span[0] = Format;
        BinaryPrimitives.WriteInt32LittleEndian(span[1..], value.DuplicateCount);
        BinaryPrimitives.WriteInt32LittleEndian(span[5..], value.LateCount);
        BinaryPrimitives.WriteInt32LittleEndian(span[9..], value.Readings.Count);
        var at = Header;
        foreach (var r in value.Readings)
        {
            BinaryPrimitives.WriteInt64LittleEndian(span[at..], r.TimeUnixMs);
            BinaryPrimitives.WriteDoubleLittleEndian(span[(at + 8)..], r.Value);
            BinaryPrimitives.WriteInt64LittleEndian(span[(at + 16)..], r.SourceOffset);
            at += ReadingBytes;
        }
        return bytes;
    }

    public override MinuteBucket Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < Header || data[0] != Format) throw new FormatException($"minute bucket: format {(data.Length > 0 ? data[0] : -1)} of {data.Length} bytes, expected format {Format}");
        var count = BinaryPrimitives.ReadInt32LittleEndian(data[9..]);
        if (count < 0 || data.Length != Header + (long)count * ReadingBytes) throw new FormatException($"minute bucket: {data.Length} bytes for {count} readings");
        var bucket = new MinuteBucket
        {
            DuplicateCount = BinaryPrimitives.ReadInt32LittleEndian(data[1..]),
            LateCount = BinaryPrimitives.ReadInt32LittleEndian(data[5..]),
        };
        bucket.Readings.Capacity = count;
        for (var i = 0; i < count; i++)
        {
            var r = data.Slice(Header + i * ReadingBytes, ReadingBytes);
            bucket.Readings.Add(new BucketReading(BinaryPrimitives.ReadInt64LittleEndian(r), BinaryPrimitives.ReadDoubleLittleEndian(r[8..]),
                BinaryPrimitives.ReadInt64LittleEndian(r[16..])));
        }
        return bucket;
    }
}
