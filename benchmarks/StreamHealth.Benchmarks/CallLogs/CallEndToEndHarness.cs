using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using StreamHealth.Benchmarks.Streams;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.CallLogs.Ingest;
using StreamHealth.CallLogs.Pipeline;
using StreamHealth.Runtime.Kafka;

namespace StreamHealth.Benchmarks.CallLogs;

/// <summary>Issue 17's end-to-end bar (webhook to entries in PostgreSQL, p99 under 1 s at 100 calls/s) on the real parts: a
/// provider (<see cref="TranscriptServer"/>, Kestrel in this process) signs call-completed webhooks and sends them at a fixed
/// rate (open loop) to the gateway process (Release); the gateway puts each notice on calllogs.raw (embedded Kafka in this
/// process) before its 202; the transcript fetch worker GETs the call from the provider onto calllogs.calls; the extraction
/// topology (Streamiz, one stream thread, the host's defaults) and its PostgreSQL sinks store the check-in and its entries
/// (BENCH_PG). The three seconds at the rate first are not counted.
/// <para>Latency of a call, from just before its webhook is sent: to its check-in row, and to the last of its entry rows (calls
/// with any), by the rows' <c>stored_at</c>: PostgreSQL's <c>now()</c> in the sink's transaction, on the same machine's clock
/// (a little early: a row is visible at its commit, a few ms later).</para></summary>
public static class CallEndToEndHarness
{
    private const string Url = "http://127.0.0.1:18084";
    private const string Provider = "bench-calls";

    public static int Run(int seconds, int perSecond)
    {
        var pg = HarnessHost.Postgres;
        var secret = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var apiToken = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        using var cluster = EmbeddedKafkaCluster.Start(1);
        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        using var provider = TranscriptServer.Start(apiToken);
        using var gateway = GatewayProcess.Start(Url, ProviderWebhook.GatewaySettings(Provider, secret, perSecond, cluster.BootstrapServers, registryServer.Url, pg));
        using var postgres = NpgsqlDataSource.Create(pg);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-call-e2e-").FullName;
        using var stateCleanup = new Disposing(() => Directory.Delete(stateDir, recursive: true));
        var logs = HarnessHost.Logs();
        var hostOptions = HarnessHost.Options(cluster, stateDir, registry: registry);
        using var pipeline = new CallLogsPipeline(hostOptions, postgres, logs).Start();
        using var fetch = new CallFetchWorker(new CallFetchOptions { Providers = { [Provider] = new() { BaseUrl = provider.BaseUrl, ApiToken = apiToken } } },
            CallFetchNames.Default, cluster.BootstrapServers, new CallLedger(postgres), registry, logs, fetchWaitMaxMs: hostOptions.FetchWaitMaxMs).Start();

        var transcripts = ExtractionScorer.ReadLabelled(Path.Combine(RepoPaths.Root, "benchmarks", "data", "calllogs", "checkins-labelled.jsonl"))
            .Select(c => c.Transcript).ToArray();
        var extractor = new EmbeddedExtractor();
        var hasEntries = transcripts.Select(t => extractor.Extract(t) is var r && r.Medications.Count + r.Foods.Count + r.Symptoms.Count > 0).ToArray();
        var key = Encoding.UTF8.GetBytes(secret);
        var run = DateTime.UtcNow.Ticks.ToString("x", CultureInfo.InvariantCulture)[^6..];
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = new Uri(Url) };
        var sentAt = new ConcurrentDictionary<string, DateTime>(StringComparer.Ordinal);
        var withEntries = new ConcurrentDictionary<string, byte>(StringComparer.Ordinal);
        var sequence = 0;
        var measuredFrom = int.MaxValue;
        async Task<(double Ms, int Status)> Post()
        {
            var n = Interlocked.Increment(ref sequence);
            var callId = $"e2e-{run}-{n:D6}";
            var patientId = $"patient-{n % 500}";
            var transcript = n % transcripts.Length;
            var endedAt = DateTimeOffset.UtcNow.AddSeconds(-5);
            provider.Calls[callId] = new TranscriptServer.Call(patientId, endedAt.AddMinutes(-4), 240, transcripts[transcript]);
            var body = ProviderWebhook.Notice($"e2e-{run}-{n}", callId, patientId, endedAt);
            using var request = ProviderWebhook.Request(key, Provider, body);
            if (n >= Volatile.Read(ref measuredFrom))
            {
                if (hasEntries[transcript]) withEntries[callId] = 0;
                sentAt[callId] = DateTime.UtcNow;
            }
            using var response = await http.SendAsync(request);
            await response.Content.ReadAsByteArrayAsync();
            return (0, (int)response.StatusCode);
        }

        Task.WaitAll([.. OpenLoop.Paced(perSecond, perSecond * 3, Post, out _)]);
        Volatile.Write(ref measuredFrom, sequence + 1);
        var sent = OpenLoop.Paced(perSecond, perSecond * seconds, Post, out _);
        Task.WaitAll([.. sent]);
        var refused = sent.Select(t => t.Result.Status).Where(s => s != 202).GroupBy(s => s).Select(g => $"{g.Count()} × {g.Key}").ToList();

        // Every measured call's check-in, and its entries where it has any, or two minutes.
        var (checkins, entries) = (new Dictionary<string, DateTime>(), new Dictionary<string, DateTime>());
        for (var deadline = DateTime.UtcNow.AddMinutes(2); DateTime.UtcNow < deadline; Thread.Sleep(500))
        {
            checkins = StoredAt(postgres, "SELECT call_id, stored_at FROM calllogs.checkins WHERE call_id LIKE @calls", $"e2e-{run}-%");
            entries = StoredAt(postgres, """
                SELECT call_id, max(stored_at) FROM (
                  SELECT call_id, stored_at FROM calllogs.medication_entries WHERE call_id LIKE @calls
                  UNION ALL SELECT call_id, stored_at FROM calllogs.food_entries WHERE call_id LIKE @calls
                  UNION ALL SELECT call_id, stored_at FROM calllogs.symptom_entries WHERE call_id LIKE @calls) e
                GROUP BY call_id
                """, $"e2e-{run}-%");
            if (sentAt.Keys.All(checkins.ContainsKey) && withEntries.Keys.All(entries.ContainsKey)) break;
        }

        var checkinMs = sentAt.Where(s => checkins.ContainsKey(s.Key)).Select(s => (checkins[s.Key] - s.Value).TotalMilliseconds).Order().ToArray();
        var entriesMs = withEntries.Keys.Where(entries.ContainsKey).Select(id => (entries[id] - sentAt[id]).TotalMilliseconds).Order().ToArray();
        Console.WriteLine($"webhook → PostgreSQL at {perSecond} calls/s for {seconds} s (open loop, signed webhooks, gateway process, fetch worker, " +
                          $"extraction: {HarnessHost.Describe(hostOptions)}):");
        Console.WriteLine($"  {sent.Count:N0} calls sent, {sent.Count(t => t.Result.Status == 202):N0} × 202" +
                          (refused.Count > 0 ? ", others: " + string.Join(", ", refused) : "") +
                          $"; check-ins stored {checkinMs.Length:N0}, calls with their entries stored {entriesMs.Length:N0} (of {withEntries.Count:N0} with any)");
        Console.WriteLine("  to the check-in row: " + Percentiles(checkinMs));
        Console.WriteLine("  to the last entry row: " + Percentiles(entriesMs));
        return refused.Count == 0 && checkinMs.Length == sentAt.Count && entriesMs.Length == withEntries.Count ? 0 : 1;
    }

    private static string Percentiles(double[] sortedMs) => sortedMs.Length == 0 ? "none"
        : $"p50 {sortedMs[sortedMs.Length / 2]:F0} ms, p99 {sortedMs[(int)(sortedMs.Length * 0.99)]:F0} ms, max {sortedMs[^1]:F0} ms";

    /// <summary>call_id → stored_at of <paramref name="sql"/>'s rows (@calls: the run's call ids, a LIKE pattern).</summary>
    private static Dictionary<string, DateTime> StoredAt(NpgsqlDataSource postgres, string sql, string callIds)
    {
        using var cmd = postgres.CreateCommand(sql);
        cmd.Parameters.AddWithValue("calls", callIds);
        using var reader = cmd.ExecuteReader();
        var stored = new Dictionary<string, DateTime>(StringComparer.Ordinal);
        while (reader.Read()) stored[reader.GetString(0)] = reader.GetDateTime(1).ToUniversalTime();
        return stored;
    }

    /// <summary>The provider's API as the fetch worker calls it: <c>GET /calls/{id}</c> with its bearer token, answering the calls
    /// the harness completed. The tests' fake provider (outages, latency, broken answers) is test code; this one only serves.</summary>
    private sealed class TranscriptServer : IDisposable
    {
        public sealed record Call(string PatientId, DateTimeOffset StartedAt, int DurationSeconds, string Transcript);

        private readonly WebApplication _app;
        public ConcurrentDictionary<string, Call> Calls { get; } = new(StringComparer.Ordinal);
        public string BaseUrl { get; }

        private TranscriptServer(WebApplication app, string baseUrl)
        {
            _app = app;
            BaseUrl = baseUrl;
        }

        public static TranscriptServer Start(string apiToken)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            TranscriptServer? server = null;
            app.MapGet("/calls/{callId}", (string callId, HttpRequest request) =>
                request.Headers.Authorization.ToString() != "Bearer " + apiToken ? Results.Unauthorized()
                : server!.Calls.TryGetValue(callId, out var call) ? Results.Json(new Dictionary<string, object>
                {
                    ["call_id"] = callId, ["patient_id"] = call.PatientId, ["started_at"] = call.StartedAt.ToString("O", CultureInfo.InvariantCulture),
                    ["duration_s"] = call.DurationSeconds, ["transcript"] = call.Transcript,
                })
                : Results.NotFound());
            app.StartAsync().GetAwaiter().GetResult();
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single().TrimEnd('/');
            return server = new TranscriptServer(app, address);
        }

        public void Dispose() => _app.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
