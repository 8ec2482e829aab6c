using StackExchange.Redis;

namespace StreamHealth.Gateway.CallLogs;

/// <summary>What a webhook's event id is at this moment (<see cref="CallEventClaims.ClaimAsync"/>).</summary>
public enum CallEventClaimState
{
    /// <summary>This request holds the id: it produces the event, then completes or releases the claim.</summary>
    Owned,
    /// <summary>The event was produced before: acknowledge it again, produce nothing.</summary>
    Done,
    /// <summary>Another request has held the id for longer than this one waited: still being produced.</summary>
    InFlight,
}

/// <summary>The replay and redelivery guard of the call webhooks: one Redis key per (provider, event id), claimed with SET NX
/// before anything is produced. While the claim is pending (a produce awaiting its delivery report) a repeat waits for it to
/// end, so that the provider's answer is the truth: a repeat is never acknowledged while the first delivery can still fail.
/// Done, the key holds the first answer's JSON for <see cref="GatewayCallWebhookOptions.DedupeHours"/>; released (Kafka
/// refused the event), it is gone, so that the provider's retry is processed afresh.</summary>
public sealed class CallEventClaims(IConnectionMultiplexer redis, GatewayOptions options)
{
    public const string KeyPrefix = "streamhealth:webhooks:call-completed:";
    private const string PendingPrefix = "pending:";
    /// <summary>A pending claim outlives the producer's delivery timeout (10 s) with room to spare; should the gateway die
    /// mid-produce it expires, and the provider's next retry is processed (at worst a second copy of a produced
    /// event, which downstream removes by call id).</summary>
    public static readonly TimeSpan PendingLifetime = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);

    // Deletes the key only while it still holds this request's pending value: never another request's claim, never a done one.
    private const string ReleaseIfOwned = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

    public static RedisKey Key(string provider, string eventId) => KeyPrefix + provider + ":" + eventId;

    /// <summary>Claims the event id, waiting up to <see cref="PendingLifetime"/> on another request's pending claim.
    /// <paramref name="pending"/> is the value to release with; <paramref name="doneJson"/> the first answer of a done event.
    /// A Redis outage throws (RedisConnectionException or RedisTimeoutException: the caller's 503, nothing produced).</summary>
    public async Task<(CallEventClaimState State, RedisValue Pending, string? DoneJson)> ClaimAsync(RedisKey key, CancellationToken ct)
    {
        var db = redis.GetDatabase();
        RedisValue pending = PendingPrefix + Guid.NewGuid().ToString("N");
        var deadline = DateTime.UtcNow + PendingLifetime;
        while (true)
        {
            if (await db.StringSetAsync(key, pending, PendingLifetime, When.NotExists)) return (CallEventClaimState.Owned, pending, null);
            var current = await db.StringGetAsync(key);
            // Released or expired between the two calls: claim again at once.
            if (current.IsNull) continue;
            if (!current.StartsWith(PendingPrefix)) return (CallEventClaimState.Done, RedisValue.Null, current.ToString());
            if (DateTime.UtcNow >= deadline) return (CallEventClaimState.InFlight, RedisValue.Null, null);
            await Task.Delay(PollInterval, ct);
        }
    }

    /// <summary>The event is on the topic: repeats get <paramref name="answerJson"/> from now on.</summary>
    public Task CompleteAsync(RedisKey key, string answerJson) =>
        redis.GetDatabase().StringSetAsync(key, answerJson, TimeSpan.FromHours(options.CallWebhooks.DedupeHours));

    /// <summary>The event was not produced: the next delivery of it is processed as new.</summary>
    public Task ReleaseAsync(RedisKey key, RedisValue pending) =>
        redis.GetDatabase().ScriptEvaluateAsync(ReleaseIfOwned, [key], [pending]);
}
