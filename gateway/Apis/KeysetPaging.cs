using System.Buffers.Text;
using System.Globalization;
using System.Text;
using Npgsql;
using NpgsqlTypes;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Gateway.Apis;

/// <summary>One page's query over a person's time-ordered records: <c>from &lt;= time &lt; to</c>, at most
/// <see cref="Limit"/> rows, after the (time, id) of the previous page's last row.</summary>
internal readonly record struct PageQuery(DateTime FromUtc, DateTime ToUtc, int Limit, DateTime? AfterTime, string AfterId);

/// <summary>Keyset paging on (time, id), shared by every "a person's records in a time range" read (health metrics,
/// nutrition logs): the from/to/limit/cursor rules, the opaque cursor, and the one-row-more page split. A page is one
/// index range whatever the page number, and a cursor continues exactly the query that produced it.</summary>
internal static class KeysetPaging
{
    /// <summary>The page's query, or errors naming <c>from</c>, <c>to</c>, <c>limit</c> or <c>cursor</c>. Defaults:
    /// <c>to</c> = now plus the allowed clock skew (so a record just sent with a slightly fast clock is included),
    /// <c>from</c> = <c>to</c> − <paramref name="defaultRange"/>.</summary>
    public static PageQuery Parse(string? from, string? to, string? limit, string? cursor, TimeSpan defaultRange, int defaultLimit, int maxLimit,
        EventTimeRule timeRule, Dictionary<string, string[]> errors)
    {
        var (fromUtc, toUtc) = ApiInput.ParseRange(from, to, defaultRange, DateTime.UtcNow.AddMilliseconds(timeRule.MaxAheadMs), errors);
        var pageSize = ApiInput.ParseCount(limit, "limit", defaultLimit, maxLimit, errors);
        DateTime? afterTime = null;
        var afterId = "";
        if (cursor is not null)
        {
            if (Decode(cursor) is { } after) (afterTime, afterId) = after;
            else errors["cursor"] = [$"'{ApiInput.Shorten(cursor)}' is not a cursor this API returned."];
        }
        return new PageQuery(fromUtc, toUtc, pageSize, afterTime, afterId);
    }

    /// <summary>A command whose first six parameters are the page's: $1 user, $2 from, $3 to, $4/$5 the (time, id) to
    /// continue after (null time: the first page), $6 the row limit, one more than the page holds (that row says whether
    /// there is a next page). The SQL reads them as <c>WHERE user_id = $1 AND t &gt;= $2 AND t &lt; $3 AND ($4::timestamptz
    /// IS NULL OR (t, id) &gt; ($4, $5)) ORDER BY t, id LIMIT $6</c>; its own parameters follow from $7.</summary>
    public static NpgsqlCommand Command(NpgsqlDataSource pg, string sql, string userId, PageQuery page)
    {
        var cmd = pg.CreateCommand(sql);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = page.FromUtc });
        cmd.Parameters.Add(new NpgsqlParameter { Value = page.ToUtc });
        cmd.Parameters.Add(new NpgsqlParameter { Value = page.AfterTime is { } t ? t : DBNull.Value, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        cmd.Parameters.Add(new NpgsqlParameter { Value = page.AfterId, NpgsqlDbType = NpgsqlDbType.Text });
        cmd.Parameters.Add(new NpgsqlParameter { Value = page.Limit + 1 });
        return cmd;
    }

    /// <summary>Reads the page's rows (up to one more than the limit); drops the extra row and returns the cursor of the
    /// last row kept when there was one, else null (the last page).</summary>
    public static async Task<(List<T> Rows, string? NextCursor)> ReadAsync<T>(NpgsqlCommand cmd, PageQuery page, Func<NpgsqlDataReader, T> read,
        Func<T, (DateTime Time, string Id)> key, CancellationToken ct)
    {
        var rows = new List<T>(Math.Min(page.Limit + 1, 256));
        await using (var reader = await cmd.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct)) rows.Add(read(reader));
        }
        if (rows.Count <= page.Limit) return (rows, null);
        rows.RemoveAt(rows.Count - 1);
        var (time, id) = key(rows[^1]);
        return (rows, Encode(time, id));
    }

    // Opaque to clients: base64url of "unix microseconds:id" (the last row of the page).
    internal static string Encode(DateTime time, string id) =>
        Base64Url.EncodeToString(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{(time - DateTime.UnixEpoch).Ticks / 10}:{id}")));

    internal static (DateTime, string)? Decode(string cursor)
    {
        if (cursor.Length > 256 || !Base64Url.IsValid(cursor)) return null;
        string text;
        try { text = Encoding.UTF8.GetString(Base64Url.DecodeFromChars(cursor)); }
        catch (FormatException) { return null; }
        var colon = text.IndexOf(':');
        // Up to 2200-01-01 in microseconds: the query bounds' own limit.
        if (colon < 1 || !long.TryParse(text.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var micros)
            || micros > 7_258_118_400_000_000L || !InputRules.IsValidId(text[(colon + 1)..])) return null;
        return (DateTime.UnixEpoch.AddTicks(micros * 10), text[(colon + 1)..]);
    }
}
