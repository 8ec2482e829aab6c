using System.Collections.Concurrent;
using Npgsql;

namespace StreamHealth.Gateway.Insights;

/// <summary>A person's profile time zone (identity.users.time_zone, IANA), which decides their local day when a metric's
/// recorded_at gives no local offset. One primary-key lookup per person per <see cref="CacheFor"/>: a burst of posts asks once.
/// An unknown person or a zone this machine does not know is UTC (the column's default), never an error.</summary>
public sealed class UserTimeZones(NpgsqlDataSource postgres)
{
    /// <summary>How long a person's zone is reused: a profile change shows within this (a minute of metrics on the old day at most).</summary>
    public static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(60);
    private const int MaxCached = 50_000;

    private readonly ConcurrentDictionary<string, (TimeZoneInfo Zone, long ExpiresAtTicks)> _cache = new(StringComparer.Ordinal);

    /// <summary>The person's offset from UTC at <paramref name="instant"/>: minutes east of UTC (daylight saving included).</summary>
    public async Task<int> OffsetMinutesAsync(string userId, DateTimeOffset instant, CancellationToken ct) =>
        (int)(await ZoneAsync(userId, ct)).GetUtcOffset(instant).TotalMinutes;

    public async Task<TimeZoneInfo> ZoneAsync(string userId, CancellationToken ct)
    {
        var now = Environment.TickCount64;
        if (_cache.TryGetValue(userId, out var cached) && cached.ExpiresAtTicks > now) return cached.Zone;
        await using var cmd = postgres.CreateCommand("SELECT time_zone FROM identity.users WHERE user_id = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        var zone = await cmd.ExecuteScalarAsync(ct) is string name && TryFind(name, out var found) ? found : TimeZoneInfo.Utc;
        // A crude bound: clearing costs one lookup per active person, and only a flood of distinct ids reaches it.
        if (_cache.Count >= MaxCached) _cache.Clear();
        _cache[userId] = (zone, now + (long)CacheFor.TotalMilliseconds);
        return zone;
    }

    /// <summary>The IANA zone, or false (and UTC) for a name this machine does not know.</summary>
    public static bool TryFind(string name, out TimeZoneInfo zone)
    {
        try
        {
            zone = TimeZoneInfo.FindSystemTimeZoneById(name);
            return true;
        }
        catch (Exception e) when (e is TimeZoneNotFoundException or InvalidTimeZoneException or ArgumentException)
        {
            zone = TimeZoneInfo.Utc;
            return false;
        }
    }
}
