using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.Json;
using StackExchange.Redis;
using StreamHealth.Runtime.Caching;

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

/// <summary>Cache-aside for per-person answers, in the tiers of <see cref="CacheTier"/>: an in-process near copy (up to
/// Gateway:NearCache:Seconds) in front of Redis. Redis only speeds reads up: when it is down or slow the loader answers
/// from PostgreSQL and the request still succeeds (counted as an error). Invalidation is
/// <see cref="CacheInvalidation.DropAsync"/> of the person's key by whoever changed the data (the insights sink, driven by
/// the topology's output; the profile write): a DEL, and an announcement on which every gateway drops its near copies. No
/// pattern deletes, no request-thread scans.
/// <para>A load that raced an invalidation must not put the old answer back. In Redis: the first miss on a key writes an
/// epoch token into it (with the tier's time to live), and an answer is stored only while that token is still there; a
/// DEL between the load's start and its store removes the token, so the store is refused. Near: a load takes the person's
/// slot before it reads Redis, an announcement removes the slot, and a copy is kept only if the slot it took is still the
/// person's.</para>
/// <para>Near copies are used only while the announcements' subscription is up: when it fails they are all dropped and
/// none is kept until a second after it is restored (announcements sent meanwhile are lost).</para></summary>
public sealed class PersonalCache : IDisposable
{
    public const string MeterName = "StreamHealth.Gateway.Cache";
    private const string EpochField = "_epoch";
    private static readonly TimeSpan ResubscribeSettle = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan ListenRetry = TimeSpan.FromSeconds(5);

    // Stores the answer only if the epoch this load began under is still the key's.
    private const string StoreIfEpoch =
        "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HSET', KEYS[1], ARGV[3], ARGV[4]) end return -1";

    // The key's epoch, created (with the tier's time to live, in ms) if the key has none: the first miss since the last DEL.
    private const string ClaimEpoch =
        "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) return ARGV[2] end " +
        "return redis.call('HGET', KEYS[1], ARGV[1])";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> HitCounter = Meter.CreateCounter<long>("streamhealth.cache.hits",
        description: "answers served from a cache (layer: near = this gateway's memory, redis)");
    private static readonly Counter<long> MissCounter = Meter.CreateCounter<long>("streamhealth.cache.misses", description: "answers loaded from PostgreSQL");
    private static readonly Counter<long> ErrorCounter = Meter.CreateCounter<long>("streamhealth.cache.errors",
        description: "Redis calls that failed or timed out (the answer came from PostgreSQL)");

    private readonly IConnectionMultiplexer _redis;
    private readonly ILogger<PersonalCache> _log;
    private readonly long _nearMs;
    private readonly int _nearMaxPeople;
    private readonly TierCounts[] _counts = CacheTier.All.Select(_ => new TierCounts()).ToArray();
    // Per tier: user id → slot. Replaced whole (not cleared) when dropped, so a load holding the old one cannot store into it.
    private readonly NearTier[] _near = CacheTier.All.Select(_ => new NearTier()).ToArray();
    private int _listening, _subscribing, _disposed;
    private long _nextListenTicks;

    public PersonalCache(IConnectionMultiplexer redis, GatewayOptions options, ILogger<PersonalCache> log)
    {
        _redis = redis;
        _log = log;
        _nearMs = options.NearCache.Seconds * 1000L;
        _nearMaxPeople = options.NearCache.MaxPeople;
        if (_nearMs == 0) return;
        redis.ConnectionFailed += OnConnectionFailed;
        redis.ConnectionRestored += OnConnectionRestored;
        Listen();
    }

    /// <summary>The answer for (<paramref name="tier"/>, <paramref name="userId"/>, <paramref name="variant"/>) as UTF-8 JSON:
    /// the near copy, the Redis copy, or <paramref name="load"/>'s answer serialised once (then stored). Answers go out as
    /// these bytes, so a hit costs no serialisation. A null load result (nothing to answer) is not cached.</summary>
    public async Task<byte[]?> GetOrLoadJsonAsync<T>(CacheTier tier, string userId, string variant, Func<CancellationToken, Task<T?>> load,
        CancellationToken ct) where T : class
    {
        var index = IndexOf(tier);
        var counts = _counts[index];
        // Near: a hit allocates nothing. Otherwise the slot is taken before Redis is read (see the class remarks).
        NearTier? near = null;
        NearSlot? slot = null;
        if (Volatile.Read(ref _listening) == 1)
        {
            near = Volatile.Read(ref _near[index]);
            if (near.Slots.TryGetValue(userId, out slot) && slot.Find(variant, Environment.TickCount64) is { } copy)
            {
                Interlocked.Increment(ref counts.NearHits);
                Interlocked.Increment(ref counts.Hits);
                HitCounter.Add(1, new KeyValuePair<string, object?>("tier", tier.Name), new KeyValuePair<string, object?>("layer", "near"));
                return copy;
            }
            slot ??= TakeSlot(index, near, userId);
        }
        else if (_nearMs > 0) Listen();

        var key = tier.Key(userId);
        var db = _redis.GetDatabase();
        RedisValue epoch = RedisValue.Null;
        var redisUp = _redis.IsConnected;
        if (redisUp)
        {
            try
            {
                var cached = await db.HashGetAsync(key, variant);
                if (cached.HasValue && Fresh((byte[])cached!, tier) is var (hit, storedAtMs) && hit is not null)
                {
                    Interlocked.Increment(ref counts.Hits);
                    HitCounter.Add(1, new KeyValuePair<string, object?>("tier", tier.Name), new KeyValuePair<string, object?>("layer", "redis"));
                    KeepNear(index, near, slot, userId, variant, hit, tier, storedAtMs);
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
        var (entry, nowMs) = Encode(loaded);
        var json = entry[StoreTimeBytes..];
        if (redisUp && !epoch.IsNull)
        {
            try
            {
                // -1: the epoch is gone, the key was dropped while this loaded: the answer may be old, keep it nowhere.
                if ((long)await db.ScriptEvaluateAsync(StoreIfEpoch, [key], [EpochField, epoch, variant, entry]) >= 0)
                    KeepNear(index, near, slot, userId, variant, json, tier, nowMs);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                Failed(tier, counts, e, userId);
            }
        }
        return json;
    }

    /// <summary>Drops every cached answer of the person in <paramref name="tier"/>: this gateway's near copies at once, then
    /// the Redis key and every other gateway's copies (<see cref="CacheInvalidation.DropAsync"/>). A Redis failure is logged
    /// and counted: the entry then lives out its time to live.</summary>
    public async Task InvalidateAsync(CacheTier tier, string userId)
    {
        var index = IndexOf(tier);
        DropNear(index, userId);
        try
        {
            await CacheInvalidation.DropAsync(_redis.GetDatabase(), [tier.Key(userId)]);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            Failed(tier, _counts[index], e, userId);
        }
        // A read of this gateway that raced the DEL may have kept the old answer near; the announcement would drop it a
        // moment later, this drops it before the writer's answer goes out.
        DropNear(index, userId);
    }

    /// <summary>Hits (near ones among them), misses and errors per tier since the gateway started (GET /api/v1/cache).</summary>
    public IReadOnlyList<CacheStats> Stats()
    {
        var stats = new CacheStats[CacheTier.All.Count];
        for (var i = 0; i < stats.Length; i++)
        {
            var c = _counts[i];
            long hits = Interlocked.Read(ref c.Hits), nearHits = Interlocked.Read(ref c.NearHits), misses = Interlocked.Read(ref c.Misses),
                errors = Interlocked.Read(ref c.Errors);
            var reads = hits + misses;
            stats[i] = new CacheStats(CacheTier.All[i].Name, (long)CacheTier.All[i].TimeToLive.TotalSeconds, hits, nearHits, misses, errors,
                reads == 0 ? 0 : (double)hits / reads, reads == 0 ? 0 : (double)errors / reads);
        }
        return stats;
    }

    /// <summary>Whether this gateway holds a live near copy of the person's answer in <paramref name="tier"/>.</summary>
    public bool HoldsNear(CacheTier tier, string userId) =>
        Volatile.Read(ref _near[IndexOf(tier)]).Slots.TryGetValue(userId, out var slot) && slot.HasLive(Environment.TickCount64);

    /// <summary>Whether near copies are in use: the announcements' subscription is up.</summary>
    public bool NearListening => Volatile.Read(ref _listening) == 1;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1 || _nearMs == 0) return;
        _redis.ConnectionFailed -= OnConnectionFailed;
        _redis.ConnectionRestored -= OnConnectionRestored;
        Volatile.Write(ref _listening, 0);
        try
        {
            _redis.GetSubscriber().Unsubscribe(RedisChannel.Literal(CacheInvalidation.Channel), OnAnnouncement);
        }
        catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException) { }
    }

    // --- near copies ---

    // Subscribes to the announcements (at start, then at most every ListenRetry from the request path while it fails; once
    // it has worked the multiplexer re-subscribes by itself after an outage, see OnConnectionRestored).
    private void Listen()
    {
        var now = Environment.TickCount64;
        if (Volatile.Read(ref _disposed) == 1 || now < Volatile.Read(ref _nextListenTicks) || Interlocked.Exchange(ref _subscribing, 1) == 1) return;
        Volatile.Write(ref _nextListenTicks, now + (long)ListenRetry.TotalMilliseconds);
        _ = Task.Run(async () =>
        {
            var channel = RedisChannel.Literal(CacheInvalidation.Channel);
            var subscriber = _redis.GetSubscriber();
            try
            {
                // A failed attempt may have left the handler registered: never twice.
                subscriber.Unsubscribe(channel, OnAnnouncement, CommandFlags.FireAndForget);
                await subscriber.SubscribeAsync(channel, OnAnnouncement);
                DropAllNear();
                Volatile.Write(ref _listening, 1);
            }
            catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
            {
                _log.LogWarning("near cache off: cannot subscribe to {Channel} ({Error}); answers come from Redis until it can",
                    CacheInvalidation.Channel, e.Message);
            }
            finally
            {
                Volatile.Write(ref _subscribing, 0);
            }
        });
    }

    private void OnAnnouncement(RedisChannel channel, RedisValue message)
    {
        foreach (var key in CacheInvalidation.Keys(message))
            for (var i = 0; i < CacheTier.All.Count; i++)
                if (key.StartsWith(CacheTier.All[i].KeyPrefix, StringComparison.Ordinal))
                    DropNear(i, key[CacheTier.All[i].KeyPrefix.Length..]);
    }

    private void OnConnectionFailed(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType != ConnectionType.Subscription) return;
        Volatile.Write(ref _listening, 0);
        DropAllNear();
        _log.LogWarning("near cache off: the cache announcements' subscription failed ({Failure})", e.FailureType);
    }

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType != ConnectionType.Subscription || Volatile.Read(ref _subscribing) == 1) return;
        // The multiplexer subscribes again on its own; announcements before that are lost, so nothing near is trusted until
        // the re-subscription has surely gone through.
        _ = Task.Run(async () =>
        {
            await Task.Delay(ResubscribeSettle);
            if (Volatile.Read(ref _disposed) == 1 || !_redis.GetSubscriber().IsConnected(RedisChannel.Literal(CacheInvalidation.Channel))) return;
            DropAllNear();
            Volatile.Write(ref _listening, 1);
            _log.LogInformation("near cache on again: the cache announcements' subscription is restored");
        });
    }

    private NearSlot? TakeSlot(int index, NearTier near, string userId)
    {
        if (near.Slots.TryGetValue(userId, out var slot)) return slot;
        if (near.Count >= _nearMaxPeople && !Sweep(index, near)) return null;
        slot = new NearSlot();
        if (near.Slots.TryAdd(userId, slot))
        {
            Interlocked.Increment(ref near.Count);
            return slot;
        }
        return near.Slots.TryGetValue(userId, out slot) ? slot : null;
    }

    // Keeps a copy only if the slot taken before Redis was read is still the person's (no announcement since) and the
    // near cache is still the one the load began with (not dropped whole since).
    private void KeepNear(int index, NearTier? near, NearSlot? slot, string userId, string variant, byte[] json, CacheTier tier, long storedAtMs)
    {
        if (near is null || slot is null || Volatile.Read(ref _listening) == 0) return;
        if (!ReferenceEquals(Volatile.Read(ref _near[index]), near)
            || !near.Slots.TryGetValue(userId, out var current) || !ReferenceEquals(current, slot)) return;
        // Never past the tier's own time to live, counted from when the answer was made.
        var ageMs = Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - storedAtMs);
        var lifeMs = Math.Min(_nearMs, (long)tier.TimeToLive.TotalMilliseconds - ageMs);
        if (lifeMs <= 0) return;
        slot.Keep(variant, json, Environment.TickCount64 + lifeMs);
    }

    private void DropNear(int index, string userId)
    {
        var near = Volatile.Read(ref _near[index]);
        if (near.Slots.TryRemove(userId, out _)) Interlocked.Decrement(ref near.Count);
    }

    private void DropAllNear()
    {
        for (var i = 0; i < _near.Length; i++) Volatile.Write(ref _near[i], new NearTier());
    }

    // Full: drops the slots with no live copy; if that frees nothing, starts the tier afresh. False: no room this time.
    private bool Sweep(int index, NearTier near)
    {
        var now = Environment.TickCount64;
        foreach (var (userId, slot) in near.Slots)
            if (!slot.HasLive(now) && near.Slots.TryRemove(userId, out _)) Interlocked.Decrement(ref near.Count);
        if (near.Count < _nearMaxPeople) return true;
        Interlocked.CompareExchange(ref _near[index], new NearTier(), near);
        return false;
    }

    private sealed class NearTier
    {
        public readonly ConcurrentDictionary<string, NearSlot> Slots = new(StringComparer.Ordinal);
        public int Count;
    }

    /// <summary>One person's near copies in a tier, one per variant (a handful): replaced whole on each change, so a read
    /// needs no lock.</summary>
    private sealed class NearSlot
    {
        private NearCopy[] _copies = [];

        public byte[]? Find(string variant, long nowTicks)
        {
            foreach (var copy in Volatile.Read(ref _copies))
                if (copy.Variant == variant) return nowTicks < copy.ExpiresAtTicks ? copy.Json : null;
            return null;
        }

        public bool HasLive(long nowTicks)
        {
            foreach (var copy in Volatile.Read(ref _copies))
                if (nowTicks < copy.ExpiresAtTicks) return true;
            return false;
        }

        public void Keep(string variant, byte[] json, long expiresAtTicks)
        {
            var now = Environment.TickCount64;
            while (true)
            {
                var current = Volatile.Read(ref _copies);
                var next = new List<NearCopy>(current.Length + 1) { new(variant, json, expiresAtTicks) };
                foreach (var copy in current)
                    if (copy.Variant != variant && now < copy.ExpiresAtTicks) next.Add(copy);
                if (ReferenceEquals(Interlocked.CompareExchange(ref _copies, next.ToArray(), current), current)) return;
            }
        }
    }

    private readonly record struct NearCopy(string Variant, byte[] Json, long ExpiresAtTicks);

    // --- Redis ---

    private static async Task<RedisValue> ClaimEpochAsync(IDatabase db, RedisKey key, CacheTier tier) =>
        (RedisValue)await db.ScriptEvaluateAsync(ClaimEpoch, [key],
            [EpochField, Guid.NewGuid().ToString("N"), (long)tier.TimeToLive.TotalMilliseconds]);

    private static int IndexOf(CacheTier tier)
    {
        for (var i = 0; i < CacheTier.All.Count; i++)
            if (ReferenceEquals(CacheTier.All[i], tier)) return i;
        throw new ArgumentException($"unknown cache tier {tier.Name}", nameof(tier));
    }

    private void Failed(CacheTier tier, TierCounts counts, Exception? e, string userId)
    {
        Interlocked.Increment(ref counts.Errors);
        ErrorCounter.Add(1, new KeyValuePair<string, object?>("tier", tier.Name));
        // The user id only: cached answers are personal data and never logged.
        _log.LogWarning(e, "Redis cache ({Tier}) unavailable for {UserId}; answering from PostgreSQL", tier.Name, userId);
    }

    // Stored as 8 bytes of store time (unix ms, little endian) then the JSON: an entry older than the tier's time to live
    // is a miss even if the key's own expiry was extended by a later epoch.
    private const int StoreTimeBytes = 8;

    private static (byte[] Entry, long StoredAtMs) Encode<T>(T value)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(value);
        var bytes = new byte[StoreTimeBytes + json.Length];
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        BinaryPrimitives.WriteInt64LittleEndian(bytes, now);
        json.CopyTo(bytes, StoreTimeBytes);
        return (bytes, now);
    }

    private static (byte[]? Json, long StoredAtMs) Fresh(byte[] entry, CacheTier tier)
    {
        if (entry.Length <= StoreTimeBytes) return (null, 0);
        var storedAtMs = BinaryPrimitives.ReadInt64LittleEndian(entry);
        return DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - storedAtMs > (long)tier.TimeToLive.TotalMilliseconds
            ? (null, storedAtMs)
            : (entry[StoreTimeBytes..], storedAtMs);
    }

    private sealed class TierCounts
    {
        public long Hits, NearHits, Misses, Errors;
    }
}

public sealed record CacheStats(
    [property: System.Text.Json.Serialization.JsonPropertyName("tier")] string Tier,
    [property: System.Text.Json.Serialization.JsonPropertyName("ttl_seconds")] long TtlSeconds,
    [property: System.Text.Json.Serialization.JsonPropertyName("hits")] long Hits,
    [property: System.Text.Json.Serialization.JsonPropertyName("near_hits"), System.ComponentModel.Description("hits served from this gateway's memory, among hits")] long NearHits,
    [property: System.Text.Json.Serialization.JsonPropertyName("misses")] long Misses,
    [property: System.Text.Json.Serialization.JsonPropertyName("errors")] long Errors,
    [property: System.Text.Json.Serialization.JsonPropertyName("hit_rate")] double HitRate,
    [property: System.Text.Json.Serialization.JsonPropertyName("error_rate")] double ErrorRate);
