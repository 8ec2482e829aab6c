using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Benchmarks.Streams;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Streams;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Sensors.Network;
using SensorMetric = StreamHealth.Schemas.Avro.Sensors.SensorMetric;

namespace StreamHealth.Benchmarks.Sensors;

/// <summary>Load harness for GET /api/v1/nodes/{node_id}/metrics (the latest windows from the cache) against the real gateway
/// process (Release), the dev PostgreSQL and Redis (BENCH_PG, BENCH_REDIS; `compose/local/services.sh start dev`) and an embedded
/// Kafka in this process. <c>nodes</c> nodes are registered and each gets its newest 1/15/60-minute windows of flow and pressure
/// in the cache, written as the metrics sink writes them (<see cref="SensorLatestCache"/>). Then requests at a fixed rate (open
/// loop) for <c>seconds</c>, cycling through the nodes, with the dev service key; three seconds at the rate first are not
/// counted. Each answer must be 200 with six windows from the cache.</summary>
public static class SensorsApiHarness
{
    private const string Url = "http://127.0.0.1:18082";

    public static int Run(int nodes, int seconds, int perSecond)
    {
        var pg = HarnessHost.Postgres;
        var redisConfiguration = HarnessHost.Redis;
        using var cluster = EmbeddedKafkaCluster.Start(1);
        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        using var gateway = GatewayProcess.Start(Url, GatewayProcess.LoadSettings(cluster.BootstrapServers, registryServer.Url));
        using var db = NpgsqlDataSource.Create(pg);
        using var redis = ConnectionMultiplexer.Connect(redisConfiguration);
        var run = DateTime.UtcNow.Ticks.ToString("x", System.Globalization.CultureInfo.InvariantCulture)[^6..];
        var ids = Enumerable.Range(0, nodes).Select(i => $"bench-{run}-{i:D5}").ToList();
        // Ten nodes a district (a district holds at most 64 series).
        NodeRegistry.RegisterAsync(db, [.. ids.Select((id, i) => new SensorNode(id, $"bench-dma-{run}-{i / 10}", "inflow", ["flow", "pressure"], 60))]).GetAwaiter().GetResult();
        var hour = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 3_600_000 * 3_600_000;
        var writes = new List<Task>();
        foreach (var id in ids)
            foreach (var (metric, unit) in new[] { ("flow", "L/s"), ("pressure", "kPa") })
                foreach (var minutes in new[] { 1, 15, 60 })
                    writes.Add(SensorLatestCache.WriteAsync(redis.GetDatabase(), new SensorMetric
                    {
                        node_id = id, district_id = "bench", metric = metric, unit = unit, window_minutes = minutes,
                        window_start_unix_ms = AvroTime.FromUnixMs(hour - minutes * 60_000L), event_time_unix_ms = AvroTime.FromUnixMs(hour),
                        reading_count = minutes, min = 1, max = 3, mean = 2, stddev = 0.5, p50 = 2, p95 = 2.9,
                    }));
        Task.WaitAll([.. writes]);
        Console.WriteLine($"{nodes} nodes registered, 6 cached windows each");

        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = new Uri(Url) };
        http.DefaultRequestHeaders.Add("X-Api-Key", "dev-key-change-me");
        var sequence = 0;
        async Task<(double Ms, int Status)> Get()
        {
            var id = ids[Interlocked.Increment(ref sequence) % ids.Count];
            var started = Stopwatch.GetTimestamp();
            using var response = await http.GetAsync($"/api/v1/nodes/{id}/metrics");
            var body = await response.Content.ReadAsByteArrayAsync();
            var ms = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            if (response.IsSuccessStatusCode)
            {
                var root = JsonDocument.Parse(body).RootElement;
                if (root.GetProperty("source").GetString() != "cache" || root.GetProperty("windows").GetArrayLength() != 6) return (ms, 0);
            }
            return (ms, (int)response.StatusCode);
        }
        Task.WaitAll([.. OpenLoop.Paced(perSecond, perSecond * 3, Get, out _)]);
        var sent = OpenLoop.Paced(perSecond, perSecond * seconds, Get, out var sentAt);
        Task.WaitAll([.. sent]);
        var results = sent.Select(t => t.Result).ToList();
        var ok = results.Where(r => r.Status == 200).Select(r => r.Ms).Order().ToArray();
        Console.WriteLine($"GET /api/v1/nodes/{{node_id}}/metrics at {perSecond} requests/s for {seconds} s (open loop, service key, {nodes} nodes, from the cache):");
        Console.WriteLine($"  {results.Count:N0} requests, {ok.Length:N0} × 200 from the cache, others: " +
                          string.Join(", ", results.Where(r => r.Status != 200).GroupBy(r => r.Status).Select(g => $"{g.Count()} × {(g.Key == 0 ? "not from the cache" : g.Key)}")));
        // The harness's nodes out of the dev registry and cache again (the dashboard of `up` lists every registered node).
        using (var remove = db.CreateCommand("DELETE FROM sensors.nodes WHERE district_id LIKE $1"))
        {
            remove.Parameters.AddWithValue($"bench-dma-{run}-%");
            remove.ExecuteNonQuery();
        }
        redis.GetDatabase().KeyDelete([.. ids.Select(id => SensorLatestCache.Key(id))]);
        if (ok.Length == 0) return 1;
        Console.WriteLine($"  latency p50 {ok[ok.Length / 2]:F2} ms, p99 {ok[(int)(ok.Length * 0.99)]:F2} ms, max {ok[^1]:F2} ms");
        Console.WriteLine("  requests over 20 ms by second sent: " + string.Join(" ", results.Select((r, n) => (r, n))
            .Where(x => x.r.Ms > 20).GroupBy(x => (int)sentAt[x.n]).OrderBy(g => g.Key).Select(g => $"{g.Key}s:{g.Count()}")));
        return ok.Length == results.Count ? 0 : 1;
    }
}
