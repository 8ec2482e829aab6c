using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using StreamHealth.Benchmarks.Streams;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Storage;

namespace StreamHealth.Benchmarks.CallLogs;

/// <summary>Load harness for POST /webhooks/call-completed against the real gateway process (Release), PostgreSQL (BENCH_PG: the
/// audit trail writes a row per webhook) and Redis (BENCH_REDIS_PORT: the event-id claims) and an embedded Kafka in this
/// process. A provider signs each notice as a real one would (HMAC-SHA256 of timestamp "." body) and sends them at a fixed
/// rate (open loop) for <c>seconds</c>, each a new event of a new call; three seconds at the rate first are not counted.
/// Every answer must be 202: the acknowledgement waits for the broker's (acks=all) delivery report, so the latency is the
/// signature check, the Redis claim, the produce round trip and the claim's completion.</summary>
public static class CallWebhookHarness
{
    private const string Url = "http://127.0.0.1:18083";
    private const string Provider = "bench-calls";

    public static int Run(int seconds, int perSecond)
    {
        var pg = HarnessHost.Postgres;
        PostgresMigrator.MigrateAsync(pg).GetAwaiter().GetResult();
        var secret = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        using var cluster = EmbeddedKafkaCluster.Start(1);
        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        using var gateway = GatewayProcess.Start(Url, ProviderWebhook.GatewaySettings(Provider, secret, perSecond, cluster.BootstrapServers, registryServer.Url, pg));
        var key = Encoding.UTF8.GetBytes(secret);
        var run = DateTime.UtcNow.Ticks.ToString("x", CultureInfo.InvariantCulture)[^6..];
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = new Uri(Url) };
        var sequence = 0;
        async Task<(double Ms, int Status)> Post()
        {
            var n = Interlocked.Increment(ref sequence);
            var body = ProviderWebhook.Notice($"bench-{run}-{n}", $"call-{run}-{n}", $"patient-{n % 500}", DateTimeOffset.UtcNow.AddSeconds(-30));
            using var request = ProviderWebhook.Request(key, Provider, body);
            var started = Stopwatch.GetTimestamp();
            using var response = await http.SendAsync(request);
            await response.Content.ReadAsByteArrayAsync();
            return (Stopwatch.GetElapsedTime(started).TotalMilliseconds, (int)response.StatusCode);
        }
        Task.WaitAll([.. OpenLoop.Paced(perSecond, perSecond * 3, Post, out _)]);
        var sent = OpenLoop.Paced(perSecond, perSecond * seconds, Post, out var sentAt);
        Task.WaitAll([.. sent]);
        var results = sent.Select(t => t.Result).ToList();
        var ok = results.Where(r => r.Status == 202).Select(r => r.Ms).Order().ToArray();
        Console.WriteLine($"POST /webhooks/call-completed at {perSecond} webhooks/s for {seconds} s (open loop, signed, each a new event, 202 after acks=all):");
        Console.WriteLine($"  {results.Count:N0} webhooks, {ok.Length:N0} × 202, others: " +
                          string.Join(", ", results.Where(r => r.Status != 202).GroupBy(r => r.Status).Select(g => $"{g.Count()} × {g.Key}")));
        if (ok.Length == 0) return 1;
        Console.WriteLine($"  latency p50 {ok[ok.Length / 2]:F2} ms, p99 {ok[(int)(ok.Length * 0.99)]:F2} ms, max {ok[^1]:F2} ms");
        Console.WriteLine("  webhooks over 50 ms by second sent: " + string.Join(" ", results.Select((r, n) => (r, n))
            .Where(x => x.r.Ms > 50).GroupBy(x => (int)sentAt[x.n]).OrderBy(g => g.Key).Select(g => $"{g.Key}s:{g.Count()}")));
        return ok.Length == results.Count ? 0 : 1;
    }
}
