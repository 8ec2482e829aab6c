using ReadingKind = StreamHealth.Schemas.CgmEventType;
using System.Security.Cryptography;
using System.Text;
using StreamHealth.Cgm.Formats;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>Unified rows ↔ <c>cgm.readings</c> records, and the one validation rule the topology (which
/// dead-letters) and the PostgreSQL sink (which then skips) share.</summary>
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
            CgmEventType.EgvRead => ReadingKind.Egv,
            CgmEventType.Calibration => ReadingKind.Fingerstick,
            CgmEventType.Carbs => ReadingKind.Carbs,
            CgmEventType.InsulinFast or CgmEventType.InsulinSlow => ReadingKind.Insulin,
            CgmEventType.ExerciseLight or CgmEventType.ExerciseMedium or CgmEventType.ExerciseHeavy => ReadingKind.Exercise,
            _ => ReadingKind.Unspecified,
        };
        if (type == ReadingKind.Unspecified) return null;
        var sourceFormat = format.Name();
        var reading = new CgmReading
        {
            SchemaVersion = 1,
            EventTimeUnixMs = row.TimeMs,
            OriginalTimeUnixMs = row.OriginalTimeMs,
            UserId = userId,
            GlucoseMgDl = row.GlucoseMgDl,
            QualityFlags = (uint)row.Quality,
            EventType = type,
            SourceFormat = sourceFormat,
            SequenceId = row.SequenceId,
            CarbsG = row.CarbsG,
            InsulinSlowU = row.InsulinSlowU,
            InsulinFastU = row.InsulinFastU,
            ExerciseMin = double.IsNaN(row.ExerciseSeconds) ? double.NaN : row.ExerciseSeconds / 60,
        };
        reading.ReadingId = ReadingId(userId, sourceFormat, type, row.OriginalTimeMs, row.GlucoseMgDl, row.CarbsG,
            row.InsulinSlowU, row.InsulinFastU, row.ExerciseSeconds);
        return reading;
    }

    /// <summary>Deterministic id: the same reading from the same source gets the same id however often it
    /// is uploaded or replayed (sinks deduplicate on it).</summary>
    public static string ReadingId(string userId, string sourceFormat, ReadingKind type, long originalTimeMs, params double[] values)
    {
        var text = new StringBuilder(userId.Length + 64).Append(userId).Append('|').Append(sourceFormat).Append('|')
            .Append((int)type).Append('|').Append(originalTimeMs);
        foreach (var v in values) text.Append('|').Append(BitConverter.DoubleToInt64Bits(v));
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()));
        return Convert.ToHexStringLower(hash.AsSpan(0, 16));
    }

    /// <summary>What a reading id stands for (<see cref="Runtime.Storage.EventIds"/>): the reading's time, type and values.
    /// The same id again with the same fingerprint is a retry; with another one, a conflict.</summary>
    public static string Fingerprint(CgmReading r)
    {
        var text = string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{r.EventTimeUnixMs}|{(int)r.EventType}|{r.GlucoseMgDl:R}|{r.CarbsG:R}|{r.InsulinSlowU:R}|{r.InsulinFastU:R}|{r.ExerciseMin:R}");
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)).AsSpan(0, 16));
    }

    /// <summary>Null when the record can be processed, else the reason (names the field and value). The topology
    /// dead-letters on it and the PostgreSQL sink skips on it, so both must call it with the same
    /// <paramref name="receivedAtUnixMs"/> (<see cref="EventTimeRule.ReceivedAt"/>).</summary>
    public static string? Validate(string keyUserId, CgmReading r, EventTimeRule timeRule, long receivedAtUnixMs)
    {
        if (string.IsNullOrEmpty(keyUserId)) return "record key has no user_id";
        if (InputRules.CheckId("user_id", keyUserId) is { } badUser) return badUser;
        if (r.UserId.Length > 0 && r.UserId != keyUserId) return $"user_id {InputRules.Quote(r.UserId)} does not match the record key '{keyUserId}'";
        if (string.IsNullOrEmpty(r.ReadingId)) return "reading_id is required (sinks deduplicate on it)";
        if (InputRules.CheckId("reading_id", r.ReadingId) is { } badId) return badId;
        if (InputRules.CheckText("source_format", r.SourceFormat, MaxSourceFormatLength) is { } badFormat) return badFormat;
        if (timeRule.Check("event_time_unix_ms", r.EventTimeUnixMs, receivedAtUnixMs) is { } badTime) return badTime;
        // The original time is the export's wall clock (a time zone away from UTC at most), kept for display only:
        // it must be a storable date, not within the rule's few minutes.
        if (r.OriginalTimeUnixMs != 0 && timeRule.Check("original_time_unix_ms", r.OriginalTimeUnixMs, receivedAtUnixMs + MaxZoneOffsetMs) is { } badOriginal)
            return badOriginal;
        // Values a reading of another type carries are stored too: each must be absent (NaN) or a finite number.
        if ((Finite(r.GlucoseMgDl, "glucose_mg_dl") ?? Finite(r.CarbsG, "carbs_g") ?? Finite(r.InsulinFastU, "insulin_fast_u")
            ?? Finite(r.InsulinSlowU, "insulin_slow_u") ?? Finite(r.ExerciseMin, "exercise_min")) is { } notFinite)
            return notFinite;
        switch (r.EventType)
        {
            case ReadingKind.Egv or ReadingKind.Fingerstick:
                var g = r.GlucoseMgDl;
                if (double.IsNaN(g) || double.IsInfinity(g)) return $"glucose_mg_dl is required for {r.EventType} readings";
                if (g <= 0 || g > ImpossibleMgDl) return $"glucose_mg_dl {g} is not a glucose value (expected 1-{ImpossibleMgDl} mg/dL)";
                if (g < MmolLSuspicionMgDl) return $"glucose_mg_dl {g} looks like mmol/L (expected mg/dL; multiply by {GlucoseUnits.MgDlPerMmolL})";
                return null;
            case ReadingKind.Carbs:
                return Amount(r.CarbsG, "carbs_g", 1_000);
            case ReadingKind.Insulin:
                if (double.IsNaN(r.InsulinFastU) && double.IsNaN(r.InsulinSlowU)) return "insulin readings need insulin_fast_u or insulin_slow_u";
                return Amount(r.InsulinFastU, "insulin_fast_u", 300, optional: true) ?? Amount(r.InsulinSlowU, "insulin_slow_u", 300, optional: true);
            case ReadingKind.Exercise:
                return Amount(r.ExerciseMin, "exercise_min", 24 * 60);
            default:
                return $"event_type {r.EventType} is not a reading type";
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
        ReadingKind.Egv => "egv",
        ReadingKind.Fingerstick => "fingerstick",
        ReadingKind.Carbs => "carbs",
        ReadingKind.Insulin => "insulin",
        ReadingKind.Exercise => "exercise",
        _ => "unspecified",
    };
}
