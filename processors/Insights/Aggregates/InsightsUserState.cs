using System.Buffers.Binary;
using System.Text;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Insights.Aggregates;

/// <summary>One person's insights state: the latest event time counted (the person's stream time, which the grace period is
/// measured from) and each metric type's recent days. Small: six types × 30 days at most.</summary>
public sealed class InsightsUserState
{
    /// <summary>Latest event time of a counted record, ms since the Unix epoch; <see cref="long.MinValue"/> before the first.</summary>
    public long StreamTimeUnixMs { get; set; } = long.MinValue;

    /// <summary>Per metric type name; a type appears with its first counted record.</summary>
    public Dictionary<string, MetricDays> Metrics { get; } = new(StringComparer.Ordinal);

    public MetricDays? Find(string metric) => Metrics.GetValueOrDefault(metric);

    public MetricDays For(string metric)
    {
        if (!Metrics.TryGetValue(metric, out var days)) Metrics[metric] = days = new MetricDays();
        return days;
    }
}

/// <summary>[format 1][stream time: int64 LE][type count: uint8] then per type [name length: uint8][name UTF-8][day count: uint16 LE]
/// and each day as 52 bytes: local date int32, offset int16, count int32, total, min, max, last value (float64), last time int64,
/// padding int16 — all little-endian. A format of its own (not Avro) because it never leaves the store and is read per record.</summary>
public sealed class InsightsUserStateSerDes : CodecSerDes<InsightsUserState>
{
    public static readonly InsightsUserStateSerDes Instance = new();
    private const byte Format = 1;
    private const int DayBytes = 52;

    public override byte[] Encode(InsightsUserState value, int headroom)
    {
        var size = 1 + 8 + 1;
        foreach (var (name, days) in value.Metrics) size += 1 + Encoding.UTF8.GetByteCount(name) + 2 + days.Count * DayBytes;
        var bytes = new byte[headroom + size];
        var span = bytes.AsSpan(headroom);
        span[0] = Format;
        BinaryPrimitives.WriteInt64LittleEndian(span[1..], value.StreamTimeUnixMs);
        span[9] = checked((byte)value.Metrics.Count);
        var at = 10;
        foreach (var (name, days) in value.Metrics)
        {
            var nameLength = Encoding.UTF8.GetBytes(name, span[(at + 1)..]);
            span[at] = checked((byte)nameLength);
            at += 1 + nameLength;
            BinaryPrimitives.WriteUInt16LittleEndian(span[at..], checked((ushort)days.Count));
            at += 2;
            foreach (ref readonly var d in days.Days)
            {
                var s = span.Slice(at, DayBytes);
                BinaryPrimitives.WriteInt32LittleEndian(s, d.LocalDate);
                BinaryPrimitives.WriteInt16LittleEndian(s[4..], (short)d.UtcOffsetMinutes);
                BinaryPrimitives.WriteInt32LittleEndian(s[6..], d.Count);
                BinaryPrimitives.WriteDoubleLittleEndian(s[10..], d.Total);
                BinaryPrimitives.WriteDoubleLittleEndian(s[18..], d.Min);
                BinaryPrimitives.WriteDoubleLittleEndian(s[26..], d.Max);
                BinaryPrimitives.WriteDoubleLittleEndian(s[34..], d.LastValue);
                BinaryPrimitives.WriteInt64LittleEndian(s[42..], d.LastTimeUnixMs);
                at += DayBytes;
            }
        }
        return bytes;
    }

    public override InsightsUserState Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < 10 || data[0] != Format)
            throw new FormatException($"insights user state: unknown format {(data.Length > 0 ? data[0] : -1)} or {data.Length} bytes");
        var state = new InsightsUserState { StreamTimeUnixMs = BinaryPrimitives.ReadInt64LittleEndian(data[1..]) };
        int types = data[9], at = 10;
        for (var t = 0; t < types; t++)
        {
            int nameLength = data[at];
            var name = Encoding.UTF8.GetString(data.Slice(at + 1, nameLength));
            at += 1 + nameLength;
            int count = BinaryPrimitives.ReadUInt16LittleEndian(data[at..]);
            at += 2;
            if (data.Length - at < count * DayBytes) throw new FormatException($"insights user state: {name} claims {count} days in {data.Length - at} bytes");
            var days = new MetricDays(count);
            for (var i = 0; i < count; i++)
            {
                var s = data.Slice(at, DayBytes);
                days.Append(new MetricDay
                {
                    LocalDate = BinaryPrimitives.ReadInt32LittleEndian(s),
                    UtcOffsetMinutes = BinaryPrimitives.ReadInt16LittleEndian(s[4..]),
                    Count = BinaryPrimitives.ReadInt32LittleEndian(s[6..]),
                    Total = BinaryPrimitives.ReadDoubleLittleEndian(s[10..]),
                    Min = BinaryPrimitives.ReadDoubleLittleEndian(s[18..]),
                    Max = BinaryPrimitives.ReadDoubleLittleEndian(s[26..]),
                    LastValue = BinaryPrimitives.ReadDoubleLittleEndian(s[34..]),
                    LastTimeUnixMs = BinaryPrimitives.ReadInt64LittleEndian(s[42..]),
                });
                at += DayBytes;
            }
            state.Metrics[name] = days;
        }
        return state;
    }
}

/// <summary>A metric id the person already had counted: its local day (to prune it once the day left the 30-day window), the
/// source position that counted it (a replay of that very record is not a retry), and its fingerprint
/// (<see cref="Metrics.HealthMetricTypes.Fingerprint"/>: the same id with other content is a conflict, not a retry).</summary>
public sealed record SeenMetric(string Metric, int LocalDate, int SourcePartition, long SourceOffset, string Fingerprint);

/// <summary>[format 1][local date int32][partition int32][offset int64][metric length uint8][metric UTF-8][fingerprint UTF-8 to the end], LE.</summary>
public sealed class SeenMetricSerDes : CodecSerDes<SeenMetric>
{
    public static readonly SeenMetricSerDes Instance = new();
    private const byte Format = 1;

    public override byte[] Encode(SeenMetric value, int headroom)
    {
        var metricLength = Encoding.UTF8.GetByteCount(value.Metric);
        var bytes = new byte[headroom + 18 + metricLength + Encoding.UTF8.GetByteCount(value.Fingerprint)];
        var span = bytes.AsSpan(headroom);
        span[0] = Format;
        BinaryPrimitives.WriteInt32LittleEndian(span[1..], value.LocalDate);
        BinaryPrimitives.WriteInt32LittleEndian(span[5..], value.SourcePartition);
        BinaryPrimitives.WriteInt64LittleEndian(span[9..], value.SourceOffset);
        span[17] = checked((byte)metricLength);
        Encoding.UTF8.GetBytes(value.Metric, span[18..]);
        Encoding.UTF8.GetBytes(value.Fingerprint, span[(18 + metricLength)..]);
        return bytes;
    }

    public override SeenMetric Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < 18 || data[0] != Format || data.Length < 18 + data[17])
            throw new FormatException($"insights seen metric: unknown format {(data.Length > 0 ? data[0] : -1)} or {data.Length} bytes");
        int metricLength = data[17];
        return new SeenMetric(Encoding.UTF8.GetString(data.Slice(18, metricLength)), BinaryPrimitives.ReadInt32LittleEndian(data[1..]),
            BinaryPrimitives.ReadInt32LittleEndian(data[5..]), BinaryPrimitives.ReadInt64LittleEndian(data[9..]),
            Encoding.UTF8.GetString(data[(18 + metricLength)..]));
    }
}
