using System.Buffers.Binary;
using System.Diagnostics.Metrics;
using System.Text.Json;
using StackExchange.Redis;

namespace StreamHealth.Gateway.Insights;

/// <summary>One cache tier: its Redis key prefix (a key per person: <c>{prefix}{user_id}</c>, one hash field per
/// variant such as the window length) and how long an entry lives.</summary>
public sealed record CacheTier(string Name, string KeyPrefix, TimeSpan TimeToLive)
{
    /// <summary>Recommendations: 1 h, dropped by the insights sink when the person's aggregates change.</summary>
    public static readonly CacheTier Recommendations = new("recommendations", "insights:recs:", TimeSpan.FromHours(1));
    /// <summary>Metric summaries: 5 min, dropped by the insights sink when the person's aggregates change.</summary>
    public static readonly CacheTier MetricSummaries = new("metric_summaries", "insights:summary:", TimeSpan.FromMinutes(5));
    /// <summary>Profiles: 24 h, dropped by the profile write.</summary>
    public static readonly CacheTier Profiles = new("profiles", "insights:profile:", TimeSpan.FromHours(24));

    public static readonly IReadOnlyList<CacheTier> All = [Recommendations, MetricSummaries, Profiles];

    public RedisKey Key(string userId) => KeyPrefix + userId;
}

/// <summary>Cache-aside in Redis for per-person answers, in the tiers of <see cref="CacheTier"/>. Redis only speeds
/// reads up: when it is down or slow the loader answers from PostgreSQL and the request still succeeds (counted as an
/// error). Invalidation is a single DEL of the person's key by whoever changed the data (the insights sink, driven by the
/// topology's output; the profile write): no pattern deletes, no request-thread scans.
/// <para>A load that raced an invalidation must not put the old answer back for an hour: the first miss on a key writes
/// an epoch token into it (with the tier's time to live), and an answer is stored only while that token is still
/// there. A DEL between the load's start and its store removes the token, so the store is refused.</para></summary>
public sealed class PersonalCache(IConnectionMultiplexer redis, ILogger<PersonalCache> log)
{
    public const string MeterName = "StreamHealth.Gateway.Cache";
    private const string EpochField = "_epoch";

    // Stores the answer only if the epoch this load began under is still the key's.
    private const string StoreIfEpoch =
        "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HSET', KEYS[1], ARGV[3], ARGV[4]) end return -1";

    // The key's epoch, created (with the tier's time to live, in ms) if the key has none: the first miss since the last DEL.
    private const string ClaimEpoch =
        "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) return ARGV[2] end " +
        "return redis.call('HGET', KEYS[1], ARGV[1])";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> HitCounter = Meter.CreateCounter<long>("streamhealth.cache.hits", description: "answers served from Redis");
    private static readonly Counter<long> MissCounter = Meter.CreateCounter<long>("streamhealth.cache.misses", description: "answers loaded from PostgreSQL");
    private static readonly Counter<long> ErrorCounter = Meter.CreateCounter<long>("streamhealth.cache.errors",
        description: "Redis calls that failed or timed out (the answer came from PostgreSQL)");

    private readonly TierCounts[] _counts = CacheTier.All.Select(_ => new TierCounts()).ToArray();

    /// <summary>The answer for (<paramref name="tier"/>, <paramref name="userId"/>, <paramref name="variant"/>) as UTF-8 JSON:
    /// the cached bytes, or <paramref name="load"/>'s answer serialised once (then stored). Answers go out as these bytes,
    /// so a hit costs no serialisation. A null load result (nothing to answer) is not cached.</summary>
    public async Task<byte[]?> GetOrLoadJsonAsync<T>(CacheTier tier, string userId, string variant, Func<CancellationToken, Task<T?>> load,
        CancellationToken ct) where T : class
    {
        var counts = CountsOf(tier);
        var key = tier.Key(userId);
        var db = redis.GetDatabase();
        RedisValue epoch = RedisValue.Null;
        var redisUp = redis.IsConnected;
        if (redisUp)
        {
            try
            {
                var cached = await db.HashGetAsync(key, variant);
                if (cached.HasValue && Fresh((byte[])cached!, tier) is { } hit)
                {
                    Interlocked.Increment(ref counts.Hits);
                    HitCounter.Add(1, new KeyValuePair<string, object?>("tier", tier.Name));
                    return hit;
                }
                epoch = await ClaimEpochAsync(db, key, tier);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                Failed(tier, counts, e, userId);
                redisUp = false;
            }
        }
        else Failed(tier, counts, null, userId);

        Interlocked.Increment(ref counts.Misses);
        MissCounter.Add(1, new KeyValuePair<string, object?>("tier", tier.Name));
        if (await load(ct) is not { } loaded) return null;
        var entry = Encode(loaded);
        if (redisUp && !epoch.IsNull)
        {
            try
            {
                await db.ScriptEvaluateAsync(StoreIfEpoch, [key], [EpochField, epoch, variant, entry]);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                Failed(tier, counts, e, userId);
            }
        }
        return entry[StoreTimeBytes..];
    }

    /// <summary>Drops every cached answer of the person in <paramref name="tier"/> (one DEL). A failure is logged and
    /// counted: the entry then lives out its time to live.</summary>
    public async Task InvalidateAsync(CacheTier tier, string userId)
    {
        try
        {
            await redis.GetDatabase().KeyDeleteAsync(tier.Key(userId));
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            Failed(tier, CountsOf(tier), e, userId);
        }
    }

    /// <summary>Hits, misses and errors per tier since the gateway started (GET /api/v1/cache).</summary>
    public IReadOnlyList<CacheStats> Stats()
    {
        var stats = new CacheStats[CacheTier.All.Count];
        for (var i = 0; i < stats.Length; i++)
        {
            var c = _counts[i];
            long hits = Interlocked.Read(ref c.Hits), misses = Interlocked.Read(ref c.Misses), errors = Interlocked.Read(ref c.Errors);
            var reads = hits + misses;
            stats[i] = new CacheStats(CacheTier.All[i].Name, (long)CacheTier.All[i].TimeToLive.TotalSeconds, hits, misses, errors,
                reads == 0 ? 0 : (double)hits / reads, reads == 0 ? 0 : (double)errors / reads);
        }
        return stats;
    }

    private static async Task<RedisValue> ClaimEpochAsync(IDatabase db, RedisKey key, CacheTier tier) =>
        (RedisValue)await db.ScriptEvaluateAsync(ClaimEpoch, [key],
            [EpochField, Guid.NewGuid().ToString("N"), (long)tier.TimeToLive.TotalMilliseconds]);

    private TierCounts CountsOf(CacheTier tier)
    {
        for (var i = 0; i < CacheTier.All.Count; i++)
            if (ReferenceEquals(CacheTier.All[i], tier)) return _counts[i];
        throw new ArgumentException($"unknown cache tier {tier.Name}", nameof(tier));
    }

    private void Failed(CacheTier tier, TierCounts counts, Exception? e, string userId)
    {
        Interlocked.Increment(ref counts.Errors);
        ErrorCounter.Add(1, new KeyValuePair<string, object?>("tier", tier.Name));
        // The user id only: cached answers are personal data and never logged.
        log.LogWarning(e, "Redis cache ({Tier}) unavailable for {UserId}; answering from PostgreSQL", tier.Name, userId);
    }

    // Stored as 8 bytes of store time (unix ms, little endian) then the JSON: an entry older than the tier's time to live
    // is a miss even if the key's own expiry was extended by a later epoch.
    private const int StoreTimeBytes = 8;

    private static byte[] Encode<T>(T value)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(value);
        var bytes = new byte[StoreTimeBytes + json.Length];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        json.CopyTo(bytes, StoreTimeBytes);
        return bytes;
    }

    private static byte[]? Fresh(byte[] entry, CacheTier tier)
    {
        if (entry.Length <= StoreTimeBytes) return null;
        var storedAtMs = BinaryPrimitives.ReadInt64LittleEndian(entry);
        return DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - storedAtMs > (long)tier.TimeToLive.TotalMilliseconds ? null : entry[StoreTimeBytes..];
    }

    private sealed class TierCounts
    {
        public long Hits, Misses, Errors;
    }
}

public sealed record CacheStats(
    [property: System.Text.Json.Serialization.JsonPropertyName("tier")] string Tier,
    [property: System.Text.Json.Serialization.JsonPropertyName("ttl_seconds")] long TtlSeconds,
    [property: System.Text.Json.Serialization.JsonPropertyName("hits")] long Hits,
    [property: System.Text.Json.Serialization.JsonPropertyName("misses")] long Misses,
    [property: System.Text.Json.Serialization.JsonPropertyName("errors")] long Errors,
    [property: System.Text.Json.Serialization.JsonPropertyName("hit_rate")] double HitRate,
    [property: System.Text.Json.Serialization.JsonPropertyName("error_rate")] double ErrorRate);
