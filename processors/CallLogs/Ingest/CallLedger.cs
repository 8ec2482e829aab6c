using Npgsql;
using NpgsqlTypes;

namespace StreamHealth.CallLogs.Ingest;

/// <summary>calllogs.provider_calls and calllogs.poll_cursors (V0016): which provider calls were taken up, and how far each polled
/// provider's listing has been read. Shared by the fetch worker and the poller so that the two ways a call can arrive (webhook,
/// poll) never fetch and publish it twice. Every method throws NpgsqlException (or a timeout) when PostgreSQL is down: callers
/// wait and try again, they never go on without the ledger.</summary>
public sealed class CallLedger(NpgsqlDataSource db)
{
    public const string PruneSql = "SELECT calllogs.prune_provider_calls()";

    public static string OriginText(bool polled) => polled ? "polling" : "webhook";

    /// <summary>True when the call's transcript is already on calllogs.calls.</summary>
    public async Task<bool> IsFetchedAsync(string provider, string callId, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("SELECT fetched_at IS NOT NULL FROM calllogs.provider_calls WHERE provider = $1 AND call_id = $2");
        cmd.Parameters.Add(new NpgsqlParameter { Value = provider });
        cmd.Parameters.Add(new NpgsqlParameter { Value = callId });
        return await cmd.ExecuteScalarAsync(ct) is true;
    }

    /// <summary>The call's transcript is on calllogs.calls (after the broker acknowledged it).</summary>
    public async Task MarkFetchedAsync(string provider, string callId, DateTimeOffset? completedAt, bool polled, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            INSERT INTO calllogs.provider_calls (provider, call_id, completed_at, origin, fetched_at) VALUES ($1, $2, $3, $4, now())
            ON CONFLICT (provider, call_id) DO UPDATE SET fetched_at = coalesce(calllogs.provider_calls.fetched_at, now()),
              completed_at = coalesce(calllogs.provider_calls.completed_at, EXCLUDED.completed_at)
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = provider });
        cmd.Parameters.Add(new NpgsqlParameter { Value = callId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)completedAt ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        cmd.Parameters.Add(new NpgsqlParameter { Value = OriginText(polled) });
        await cmd.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Of <paramref name="callIds"/>, those the ledger already holds (noticed by a poll or fetched after any notice).</summary>
    public async Task<HashSet<string>> KnownAsync(string provider, IReadOnlyCollection<string> callIds, CancellationToken ct)
    {
        var known = new HashSet<string>(StringComparer.Ordinal);
        if (callIds.Count == 0) return known;
        await using var cmd = db.CreateCommand("SELECT call_id FROM calllogs.provider_calls WHERE provider = $1 AND call_id = ANY($2)");
        cmd.Parameters.Add(new NpgsqlParameter { Value = provider });
        cmd.Parameters.Add(new NpgsqlParameter { Value = callIds.ToArray() });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) known.Add(reader.GetString(0));
        return known;
    }

    /// <summary>The poller's notice of the call is on calllogs.raw (after the broker acknowledged it).</summary>
    public async Task MarkNoticedAsync(string provider, string callId, DateTimeOffset completedAt, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            INSERT INTO calllogs.provider_calls (provider, call_id, completed_at, origin, noticed_at) VALUES ($1, $2, $3, 'polling', now())
            ON CONFLICT (provider, call_id) DO UPDATE SET noticed_at = coalesce(calllogs.provider_calls.noticed_at, now())
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = provider });
        cmd.Parameters.Add(new NpgsqlParameter { Value = callId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = completedAt, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await cmd.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The end time up to which the provider's listing was taken up; null before its first complete poll.</summary>
    public async Task<DateTimeOffset?> CursorAsync(string provider, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("SELECT completed_since FROM calllogs.poll_cursors WHERE provider = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = provider });
        return await cmd.ExecuteScalarAsync(ct) is DateTime at ? new DateTimeOffset(DateTime.SpecifyKind(at, DateTimeKind.Utc)) : null;
    }

    /// <summary>Moves the cursor on (never back: two pollers racing after a lost lock cannot rewind it).</summary>
    public async Task AdvanceCursorAsync(string provider, DateTimeOffset completedSince, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            INSERT INTO calllogs.poll_cursors (provider, completed_since) VALUES ($1, $2)
            ON CONFLICT (provider) DO UPDATE SET completed_since = greatest(calllogs.poll_cursors.completed_since, EXCLUDED.completed_since),
              polled_at = now()
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = provider });
        cmd.Parameters.Add(new NpgsqlParameter { Value = completedSince, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await cmd.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Opens a session that holds the provider's polling lease (a session-level advisory lock), or null when another
    /// host's poller holds it. Disposing the connection (or the host dying, which closes it) ends the lease, and another host's
    /// poller takes over at its next try: one poller per provider across every host.</summary>
    public async Task<NpgsqlConnection?> TryLeaseAsync(string provider, CancellationToken ct)
    {
        var conn = await db.OpenConnectionAsync(ct);
        try
        {
            await using var cmd = new NpgsqlCommand("SELECT pg_try_advisory_lock(hashtextextended('streamhealth:calllogs-poll:' || $1, 0))", conn);
            cmd.Parameters.Add(new NpgsqlParameter { Value = provider });
            if (await cmd.ExecuteScalarAsync(ct) is true) return conn;
        }
        catch
        {
            await conn.DisposeAsync();
            throw;
        }
        await conn.DisposeAsync();
        return null;
    }

    /// <summary>Ends the lease: unlocks before the connection goes back to the pool, where a session lock would outlive it.</summary>
    public static async Task ReleaseLeaseAsync(NpgsqlConnection lease)
    {
        try
        {
            await using var cmd = new NpgsqlCommand("SELECT pg_advisory_unlock_all()", lease);
            await cmd.ExecuteNonQueryAsync();
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // The session is gone, and its locks with it.
        }
        await lease.DisposeAsync();
    }

    /// <summary>True while the lease's session is alive (a lost connection has lost the lock with it).</summary>
    public static async Task<bool> StillLeasedAsync(NpgsqlConnection lease, CancellationToken ct)
    {
        try
        {
            await using var cmd = new NpgsqlCommand("SELECT 1", lease);
            await cmd.ExecuteScalarAsync(ct);
            return true;
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            return false;
        }
    }
}
