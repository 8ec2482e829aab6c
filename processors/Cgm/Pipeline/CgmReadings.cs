using ReadingKind = StreamHealth.Schemas.CgmEventType;
using System.Security.Cryptography;
using System.Text;
using StreamHealth.Cgm.Formats;
using StreamHealth.Schemas;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>Unified rows ↔ <c>cgm.readings</c> records, and the one validation rule the topology (which
/// dead-letters) and the PostgreSQL sink (which then skips) share.</summary>
public static class CgmReadings
{
    public const int MaxUserIdLength = 128;
    /// <summary>Below this a "mg/dL" value is almost certainly mmol/L: sensors report down to 39–40 mg/dL.</summary>
    public const double MmolLSuspicionMgDl = 25;
    /// <summary>Above this no sensor or meter reports; the value is garbage or in the wrong unit.</summary>
    public const double ImpossibleMgDl = 1_000;
    private static readonly long MinTimeMs = new DateTimeOffset(1900, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
    private static readonly long MaxTimeMs = new DateTimeOffset(2200, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();

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

    /// <summary>Null when the record can be processed, else the reason (names the field and value).</summary>
    public static string? Validate(string keyUserId, CgmReading r)
    {
        if (string.IsNullOrEmpty(keyUserId)) return "record key has no user_id";
        if (keyUserId.Length > MaxUserIdLength) return $"user_id is {keyUserId.Length} characters; at most {MaxUserIdLength} are allowed";
        if (r.UserId.Length > 0 && r.UserId != keyUserId) return $"user_id '{r.UserId}' does not match the record key '{keyUserId}'";
        if (string.IsNullOrEmpty(r.ReadingId)) return "reading_id is required (sinks deduplicate on it)";
        if (r.EventTimeUnixMs < MinTimeMs || r.EventTimeUnixMs >= MaxTimeMs)
            return $"event_time_unix_ms {r.EventTimeUnixMs} is outside 1900-2200";
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
