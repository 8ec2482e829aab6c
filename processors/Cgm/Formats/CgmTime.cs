namespace StreamHealth.Cgm.Formats;

/// <summary>Allocation-free timestamp parsing into milliseconds since 1970-01-01 (on the export's own
/// clock; see <see cref="CgmRow"/>). Arithmetic, not DateTime.ParseExact: the parsers' hot path.</summary>
public static class CgmTime
{
    public const long MsPerMinute = 60_000;
    public const long MsPerDay = 86_400_000;

    /// <summary>Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).</summary>
    public static long DaysFromCivil(int year, int month, int day)
    {
        year -= month <= 2 ? 1 : 0;
        var era = (year >= 0 ? year : year - 399) / 400;
        var yoe = year - era * 400;
        var doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
        var doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097L + doe - 719468;
    }

    public static bool IsValidDate(int year, int month, int day) =>
        year is >= 1900 and <= 2200 && month is >= 1 and <= 12 && day >= 1 && day <= DateTime.DaysInMonth(year, month);

    /// <summary>Milliseconds since the epoch; false when a part is out of range.</summary>
    public static bool TryCompose(int year, int month, int day, int hour, int minute, int second, int millisecond, out long unixMs)
    {
        if (!IsValidDate(year, month, day) || hour is < 0 or > 23 || minute is < 0 or > 59 || second is < 0 or > 59
            || millisecond is < 0 or > 999)
        {
            unixMs = 0;
            return false;
        }
        unixMs = DaysFromCivil(year, month, day) * MsPerDay + ((hour * 60L + minute) * 60 + second) * 1000 + millisecond;
        return true;
    }

    /// <summary>Parses <c>yyyy-MM-dd[T| ]HH:mm[:ss[.fff]]</c> with an optional trailing <c>Z</c>.</summary>
    public static bool TryParseIso(ReadOnlySpan<byte> s, out long unixMs)
    {
        unixMs = 0;
        if (!s.IsEmpty && s[^1] == (byte)'Z') s = s[..^1];
        if (s.Length < 16 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':') return false;
        if (!Digits(s[..4], out var y) || !Digits(s.Slice(5, 2), out var mo) || !Digits(s.Slice(8, 2), out var d)
            || !Digits(s.Slice(11, 2), out var h) || !Digits(s.Slice(14, 2), out var mi)) return false;
        int sec = 0, ms = 0;
        if (s.Length > 16)
        {
            if (s.Length < 19 || s[16] != ':' || !Digits(s.Slice(17, 2), out sec)) return false;
            if (s.Length > 19)
            {
                if (s[19] != '.' || s.Length == 20) return false;
                var frac = s[20..];
                if (frac.Length > 7 || !Digits(frac, out var f)) return false;
                for (var i = frac.Length; i < 3; i++) f *= 10;
                for (var i = frac.Length; i > 3; i--) f /= 10;
                ms = f;
            }
        }
        return TryCompose(y, mo, d, h, mi, sec, ms, out unixMs);
    }

    /// <summary>Parses an unsigned decimal integer of up to 9 digits.</summary>
    public static bool Digits(ReadOnlySpan<byte> s, out int value)
    {
        value = 0;
        if (s.IsEmpty || s.Length > 9) return false;
        foreach (var c in s)
        {
            var d = c - (byte)'0';
            if ((uint)d > 9) return false;
            value = value * 10 + d;
        }
        return true;
    }

    /// <summary>Writes <c>yyyy-MM-ddTHH:mm:ss.fff</c> (23 bytes), the unified format's timestamp.</summary>
    public static int FormatIso(long unixMs, Span<byte> destination)
    {
        var days = Math.DivRem(unixMs, MsPerDay, out var msOfDay);
        if (msOfDay < 0) { msOfDay += MsPerDay; days--; }
        // civil_from_days (Hinnant)
        var z = days + 719468;
        var era = (z >= 0 ? z : z - 146096) / 146097;
        var doe = z - era * 146097;
        var yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        var y = yoe + era * 400;
        var doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        var mp = (5 * doy + 2) / 153;
        var d = doy - (153 * mp + 2) / 5 + 1;
        var m = mp < 10 ? mp + 3 : mp - 9;
        if (m <= 2) y++;
        var hour = msOfDay / 3_600_000;
        var minute = msOfDay / 60_000 % 60;
        var second = msOfDay / 1000 % 60;
        var milli = msOfDay % 1000;
        Put(destination, 0, y, 4); destination[4] = (byte)'-';
        Put(destination, 5, m, 2); destination[7] = (byte)'-';
        Put(destination, 8, d, 2); destination[10] = (byte)'T';
        Put(destination, 11, hour, 2); destination[13] = (byte)':';
        Put(destination, 14, minute, 2); destination[16] = (byte)':';
        Put(destination, 17, second, 2); destination[19] = (byte)'.';
        Put(destination, 20, milli, 3);
        return 23;
    }

    public static string FormatIso(long unixMs)
    {
        Span<byte> b = stackalloc byte[23];
        FormatIso(unixMs, b);
        return System.Text.Encoding.ASCII.GetString(b);
    }

    private static void Put(Span<byte> d, int at, long value, int width)
    {
        for (var i = width - 1; i >= 0; i--)
        {
            d[at + i] = (byte)('0' + value % 10);
            value /= 10;
        }
    }
}
