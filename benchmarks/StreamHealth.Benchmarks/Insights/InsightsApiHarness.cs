using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Benchmarks.Streams;
using StreamHealth.Runtime.Kafka;

namespace StreamHealth.Benchmarks.Insights;

/// <summary>Load harness for the insights API on loopback, against the real gateway process (Release), the local dev
/// PostgreSQL and Redis (BENCH_PG, BENCH_REDIS; `compose/local/services.sh start dev`) and an embedded Kafka in this
/// process. People are registered through the API and signed in (bearer tokens: the per-person path, JWT validation
/// and access rule included); their daily aggregates are written as the insights sink writes them.
/// <list type="number">
/// <item>uncached GET /api/v1/recommendations/{user}: the person's Redis key deleted before each request, one request at
/// a time (the rules over the aggregates, one PostgreSQL batch, the insert of the answer);</item>
/// <item>cached: wrk (C, one connection per… see <c>--connections</c>) cycling through the people's tokens for
/// <c>seconds</c>, closed loop, latency as wrk measures it;</item>
/// <item>POST /api/v1/health-metrics/ at a fixed rate (open loop) for <c>seconds</c>: 202 after the broker's ack.</item>
/// </list></summary>
public static class InsightsApiHarness
{
    private const string Url = "http://127.0.0.1:18081";

    public static int Run(int people, int seconds, int postsPerSecond, int connections)
    {
        var pg = Environment.GetEnvironmentVariable("BENCH_PG") ?? "Host=127.0.0.1;Port=55432;Database=streamhealth;Username=postgres";
        var redisConfiguration = Environment.GetEnvironmentVariable("BENCH_REDIS") ?? "127.0.0.1:56379";
        using var cluster = EmbeddedKafkaCluster.Start(1);
        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        using var gateway = GatewayProcess.Start(Url, new Dictionary<string, string>
        {
            ["Kafka__BootstrapServers"] = cluster.BootstrapServers,
            ["SchemaRegistry__Url"] = registryServer.Url,
            // Registration and sign-in of the harness's people come from one address.
            ["Gateway__Identity__SignInPermitsPerMinute"] = "100000",
        });
        using var db = NpgsqlDataSource.Create(pg);
        using var redis = ConnectionMultiplexer.Connect(redisConfiguration);
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = new Uri(Url) };

        var clock = Stopwatch.StartNew();
        var users = SignUp(http, people);
        Console.WriteLine($"{people} people registered and signed in through the API in {clock.Elapsed.TotalSeconds:F1} s");
        Seed(db, users.Select(u => u.UserId).ToList());

        // 1. Uncached.
        var uncached = new List<double>(2_000);
        var cache = redis.GetDatabase();
        for (var i = 0; i < 300; i++) Get(http, users[i % users.Count]);   // JIT, connections, pools
        for (var i = 0; i < 2_000; i++)
        {
            var user = users[i % users.Count];
            cache.KeyDelete($"insights:recs:{user.UserId}");
            uncached.Add(Get(http, user));
        }
        uncached.Sort();
        Console.WriteLine($"GET /api/v1/recommendations/{{user}} uncached (key deleted before each; one at a time, {uncached.Count:N0} requests): " +
                          $"p50 {uncached[uncached.Count / 2]:F2} ms, p99 {uncached[(int)(uncached.Count * 0.99)]:F2} ms, max {uncached[^1]:F2} ms");

        // 2. Cached, with wrk.
        foreach (var user in users) Get(http, user);
        var script = WrkScript(users);
        try
        {
            var wrk = Process.Start(new ProcessStartInfo("wrk",
                ["-t", "1", "-c", connections.ToString(CultureInfo.InvariantCulture), "-d", $"{seconds}s", "--latency", "-s", script, Url])
            {
                RedirectStandardOutput = true,
            })!;
            var output = wrk.StandardOutput.ReadToEnd();
            wrk.WaitForExit();
            Console.WriteLine($"GET /api/v1/recommendations/{{user}} cached: wrk -t 1 -c {connections} -d {seconds}s over {people} people's tokens:");
            Console.WriteLine(output.TrimEnd());
        }
        finally
        {
            File.Delete(script);
        }

        // 3. POST metrics at a fixed rate.
        var sequence = 0;
        var runId = DateTime.UtcNow.Ticks.ToString("x", CultureInfo.InvariantCulture);
        Task<(double Ms, int Status)> Post()
        {
            var i = Interlocked.Increment(ref sequence);
            var user = users[i % users.Count];
            return PostAsync(http, user, new
            {
                user_id = user.UserId, type = "heart_rate", value = 60 + i % 30, unit = "bpm",
                recorded_at = DateTimeOffset.UtcNow.AddSeconds(-1).ToString("O"), metric_id = $"load-{runId}-{i}",
            });
        }
        Task.WaitAll([.. Enumerable.Range(0, 300).Select(_ => Post())]);
        var total = postsPerSecond * seconds;
        var posts = new List<Task<(double Ms, int Status)>>(total);
        var paced = Stopwatch.StartNew();
        for (var n = 0; n < total; n++)
        {
            var due = TimeSpan.FromSeconds((double)n / postsPerSecond);
            while (paced.Elapsed < due) Thread.Sleep(TimeSpan.FromTicks(Math.Max(1, (due - paced.Elapsed).Ticks / 2)));
            posts.Add(Post());
        }
        Task.WaitAll([.. posts]);
        var results = posts.Select(t => t.Result).ToList();
        var accepted = results.Where(r => r.Status == 202).Select(r => r.Ms).Order().ToArray();
        Console.WriteLine($"POST /api/v1/health-metrics/ at {postsPerSecond} requests/s for {seconds} s (open loop, bearer tokens, 202 after the broker's ack):");
        Console.WriteLine($"  {results.Count:N0} requests, {accepted.Length:N0} × 202, others: " +
                          string.Join(", ", results.Where(r => r.Status != 202).GroupBy(r => r.Status).Select(g => $"{g.Count()} × {g.Key}")));
        Console.WriteLine($"  latency p50 {accepted[accepted.Length / 2]:F2} ms, p99 {accepted[(int)(accepted.Length * 0.99)]:F2} ms, max {accepted[^1]:F2} ms");
        return accepted.Length == results.Count ? 0 : 1;
    }

    private sealed record Person(string UserId, string Token);

    private static List<Person> SignUp(HttpClient http, int people)
    {
        var run = Guid.NewGuid().ToString("N")[..8];
        const string password = "Load-harness-1";
        // PBKDF2 is the cost here (two hashes a person); a few at a time keeps both cores busy.
        return Enumerable.Range(0, people).AsParallel().WithDegreeOfParallelism(4).Select(i =>
        {
            var email = $"load-{run}-{i}@example.org";
            http.PostAsJsonAsync("/api/v1/users/register", new { email, password }).Result.EnsureSuccessStatusCode();
            using var response = http.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password }).Result.EnsureSuccessStatusCode();
            var token = JsonDocument.Parse(response.Content.ReadAsStringAsync().Result).RootElement;
            return new Person(token.GetProperty("user_id").GetString()!, token.GetProperty("access_token").GetString()!);
        }).ToList();
    }

    /// <summary>30 days of steps, sleep, heart rate and water per person, as the insights sink writes them.</summary>
    private static void Seed(NpgsqlDataSource db, List<string> userIds)
    {
        using var cmd = db.CreateCommand("""
            INSERT INTO insights.daily_metrics (user_id, metric, local_date, day_start, utc_offset_minutes, count, total, min, max, mean, last_value, last_time)
            SELECT u, m.metric, d::date, d::timestamptz, 0, 24, m.total, m.low, m.high, m.total / 24, m.low, d::timestamptz + interval '23 hours'
            FROM unnest($1::text[]) AS u,
                 (VALUES ('steps', 5200.0, 0.0, 900.0), ('sleep_hours', 6.1, 6.1, 6.1), ('heart_rate', 1700.0, 58.0, 120.0),
                         ('water_ml', 1100.0, 200.0, 400.0)) AS m(metric, total, low, high),
                 generate_series(current_date - 29, current_date, interval '1 day') AS d
            ON CONFLICT DO NOTHING
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userIds.ToArray() });
        cmd.ExecuteNonQuery();
    }

    private static double Get(HttpClient http, Person user)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/v1/recommendations/{user.UserId}");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", user.Token);
        var started = Stopwatch.GetTimestamp();
        using var response = http.Send(request);
        response.Content.ReadAsByteArrayAsync().Wait();
        var ms = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"GET recommendations: {(int)response.StatusCode}");
        return ms;
    }

    private static async Task<(double Ms, int Status)> PostAsync(HttpClient http, Person user, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/health-metrics/") { Content = JsonContent.Create(body) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", user.Token);
        var started = Stopwatch.GetTimestamp();
        using var response = await http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        return (Stopwatch.GetElapsedTime(started).TotalMilliseconds, (int)response.StatusCode);
    }

    /// <summary>A wrk script that sends each request as the next person (path and bearer token), and counts answers that
    /// are not 200 (wrk's own "Non-2xx" line says how many).</summary>
    private static string WrkScript(List<Person> users)
    {
        var lua = new StringBuilder("local people = {\n");
        foreach (var u in users) lua.Append(CultureInfo.InvariantCulture, $"  {{\"/api/v1/recommendations/{u.UserId}\", \"Bearer {u.Token}\"}},\n");
        lua.Append("""
            }
            local i = 0
            request = function()
              i = (i % #people) + 1
              return wrk.format("GET", people[i][1], { ["Authorization"] = people[i][2] })
            end
            """);
        var path = Path.Combine(Path.GetTempPath(), $"insights-wrk-{Guid.NewGuid():N}.lua");
        File.WriteAllText(path, lua.ToString());
        return path;
    }
}
