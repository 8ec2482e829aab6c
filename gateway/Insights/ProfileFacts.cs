using Npgsql;

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

/// <summary>Reads <see cref="PersonFacts"/> from identity.users.</summary>
public sealed class ProfileFacts(NpgsqlDataSource pg, Func<string, string, DateOnly?> decryptBirthDate)
{
    /// <summary>Null when the person has no account.</summary>
    public async Task<PersonFacts?> FindAsync(string userId, CancellationToken ct)
    {
        await using var cmd = pg.CreateCommand("SELECT time_zone, sex, date_of_birth_enc FROM identity.users WHERE user_id = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct)) return null;
        var zoneId = reader.GetString(0);
        // The profile write validates the zone; one that this machine's tz database lacks (another host wrote it) counts as UTC.
        var known = TimeZoneInfo.TryFindSystemTimeZoneById(zoneId, out var zone);
        return new PersonFacts(known ? zoneId : "UTC", known ? zone! : TimeZoneInfo.Utc, reader.IsDBNull(1) ? null : reader.GetString(1),
            reader.IsDBNull(2) ? null : decryptBirthDate(userId, reader.GetString(2)));
    }
}
