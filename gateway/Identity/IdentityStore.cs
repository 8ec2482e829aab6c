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

    /// <summary>The new user's id, or null when the (normalised) address is taken.</summary>
    public async Task<(string UserId, DateTime CreatedAt)?> CreateUserAsync(string email, string passwordHash, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            INSERT INTO identity.users (user_id, email, password_hash) VALUES ($1, $2, $3)
            ON CONFLICT (email) DO NOTHING RETURNING created_at
            """);
        var userId = Guid.NewGuid().ToString("N");
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = email });
        cmd.Parameters.Add(new NpgsqlParameter { Value = passwordHash });
        var created = await cmd.ExecuteScalarAsync(ct);
        return created is DateTime at ? (userId, DateTime.SpecifyKind(at, DateTimeKind.Utc)) : null;
    }

    public Task<Account?> FindByEmailAsync(string email, CancellationToken ct) => FindAsync("email", email, ct);
    public Task<Account?> FindByIdAsync(string userId, CancellationToken ct) => FindAsync("user_id", userId, ct);

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
