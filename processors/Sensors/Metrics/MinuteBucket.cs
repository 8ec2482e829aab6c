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
    /// <summary>The source offsets of the repeats (readings whose event time was already counted): a repeat processed again after
    /// a crash is known by its offset and not counted twice.</summary>
    public List<long> DuplicateOffsets { get; } = [];
    public int DuplicateCount => DuplicateOffsets.Count;
    public int LateCount { get; set; }

    /// <summary>How a reading changed the bucket.</summary>
    public enum Outcome { Added, Duplicate, AlreadyApplied }

    /// <summary>Adds a reading. The same source offset again is a replay (after a crash) and changes nothing; another
    /// reading with an event time already counted is a duplicate: counted as such, its value kept out (the first counts).</summary>
    public Outcome Add(long timeUnixMs, double value, long sourceOffset, bool late)
    {
        if (DuplicateOffsets.Contains(sourceOffset)) return Outcome.AlreadyApplied;
        foreach (var r in Readings)
        {
            if (r.SourceOffset == sourceOffset) return Outcome.AlreadyApplied;
            if (r.TimeUnixMs == timeUnixMs)
            {
                DuplicateOffsets.Add(sourceOffset);
                return Outcome.Duplicate;
            }
        }
        Readings.Add(new BucketReading(timeUnixMs, value, sourceOffset));
        if (late) LateCount++;
        return Outcome.Added;
    }
}

/// <summary>[format 2][late int32][count int32][duplicates int32] then per reading [time int64][value float64][offset int64], then
/// per duplicate [offset int64]; little-endian. A format of its own (not Avro): it never leaves the store. Format 1 (a duplicate
/// count without offsets) is still read, its repeats given offsets no record has.</summary>
public sealed class MinuteBucketSerDes : CodecSerDes<MinuteBucket>
{
    public static readonly MinuteBucketSerDes Instance = new();
    private const byte Format = 2;
    private const int Header = 13;
    private const int ReadingBytes = 24;

    public override byte[] Encode(MinuteBucket value, int headroom)
    {
        var bytes = new byte[headroom + Header + value.Readings.Count * ReadingBytes + value.DuplicateOffsets.Count * 8];
        var span = bytes.AsSpan(headroom);
        span[0] = Format;
        BinaryPrimitives.WriteInt32LittleEndian(span[1..], value.LateCount);
        BinaryPrimitives.WriteInt32LittleEndian(span[5..], value.Readings.Count);
        BinaryPrimitives.WriteInt32LittleEndian(span[9..], value.DuplicateOffsets.Count);
        var at = Header;
        foreach (var r in value.Readings)
        {
            BinaryPrimitives.WriteInt64LittleEndian(span[at..], r.TimeUnixMs);
            BinaryPrimitives.WriteDoubleLittleEndian(span[(at + 8)..], r.Value);
            BinaryPrimitives.WriteInt64LittleEndian(span[(at + 16)..], r.SourceOffset);
            at += ReadingBytes;
        }
        foreach (var offset in value.DuplicateOffsets)
        {
            BinaryPrimitives.WriteInt64LittleEndian(span[at..], offset);
            at += 8;
        }
        return bytes;
    }

    public override MinuteBucket Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < Header || data[0] is not (1 or Format))
            throw new FormatException($"minute bucket: format {(data.Length > 0 ? data[0] : -1)} of {data.Length} bytes, expected format {Format}");
        var bucket = new MinuteBucket();
        int count, duplicates;
        if (data[0] == 1)
        {
            // [format 1][duplicates][late][count]: the repeats' offsets were not kept.
            duplicates = BinaryPrimitives.ReadInt32LittleEndian(data[1..]);
            bucket.LateCount = BinaryPrimitives.ReadInt32LittleEndian(data[5..]);
            count = BinaryPrimitives.ReadInt32LittleEndian(data[9..]);
            if (count < 0 || duplicates < 0 || data.Length != Header + (long)count * ReadingBytes)
                throw new FormatException($"minute bucket: {data.Length} bytes for {count} readings");
            for (var i = 0; i < duplicates; i++) bucket.DuplicateOffsets.Add(-1 - i);
        }
        else
        {
            bucket.LateCount = BinaryPrimitives.ReadInt32LittleEndian(data[1..]);
            count = BinaryPrimitives.ReadInt32LittleEndian(data[5..]);
            duplicates = BinaryPrimitives.ReadInt32LittleEndian(data[9..]);
            if (count < 0 || duplicates < 0 || data.Length != Header + (long)count * ReadingBytes + (long)duplicates * 8)
                throw new FormatException($"minute bucket: {data.Length} bytes for {count} readings and {duplicates} repeats");
            for (var i = 0; i < duplicates; i++) bucket.DuplicateOffsets.Add(BinaryPrimitives.ReadInt64LittleEndian(data[(Header + count * ReadingBytes + i * 8)..]));
        }
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
