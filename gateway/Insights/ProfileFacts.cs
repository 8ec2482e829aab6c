using System.Globalization;
using StreamHealth.Gateway.Identity;

namespace StreamHealth.Gateway.Insights;

/// <summary>What the insights rules personalise on: the person's time zone (where their day begins), sex and date of
/// birth (stored encrypted; decrypted here, never logged).</summary>
public sealed record PersonFacts(string TimeZoneId, TimeZoneInfo TimeZone, string? Sex, DateOnly? BirthDate)
{
    /// <summary>Whole years on <paramref name="today"/>; null without a date of birth.</summary>
    public int? AgeYears(DateOnly today)
    {
        if (BirthDate is not { } born) return null;
        var age = today.Year - born.Year;
        if (today < born.AddYears(age)) age--;
        return Math.Max(0, age);
    }
}

/// <summary><see cref="PersonFacts"/> from the person's profile (the cached, sealed one; the date of birth decrypted here).</summary>
public sealed class ProfileFacts(ProfileReader profiles, GatewayOptions gateway)
{
    /// <summary>Null when the person has no account. A date of birth this gateway's keys cannot open throws
    /// <see cref="FieldDecryptionException"/> (a key missing from Gateway:Encryption), as the profile read does.</summary>
    public async Task<PersonFacts?> FindAsync(string userId, CancellationToken ct)
    {
        if (await profiles.FindAsync(userId, ct) is not { } profile) return null;
        // The profile write validates the zone; one that this machine's tz database lacks (another host wrote it) counts as UTC.
        var known = TimeZoneInfo.TryFindSystemTimeZoneById(profile.TimeZone, out var zone);
        DateOnly? born = profile.DateOfBirthEnvelope is { } sealedDate
            ? DateOnly.ParseExact(gateway.Encryption.Encryption!.Decrypt(sealedDate, userId, ProfileInput.DateOfBirthField), "yyyy-MM-dd",
                CultureInfo.InvariantCulture)
            : null;
        return new PersonFacts(known ? profile.TimeZone : "UTC", known ? zone! : TimeZoneInfo.Utc, profile.Sex, born);
    }
}
