using StackExchange.Redis;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Foundation;

public sealed class RedisTests
{
    [Fact]
    public async Task Redis_is_reachable_and_keeps_a_hash_with_ttl()
    {
        using var mux = await ConnectionMultiplexer.ConnectAsync(LocalServices.RedisConfiguration);
        var db = mux.GetDatabase();
        Assert.True((await db.PingAsync()) < TimeSpan.FromSeconds(1));
        var key = "test:latest:" + Guid.NewGuid().ToString("N");
        await db.HashSetAsync(key, [new HashEntry("weight_kg", 72.5), new HashEntry("trend_kg_per_week", -0.25)]);
        await db.KeyExpireAsync(key, TimeSpan.FromMinutes(5));
        Assert.Equal(72.5, (double)await db.HashGetAsync(key, "weight_kg"));
        var ttl = await db.KeyTimeToLiveAsync(key);
        Assert.NotNull(ttl);
        Assert.InRange(ttl!.Value.TotalSeconds, 1, 300);
    }
}
