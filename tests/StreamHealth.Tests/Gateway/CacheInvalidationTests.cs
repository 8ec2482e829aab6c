using System.Collections.Concurrent;
using StackExchange.Redis;
using StreamHealth.Runtime.Caching;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Gateway;

/// <summary><see cref="CacheInvalidation"/> over the real Redis: the keys are deleted and announced together, in chunks
/// that Lua's unpack can hold, and every announced key splits back out exactly.</summary>
public sealed class CacheInvalidationTests
{
    [Fact]
    public async Task A_drop_deletes_every_key_and_announces_each_one_also_past_a_script_s_chunk()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(LocalServices.RedisConfiguration);
        var db = redis.GetDatabase();
        var run = Guid.NewGuid().ToString("N");
        // 2,500 keys: three scripts (1,000 + 1,000 + 500); 2,000 of them exist.
        var keys = Enumerable.Range(0, 2_500).Select(i => (RedisKey)$"test:drop:{run}:{i}").ToArray();
        foreach (var key in keys.Take(2_000)) await db.HashSetAsync(key, "7", "cached");

        var heard = new ConcurrentBag<string>();
        var messages = 0;
        var channel = RedisChannel.Literal(CacheInvalidation.Channel);
        await redis.GetSubscriber().SubscribeAsync(channel, (_, message) =>
        {
            Interlocked.Increment(ref messages);
            foreach (var key in CacheInvalidation.Keys(message))
                if (key.StartsWith($"test:drop:{run}:", StringComparison.Ordinal)) heard.Add(key);
        });

        Assert.Equal(2_000, await CacheInvalidation.DropAsync(db, keys));

        StreamTestKit.WaitFor(() => heard.Count == keys.Length, TimeSpan.FromSeconds(10), () => $"{heard.Count} of {keys.Length} keys announced");
        Assert.Equal(keys.Select(k => (string)k!).Order(), heard.Order());
        Assert.True(messages >= 3, $"{messages} announcements for three scripts");
        foreach (var key in keys) Assert.False(await db.KeyExistsAsync(key));
        Assert.Empty(CacheInvalidation.Keys(RedisValue.EmptyString));
    }
}
