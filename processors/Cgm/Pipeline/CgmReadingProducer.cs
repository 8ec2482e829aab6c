using Confluent.Kafka;
using StreamHealth.Cgm.Formats;
using StreamHealth.Cgm.Series;
using StreamHealth.Runtime.Observability;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Validation;
using CgmReading = StreamHealth.Schemas.Avro.Cgm.CgmReading;
using UserKey = StreamHealth.Schemas.Avro.Common.UserKey;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>Turns a parsed export into cgm.readings records and produces them, waiting for every
/// acknowledgement. The whole file is parsed before the first record is sent (a bad file sends nothing),
/// and reading ids are deterministic, so a retry after a failed send re-sends the same records and the
/// sinks store each once. Records are Avro in the Confluent wire format (key UserKey, value CgmReading), serialised
/// through the process's schema registry connection like every producer of the topic.</summary>
public static class CgmReadingProducer
{
    /// <summary>A parsed export ready to stream: its readings on the continuous clock (daylight-saving and time-zone
    /// jumps of the export's wall clock undone, as the resampler does; original times keep the wall clock).</summary>
    public sealed record FileReadings(CgmFormat Format, int Rows, int ClockShiftsCorrected, List<CgmReading> Readings, CgmReadReport Report);

    /// <summary>Parses the whole file (any supported format) and builds its readings; throws
    /// <see cref="CgmFormatException"/> before anything is built when a line cannot be read, or, given
    /// <paramref name="timeRule"/>, when a reading's time breaks it at <paramref name="nowUnixMs"/> (naming the line and
    /// the time): a file is sent whole or not at all, so one reading dated a year ahead sends nothing.</summary>
    public static FileReadings ReadFile(Stream file, string userId, CgmSeriesOptions? series = null, long shiftMs = 0,
        EventTimeRule? timeRule = null, long nowUnixMs = 0)
    {
        var report = new CgmReadReport { RowLines = timeRule is null ? null : [] };
        var fileOrder = CgmFormats.ReadFileOrder(file, out var format, report);
        var continuous = new List<CgmRow>(fileOrder.Count);
        var shifts = CgmResampler.ToContinuousClock(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(fileOrder),
            series ?? new CgmSeriesOptions(), continuous);
        var readings = ToReadings(userId, format, continuous, shiftMs);
        if (timeRule is { } rule)
            foreach (var r in readings)
                if (CgmReadings.EventTimeMs(r) is var timeMs && rule.Check("time", timeMs, nowUnixMs) is { } problem)
                    throw new CgmFormatException(format, LineOf(fileOrder, report.RowLines!, CgmReadings.OriginalTimeMs(r) - shiftMs),
                        timeMs > nowUnixMs && !format.IsUtc()
                            ? problem + $"; {format.Name()} exports carry local wall-clock times: if this one's clock is ahead of UTC, say by how much with utc_offset (e.g. +10:00)"
                            : problem);
        return new FileReadings(format, fileOrder.Count, shifts, readings, report);
    }

    /// <summary>The line of the first row with this original (wall-clock) time; 0 when none (then the message alone names it).</summary>
    private static long LineOf(List<CgmRow> fileOrder, List<long> lines, long originalTimeMs)
    {
        for (var i = 0; i < fileOrder.Count; i++)
            if (fileOrder[i].OriginalTimeMs == originalTimeMs) return lines[i];
        return 0;
    }

    /// <summary>The readings of <paramref name="rows"/> for <paramref name="userId"/>, shifted by
    /// <paramref name="shiftMs"/> (the local stack's samples move old exports up to the present).</summary>
    public static List<CgmReading> ToReadings(string userId, CgmFormat format, IReadOnlyList<CgmRow> rows, long shiftMs = 0)
    {
        var readings = new List<CgmReading>(rows.Count);
        // Exports can hold the same value at the same time twice (LibreView: a historic and a scan reading);
        // the second copy gets ":2" (an id character, so the id passes the id rule) so that every row is stored, and
        // the ids stay the same on a re-upload.
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var row in rows)
        {
            var shifted = shiftMs == 0 ? row : row with { TimeMs = row.TimeMs + shiftMs, OriginalTimeMs = row.OriginalTimeMs + shiftMs };
            if (CgmReadings.FromRow(userId, format, shifted) is not { } reading) continue;
            var copies = seen.GetValueOrDefault(reading.reading_id) + 1;
            seen[reading.reading_id] = copies;
            if (copies > 1) reading.reading_id += ":" + copies.ToString(System.Globalization.CultureInfo.InvariantCulture);
            readings.Add(reading);
        }
        return readings;
    }

    /// <summary>Produces <paramref name="readings"/> keyed by user, record timestamp = now (export clocks
    /// may be decades old or local time; the event time travels in the value), as Avro through
    /// <paramref name="registry"/> (the topic's schema ids resolved first without blocking a thread). Throws
    /// <see cref="ProduceException{TKey,TValue}"/> naming the first failure after every send settled; a registry that
    /// cannot be reached throws before anything is sent.</summary>
    public static async Task ProduceAsync(IProducer<byte[], byte[]> producer, SchemaRegistryConnection registry, string topic,
        IReadOnlyList<CgmReading> readings, CancellationToken ct = default)
    {
        var keys = registry.SerDes<UserKey>();
        var values = registry.SerDes<CgmReading>();
        await keys.PrepareAsync(topic, MessageComponentType.Key);
        await values.PrepareAsync(topic, MessageComponentType.Value);
        var keyContext = new SerializationContext(MessageComponentType.Key, topic);
        var valueContext = new SerializationContext(MessageComponentType.Value, topic);
        var now = Timestamp.Default;
        // The caller's span (the gateway's publish span) travels with every record; the producer copies headers as it
        // enqueues a record, so one set serves them all.
        var trace = StreamTracing.HeadersFor(System.Diagnostics.Activity.Current);
        var sends = new Task[readings.Count];
        byte[]? key = null;
        string? keyUser = null;
        for (var i = 0; i < readings.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var r = readings[i];
            if (r.user_id != keyUser) { keyUser = r.user_id; key = keys.Serialize(new UserKey { user_id = r.user_id }, keyContext); }
            sends[i] = producer.ProduceAsync(topic, new Message<byte[], byte[]> { Key = key!, Value = values.Serialize(r, valueContext), Timestamp = now, Headers = trace }, ct);
        }
        await Task.WhenAll(sends);
    }
}
