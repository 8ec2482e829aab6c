using System.Buffers;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Configuration;

namespace StreamHealth.Runtime.Validation;

/// <summary>Event-time bounds every ingest path applies (section "Input"): a measurement dated before
/// <see cref="EarliestEventTime"/> or more than <see cref="MaxAheadSeconds"/> ahead of the receiving clock is
/// refused (4xx naming the field at the gateway, a dead letter with the reason in a topology), so no stored
/// row is dated in year 1 and no `latest` can be pinned to the future.</summary>
public sealed class InputOptions
{
    public const string Section = "Input";
    /// <summary>Nothing the platform ingests predates home CGM and connected scales by decades.</summary>
    public DateTimeOffset EarliestEventTime { get; set; } = new(1990, 1, 1, 0, 0, 0, TimeSpan.Zero);
    /// <summary>Clock skew allowed between a producer and the receiving clock.</summary>
    public int MaxAheadSeconds { get; set; } = 300;

    public EventTimeRule TimeRule => new(EarliestEventTime.ToUnixTimeMilliseconds(), MaxAheadSeconds * 1000L);

    /// <summary>The event-time rule of <paramref name="configuration"/>'s "Input" section (the defaults when it has none), for a
    /// component whose own options carry the rule it applies.</summary>
    public static EventTimeRule TimeRuleOf(IConfiguration configuration) =>
        (configuration.GetSection(Section).Get<InputOptions>() ?? new InputOptions()).TimeRule;

    internal void Validate(List<string> errors)
    {
        if (EarliestEventTime.Year is < 1970 or > 2100)
            errors.Add($"{Section}:EarliestEventTime = {EarliestEventTime:O}: must be in 1970-2100");
        if (MaxAheadSeconds is < 0 or > 7 * 86_400)
            errors.Add($"{Section}:MaxAheadSeconds = {MaxAheadSeconds}: must be 0-604800");
    }
}

/// <summary>The one event-time rule: not before <see cref="EarliestUnixMs"/>, not more than <see cref="MaxAheadMs"/>
/// after the receiving clock's now.</summary>
public readonly record struct EventTimeRule(long EarliestUnixMs, long MaxAheadMs)
{
    public static readonly EventTimeRule Default = new InputOptions().TimeRule;

    /// <summary>Null when <paramref name="eventTimeUnixMs"/> is acceptable at <paramref name="nowUnixMs"/>, else why (naming the field).</summary>
    public string? Check(string field, long eventTimeUnixMs, long nowUnixMs)
    {
        if (eventTimeUnixMs < EarliestUnixMs)
            return $"{field} = {InputRules.FormatTime(eventTimeUnixMs)}: before {InputRules.FormatTime(EarliestUnixMs)}, the earliest accepted event time";
        if (eventTimeUnixMs > nowUnixMs + MaxAheadMs)
            return $"{field} = {InputRules.FormatTime(eventTimeUnixMs)}: more than {MaxAheadMs / 1000} s ahead of the receiving clock ({InputRules.FormatTime(nowUnixMs)})";
        return null;
    }

    /// <summary>The receiving clock a record on a topic is judged by: when it was produced (its record timestamp), or the
    /// wall clock if that is earlier. A topology and a sink judge a record at different moments and a replay judges it
    /// again years later; the record's own timestamp gives all of them the same answer, and the wall clock caps a
    /// producer that stamps its records in the future. Without a timestamp, the wall clock.</summary>
    public static long ReceivedAt(long recordTimestampUnixMs, long wallClockUnixMs) =>
        recordTimestampUnixMs > 0 ? Math.Min(recordTimestampUnixMs, wallClockUnixMs) : wallClockUnixMs;

    public string? Check(string field, DateTimeOffset eventTime, DateTimeOffset now) =>
        eventTime.Year < 1 ? $"{field}: not a date-time" : Check(field, eventTime.ToUnixTimeMilliseconds(), now.ToUnixTimeMilliseconds());
}

/// <summary>The input rules every ingest path shares (gateway and topologies alike): what an id may hold, what free
/// text may hold, which numbers are numbers. Each check returns null when the value is acceptable, else a message
/// that names the field and quotes the value safely (control characters escaped, long values shortened), never a
/// .NET type name. The point is that anything accepted here can be stored faithfully by PostgreSQL (no NUL in
/// text, valid UTF-8) and Redis, and echoed back in JSON without surprises.</summary>
public static class InputRules
{
    /// <summary>Ids (users, measurements, readings, requests, handles) share one rule: 1-128 of these characters.</summary>
    public const int MaxIdLength = 128;
    public const string IdRuleText = "1-128 characters of A-Z a-z 0-9 . _ : -, not \".\" or \"..\"";
    private static readonly SearchValues<char> IdChars =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-");

    /// <remarks>"." and ".." are refused: as a URL path segment (GET /api/weight/{userId}/latest) they are dot segments
    /// that clients and servers resolve away, so data stored under them could never be read back.</remarks>
    public static bool IsValidId(string? value) =>
        value is { Length: >= 1 and <= MaxIdLength } and not ("." or "..") && !value.AsSpan().ContainsAnyExcept(IdChars);

    /// <summary>Null when <paramref name="value"/> is a valid id; a missing (null or empty) id is "is required".</summary>
    public static string? CheckId(string field, string? value)
    {
        if (string.IsNullOrEmpty(value)) return $"{field} is required";
        return IsValidId(value) ? null : $"{field} = {Quote(value)}: must be {IdRuleText}";
    }

    /// <summary>Free text (names, notes, source formats, model versions): at most <paramref name="maxLength"/> UTF-16
    /// units, no C0 control character other than tab, line feed and carriage return, no DEL, no unpaired surrogate
    /// (which UTF-8 cannot encode, so it would be stored as U+FFFD rather than as sent).</summary>
    public static string? CheckText(string field, string? value, int maxLength, bool required = false)
    {
        if (string.IsNullOrEmpty(value)) return required ? $"{field} is required" : null;
        if (value.Length > maxLength) return $"{field} is {value.Length} characters long; at most {maxLength} are allowed";
        var bad = FindForbiddenChar(value);
        if (bad >= 0)
            return $"{field} contains {Describe(value, bad)} at position {bad}; control characters and unpaired surrogates are not allowed";
        return null;
    }

    /// <summary>Index of the first character <see cref="CheckText"/> refuses, or -1.</summary>
    public static int FindForbiddenChar(ReadOnlySpan<char> value)
    {
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (c < ' ' && c is not ('\t' or '\n' or '\r')) return i;
            if (c == '\u007f') return i;
            if (char.IsHighSurrogate(c))
            {
                if (i + 1 < value.Length && char.IsLowSurrogate(value[i + 1])) { i++; continue; }
                return i;
            }
            if (char.IsLowSurrogate(c)) return i;
        }
        return -1;
    }

    /// <summary>Null when <paramref name="value"/> is finite and within [<paramref name="min"/>, <paramref name="max"/>]; <paramref name="unit"/> is named in the message.</summary>
    public static string? CheckRange(string field, double value, double min, double max, string unit)
    {
        if (double.IsNaN(value) || double.IsInfinity(value)) return $"{field} = {Format(value)}: must be a finite number";
        if (value < min || value > max) return $"{field} = {Format(value)}: must be {Format(min)}-{Format(max)} {unit}".TrimEnd();
        return null;
    }

    /// <summary>The value as an error message may show it: quoted, control characters as \uXXXX, at most 64 characters.</summary>
    public static string Quote(string value)
    {
        var s = new StringBuilder(Math.Min(value.Length, 64) + 8).Append('\'');
        var shown = 0;
        foreach (var c in value)
        {
            if (shown++ == 64) { s.Append('…'); break; }
            if (c < ' ' || c == '\u007f' || char.IsSurrogate(c)) s.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            else s.Append(c);
        }
        return s.Append('\'').ToString();
    }

    public static string FormatTime(long unixMs)
    {
        // Outside DateTimeOffset's range (years 1-9999) a raw number is the honest rendering.
        if (unixMs < -62_135_596_800_000L || unixMs > 253_402_300_799_999L) return unixMs.ToString(CultureInfo.InvariantCulture) + " ms since 1970";
        return DateTimeOffset.FromUnixTimeMilliseconds(unixMs).ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
    }

    private static string Format(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    private static string Describe(string value, int index) =>
        $"U+{(int)value[index]:X4}";
}
