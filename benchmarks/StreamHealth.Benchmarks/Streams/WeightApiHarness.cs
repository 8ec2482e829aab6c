using System.Diagnostics;
using System.Net.Http.Json;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Streams;
using StreamHealth.Weight.Pipeline;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>Load harness for POST /api/weight/process on loopback: the real gateway (Kestrel, separate
/// process, built in Release) in front of the embedded Kafka and the weights topology (this process,
/// one stream thread). Requests are fired on a fixed schedule (open loop: a slow answer does not delay the
/// next request), 500 users in rotation with advancing timestamps; latency = response received − request sent.</summary>
public static class WeightApiHarness
{
    public static int Run(int perSecond, int seconds)
    {
        using var cluster = EmbeddedKafkaCluster.Start(1);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-weight-api-").FullName;
        // HARNESS_FETCH_WAIT_MS, HARNESS_COMMIT_MS, ...: see HarnessHost; the host creates the weights changelog.
        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        var options = HarnessHost.Options(cluster, stateDir, registry: registry);
        using var host = new StreamHost(options, [WeightTopology.Create()], HarnessHost.Logs());
        host.Start();
        var gateway = GatewayProcess.Start("http://127.0.0.1:18080", new Dictionary<string, string>
        {
            ["Kafka__BootstrapServers"] = cluster.BootstrapServers,
            ["SchemaRegistry__Url"] = registryServer.Url,
        });
        try
        {
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = new Uri(gateway.Url) };
            http.DefaultRequestHeaders.Add("X-Api-Key", "dev-key-change-me");
            var start = DateTimeOffset.Parse("2026-01-01T07:00:00Z");
            var sequence = 0;
            Task<(double Ms, int Status)> Send()
            {
                var i = Interlocked.Increment(ref sequence);
                var body = new
                {
                    user_id = $"api-user-{i % 500}", weight = 80 + (i % 7) * 0.1, unit = "kg",
                    timestamp = start.AddHours(i / 500 * 6), source = "connected_scale",
                };
                return Timed(http, body);
            }
            // Warm-up: JIT, connections, group joins.
            Task.WaitAll([.. Enumerable.Range(0, 300).Select(_ => Send())]);

            var total = perSecond * seconds;
            var tasks = new List<Task<(double Ms, int Status)>>(total);
            var clock = Stopwatch.StartNew();
            for (var n = 0; n < total; n++)
            {
                var due = TimeSpan.FromSeconds((double)n / perSecond);
                while (clock.Elapsed < due) Thread.Sleep(TimeSpan.FromTicks(Math.Max(1, (due - clock.Elapsed).Ticks / 2)));
                tasks.Add(Send());
            }
            Task.WaitAll([.. tasks]);
            var results = tasks.Select(t => t.Result).ToList();
            var ok = results.Where(r => r.Status == 200).Select(r => r.Ms).Order().ToArray();
            Console.WriteLine($"POST /api/weight/process, {perSecond} requests/s for {seconds} s on loopback (gateway process + embedded Kafka + weights topology):");
            Console.WriteLine($"  {results.Count:N0} requests, {ok.Length:N0} × 200, others: {string.Join(", ", results.Where(r => r.Status != 200).GroupBy(r => r.Status).Select(g => $"{g.Count()} × {g.Key}"))}");
            Console.WriteLine($"  latency p50 {ok[ok.Length / 2]:F2} ms, p99 {ok[(int)(ok.Length * 0.99)]:F2} ms, max {ok[^1]:F2} ms");
            // Streamiz commits inside its own loop: the host has no commit-pause figure to report (the wave-1 runtime had).
            Console.WriteLine($"  stream task ({HarnessHost.Describe(options)}): process p99 {host.Metrics.Snapshot().ProcessP99Us:F0} µs");
            return ok.Length == results.Count ? 0 : 1;
        }
        finally
        {
            gateway.Dispose();
            host.Dispose();
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static async Task<(double Ms, int Status)> Timed(HttpClient http, object body)
    {
        var started = Stopwatch.GetTimestamp();
        using var response = await http.PostAsJsonAsync("/api/weight/process", body);
        await response.Content.ReadAsByteArrayAsync();
        return (Stopwatch.GetElapsedTime(started).TotalMilliseconds, (int)response.StatusCode);
    }
}
