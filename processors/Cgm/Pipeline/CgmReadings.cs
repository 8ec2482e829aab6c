using System.Security.Cryptography;
using System.Text;
using StreamHealth.Cgm.Formats;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using CgmReading = StreamHealth.Schemas.Avro.Cgm.CgmReading;
using ReadingKind = StreamHealth.Schemas.Avro.Cgm.CgmEventType;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>Unified rows ↔ <c>cgm.readings</c> records (the Avro <see cref="CgmReading"/>, schemas/avro/CgmReading.avsc),
/// and the one validation rule the topology (which dead-letters) and the PostgreSQL sink (which then skips) share.</summary>
public static class CgmReadings
{
    /// <summary>Longest <c>source_format</c> accepted (the formats' names are under 20 characters; producers name their own).</summary>
    public const int MaxSourceFormatLength = 64;
    /// <summary>Below this a "mg/dL" value is almost certainly mmol/L: sensors report down to 39–40 mg/dL.</summary>
    public const double MmolLSuspicionMgDl = 25;
    /// <summary>Above this no sensor or meter reports; the value is garbage or in the wrong unit.</summary>
    public const double ImpossibleMgDl = GlucoseUnits.ImpossibleAboveMgDl;

    /// <summary>The reading for a unified row, or null for rows that are not readings (alerts, health
    /// events, imputed rows: the topology does its own alignment and imputation).</summary>
    public static CgmReading? FromRow(string userId, CgmFormat format, in CgmRow row)
    {
        var type = row.EventType switch
        {
            CgmEventType.EgvRead => ReadingKind.CGM_EVENT_TYPE_EGV,
            CgmEventType.Calibration => ReadingKind.CGM_EVENT_TYPE_FINGERSTICK,
            CgmEventType.Carbs => ReadingKind.CGM_EVENT_TYPE_CARBS,
            CgmEventType.InsulinFast or CgmEventType.InsulinSlow => ReadingKind.CGM_EVENT_TYPE_INSULIN,
            CgmEventType.ExerciseLight or CgmEventType.ExerciseMedium or CgmEventType.ExerciseHeavy => ReadingKind.CGM_EVENT_TYPE_EXERCISE,
            _ => ReadingKind.CGM_EVENT_TYPE_UNSPECIFIED,
        };
        if (type == ReadingKind.CGM_EVENT_TYPE_UNSPECIFIED) return null;
        var sourceFormat = format.Name();
        return new CgmReading
        {
            event_time_unix_ms = AvroTime.FromUnixMs(row.TimeMs),
            // 0 is "not known" (what Protobuf's default said); Avro says it with null.
            original_time_unix_ms = row.OriginalTimeMs == 0 ? null : AvroTime.FromUnixMs(row.OriginalTimeMs),
            user_id = userId,
            reading_id = ReadingId(userId, sourceFormat, type, row.OriginalTimeMs, row.GlucoseMgDl, row.CarbsG,
                row.InsulinSlowU, row.InsulinFastU, row.ExerciseSeconds),
            glucose_mg_dl = row.GlucoseMgDl,
            quality_flags = (int)row.Quality,
            event_type = type,
            source_format = sourceFormat,
            sequence_id = row.SequenceId,
            carbs_g = row.CarbsG,
            insulin_slow_u = row.InsulinSlowU,
            insulin_fast_u = row.InsulinFastU,
            exercise_min = double.IsNaN(row.ExerciseSeconds) ? double.NaN : row.ExerciseSeconds / 60,
        };
    }

    /// <summary>The reading's time in Unix milliseconds (the grid-aligned event time).</summary>
    public static long EventTimeMs(CgmReading r) => AvroTime.ToUnixMs(r.event_time_unix_ms);

    /// <summary>The reading's original (export wall-clock) time in Unix milliseconds; 0 when not known.</summary>
    public static long OriginalTimeMs(CgmReading r) => r.original_time_unix_ms is { } t ? AvroTime.ToUnixMs(t) : 0;

    /// <summary>A copy of <paramref name="r"/> (the generated class has no clone; every field is a value or a string).</summary>
    public static CgmReading Copy(CgmReading r) => new()
    {
        event_time_unix_ms = r.event_time_unix_ms, original_time_unix_ms = r.original_time_unix_ms, user_id = r.user_id,
        reading_id = r.reading_id, glucose_mg_dl = r.glucose_mg_dl, quality_flags = r.quality_flags, event_type = r.event_type,
        source_format = r.source_format, sequence_id = r.sequence_id, carbs_g = r.carbs_g, insulin_slow_u = r.insulin_slow_u,
        insulin_fast_u = r.insulin_fast_u, exercise_min = r.exercise_min,
    };

    /// <summary>Deterministic id: the same reading from the same source gets the same id however often it
    /// is uploaded or replayed (sinks deduplicate on it). The type enters by number (the Avro symbols keep the Protobuf
    /// enum's order), so ids are those the readings had on Protobuf.</summary>
    public static string ReadingId(string userId, string sourceFormat, ReadingKind type, long originalTimeMs, params double[] values)
    {
        var text = new StringBuilder(userId.Length + 64).Append(userId).Append('|').Append(sourceFormat).Append('|')
            .Append((int)type).Append('|').Append(originalTimeMs);
        foreach (var v in values) text.Append('|').Append(BitConverter.DoubleToInt64Bits(v));
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()));
        return Convert.ToHexStringLower(hash.AsSpan(0, 16));
    }

    /// <summary>What a reading id stands for (<see cref="Runtime.Storage.EventIds"/>): the reading's time, type and values.
    /// The same id again with the same fingerprint is a retry; with another one, a conflict. Unchanged by the move to Avro
    /// (Unix milliseconds, the type's number), so fingerprints already in streamhealth.event_ids still match.</summary>
    public static string Fingerprint(CgmReading r)
    {
        var text = string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{EventTimeMs(r)}|{(int)r.event_type}|{r.glucose_mg_dl:R}|{r.carbs_g:R}|{r.insulin_slow_u:R}|{r.insulin_fast_u:R}|{r.exercise_min:R}");
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)).AsSpan(0, 16));
    }

    /// <summary>Null when the record can be processed, else the reason (names the field and value). The topology
    /// dead-letters on it and the PostgreSQL sink skips on it, so both must call it with the same
    /// <paramref name="receivedAtUnixMs"/> (<see cref="EventTimeRule.ReceivedAt"/>).</summary>
    public static string? Validate(string keyUserId, CgmReading r, EventTimeRule timeRule, long receivedAtUnixMs)
    {
        if (string.IsNullOrEmpty(keyUserId)) return "record key has no user_id";
        if (InputRules.CheckId("user_id", keyUserId) is { } badUser) return badUser;
        if (!string.IsNullOrEmpty(r.user_id) && r.user_id != keyUserId) return $"user_id {InputRules.Quote(r.user_id)} does not match the record key '{keyUserId}'";
        if (string.IsNullOrEmpty(r.reading_id)) return "reading_id is required (sinks deduplicate on it)";
        if (InputRules.CheckId("reading_id", r.reading_id) is { } badId) return badId;
        if (InputRules.CheckText("source_format", r.source_format ?? "", MaxSourceFormatLength) is { } badFormat) return badFormat;
        if (timeRule.Check("event_time_unix_ms", EventTimeMs(r), receivedAtUnixMs) is { } badTime) return badTime;
        // The original time is the export's wall clock (a time zone away from UTC at most), kept for display only:
        // it must be a storable date, not within the rule's few minutes.
        if (r.original_time_unix_ms is { } original
            && timeRule.Check("original_time_unix_ms", AvroTime.ToUnixMs(original), receivedAtUnixMs + MaxZoneOffsetMs) is { } badOriginal)
            return badOriginal;
        // Values a reading of another type carries are stored too: each must be absent (NaN) or a finite number.
        if ((Finite(r.glucose_mg_dl, "glucose_mg_dl") ?? Finite(r.carbs_g, "carbs_g") ?? Finite(r.insulin_fast_u, "insulin_fast_u")
            ?? Finite(r.insulin_slow_u, "insulin_slow_u") ?? Finite(r.exercise_min, "exercise_min")) is { } notFinite)
            return notFinite;
        switch (r.event_type)
        {
            case ReadingKind.CGM_EVENT_TYPE_EGV or ReadingKind.CGM_EVENT_TYPE_FINGERSTICK:
                var g = r.glucose_mg_dl;
                if (double.IsNaN(g) || double.IsInfinity(g)) return $"glucose_mg_dl is required for {r.event_type} readings";
                if (g <= 0 || g > ImpossibleMgDl) return $"glucose_mg_dl {g} is not a glucose value (expected 1-{ImpossibleMgDl} mg/dL)";
                if (g < MmolLSuspicionMgDl) return $"glucose_mg_dl {g} looks like mmol/L (expected mg/dL; multiply by {GlucoseUnits.MgDlPerMmolL})";
                return null;
            case ReadingKind.CGM_EVENT_TYPE_CARBS:
                return Amount(r.carbs_g, "carbs_g", 1_000);
            case ReadingKind.CGM_EVENT_TYPE_INSULIN:
                if (double.IsNaN(r.insulin_fast_u) && double.IsNaN(r.insulin_slow_u)) return "insulin readings need insulin_fast_u or insulin_slow_u";
                return Amount(r.insulin_fast_u, "insulin_fast_u", 300, optional: true) ?? Amount(r.insulin_slow_u, "insulin_slow_u", 300, optional: true);
            case ReadingKind.CGM_EVENT_TYPE_EXERCISE:
                return Amount(r.exercise_min, "exercise_min", 24 * 60);
            default:
                return $"event_type {r.event_type} is not a reading type";
        }
    }

    /// <summary>The widest offset of a civil time zone (UTC+14).</summary>
    private const long MaxZoneOffsetMs = 14 * 3_600_000L;

    private static string? Finite(double value, string field) =>
        double.IsInfinity(value) ? InputRules.CheckRange(field, value, double.MinValue, double.MaxValue, "") : null;

    private static string? Amount(double value, string field, double max, bool optional = false)
    {
        if (double.IsNaN(value)) return optional ? null : $"{field} is required";
        if (value < 0 || value > max || double.IsInfinity(value)) return $"{field} {value} is outside 0-{max}";
        return null;
    }

    public static string EventTypeName(ReadingKind type) => type switch
    {
        ReadingKind.CGM_EVENT_TYPE_EGV => "egv",
        ReadingKind.CGM_EVENT_TYPE_FINGERSTICK => "fingerstick",
        ReadingKind.CGM_EVENT_TYPE_CARBS => "carbs",
        ReadingKind.CGM_EVENT_TYPE_INSULIN => "insulin",
        ReadingKind.CGM_EVENT_TYPE_EXERCISE => "exercise",
        _ => "unspecified",
    };
}
