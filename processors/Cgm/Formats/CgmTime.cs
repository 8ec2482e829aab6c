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

    /// <summary>Parses a vendor's local timestamp into its numeric parts without deciding which date part
    /// is the day: <c>A{sep}B{sep}C[ |T]H[H]:mm[:ss[.fff]][ AM|PM]</c> where sep is '-', '/' or '.', and
    /// either A (year first) or C (year last) has four digits. A 12-hour clock is converted to 0–23.</summary>
    public static bool TryParseParts(ReadOnlySpan<byte> s, out CgmTimestampParts parts)
    {
        parts = default;
        s = s.Trim((byte)' ');
        var pos = 0;
        if (!Number(s, ref pos, 4, out var a, out var lengthA) || pos >= s.Length) return false;
        var separator = s[pos];
        if (separator is not ((byte)'-' or (byte)'/' or (byte)'.')) return false;
        pos++;
        if (!Number(s, ref pos, 2, out var b, out _) || pos >= s.Length || s[pos] != separator) return false;
        pos++;
        if (!Number(s, ref pos, 4, out var c, out var lengthC) || pos >= s.Length) return false;
        var yearFirst = lengthA == 4;
        if (yearFirst ? lengthC > 2 : lengthC != 4 || lengthA > 2) return false;
        if (s[pos] == (byte)'T') pos++;
        else if (s[pos] == (byte)' ') { while (pos < s.Length && s[pos] == (byte)' ') pos++; }
        else return false;
        if (!Number(s, ref pos, 2, out var hour, out _) || pos >= s.Length || s[pos] != (byte)':') return false;
        pos++;
        if (!Number(s, ref pos, 2, out var minute, out var lengthMinute) || lengthMinute != 2) return false;
        int second = 0, millisecond = 0;
        if (pos < s.Length && s[pos] == (byte)':')
        {
            pos++;
            if (!Number(s, ref pos, 2, out second, out var lengthSecond) || lengthSecond != 2) return false;
            if (pos < s.Length && s[pos] == (byte)'.')
            {
                pos++;
                if (!Number(s, ref pos, 7, out var fraction, out var lengthFraction)) return false;
                for (var i = lengthFraction; i < 3; i++) fraction *= 10;
                for (var i = lengthFraction; i > 3; i--) fraction /= 10;
                millisecond = fraction;
            }
        }
        if (pos < s.Length)
        {
            while (pos < s.Length && s[pos] == (byte)' ') pos++;
            if (s.Length - pos != 2 || (s[pos + 1] | 0x20) != 'm') return false;
            var meridiem = s[pos] | 0x20;
            if (meridiem is not ('a' or 'p') || hour is < 1 or > 12) return false;
            hour = hour % 12 + (meridiem == 'p' ? 12 : 0);
        }
        parts = new CgmTimestampParts(a, b, c, yearFirst, hour, minute, second, millisecond);
        return true;
    }

    /// <summary>Milliseconds since the epoch of <paramref name="parts"/> read in <paramref name="order"/>
    /// (ignored for year-first dates); false when a part is out of range.</summary>
    public static bool TryCompose(in CgmTimestampParts parts, CgmDateOrder order, out long unixMs)
    {
        int year, month, day;
        if (parts.YearFirst) (year, month, day) = (parts.DateA, parts.DateB, parts.DateC);
        else if (order == CgmDateOrder.MonthDayYear) (year, month, day) = (parts.DateC, parts.DateA, parts.DateB);
        else (year, month, day) = (parts.DateC, parts.DateB, parts.DateA);
        return TryCompose(year, month, day, parts.Hour, parts.Minute, parts.Second, parts.Millisecond, out unixMs);
    }

    /// <summary>Reads up to <paramref name="maxDigits"/> decimal digits at <paramref name="pos"/> (at least one).</summary>
    private static bool Number(ReadOnlySpan<byte> s, ref int pos, int maxDigits, out int value, out int length)
    {
        value = 0;
        var start = pos;
        while (pos < s.Length && pos - start < maxDigits && (uint)(s[pos] - '0') <= 9) value = value * 10 + (s[pos++] - '0');
        length = pos - start;
        return length > 0 && (pos >= s.Length || (uint)(s[pos] - '0') > 9);
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

/// <summary>How a vendor writes the day and month of a date whose year comes last (year-first dates are
/// always year-month-day).</summary>
public enum CgmDateOrder : byte
{
    /// <summary>Undecided (a file whose dates so far all have day and month ≤ 12).</summary>
    Unknown,
    DayMonthYear,
    MonthDayYear,
}

/// <summary>A local timestamp's numeric parts as written (<see cref="CgmTime.TryParseParts"/>): the date
/// parts in file order, the time already on a 24-hour clock.</summary>
public readonly record struct CgmTimestampParts(
    int DateA, int DateB, int DateC, bool YearFirst, int Hour, int Minute, int Second, int Millisecond);
