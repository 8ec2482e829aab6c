using Npgsql;
using NpgsqlTypes;

namespace StreamHealth.Gateway.Identity;

/// <summary>identity.users and identity.refresh_tokens (schemas/sql/V0009__identity.sql). Every state change is one
/// conditional statement, so concurrent requests cannot both register an address, both redeem a refresh token, or
/// lose a counted failure.</summary>
public sealed class IdentityStore(NpgsqlDataSource db)
{
    public sealed record Account(string UserId, string Email, string PasswordHash, DateTime CreatedAt, DateTime? LockedUntil);

    public enum RedeemOutcome { Redeemed, Reused, Invalid }

    /// <summary>A profile as stored: date of birth and medical history only as their <see cref="FieldEncryption"/>
    /// envelopes, so whatever holds one of these (a cache) holds no plaintext.</summary>
    public sealed record StoredProfile(string UserId, string Email, DateTime CreatedAt, string TimeZone, string? Sex,
        string? DateOfBirthEnvelope, string? MedicalHistoryEnvelope, DateTime? ProfileUpdatedAt);

    /// <summary>The profile columns to write, personal health data already sealed.</summary>
    public sealed record SealedProfile(string TimeZone, string? Sex, string? DateOfBirthEnvelope, string? MedicalHistoryEnvelope);

    /// <summary>A new account's id: 32 hex digits, inside the id rule. Chosen before the insert because the sealed
    /// profile fields are bound to it.</summary>
    public static string NewUserId() => Guid.NewGuid().ToString("N");

    /// <summary>The account's creation time, or null when the (normalised) address is taken. <paramref name="profile"/>
    /// null: the column defaults (time zone UTC, nothing else).</summary>
    public async Task<DateTime?> CreateUserAsync(string userId, string email, string passwordHash, SealedProfile? profile, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            INSERT INTO identity.users (user_id, email, password_hash, time_zone, sex, date_of_birth_enc, medical_history_enc, profile_updated_at)
            VALUES ($1, $2, $3, coalesce($4, 'UTC'), $5, $6, $7, CASE WHEN $4 IS NULL THEN NULL ELSE now() END)
            ON CONFLICT (email) DO NOTHING RETURNING created_at
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = email });
        cmd.Parameters.Add(new NpgsqlParameter { Value = passwordHash });
        AddProfile(cmd, profile);
        var created = await cmd.ExecuteScalarAsync(ct);
        return created is DateTime at ? DateTime.SpecifyKind(at, DateTimeKind.Utc) : null;
    }

    /// <summary>Replaces the profile; the new profile_updated_at, or null when there is no such account.</summary>
    public async Task<DateTime?> UpdateProfileAsync(string userId, SealedProfile profile, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            UPDATE identity.users SET time_zone = $2, sex = $3, date_of_birth_enc = $4, medical_history_enc = $5, profile_updated_at = now()
            WHERE user_id = $1 RETURNING profile_updated_at
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        AddProfile(cmd, profile);
        return await cmd.ExecuteScalarAsync(ct) is DateTime at ? DateTime.SpecifyKind(at, DateTimeKind.Utc) : null;
    }

    /// <summary>The one read of a profile (what a profile cache wraps): sealed fields stay sealed.</summary>
    public async Task<StoredProfile?> FindProfileAsync(string userId, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            SELECT user_id, email, created_at, time_zone, sex, date_of_birth_enc, medical_history_enc, profile_updated_at
            FROM identity.users WHERE user_id = $1
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct)) return null;
        return new StoredProfile(reader.GetString(0), reader.GetString(1), DateTime.SpecifyKind(reader.GetDateTime(2), DateTimeKind.Utc),
            reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5),
            reader.IsDBNull(6) ? null : reader.GetString(6), reader.IsDBNull(7) ? null : DateTime.SpecifyKind(reader.GetDateTime(7), DateTimeKind.Utc));
    }

    private static void AddProfile(NpgsqlCommand cmd, SealedProfile? profile)
    {
        cmd.Parameters.Add(Text(profile?.TimeZone));
        cmd.Parameters.Add(Text(profile?.Sex));
        cmd.Parameters.Add(Text(profile?.DateOfBirthEnvelope));
        cmd.Parameters.Add(Text(profile?.MedicalHistoryEnvelope));
    }

    private static NpgsqlParameter Text(string? value) => new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text };

    public Task<Account?> FindByEmailAsync(string email, CancellationToken ct) => FindAsync("email", email, ct);

    private async Task<Account?> FindAsync(string column, string value, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand(
            $"SELECT user_id, email, password_hash, created_at, locked_until FROM identity.users WHERE {column} = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = value });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct)) return null;
        return new Account(reader.GetString(0), reader.GetString(1), reader.GetString(2), DateTime.SpecifyKind(reader.GetDateTime(3), DateTimeKind.Utc),
            reader.IsDBNull(4) ? null : DateTime.SpecifyKind(reader.GetDateTime(4), DateTimeKind.Utc));
    }

    /// <summary>Counts a failed sign-in within the window; the failure that reaches the limit locks the account for
    /// <paramref name="window"/> and starts a new count. Returns the lock's end when this failure locked it.</summary>
    public async Task<DateTime?> RecordFailureAsync(string userId, DateTime nowUtc, int maxFailures, TimeSpan window, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            WITH counted AS (
              SELECT user_id,
                     CASE WHEN failure_window_start IS NULL OR failure_window_start <= $2 - $4 THEN 1 ELSE failed_logins + 1 END AS failures,
                     CASE WHEN failure_window_start IS NULL OR failure_window_start <= $2 - $4 THEN $2 ELSE failure_window_start END AS started
              FROM identity.users WHERE user_id = $1 FOR UPDATE)
            UPDATE identity.users u SET
              failed_logins        = CASE WHEN c.failures >= $3 THEN 0 ELSE c.failures END,
              failure_window_start = CASE WHEN c.failures >= $3 THEN NULL ELSE c.started END,
              locked_until         = CASE WHEN c.failures >= $3 THEN $2 + $4 ELSE u.locked_until END
            FROM counted c WHERE u.user_id = c.user_id
            RETURNING CASE WHEN c.failures >= $3 THEN u.locked_until END
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = nowUtc, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        cmd.Parameters.Add(new NpgsqlParameter { Value = maxFailures });
        cmd.Parameters.Add(new NpgsqlParameter { Value = window, NpgsqlDbType = NpgsqlDbType.Interval });
        var locked = await cmd.ExecuteScalarAsync(ct);
        return locked is DateTime until ? DateTime.SpecifyKind(until, DateTimeKind.Utc) : null;
    }

    public async Task ResetFailuresAsync(string userId, string? rehashed, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            UPDATE identity.users SET failed_logins = 0, failure_window_start = NULL, password_hash = coalesce($2, password_hash)
            WHERE user_id = $1 AND (failed_logins <> 0 OR $2 IS NOT NULL)
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)rehashed ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        await cmd.ExecuteNonQueryAsync(ct);
    }

    public async Task StoreRefreshTokenAsync(byte[] tokenSha256, string userId, Guid familyId, DateTime expiresUtc, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand(
            "INSERT INTO identity.refresh_tokens (token_sha256, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)");
        cmd.Parameters.Add(new NpgsqlParameter { Value = tokenSha256 });
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = familyId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = expiresUtc, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await cmd.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Marks a refresh token used, once: of two concurrent redemptions exactly one succeeds. A token presented
    /// after it was used (copied, or replayed by whoever stole it) revokes every token of its family.</summary>
    public async Task<(RedeemOutcome Outcome, string? UserId, Guid FamilyId)> RedeemRefreshTokenAsync(byte[] tokenSha256, DateTime nowUtc, CancellationToken ct)
    {
        await using (var redeem = db.CreateCommand("""
            UPDATE identity.refresh_tokens SET used_at = $2
            WHERE token_sha256 = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2
            RETURNING user_id, family_id
            """))
        {
            redeem.Parameters.Add(new NpgsqlParameter { Value = tokenSha256 });
            redeem.Parameters.Add(new NpgsqlParameter { Value = nowUtc, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            await using var reader = await redeem.ExecuteReaderAsync(ct);
            if (await reader.ReadAsync(ct)) return (RedeemOutcome.Redeemed, reader.GetString(0), reader.GetGuid(1));
        }
        await using var revoke = db.CreateCommand("""
            UPDATE identity.refresh_tokens SET revoked_at = coalesce(revoked_at, $2)
            WHERE family_id = (SELECT family_id FROM identity.refresh_tokens WHERE token_sha256 = $1 AND used_at IS NOT NULL)
            RETURNING family_id
            """);
        revoke.Parameters.Add(new NpgsqlParameter { Value = tokenSha256 });
        revoke.Parameters.Add(new NpgsqlParameter { Value = nowUtc, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        return await revoke.ExecuteScalarAsync(ct) is Guid family ? (RedeemOutcome.Reused, null, family) : (RedeemOutcome.Invalid, null, Guid.Empty);
    }
}
