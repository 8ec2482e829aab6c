using StackExchange.Redis;

namespace StreamHealth.Runtime.Caching;

/// <summary>The one way cached answers are dropped: a DEL of their exact Redis keys and, in the same script (one round trip,
/// nothing can run between them), a PUBLISH of those keys on <see cref="Channel"/>, so that every gateway drops its
/// in-process near copies too (the gateway's PersonalCache listens). Whoever changes a person's data calls this: the
/// insights sink after its rows commit, the gateway after a profile write. A bare DEL would leave the near copies serving
/// the old answer until their own short time to live.</summary>
public static class CacheInvalidation
{
    /// <summary>The pub/sub channel of dropped keys; a message is the keys of one call, joined by <see cref="Separator"/>.</summary>
    public const string Channel = "streamhealth:cache:dropped";
    public const char Separator = '\n';

    // Lua's unpack() puts every key on the C stack, which holds about 8,000: larger calls are sent in chunks.
    internal const int KeysPerScript = 1_000;

    private const string DropAndAnnounce =
        "local n = redis.call('DEL', unpack(KEYS)) redis.call('PUBLISH', ARGV[1], table.concat(KEYS, ARGV[2])) return n";

    /// <summary>Deletes <paramref name="keys"/> and announces them; returns how many existed. Keys are built from validated ids
    /// (no line breaks), so the announcement splits back into exactly these keys.</summary>
    public static async Task<long> DropAsync(IDatabaseAsync db, IReadOnlyList<RedisKey> keys)
    {
        // One script's worth already in an array (a person's keys): sent as it is.
        if (keys is RedisKey[] { Length: <= KeysPerScript } whole)
            return whole.Length == 0 ? 0 : (long)await db.ScriptEvaluateAsync(DropAndAnnounce, whole, [Channel, Separator.ToString()]);
        long deleted = 0;
        for (var start = 0; start < keys.Count; start += KeysPerScript)
        {
            var chunk = new RedisKey[Math.Min(KeysPerScript, keys.Count - start)];
            for (var i = 0; i < chunk.Length; i++) chunk[i] = keys[start + i];
            deleted += (long)await db.ScriptEvaluateAsync(DropAndAnnounce, chunk, [Channel, Separator.ToString()]);
        }
        return deleted;
    }

    /// <summary>The keys one announcement names.</summary>
    public static string[] Keys(RedisValue announcement) =>
        announcement.IsNullOrEmpty ? [] : announcement.ToString().Split(Separator, StringSplitOptions.RemoveEmptyEntries);
}
