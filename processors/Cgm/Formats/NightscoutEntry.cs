using System.Buffers.Text;

namespace StreamHealth.Cgm.Formats;

/// <summary>What the two Nightscout entry readers (REST JSON and exporter CSV) share: how an entry's time
/// and glucose are read. Nightscout stores times in UTC ("date", ms since 1970) and sgv in mg/dL.</summary>
internal static class NightscoutEntry
{
    /// <summary>Skip reasons the JSON and CSV readers share (constants: no allocation per entry).</summary>
    public const string SkipOtherType = "entries of types not carried (treatments, calibrations, device status)";
    public const string SkipStatusCode = "sgv entries holding a sensor status code instead of a value";

    /// <summary>Dexcom's special sgv values (0 none, 1 sensor not active, 5 not calibrated, 9 absolute
    /// deviation, 10 power deviation, 12 bad RF…) are status codes, not readings. Real readings go down to
    /// the 30s (the sample has 32), so only these are skipped.</summary>
    public const double MaxSpecialSgv = 12;

    public const double MaxGlucoseMgDl = 2000;

    private static readonly long MaxEpochMs = CgmTime.DaysFromCivil(2200, 1, 1) * CgmTime.MsPerDay;

    public enum Kind : byte { Sgv, Mbg, Calibration, Other }

    /// <summary>The entry types: "sgv" (sensor), "mbg" (meter fingerstick), "cal" (calibration
    /// coefficients, nothing the unified format holds), anything else.</summary>
    public static Kind ParseKind(ReadOnlySpan<byte> type) =>
        type.SequenceEqual("sgv"u8) ? Kind.Sgv
        : type.SequenceEqual("mbg"u8) ? Kind.Mbg
        : type.SequenceEqual("cal"u8) ? Kind.Calibration
        : Kind.Other;

    /// <summary>"mmol", "mmol/L" → true; "mg/dl", "mg/dL", "mgdl" → false; anything else is unknown.</summary>
    public static bool TryParseUnits(ReadOnlySpan<byte> units, out bool mmol)
    {
        mmol = units.StartsWith("mmol"u8);
        return mmol || units.SequenceEqual("mg/dl"u8) || units.SequenceEqual("mg/dL"u8) || units.SequenceEqual("mgdl"u8);
    }

    /// <summary>Milliseconds since 1970 UTC from an integer (or integral-valued) number of milliseconds.</summary>
    public static bool TryParseEpochMs(ReadOnlySpan<byte> s, out long unixMs)
    {
        if (Utf8Parser.TryParse(s, out unixMs, out var n) && n == s.Length) return IsPlausible(unixMs);
        if (Utf8Parser.TryParse(s, out double d, out n) && n == s.Length) return TryFromDouble(d, out unixMs);
        return false;
    }

    public static bool TryFromDouble(double ms, out long unixMs)
    {
        unixMs = 0;
        if (!double.IsFinite(ms) || ms <= 0 || ms >= MaxEpochMs) return false;
        unixMs = (long)Math.Round(ms);
        return true;
    }

    public static bool IsPlausible(long unixMs) => unixMs > 0 && unixMs < MaxEpochMs;

    /// <summary>ISO 8601 with <c>Z</c>, a <c>±hh:mm</c> / <c>±hhmm</c> offset, or no zone (taken as UTC, as
    /// Nightscout writes dateString and sysTime), converted to milliseconds since 1970 UTC.</summary>
    public static bool TryParseIsoUtc(ReadOnlySpan<byte> s, out long unixMs)
    {
        unixMs = 0;
        var offsetMinutes = 0;
        var sign = s.Length > 19 ? s[19..].IndexOfAny((byte)'+', (byte)'-') : -1;
        if (sign >= 0)
        {
            var zone = s[(19 + sign + 1)..];
            if (!(zone.Length == 4 || (zone.Length == 5 && zone[2] == ':'))
                || !CgmTime.Digits(zone[..2], out var h) || !CgmTime.Digits(zone[^2..], out var m) || h > 23 || m > 59)
                return false;
            offsetMinutes = (h * 60 + m) * (s[19 + sign] == '-' ? -1 : 1);
            s = s[..(19 + sign)];
        }
        if (!CgmTime.TryParseIso(s, out var local)) return false;
        unixMs = local - offsetMinutes * CgmTime.MsPerMinute;
        return true;
    }

    /// <summary>Glucose in mg/dL; false when the value is not a reading (NaN, negative, above
    /// <see cref="MaxGlucoseMgDl"/>), with <paramref name="statusCode"/> set for Dexcom's special values.</summary>
    public static bool TryGlucose(double value, bool mmol, out double mgDl, out bool statusCode)
    {
        statusCode = !mmol && value >= 0 && value <= MaxSpecialSgv;
        mgDl = mmol ? value * GlucoseUnits.MgDlPerMmolL : value;
        return double.IsFinite(mgDl) && mgDl > 0 && mgDl <= MaxGlucoseMgDl;
    }

    public static CgmRow Reading(Kind kind, long timeMs, double mgDl) => kind == Kind.Mbg
        ? new(0, timeMs, CgmQuality.Good, CgmEventType.Calibration, timeMs, mgDl, double.NaN, double.NaN, double.NaN, double.NaN)
        : CgmRow.Glucose(timeMs, mgDl);
}
