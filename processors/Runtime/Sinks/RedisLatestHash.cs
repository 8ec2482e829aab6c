using StackExchange.Redis;

namespace StreamHealth.Runtime.Sinks;

/// <summary>"Latest value per key" Redis hashes that results are written through to: a compare-and-set
/// on the event time (field <c>event_time_unix_ms</c>), so a replayed or out-of-order result never
/// overwrites a newer one, and an expiry refreshed on every write.</summary>
public static class RedisLatestHash
{
    public const string EventTimeField = "event_time_unix_ms";

    // KEYS[1] = hash; ARGV[1] = event time; ARGV[2] = ttl seconds; ARGV[3..] = field, value pairs.
    private const string CompareAndSet = """
        local current = redis.call('HGET', KEYS[1], 'event_time_unix_ms')
        if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
        for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
        redis.call('EXPIRE', KEYS[1], ARGV[2])
        return 1
        """;

    /// <summary>Queues the write on <paramref name="redis"/> (a batch or the database); the result is 1 when
    /// written, 0 when the hash already held a newer event. <paramref name="fields"/> are field, value pairs
    /// and must include <see cref="EventTimeField"/>.</summary>
    public static Task<RedisResult> WriteAsync(IDatabaseAsync redis, RedisKey key, long eventTimeUnixMs, TimeSpan ttl, RedisValue[] fields)
    {
        var args = new RedisValue[fields.Length + 2];
        args[0] = eventTimeUnixMs;
        args[1] = (long)ttl.TotalSeconds;
        fields.CopyTo(args, 2);
        return redis.ScriptEvaluateAsync(CompareAndSet, [key], args);
    }
}
