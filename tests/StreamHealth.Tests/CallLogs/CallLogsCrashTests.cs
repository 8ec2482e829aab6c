using System.Net;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Npgsql;
using Xunit.Abstractions;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.CallLogs.Ingest;
using StreamHealth.CallLogs.Pipeline;
using StreamHealth.Gateway;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.CallLogs;

/// <summary>Issue 17's reliability bar: a webhook acknowledged with 202 is never lost. The gateway (in process, on the class's
/// embedded Kafka, Redis and database), a fake provider, and `streamhealth run --topology calllogs` as a child process (fetch
/// worker, extraction topology and its PostgreSQL sinks, as deployed), killed with SIGKILL twice while check-ins are landing
/// with a backlog behind them in every stage (once while webhooks arrive, once while a restarted host catches up with those
/// that came while none ran); the third host must end with every 202'd call in calllogs.checkins once and each of its entries
/// once, exactly what the embedded extractor finds in its transcript.</summary>
public sealed class CallLogsCrashTests(GatewayServices services, ITestOutputHelper output) : IClassFixture<GatewayServices>
{
    private const string ProviderName = "crash-calls";
    private const string ApiToken = "crash-calls-token-0123456789";
    private const int Calls = 150;
    /// <summary>Webhooks kept back until the first host is dead, so some calls are certainly not in PostgreSQL at the kill.</summary>
    private const int SentAfterKill = 40;
    /// <summary>Check-ins a host stores before it is killed: it has run the whole path for some calls, the rest is in flight.</summary>
    private const int CheckinsBeforeKill = 10;
    /// <summary>Senders at once: the webhooks come faster than one fetch worker takes them, so each stage has a backlog at a kill.</summary>
    private const int Senders = 8;

    private sealed record ExpectedCall(string CallId, string Transcript, ExtractionResult Entries);

    [Fact]
    public async Task A_calllogs_host_killed_mid_stream_extracts_every_acknowledged_call_exactly_once_after_a_restart()
    {
        var connectionString = LocalServices.PostgresConnectionString(services.Database);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-calllogs-kill-").FullName;
        // `streamhealth kafka` creates the extraction's changelog; this broker is the fixture's.
        foreach (var changelog in CallLogsTopology.Create(new EmbeddedExtractor()).ChangelogTopics())
            services.Kafka.Cluster.CreateTopic(changelog, Topics.Get(Topics.CallLogsCalls).Partitions);
        await using var provider = await FakeCallProvider.StartAsync(ProviderName, "crash-calls-secret-" + Guid.NewGuid().ToString("N"));
        provider.ApiToken = ApiToken;
        // A provider answering in 20 ms (real ones take longer) holds one fetch worker to ~50 calls/s: a backlog drains over seconds,
        // so each kill lands with calls in every stage, not after the last one (at full speed the 110 drained between two polls).
        provider.Latency = TimeSpan.FromMilliseconds(20);
        await using var gateway = Gateway(provider);
        using var client = gateway.CreateClient();

        var env = ChildHost.RunEnvironment(services.Kafka.BootstrapServers, stateDir, services.Database, services.Registry.Url);
        env[$"STREAMHEALTH_{CallFetchOptions.Section.Replace(":", "__", StringComparison.Ordinal)}__Providers__{ProviderName}__BaseUrl"] = provider.BaseUrl;
        env[$"STREAMHEALTH_{CallFetchOptions.Section.Replace(":", "__", StringComparison.Ordinal)}__Providers__{ProviderName}__ApiToken"] = ApiToken;
        string[] args = ["run", "--topology", "calllogs", "--host-id", "calllogs-kill-test"];

        var run = Guid.NewGuid().ToString("N")[..8];
        var extractor = new EmbeddedExtractor();
        var calls = LabelledTranscripts().Take(Calls)
            .Select((transcript, i) => new ExpectedCall($"kill-{run}-{i:D3}", transcript, extractor.Extract(transcript))).ToList();
        Assert.Equal(Calls, calls.Count);
        var endedAt = DateTimeOffset.UtcNow.AddMinutes(-10);
        var acknowledged = 0;
        async Task Deliver(ExpectedCall call, int index)
        {
            var body = provider.CompleteCall(call.CallId, $"patient-{run}-{index % 7}", endedAt, transcript: call.Transcript);
            using var response = await provider.DeliverAsync(client, body);
            Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{call.CallId}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            Interlocked.Increment(ref acknowledged);
        }

        async Task Send(int from, int to)
        {
            var next = from - 1;
            await Task.WhenAll(Enumerable.Range(0, Senders).Select(_ => Task.Run(async () =>
            {
                for (int i; (i = Interlocked.Increment(ref next)) < to;) await Deliver(calls[i], i);
            })));
        }
        long KillOnceStored(ChildHost host, long checkins, string which)
        {
            WaitFor(() => Checkins(connectionString, run) >= checkins || host.HasExited, TimeSpan.FromSeconds(180),
                () => $"{which} host: {Checkins(connectionString, run)} check-ins of {checkins} before the kill, {Lag()}\n{host.Output}");
            Assert.False(host.HasExited, $"the {which} host stopped by itself:\n{host.Output}");
            host.KillHard();
            var stored = Checkins(connectionString, run);
            output.WriteLine($"{which} host killed with {stored} check-ins of {Volatile.Read(ref acknowledged)} acknowledged calls stored; {Lag()}");
            return stored;
        }

        long firstKill, secondKill;
        var expectedEntries = calls.Sum(c => c.Entries.Medications.Count + c.Entries.Foods.Count + c.Entries.Symptoms.Count);
        try
        {
            using (var first = ChildHost.Start(args, env))
            {
                var sending = Send(0, Calls - SentAfterKill);
                firstKill = KillOnceStored(first, CheckinsBeforeKill, "first");
                await sending;
            }
            Assert.InRange(firstKill, CheckinsBeforeKill, Calls - SentAfterKill);
            // The rest while no host runs: the gateway's 202 needs only Kafka.
            await Send(Calls - SentAfterKill, Calls);
            Assert.Equal(Calls, acknowledged);
            // Restored from the changelog and the committed offsets, then killed again while catching up.
            using (var second = ChildHost.Start(args, env))
                secondKill = KillOnceStored(second, firstKill + CheckinsBeforeKill, "second");

            using (var third = ChildHost.Start(args, env))
            {
                // Done: every stage has committed its input to the end, checked in the pipeline's order (so nothing is still to be
                // applied, twice or at all); what is stored then is what the kills left, lost calls included.
                WaitFor(AllCommitted,
                    TimeSpan.FromSeconds(240),
                    () => $"check-ins {Checkins(connectionString, run)}/{Calls}, entries {Entries(connectionString, run)}/{expectedEntries}, " +
                           $"{Lag()}\n{third.Output}");
                Assert.Equal(0, third.Terminate());
            }

            var stored = await StoredAsync(connectionString, run);
            var problems = new List<string>();
            foreach (var call in calls)
            {
                var checkins = stored.Checkins.GetValueOrDefault(call.CallId) ?? [];
                var e = call.Entries;
                var counts = (e.Medications.Count, e.Foods.Count, e.Symptoms.Count);
                if (checkins.Count != 1) problems.Add($"{call.CallId}: {checkins.Count} check-in rows");
                else if (checkins[0] != counts) problems.Add($"{call.CallId}: check-in counts {checkins[0]}, the extractor finds {counts}");
                // Ids as the topology numbers them: medications, then foods, then symptoms.
                var expected = e.Medications.Select(m => m.GenericName).Concat(e.Foods.Select(f => f.Item)).Concat(e.Symptoms.Select(s => s.Name))
                    .Select((name, index) => $"{CallLogsTopology.EntryId(call.CallId, index)}={name}").Order(StringComparer.Ordinal).ToList();
                var actual = (stored.Entries.GetValueOrDefault(call.CallId) ?? []).Order(StringComparer.Ordinal).ToList();
                if (!expected.SequenceEqual(actual))
                    problems.Add($"{call.CallId}: entries [{string.Join(", ", actual)}], expected [{string.Join(", ", expected)}]");
            }
            var strangers = stored.Checkins.Keys.Concat(stored.Entries.Keys).Where(id => calls.All(c => c.CallId != id)).Distinct().ToList();
            if (strangers.Count > 0) problems.Add("rows of calls never sent: " + string.Join(", ", strangers));
            Assert.True(problems.Count == 0,
                $"{problems.Count} calls wrong after the kills ({firstKill} and {secondKill} check-ins stored when they came):\n{string.Join("\n", problems.Take(20))}");
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    /// <summary>The gateway in process with this provider's secret, its bucket above what the test sends.</summary>
    private WebApplicationFactory<Program> Gateway(FakeCallProvider provider)
    {
        var settings = services.Registry.With(LocalServices.Overrides(services.Database, services.Kafka.BootstrapServers));
        var prefix = $"{GatewayCallWebhookOptions.Section}:Providers:{provider.Name}:";
        settings[prefix + "Secret"] = provider.Secret;
        settings[prefix + "RequestsPerSecond"] = "1000";
        settings[prefix + "Burst"] = "1000";
        return new WebApplicationFactory<Program>()
            .WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
    }

    /// <summary>The committed labelled transcripts (varied: medications, foods, symptoms, negations, calls with nothing to extract).</summary>
    private static IEnumerable<string> LabelledTranscripts() =>
        ExtractionScorer.ReadLabelled(Path.Combine(Repo.Root, "benchmarks", "data", "calllogs", "checkins-labelled.jsonl")).Select(c => c.Transcript);

    private bool AllCommitted()
    {
        var names = CallLogsPipelineNames.Default;
        return Committed(CallFetchNames.Default.GroupId, Topics.CallLogsRaw) && Committed(names.ApplicationId, Topics.CallLogsCalls)
            && Committed(names.CheckinsSinkGroup, Topics.CallLogsCheckins) && Committed(names.EntriesSinkGroup, Topics.CallLogsEntries);
    }

    private bool Committed(string group, string topic) =>
        Progress(services.Kafka.BootstrapServers, group, topic, Topics.Get(topic).Partitions) is var p && p.Committed == p.End;

    private string Lag()
    {
        var names = CallLogsPipelineNames.Default;
        return string.Join(", ", new[]
        {
            (CallFetchNames.Default.GroupId, Topics.CallLogsRaw), (names.ApplicationId, Topics.CallLogsCalls),
            (names.CheckinsSinkGroup, Topics.CallLogsCheckins), (names.EntriesSinkGroup, Topics.CallLogsEntries),
        }.Select(x => $"{x.Item1} on {x.Item2}: {Progress(services.Kafka.BootstrapServers, x.Item1, x.Item2, Topics.Get(x.Item2).Partitions)}"));
    }

    private static long Checkins(string connectionString, string run) =>
        Scalar(connectionString, "SELECT count(*) FROM calllogs.checkins WHERE call_id LIKE @run", run);

    private static long Entries(string connectionString, string run) => Scalar(connectionString, """
        SELECT (SELECT count(*) FROM calllogs.medication_entries WHERE call_id LIKE @run)
             + (SELECT count(*) FROM calllogs.food_entries WHERE call_id LIKE @run)
             + (SELECT count(*) FROM calllogs.symptom_entries WHERE call_id LIKE @run)
        """, run);

    private static long Scalar(string connectionString, string sql, string run)
    {
        using var c = new NpgsqlConnection(connectionString);
        c.Open();
        using var cmd = new NpgsqlCommand(sql, c);
        cmd.Parameters.AddWithValue("run", $"kill-{run}-%");
        return Convert.ToInt64(cmd.ExecuteScalar());
    }

    /// <summary>Every stored row of this run: per call, its check-ins' entry counts and its entries as "entry_id=name".</summary>
    private static async Task<(Dictionary<string, List<(int, int, int)>> Checkins, Dictionary<string, List<string>> Entries)> StoredAsync(
        string connectionString, string run)
    {
        await using var db = NpgsqlDataSource.Create(connectionString);
        var checkins = new Dictionary<string, List<(int, int, int)>>();
        await using (var cmd = db.CreateCommand("SELECT call_id, medication_count, food_count, symptom_count FROM calllogs.checkins WHERE call_id LIKE @run"))
        {
            cmd.Parameters.AddWithValue("run", $"kill-{run}-%");
            await using var reader = await cmd.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                var callId = reader.GetString(0);
                if (!checkins.TryGetValue(callId, out var list)) checkins[callId] = list = [];
                list.Add((reader.GetInt32(1), reader.GetInt32(2), reader.GetInt32(3)));
            }
        }
        var entries = new Dictionary<string, List<string>>();
        await using (var cmd = db.CreateCommand("""
            SELECT call_id, entry_id, generic_name FROM calllogs.medication_entries WHERE call_id LIKE @run
            UNION ALL SELECT call_id, entry_id, item FROM calllogs.food_entries WHERE call_id LIKE @run
            UNION ALL SELECT call_id, entry_id, name FROM calllogs.symptom_entries WHERE call_id LIKE @run
            """))
        {
            cmd.Parameters.AddWithValue("run", $"kill-{run}-%");
            await using var reader = await cmd.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                var callId = reader.GetString(0);
                if (!entries.TryGetValue(callId, out var list)) entries[callId] = list = [];
                list.Add($"{reader.GetString(1)}={reader.GetString(2)}");
            }
        }
        return (checkins, entries);
    }
}
