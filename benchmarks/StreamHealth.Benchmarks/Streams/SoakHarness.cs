using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Npgsql;
using StackExchange.Redis;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>Soak harness (issue 11, "done means"): against a running stack (`bash compose/local/up.sh`), R requests/s
/// for D seconds of mixed valid and hostile traffic through the gateway, then the checks that matter: no 5xx, every sink
/// and task back at lag 0, PostgreSQL holding exactly the measurements the gateway answered 200 for (each once), and
/// /health degraded only while a fault was injected. Exits non-zero on any mismatch.
/// Open loop (a slow answer does not delay the next request); loopback targets only; every loop is bounded.
/// Settings (environment): SOAK_GATEWAY (http://127.0.0.1:8080), SOAK_API_KEY (dev-key-change-me), SOAK_PG (the dev
/// stack's database), SOAK_REDIS (127.0.0.1:56379), SOAK_FAULT_SECONDS (0: none; else a fault that long, starting a third
/// of the way in; make it longer than Streams:StallAfterMs plus a metrics interval to see /health degraded), SOAK_FAULT
/// (postgres: weights.measurements locked in a transaction, so its sink cannot write; redis: CLIENT PAUSE WRITE, which
/// also holds back the hosts' progress reports that /health reads through Redis), SOAK_HEALTH_GRACE_SECONDS (30: how
/// long after the fault /health may stay degraded while the sinks catch up).</summary>
public static class SoakHarness
{
    private enum Kind
    {
        Valid, ValidRetry, ReuseOtherUser, NulInId, ControlInSource, NonFinite, Absurd, WrongUnit, Future, Ancient,
        Oversized, Malformed, MissingField, CgmFutureRows,
    }

    // One in two requests is a valid measurement; the rest cycle through every hostile class.
    private static readonly Kind[] Mix =
    [
        Kind.Valid, Kind.ValidRetry, Kind.Valid, Kind.ReuseOtherUser, Kind.Valid, Kind.NulInId, Kind.Valid, Kind.ControlInSource,
        Kind.Valid, Kind.NonFinite, Kind.Valid, Kind.Absurd, Kind.Valid, Kind.WrongUnit, Kind.Valid, Kind.Future, Kind.Valid,
        Kind.Ancient, Kind.Valid, Kind.Malformed, Kind.Valid, Kind.MissingField, Kind.Valid, Kind.CgmFutureRows, Kind.Valid,
        Kind.Valid, Kind.Oversized, Kind.Valid,
    ];

    private sealed record Outcome(Kind Kind, int Status, double Ms, string? MeasurementId);

    public static int Run(int perSecond, int seconds)
    {
        var gatewayUrl = new Uri(Env("SOAK_GATEWAY", "http://127.0.0.1:8080"));
        if (!IPAddress.TryParse(gatewayUrl.Host, out var ip) ? gatewayUrl.Host != "localhost" : !IPAddress.IsLoopback(ip))
            throw new ArgumentException($"SOAK_GATEWAY = {gatewayUrl}: the soak harness only targets loopback");
        var pg = Env("SOAK_PG", "Host=127.0.0.1;Port=55432;Database=streamhealth;Username=postgres;Pooling=true");
        var redisConfiguration = Env("SOAK_REDIS", "127.0.0.1:56379");
        var faultSeconds = int.Parse(Env("SOAK_FAULT_SECONDS", "0"), CultureInfo.InvariantCulture);
        var graceSeconds = int.Parse(Env("SOAK_HEALTH_GRACE_SECONDS", "30"), CultureInfo.InvariantCulture);
        var run = DateTime.UtcNow.ToString("MMddHHmmss", CultureInfo.InvariantCulture);
        var now = DateTimeOffset.UtcNow;

        var apiKey = Env("SOAK_API_KEY", "dev-key-change-me");
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 512 })
            { BaseAddress = gatewayUrl, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        // Oversized bodies on connections of their own: the server may close a connection after its 413, and a request
        // that shared it would fail for a reason that is not its own.
        using var oversizedHttp = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 64 })
            { BaseAddress = gatewayUrl, Timeout = TimeSpan.FromSeconds(30) };
        oversizedHttp.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        var health0 = HealthStatus(http);
        if (health0 != "healthy")
            Console.WriteLine($"warning: /health is '{health0}' before the run; degraded moments before the fault will count against it");

        // /health sampled once a second for the whole run, drain included.
        var healthSamples = new ConcurrentQueue<(double AtSeconds, string Status)>();
        var clock = Stopwatch.StartNew();
        using var stopSampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stopSampling.IsCancellationRequested)
            {
                healthSamples.Enqueue((clock.Elapsed.TotalSeconds, HealthStatus(http)));
                try { await Task.Delay(1_000, stopSampling.Token); } catch (OperationCanceledException) { }
            }
        });

        double faultFrom = double.NaN, faultTo = double.NaN;
        Task fault = Task.CompletedTask;
        var faultKind = Env("SOAK_FAULT", "postgres");
        if (faultKind is not ("postgres" or "redis")) throw new ArgumentException($"SOAK_FAULT = {faultKind}: postgres or redis");
        if (faultSeconds > 0)
        {
            fault = Task.Run(async () =>
            {
                await Task.Delay(TimeSpan.FromSeconds(seconds / 3.0));
                faultFrom = clock.Elapsed.TotalSeconds;
                if (faultKind == "redis")
                {
                    using var redis = await ConnectionMultiplexer.ConnectAsync(redisConfiguration + ",allowAdmin=true");
                    // WRITE: reads still answer; the pause ends by itself even if this process dies.
                    await redis.GetDatabase().ExecuteAsync("CLIENT", "PAUSE", faultSeconds * 1_000, "WRITE");
                    await Task.Delay(TimeSpan.FromSeconds(faultSeconds));
                }
                else
                {
                    // The lock goes with the transaction: when the sleep ends, or when this connection dies.
                    await using var connection = new NpgsqlConnection(pg);
                    await connection.OpenAsync();
                    await using var tx = await connection.BeginTransactionAsync();
                    await using var hold = new NpgsqlCommand(
                        $"LOCK TABLE weights.measurements IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({faultSeconds})", connection, tx)
                        { CommandTimeout = faultSeconds + 30 };
                    await hold.ExecuteNonQueryAsync();
                    await tx.CommitAsync();
                }
                faultTo = clock.Elapsed.TotalSeconds;
            });
        }

        var total = perSecond * seconds;
        var tasks = new List<Task<Outcome>>(total);
        var sendStart = clock.Elapsed;
        for (var n = 0; n < total; n++)
        {
            var due = sendStart + TimeSpan.FromSeconds((double)n / perSecond);
            while (clock.Elapsed < due) Thread.Sleep(TimeSpan.FromTicks(Math.Max(1, (due - clock.Elapsed).Ticks / 2)));
            tasks.Add(Send(Mix[n % Mix.Length] == Kind.Oversized ? oversizedHttp : http, Mix[n % Mix.Length], run, n, total, now));
        }
        var sendSeconds = (clock.Elapsed - sendStart).TotalSeconds;
        Task.WaitAll([.. tasks]);
        fault.Wait();
        var outcomes = tasks.Select(t => t.Result).ToList();

        // Drain: every sink and task of every host at lag 0 for 12 s in a row (hosts publish every few seconds, so one
        // reading of 0 may predate the last records), then the rows the sinks owe; both waits bounded.
        var accepted = outcomes.Where(o => o is { Status: 200, MeasurementId: not null }).Select(o => o.MeasurementId!).Distinct().ToArray();
        var drainDeadline = DateTime.UtcNow.AddMinutes(3);
        long lag;
        var zeroSince = DateTime.MaxValue;
        while (DateTime.UtcNow < drainDeadline)
        {
            lag = TotalLag(http);
            zeroSince = lag == 0 ? (zeroSince == DateTime.MaxValue ? DateTime.UtcNow : zeroSince) : DateTime.MaxValue;
            if (zeroSince != DateTime.MaxValue && DateTime.UtcNow - zeroSince >= TimeSpan.FromSeconds(12)) break;
            Thread.Sleep(1_000);
        }
        lag = TotalLag(http);
        var (stored, storedDistinct) = Stored(pg, run);
        for (var i = 0; i < 30 && stored != accepted.Length; i++)
        {
            Thread.Sleep(1_000);
            (stored, storedDistinct) = Stored(pg, run);
        }
        stopSampling.Cancel();
        sampler.Wait();

        var failures = new List<string>();
        var all = outcomes.Select(o => o.Ms).Order().ToArray();
        Console.WriteLine($"soak: {total:N0} requests at {perSecond}/s for {seconds} s against {gatewayUrl} (run {run})");
        Console.WriteLine($"  achieved {total / sendSeconds:F1} requests/s; latency p50 {Percentile(all, 0.5):F1} ms, p99 {Percentile(all, 0.99):F1} ms, max {all[^1]:F1} ms");
        Console.WriteLine($"  status: {string.Join(", ", outcomes.GroupBy(o => o.Status).OrderBy(g => g.Key).Select(g => $"{g.Key} × {g.Count():N0}"))}");
        foreach (var g in outcomes.GroupBy(o => o.Kind).OrderBy(g => g.Key))
            Console.WriteLine($"    {g.Key,-16} {string.Join(", ", g.GroupBy(o => o.Status).OrderBy(s => s.Key).Select(s => $"{s.Key} × {s.Count()}"))}");
        Console.WriteLine($"  final lag {lag}; weights.measurements: {stored} rows ({storedDistinct} distinct ids) for {accepted.Length} measurements answered 200");

        // An oversized body may be cut off by the server's 413 before the client has sent it all (the client then sees
        // the connection closed, not the answer): reported, not failed. Anything else without an answer is a failure.
        var cutOff = outcomes.Count(o => o is { Kind: Kind.Oversized, Status: 0 });
        if (cutOff > 0) Console.WriteLine($"  {cutOff} oversized requests saw the connection closed before the 413 reached them");
        var fiveHundreds = outcomes.Count(o => o.Status >= 500 || o is { Status: 0, Kind: not Kind.Oversized });
        if (fiveHundreds > 0) failures.Add($"{fiveHundreds} responses were 5xx or no response at all");
        if (lag != 0) failures.Add($"lag is {lag} three minutes after the last request");
        if (stored != accepted.Length || storedDistinct != accepted.Length)
            failures.Add($"PostgreSQL holds {stored} rows ({storedDistinct} distinct) for {accepted.Length} accepted measurements");
        foreach (var kind in new[] { Kind.NulInId, Kind.ControlInSource, Kind.NonFinite, Kind.WrongUnit, Kind.Future, Kind.Ancient, Kind.Malformed, Kind.MissingField, Kind.Oversized })
        {
            var wrong = outcomes.Count(o => o.Kind == kind && o.Status is (> 0 and < 400) or >= 500);
            if (wrong > 0) failures.Add($"{wrong} {kind} requests were not refused with a 4xx");
        }

        var samples = healthSamples.ToArray();
        var degraded = samples.Where(s => s.Status != "healthy").ToArray();
        var outsideFault = degraded.Where(s => double.IsNaN(faultFrom) || s.AtSeconds < faultFrom || s.AtSeconds > faultTo + graceSeconds).ToArray();
        var duringFault = degraded.Length - outsideFault.Length;
        Console.WriteLine($"  /health: {samples.Length} samples, {degraded.Length} not healthy" + (double.IsNaN(faultFrom)
            ? " (no fault injected)"
            : $"; {faultKind} fault {faultFrom:F0}-{faultTo:F0} s: {duringFault} not-healthy samples in the fault window (+{graceSeconds} s grace), {outsideFault.Length} outside"));
        if (outsideFault.Length > 0)
            failures.Add($"/health was not healthy outside any fault at {string.Join(", ", outsideFault.Take(10).Select(s => $"{s.AtSeconds:F0} s ({s.Status})"))}");

        foreach (var f in failures) Console.WriteLine("FAIL: " + f);
        Console.WriteLine(failures.Count == 0 ? "soak: PASS" : $"soak: FAIL ({failures.Count})");
        return failures.Count == 0 ? 0 : 1;
    }

    private static async Task<Outcome> Send(HttpClient http, Kind kind, string run, int n, int total, DateTimeOffset now)
    {
        // Valid traffic: 300 users, measurement times spread evenly over the 20 hours before the run started, so every one
        // is inside the time rule however long the run (a fixed step once walked past "now" and drew honest 400s).
        var user = $"soak-{run}-u{n % 300}";
        var id = $"soak-{run}-{n}";
        string At(int i) => now.AddHours(-20).AddMilliseconds(i * (20 * 3_600_000.0 / Math.Max(total, 1))).ToString("O", CultureInfo.InvariantCulture);
        var at = At(n);
        var weight = (70 + n % 300 * 0.1 + n % 7 * 0.05).ToString("F2", CultureInfo.InvariantCulture);
        string Body(string userId, string measurementId, string value, string unit, string time, string source) =>
            $$"""{"user_id":{{Json(userId)}},"measurement_id":{{Json(measurementId)}},"weight":{{value}},"unit":{{Json(unit)}},"timestamp":{{Json(time)}},"source":{{Json(source)}}}""";
        var (path, body, contentType, countedId) = kind switch
        {
            Kind.Valid => ("/api/weight/process", Body(user, id, weight, "kg", at, "connected_scale"), "application/json", id),
            // The same measurement sent again: a retry, stored once (the earlier send of id n-1 was Valid).
            Kind.ValidRetry => ("/api/weight/process", Body($"soak-{run}-u{(n - 1) % 300}", $"soak-{run}-{n - 1}",
                (70 + (n - 1) % 300 * 0.1 + (n - 1) % 7 * 0.05).ToString("F2", CultureInfo.InvariantCulture), "kg",
                At(n - 1), "connected_scale"), "application/json",
                $"soak-{run}-{n - 1}"),
            // Another user's measurement id (id n-3 was Valid for another user): must not be stored under this one.
            Kind.ReuseOtherUser => ("/api/weight/process", Body($"soak-{run}-other{n % 50}", $"soak-{run}-{n - 3}", weight, "kg", at, "connected_scale"),
                "application/json", $"soak-{run}-{n - 3}"),
            Kind.NulInId => ("/api/weight/process", Body(user, id + "\u0000x", weight, "kg", at, "connected_scale"), "application/json", id + "\u0000x"),
            Kind.ControlInSource => ("/api/weight/process", Body(user, id, weight, "kg", at, "scale\u0001\u001b[31m"), "application/json", id),
            Kind.NonFinite => ("/api/weight/process", Body(user, id, n % 2 == 0 ? "1e999" : "\"NaN\"", "kg", at, "connected_scale"), "application/json", id),
            Kind.Absurd => ("/api/weight/process", Body(user, id, n % 2 == 0 ? "-5" : "99999999", "kg", at, "connected_scale"), "application/json", id),
            Kind.WrongUnit => ("/api/weight/process", Body(user, id, weight, n % 2 == 0 ? "stone-ish" : "", at, "connected_scale"), "application/json", id),
            Kind.Future => ("/api/weight/process", Body(user, id, weight, "kg", now.AddDays(400).ToString("O", CultureInfo.InvariantCulture), "connected_scale"),
                "application/json", id),
            Kind.Ancient => ("/api/weight/process", Body(user, id, weight, "kg", "0001-01-01T00:00:00Z", "connected_scale"), "application/json", id),
            Kind.Oversized => ("/api/weight/process", Body(user, id, weight, "kg", at, new string('s', 2 * 1024 * 1024)), "application/json", id),
            Kind.Malformed => ("/api/weight/process", n % 2 == 0 ? "{\"user_id\": \"x\", \"weight\": " : "\u00ff\u00fe not json", "application/json", null),
            Kind.MissingField => ("/api/weight/process", $$"""{"user_id":{{Json(user)}},"measurement_id":{{Json(id)}},"weight":{{weight}}}""", "application/json", id),
            Kind.CgmFutureRows => ($"/api/v1/cgm/soak-{run}-cgm{n % 20}/upload", CgmFile(now), "text/csv", null),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        var started = Stopwatch.GetTimestamp();
        try
        {
            using var content = new StringContent(body, Encoding.UTF8, contentType);
            using var response = await http.PostAsync(path, content);
            await response.Content.ReadAsByteArrayAsync();
            // Every 200 from process is a measurement the stack must store (whatever its kind: a refusal we expected
            // but did not get is reported above, and its row is still owed).
            var status = (int)response.StatusCode;
            return new Outcome(kind, status, Stopwatch.GetElapsedTime(started).TotalMilliseconds,
                status == 200 && path == "/api/weight/process" && countedId?.StartsWith($"soak-{run}-", StringComparison.Ordinal) == true ? countedId : null);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return new Outcome(kind, 0, Stopwatch.GetElapsedTime(started).TotalMilliseconds, null);
        }
    }

    /// <summary>A unified CSV of six readings, the last three a year ahead of now.</summary>
    private static string CgmFile(DateTimeOffset now)
    {
        var s = new StringBuilder("sequence_id,original_datetime,original_glucose,quality,event_type,datetime,glucose,carbs,insulin_slow,insulin_fast,exercise\n");
        for (var i = 0; i < 6; i++)
        {
            var t = (i < 3 ? now.AddMinutes(-30 + i * 5) : now.AddDays(365).AddMinutes(i * 5)).UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fff", CultureInfo.InvariantCulture);
            s.Append(CultureInfo.InvariantCulture, $"0,{t},{120 + i},0,EGV_READ,{t},{120 + i},,,,\n");
        }
        return s.ToString();
    }

    private static string HealthStatus(HttpClient http)
    {
        try
        {
            using var response = http.GetAsync("/health").GetAwaiter().GetResult();
            var json = JsonDocument.Parse(response.Content.ReadAsStringAsync().GetAwaiter().GetResult());
            return json.RootElement.TryGetProperty("status", out var status) ? status.GetString() ?? "?" : $"http {(int)response.StatusCode}";
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
        {
            return "unreachable";
        }
    }

    /// <summary>The sum of every "lag" figure /api/v1/streams reports (tasks and sinks of every host); -1 when unreadable.</summary>
    private static long TotalLag(HttpClient http)
    {
        try
        {
            var json = http.GetStringAsync("/api/v1/streams").GetAwaiter().GetResult();
            using var doc = JsonDocument.Parse(json);
            long sum = 0;
            Walk(doc.RootElement, ref sum);
            return sum;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
        {
            return -1;
        }

        static void Walk(JsonElement e, ref long sum)
        {
            if (e.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in e.EnumerateObject())
                {
                    if (p.Value.ValueKind == JsonValueKind.Number && (p.Name.Equals("lag", StringComparison.OrdinalIgnoreCase) || p.Name == "consumerLag")) sum += p.Value.GetInt64();
                    else Walk(p.Value, ref sum);
                }
            }
            else if (e.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in e.EnumerateArray()) Walk(item, ref sum);
            }
        }
    }

    private static (long Rows, long DistinctIds) Stored(string pg, string run)
    {
        using var connection = new NpgsqlConnection(pg);
        connection.Open();
        using var count = new NpgsqlCommand(
            "SELECT count(*), count(DISTINCT measurement_id) FROM weights.measurements WHERE measurement_id LIKE @prefix", connection);
        count.Parameters.AddWithValue("prefix", $"soak-{run}-%");
        using var r = count.ExecuteReader();
        r.Read();
        return (r.GetInt64(0), r.GetInt64(1));
    }

    private static double Percentile(double[] sorted, double p) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * p))];

    private static string Json(string value) => JsonSerializer.Serialize(value);

    private static string Env(string name, string fallback) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : fallback;
}
