using System.Text.Json;
using StackExchange.Redis;

namespace StreamHealth.Runtime.Streams;

/// <summary>One processing host as service discovery knows it: where it serves interactive queries and its <c>/metrics</c>
/// (<see cref="StoreQueryServer"/>), when it last said it is alive, and how often it says so. No figures: those are read
/// from the host's metrics endpoint.</summary>
public sealed record HostRegistration(string HostId, string Url, long HeartbeatUnixMs, long IntervalMs)
{
    /// <summary>Silent: three heartbeats missed, and at least 10 s, so that a busy host whose timer runs late (GC, a starved
    /// thread pool on a small machine) is not called silent.</summary>
    public bool IsSilentAt(long nowUnixMs) => nowUnixMs - HeartbeatUnixMs > LiveWindowMs();

    /// <summary>How long one beat keeps a host live: three intervals, at least 10 s (a method: the record is the registry entry).</summary>
    public long LiveWindowMs() => Math.Max(3 * IntervalMs, 10_000);

    /// <summary>How long a silent host stays listed (as stalled) before its entry is deleted: a host that stops gracefully
    /// deregisters, so one that falls silent crashed, hangs or cannot reach Redis, and its partitions may be waiting for the
    /// group to move them; ten minutes is long enough to be seen and acted on.</summary>
    public const long SilentHostRetentionMs = 10 * 60_000;

    public bool IsForgottenAt(long nowUnixMs) => nowUnixMs - HeartbeatUnixMs > SilentHostRetentionMs;
}

/// <summary>Service discovery of processing hosts: one Redis hash (Streams:RegistryKey), field = host id, value = the host's
/// <see cref="HostRegistration"/> as JSON, written by the host at every heartbeat (<see cref="StreamMetricsReporter"/>) and
/// removed when it stops. The gateway reads it (one HGETALL for every host) to know which metrics endpoints to scrape and where
/// interactive queries go.</summary>
public static class StreamHostRegistry
{
    public const string DefaultKey = "streamhealth:hosts";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    // Deletes a forgotten host's entry only if it still holds what was read: the host may have come back in between.
    private const string DeleteIfUnchanged =
        "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

    public static void Heartbeat(IDatabase redis, string key, HostRegistration registration) =>
        redis.HashSet(key, registration.HostId, JsonSerializer.Serialize(registration, Json));

    public static void Deregister(IDatabase redis, string key, string hostId) => redis.HashDelete(key, hostId);

    /// <summary>Every registered host, sorted by id; entries silent past the retention are deleted and left out, and entries
    /// that do not parse are left out (named in <paramref name="unreadable"/>).</summary>
    public static async Task<IReadOnlyList<HostRegistration>> ReadAsync(IDatabase redis, string key, TimeSpan timeout, List<string>? unreadable = null)
    {
        var entries = await redis.HashGetAllAsync(key).WaitAsync(timeout);
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var hosts = new List<HostRegistration>(entries.Length);
        foreach (var entry in entries)
        {
            HostRegistration? host;
            try
            {
                host = JsonSerializer.Deserialize<HostRegistration>(entry.Value.ToString(), Json);
            }
            catch (JsonException)
            {
                host = null;
            }
            if (host is null || string.IsNullOrEmpty(host.Url) || host.HostId != entry.Name.ToString())
            {
                unreadable?.Add(entry.Name.ToString());
                continue;
            }
            if (host.IsForgottenAt(now))
            {
                await redis.ScriptEvaluateAsync(DeleteIfUnchanged, [key], [entry.Name, entry.Value]).WaitAsync(timeout);
                continue;
            }
            hosts.Add(host);
        }
        hosts.Sort((a, b) => string.CompareOrdinal(a.HostId, b.HostId));
        return hosts;
    }
}
