using System.Globalization;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Gateway.Apis;

/// <summary>The input rules every API shares: user ids, ISO-8601 times, and how values are quoted back in errors.</summary>
internal static class ApiInput
{
    /// <summary>The one id rule (<see cref="InputRules.IsValidId"/>), for route values and request bodies alike.</summary>
    public static bool IsValidUserId(string userId) => InputRules.IsValidId(userId);

    public static void ValidateUserId(string userId, Dictionary<string, string[]> errors)
    {
        if (!IsValidUserId(userId))
            errors["userId"] = [$"'{Shorten(userId)}' is not {InputRules.IdRuleText}"];
    }

    private static readonly DateTime QueryEarliest = new(1900, 1, 1, 0, 0, 0, DateTimeKind.Utc);
    private static readonly DateTime QueryLatest = new(2200, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    public static DateTime? ParseTime(string? value, string field, Dictionary<string, string[]> errors)
    {
        if (value is null) return null;
        // ISO-8601 only: a date first ("2026-01-31", optionally "T10:00:00", "Z" or an offset); the invariant
        // culture's other formats ("01/02/2026") are ambiguous across clients.
        if (value.Length >= 10 && value[4] == '-' && value[7] == '-'
            && DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var parsed))
        {
            // A query bound is not an event time, but it is still bounded: ranges are computed from it (to - 90 days), and
            // year 1 or 9999 would overflow DateTime there. Nothing newer than 2200 is stored.
            if (parsed.UtcDateTime >= QueryEarliest && parsed.UtcDateTime < QueryLatest) return parsed.UtcDateTime;
            errors[field] = [$"{field} = '{Shorten(value)}': must be between {QueryEarliest:yyyy-MM-dd} and {QueryLatest:yyyy-MM-dd}"];
            return null;
        }
        errors[field] = [$"'{Shorten(value)}' is not an ISO-8601 date-time such as 2026-01-31T00:00:00Z."];
        return null;
    }

    /// <summary>A UTC offset such as +10:00, -05:30 or Z (null: zero), within ±14:00, the range of real time zones.</summary>
    public static TimeSpan ParseUtcOffset(string? value, string field, Dictionary<string, string[]> errors)
    {
        if (string.IsNullOrEmpty(value) || value is "Z" or "z") return TimeSpan.Zero;
        if (value.Length == 6 && value[0] is '+' or '-' && value[3] == ':'
            && int.TryParse(value.AsSpan(1, 2), NumberStyles.None, CultureInfo.InvariantCulture, out var hours)
            && int.TryParse(value.AsSpan(4, 2), NumberStyles.None, CultureInfo.InvariantCulture, out var minutes)
            && minutes < 60 && hours * 60 + minutes <= 14 * 60)
        {
            var offset = new TimeSpan(hours, minutes, 0);
            return value[0] == '-' ? -offset : offset;
        }
        errors[field] = [$"{field} = '{Shorten(value)}': must be an offset from UTC such as +10:00, -05:30 or Z, within ±14:00"];
        return TimeSpan.Zero;
    }

    /// <summary>A window of whole local days, 1 to <paramref name="maxDays"/> (<paramref name="defaultDays"/> when absent).</summary>
    public static int ParseDays(string? value, int defaultDays, int maxDays, Dictionary<string, string[]> errors, string field = "days") =>
        ParseCount(value, field, defaultDays, maxDays, errors, " of days");

    /// <summary>A count such as a page's <c>limit</c>: a whole number from 1 to <paramref name="max"/> (<paramref name="defaultValue"/>
    /// when absent), or errors[<paramref name="field"/>] quoting the value.</summary>
    public static int ParseCount(string? value, string field, int defaultValue, int max, Dictionary<string, string[]> errors, string unit = "")
    {
        if (value is null) return defaultValue;
        if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1 && n <= max) return n;
        errors[field] = [$"'{Shorten(value)}' is not a whole number{unit} from 1 to {max}."];
        return defaultValue;
    }

    /// <summary>A time range <c>from</c> ≤ <c>to</c>: <c>to</c> defaults to <paramref name="defaultTo"/>, <c>from</c> to <c>to</c> −
    /// <paramref name="defaultRange"/>; errors name the field at fault.</summary>
    public static (DateTime From, DateTime To) ParseRange(string? from, string? to, TimeSpan defaultRange, DateTime defaultTo, Dictionary<string, string[]> errors)
    {
        var toUtc = ParseTime(to, "to", errors) ?? defaultTo;
        var fromUtc = ParseTime(from, "from", errors) ?? toUtc - defaultRange;
        if (!errors.ContainsKey("from") && !errors.ContainsKey("to") && fromUtc > toUtc)
            errors["from"] = [$"'{fromUtc:O}' is after to = '{toUtc:O}'."];
        return (fromUtc, toUtc);
    }

    /// <summary>A client's value as an error may quote it: control characters escaped, at most 64 characters.</summary>
    public static string Shorten(string value) => InputRules.Quote(value)[1..^1];
}
