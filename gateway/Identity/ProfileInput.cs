using System.Globalization;
using System.Text.Json;
using StreamHealth.Gateway.Apis;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Gateway.Identity;

/// <summary>A person's profile as the API takes it (identity.users' profile columns, schemas/sql/V0011__insights.sql).</summary>
public sealed record ProfileFields(string TimeZone, string? Sex, DateOnly? DateOfBirth, string? MedicalHistory)
{
    public static readonly ProfileFields Default = new(ProfileInput.DefaultTimeZone, null, null, null);
}

/// <summary>The profile rules, shared by registration and PUT /api/v1/users/{userId}/profile. Errors name the field; the
/// date of birth and medical history are personal health data, so an error never quotes them.</summary>
public static class ProfileInput
{
    public const string TimeZoneField = "time_zone";
    public const string SexField = "sex";
    public const string DateOfBirthField = "date_of_birth";
    public const string MedicalHistoryField = "medical_history";
    public const string DefaultTimeZone = "UTC";
    public const int MaxTimeZoneLength = 64;
    public const int MaxMedicalHistoryLength = 4_000;
    /// <summary>The oldest documented person lived 122 years.</summary>
    public const int MaxAgeYears = 130;
    public static readonly string[] Sexes = ["female", "male", "other"];

    /// <summary>The profile fields of <paramref name="body"/>. Absent or null fields are empty (time_zone: UTC) unless
    /// <paramref name="requireTimeZone"/>; null when any field is wrong (the reason in <paramref name="errors"/>).</summary>
    public static ProfileFields? Read(JsonElement body, bool requireTimeZone, DateOnly todayUtc, Dictionary<string, string[]> errors)
    {
        var before = errors.Count;
        var zoneText = JsonBodyInput.String(body, TimeZoneField, requireTimeZone, errors);
        var zone = zoneText is null ? DefaultTimeZone : CheckTimeZone(zoneText, errors);
        var sex = JsonBodyInput.String(body, SexField, required: false, errors);
        if (sex is not null && !Sexes.Contains(sex, StringComparer.Ordinal))
            errors[SexField] = [$"{SexField} = {InputRules.Quote(sex)}: must be one of {string.Join(", ", Sexes)}"];
        var dateText = JsonBodyInput.String(body, DateOfBirthField, required: false, errors);
        var dateOfBirth = dateText is null ? (DateOnly?)null : CheckDateOfBirth(dateText, todayUtc, errors);
        var history = JsonBodyInput.String(body, MedicalHistoryField, required: false, errors);
        if (history is not null && InputRules.CheckText(MedicalHistoryField, history, MaxMedicalHistoryLength) is { } historyProblem)
            errors[MedicalHistoryField] = [historyProblem];
        return errors.Count > before ? null : new ProfileFields(zone!, sex, dateOfBirth, history is { Length: > 0 } ? history : null);
    }

    /// <summary>The zone's IANA id. Windows ids ("Pacific Standard Time") resolve on Linux too, but the insights topology
    /// and other readers expect IANA, so they are refused; so is anything that could be read as a path.</summary>
    private static string? CheckTimeZone(string id, Dictionary<string, string[]> errors)
    {
        var plausible = id.Length is >= 1 and <= MaxTimeZoneLength && !id.Contains("..", StringComparison.Ordinal) && id[0] != '/'
                        && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '_' or '-' or '+');
        if (plausible)
        {
            try
            {
                var zone = TimeZoneInfo.FindSystemTimeZoneById(id);
                if (zone.HasIanaId) return zone.Id;
            }
            catch (Exception e) when (e is TimeZoneNotFoundException or InvalidTimeZoneException) { }
        }
        errors[TimeZoneField] = [$"{TimeZoneField} = {InputRules.Quote(id)}: not an IANA time zone id such as Europe/Paris, America/New_York or UTC"];
        return null;
    }

    private static DateOnly? CheckDateOfBirth(string text, DateOnly todayUtc, Dictionary<string, string[]> errors)
    {
        if (!DateOnly.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date))
        {
            errors[DateOfBirthField] = [$"{DateOfBirthField} must be a date written YYYY-MM-DD"];
            return null;
        }
        // Today somewhere: in UTC+14 the date is a day ahead of UTC.
        if (date > todayUtc.AddDays(1))
            errors[DateOfBirthField] = [$"{DateOfBirthField} is in the future"];
        else if (date < todayUtc.AddYears(-MaxAgeYears))
            errors[DateOfBirthField] = [$"{DateOfBirthField} is more than {MaxAgeYears} years ago"];
        else return date;
        return null;
    }
}
