using Npgsql;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Runtime.Storage;

/// <summary>What an event id is to its claimant (see schemas/sql/V0006__event_ids.sql).</summary>
public enum EventIdClaim
{
    /// <summary>The id is this event's: first claim, or a retry of the same event (same user and fingerprint).</summary>
    Owned,
    /// <summary>Another user already uses the id.</summary>
    OtherUser,
    /// <summary>The same user already used the id for a different event (another time, value, unit or source).</summary>
    OtherEvent,
}

/// <summary>streamhealth.event_ids: one owner per (workload, event id), whatever the event's time. The gateway claims an
/// id before it produces (409 on a conflict); each PostgreSQL sink claims its batch's ids inside the batch's transaction
/// and dead-letters the conflicting records, so a record that reached a topic without the gateway obeys the same rule.</summary>
public static class EventIds
{
    /// <summary>Claims one id (its own statement; concurrent claimants of one id are serialised by the primary key).</summary>
    public static async Task<EventIdClaim> ClaimAsync(NpgsqlDataSource db, string workload, string eventId, string userId, string fingerprint,
        CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("""
            WITH ins AS (
              INSERT INTO streamhealth.event_ids (workload, event_id, user_id, fingerprint) VALUES ($1, $2, $3, $4)
              ON CONFLICT (workload, event_id) DO NOTHING RETURNING user_id, fingerprint)
            SELECT user_id, fingerprint FROM ins
            UNION ALL
            SELECT user_id, fingerprint FROM streamhealth.event_ids WHERE workload = $1 AND event_id = $2
            LIMIT 1
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = workload });
        cmd.Parameters.Add(new NpgsqlParameter { Value = eventId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = fingerprint });
        await using (var reader = await cmd.ExecuteReaderAsync(ct))
        {
            if (await reader.ReadAsync(ct)) return Classify(userId, fingerprint, reader.GetString(0), reader.GetString(1));
        }
        // No row: a concurrent claimant inserted the id while this statement ran (its INSERT waited for that commit, then
        // did nothing, and its snapshot predates the row). A new statement sees the committed owner.
        await using var owner = db.CreateCommand("SELECT user_id, fingerprint FROM streamhealth.event_ids WHERE workload = $1 AND event_id = $2");
        owner.Parameters.Add(new NpgsqlParameter { Value = workload });
        owner.Parameters.Add(new NpgsqlParameter { Value = eventId });
        await using var again = await owner.ExecuteReaderAsync(ct);
        if (!await again.ReadAsync(ct)) throw new InvalidOperationException($"event id {workload}/{eventId}: neither claimed nor found");
        return Classify(userId, fingerprint, again.GetString(0), again.GetString(1));
    }

    /// <summary>Claims every id of a sink batch in <paramref name="tx"/>; result i is record i's claim. Within the batch the
    /// first occurrence of an id claims it and later ones are compared with it.</summary>
    public static EventIdClaim[] Claim(NpgsqlConnection connection, NpgsqlTransaction tx, string workload,
        IReadOnlyList<string> eventIds, IReadOnlyList<string> userIds, IReadOnlyList<string> fingerprints)
    {
        var claims = new EventIdClaim[eventIds.Count];
        if (eventIds.Count == 0) return claims;
        // Two statements: the INSERT claims what nobody owns (first occurrence in the batch wins); the SELECT, under a
        // fresh snapshot (READ COMMITTED), then sees this transaction's claims and every committed one — including an
        // owner that a concurrent sink committed while the INSERT waited on it, which one statement could not see.
        using (var insert = new NpgsqlCommand("""
            INSERT INTO streamhealth.event_ids (workload, event_id, user_id, fingerprint)
            SELECT DISTINCT ON (id) @workload, id, u, fp
            FROM unnest(@ids::text[], @users::text[], @fps::text[]) WITH ORDINALITY AS x(id, u, fp, i)
            ORDER BY id, i
            ON CONFLICT (workload, event_id) DO NOTHING
            """, connection, tx))
        {
            insert.Parameters.AddWithValue("workload", workload);
            insert.Parameters.AddWithValue("ids", eventIds);
            insert.Parameters.AddWithValue("users", userIds);
            insert.Parameters.AddWithValue("fps", fingerprints);
            insert.ExecuteNonQuery();
        }
        using var cmd = new NpgsqlCommand("""
            SELECT x.i, e.user_id, e.fingerprint
            FROM unnest(@ids::text[]) WITH ORDINALITY AS x(id, i)
            JOIN streamhealth.event_ids e ON e.workload = @workload AND e.event_id = x.id
            """, connection, tx);
        cmd.Parameters.AddWithValue("workload", workload);
        cmd.Parameters.AddWithValue("ids", eventIds);
        using var reader = cmd.ExecuteReader();
        while (reader.Read())
        {
            var i = (int)reader.GetInt64(0) - 1;
            claims[i] = Classify(userIds[i], fingerprints[i], reader.GetString(1), reader.GetString(2));
        }
        return claims;
    }

    /// <summary>Why a sink refuses a record whose <paramref name="field"/> it does not own (null when
    /// <paramref name="claim"/> is <see cref="EventIdClaim.Owned"/>); <paramref name="what"/> names the kind of event, e.g.
    /// "measurement (time, value, unit or source differ)". Never names the other user.</summary>
    public static string? ConflictReason(EventIdClaim claim, string field, string eventId, string what) => claim switch
    {
        EventIdClaim.OtherUser => $"{field} {InputRules.Quote(eventId)} is already used by another user",
        EventIdClaim.OtherEvent => $"{field} {InputRules.Quote(eventId)} was already used by this user for another {what}",
        _ => null,
    };

    private static EventIdClaim Classify(string userId, string fingerprint, string ownerUserId, string ownerFingerprint) =>
        !string.Equals(userId, ownerUserId, StringComparison.Ordinal) ? EventIdClaim.OtherUser
        : !string.Equals(fingerprint, ownerFingerprint, StringComparison.Ordinal) ? EventIdClaim.OtherEvent
        : EventIdClaim.Owned;
}
