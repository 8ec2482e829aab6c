using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using StreamHealth.Gateway.Audit;
using StreamHealth.Host.Verbs;
using StreamHealth.Runtime.Audit;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Gateway;

/// <summary>The hash-chained audit trail of personal data (issue 15), over the real PostgreSQL: what the gateway
/// records, `streamhealth audit verify` finding changed and deleted rows, pruning with an anchor, and concurrent
/// writers building one chain. Tampering is done as the superuser with triggers off (session_replication_role =
/// replica), as an attacker with database access would.</summary>
public sealed class AuditTrailTests
{
    private const string Password = "Correct-horse-9";
    private const string DateOfBirth = "1961-04-12";
    private const string History = "Zyxwarfarin-sentinel since 2019";

    private static async Task<NpgsqlDataSource> NewDatabaseAsync(string prefix)
    {
        var name = LocalServices.NewDatabaseName(prefix);
        await PostgresMigrator.MigrateAsync(LocalServices.PostgresConnectionString(name));
        return NpgsqlDataSource.Create(LocalServices.PostgresConnectionString(name));
    }

    private static string DatabaseOf(NpgsqlDataSource db) => new NpgsqlConnectionStringBuilder(db.ConnectionString).Database!;

    private static StreamHealthOptions Options(NpgsqlDataSource db) =>
        StreamHealthOptions.Bind(new ConfigurationBuilder().AddInMemoryCollection(LocalServices.Overrides(DatabaseOf(db))).Build());

    private static AuditEntry Entry(int i, DateTime? at = null) =>
        new(at ?? DateTime.UtcNow, $"user:u{i}", $"u{i}", i % 2 == 0 ? "read" : "write", $"GET /api/v1/users/{{userId}} /api/v1/users/u{i}", 200);

    [Fact]
    public async Task Api_calls_leave_rows_of_who_whose_what_and_outcome_including_refusals_and_never_content()
    {
        await using var db = await NewDatabaseAsync("audit_api");
        var settings = LocalServices.Overrides(DatabaseOf(db));
        await using var app = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
        using var anonymous = app.CreateClient();
        var (a, aToken) = await SignUpAsync(anonymous);
        var (b, _) = await SignUpAsync(anonymous);
        using var own = app.CreateClient();
        own.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", aToken);
        using var admin = app.CreateClient();
        admin.DefaultRequestHeaders.Add("X-Api-Key", "dev-key-change-me");

        Assert.Equal(HttpStatusCode.OK, (await own.GetAsync($"/api/v1/users/{a}")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await own.GetAsync($"/api/v1/users/{b}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync($"/api/v1/users/{a}")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await own.PutAsJsonAsync($"/api/v1/users/{a}/profile",
            new { time_zone = "Europe/Paris", date_of_birth = DateOfBirth, medical_history = History })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync($"/api/v1/users/{b}")).StatusCode);
        // A body subject: A's token sending a metric for B is refused after the body is read, and audited as about B.
        Assert.Equal(HttpStatusCode.Forbidden, (await own.PostAsJsonAsync("/api/v1/health-metrics/", new
        {
            user_id = b, type = "steps", value = 100, unit = "steps", recorded_at = DateTimeOffset.UtcNow.AddMinutes(-1).ToString("O"),
        })).StatusCode);
        // Public endpoints hold no one's data: not audited.
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health/live")).StatusCode);

        var expected = new[]
        {
            ($"user:{a}", a, "read", $"GET /api/v1/users/{{userId}} /api/v1/users/{a}", 200),
            ($"user:{a}", b, "read", $"GET /api/v1/users/{{userId}} /api/v1/users/{b}", 403),
            ("anonymous", a, "read", $"GET /api/v1/users/{{userId}} /api/v1/users/{a}", 401),
            ($"user:{a}", a, "write", $"PUT /api/v1/users/{{userId}}/profile /api/v1/users/{a}/profile", 200),
            ("service:local-dev", b, "read", $"GET /api/v1/users/{{userId}} /api/v1/users/{b}", 200),
            ($"user:{a}", b, "write", "POST /api/v1/health-metrics/ /api/v1/health-metrics/", 403),
        };
        var rows = new List<(string Actor, string Subject, string Action, string Resource, int Outcome)>();
        for (var deadline = DateTime.UtcNow.AddSeconds(20); DateTime.UtcNow < deadline; await Task.Delay(100))
        {
            rows = await RowsAsync(db);
            if (rows.Count >= expected.Length) break;
        }
        Assert.Equal(expected, rows);   // in order, and nothing for registration, sign-in or /health
        Assert.DoesNotContain(rows, r => r.Resource.Contains(DateOfBirth) || r.Resource.Contains("sentinel") || r.Actor.Contains("sentinel"));
        await using (var all = db.CreateCommand("SELECT count(*) FROM audit.events WHERE concat_ws(' ', actor, subject, action, resource) ~ '1961|sentinel|Correct-horse'"))
            Assert.Equal(0L, await all.ExecuteScalarAsync());
        var verdict = await AuditLog.VerifyAsync(db);
        Assert.True(verdict.Intact, verdict.ToString());
        Assert.Equal(expected.Length, verdict.Rows);

        // Shutdown drains: requests answered just before it are recorded, not dropped with the process.
        for (var i = 0; i < 20; i++) Assert.Equal(HttpStatusCode.Forbidden, (await own.GetAsync($"/api/v1/users/{b}")).StatusCode);
        await app.DisposeAsync();
        Assert.Equal(expected.Length + 20, (await RowsAsync(db)).Count);
        Assert.True((await AuditLog.VerifyAsync(db)).Intact);
    }

    [Fact]
    public async Task The_tables_refuse_update_delete_and_truncate()
    {
        await using var db = await NewDatabaseAsync("audit_refuse");
        await AuditLog.AppendAsync(db, [Entry(1), Entry(2)]);
        foreach (var sql in new[]
                 {
                     "UPDATE audit.events SET outcome = 200 WHERE seq = 1", "DELETE FROM audit.events WHERE seq = 2", "TRUNCATE audit.events",
                     "INSERT INTO audit.anchors (through_seq, hash, pruned_rows) VALUES (1, '\\x" + new string('0', 64) + "', 1)",
                 })
        {
            await using var cmd = db.CreateCommand(sql);
            if (sql.StartsWith("INSERT", StringComparison.Ordinal)) { await cmd.ExecuteNonQueryAsync(); continue; }
            Assert.Contains("append-only", (await Assert.ThrowsAsync<PostgresException>(() => cmd.ExecuteNonQueryAsync())).MessageText);
        }
        await using (var anchors = db.CreateCommand("DELETE FROM audit.anchors"))
            Assert.Contains("append-only", (await Assert.ThrowsAsync<PostgresException>(() => anchors.ExecuteNonQueryAsync())).MessageText);
        await using var count = db.CreateCommand("SELECT count(*) FROM audit.events");
        Assert.Equal(2L, await count.ExecuteScalarAsync());
    }

    [Fact]
    public async Task Verify_passes_an_intact_chain_and_names_a_changed_row_then_a_deleted_one()
    {
        await using var db = await NewDatabaseAsync("audit_tamper");
        await AuditLog.AppendAsync(db, Enumerable.Range(1, 6).Select(i => Entry(i)).ToList());
        await AuditLog.AppendAsync(db, Enumerable.Range(7, 4).Select(i => Entry(i)).ToList());
        var options = Options(db);
        var (code, text) = await VerbAsync(options, "verify");
        Assert.Equal(0, code);
        Assert.Contains("audit chain OK: 10 rows, seq 1..10", text);
        Assert.Contains("OK: 5 rows, seq 6..10", (await VerbAsync(options, "verify", "--from-seq", "6")).Text);
        Assert.Contains("--from-seq = 'six'", (await Assert.ThrowsAsync<UsageException>(() => VerbAsync(options, "verify", "--from-seq", "six"))).Message);
        Assert.Contains("verify", (await Assert.ThrowsAsync<UsageException>(() => VerbAsync(options, "check"))).Message);

        // Changed: an outcome rewritten to hide a refusal.
        await TamperAsync(db, "UPDATE audit.events SET outcome = 403 WHERE seq = 5");
        (code, text) = await VerbAsync(options, "verify");
        Assert.Equal(1, code);
        Assert.Contains("broken at seq 5: hash mismatch", text);
        // Changed and re-hashed by someone who knows the encoding: the next row no longer follows it.
        await TamperAsync(db, "UPDATE audit.events SET outcome = 200 WHERE seq = 5");
        Assert.True((await AuditLog.VerifyAsync(db)).Intact);
        var forged = Entry(5) with { Outcome = 403 };
        await using (var read = db.CreateCommand("SELECT at, prev_hash FROM audit.events WHERE seq = 5"))
        await using (var reader = await read.ExecuteReaderAsync())
        {
            await reader.ReadAsync();
            forged = forged with { At = DateTime.SpecifyKind(reader.GetDateTime(0), DateTimeKind.Utc) };
            var rehash = AuditChain.Hash(5, forged, reader.GetFieldValue<byte[]>(1));
            await reader.DisposeAsync();
            await TamperAsync(db, "UPDATE audit.events SET outcome = 403, hash = '\\x" + Convert.ToHexString(rehash) + "' WHERE seq = 5");
        }
        var rehashed = await AuditLog.VerifyAsync(db);
        Assert.Equal(6, rehashed.BrokenSeq);
        Assert.Contains("prev_hash", rehashed.Reason);

        // Deleted: a middle row gone.
        await using var clean = await NewDatabaseAsync("audit_delete");
        await AuditLog.AppendAsync(clean, Enumerable.Range(1, 10).Select(i => Entry(i)).ToList());
        await TamperAsync(clean, "DELETE FROM audit.events WHERE seq = 7");
        (code, text) = await VerbAsync(Options(clean), "verify");
        Assert.Equal(1, code);
        Assert.Contains("broken at seq 7: row 7 is missing (deleted)", text);
        // The first row gone is a gap too (the chain starts at 1 when nothing was pruned).
        await TamperAsync(clean, "DELETE FROM audit.events WHERE seq = 1");
        Assert.Equal(1, (await AuditLog.VerifyAsync(clean)).BrokenSeq);
        // Deleted, and the rows after it renumbered to hide the gap: prev_hash gives it away.
        await using var renumbered = await NewDatabaseAsync("audit_renumber");
        await AuditLog.AppendAsync(renumbered, Enumerable.Range(1, 5).Select(i => Entry(i)).ToList());
        await TamperAsync(renumbered, "DELETE FROM audit.events WHERE seq = 3; UPDATE audit.events SET seq = seq - 1 WHERE seq > 3");
        var hidden = await AuditLog.VerifyAsync(renumbered);
        Assert.Equal(3, hidden.BrokenSeq);
    }

    [Fact]
    public async Task A_witness_of_the_head_finds_the_newest_rows_deleted_and_a_rewritten_chain()
    {
        await using var db = await NewDatabaseAsync("audit_witness");
        await AuditLog.AppendAsync(db, Enumerable.Range(1, 5).Select(i => Entry(i)).ToList());
        var witness = await AuditLog.AppendAsync(db, Enumerable.Range(6, 3).Select(i => Entry(i)).ToList());
        Assert.Equal(8, witness!.Seq);
        var parsed = AuditLog.Witness.Parse(witness.ToString());
        Assert.Equal(8, parsed!.Seq);
        Assert.Equal(witness.Hash, parsed.Hash);
        var options = Options(db);
        Assert.Equal(0, (await VerbAsync(options, "verify", "--witness", witness.ToString())).Code);
        await AuditLog.AppendAsync(db, [Entry(9)]);
        Assert.Equal(0, (await VerbAsync(options, "verify", "--witness", witness.ToString())).Code);

        // The newest rows deleted: the chain alone is intact, the witness says what is missing.
        await TamperAsync(db, "DELETE FROM audit.events WHERE seq >= 7");
        Assert.True((await AuditLog.VerifyAsync(db)).Intact);
        var (code, text) = await VerbAsync(options, "verify", "--witness", witness.ToString());
        Assert.Equal(1, code);
        Assert.Contains("broken at seq 7: the witnessed row 8 is missing: the rows after seq 6 were deleted", text);

        // Rewritten from a row on and re-hashed to the end (the chain verifies): the witnessed row's hash differs.
        await using var rewritten = await NewDatabaseAsync("audit_witness_rewrite");
        await AuditLog.AppendAsync(rewritten, Enumerable.Range(1, 3).Select(i => Entry(i)).ToList());
        var head = await AuditLog.AppendAsync(rewritten, [Entry(4)]);
        await TamperAsync(rewritten, "DELETE FROM audit.events WHERE seq >= 3");
        await AuditLog.AppendAsync(rewritten, [Entry(3) with { Outcome = 403 }, Entry(4)]);
        Assert.True((await AuditLog.VerifyAsync(rewritten)).Intact);
        var forged = await AuditLog.VerifyAsync(rewritten, witness: head);
        Assert.Equal(4, forged.BrokenSeq);
        Assert.Contains("differs from the witness", forged.Reason);

        // The gateway's writer logs the witness of what it wrote (at most once a minute): the line verify takes.
        await using var logged = await NewDatabaseAsync("audit_witness_log");
        var logs = new TestLogs();
        var writer = new AuditWriter(logged, 100, new Microsoft.Extensions.Logging.Logger<AuditWriter>(logs));
        writer.Start();
        for (var i = 1; i <= 3; i++) await writer.EnqueueAsync(Entry(i));
        await writer.DrainAsync(CancellationToken.None);
        var line = System.Text.RegularExpressions.Regex.Match(logs.Text, @"audit chain witness (\d+:[0-9a-f]{64})");
        Assert.True(line.Success, logs.Text);
        Assert.Equal(0, (await VerbAsync(Options(logged), "verify", "--witness", line.Groups[1].Value)).Code);

        // Malformed, or before what is verified: a usage error, not a verdict.
        foreach (var bad in new[] { "8", "x:" + new string('a', 64), "8:" + new string('a', 63), "0:" + new string('a', 64), "8:" + new string('g', 64) })
            Assert.Contains("--witness", (await Assert.ThrowsAsync<UsageException>(() => VerbAsync(options, "verify", "--witness", bad))).Message);
        Assert.Contains("cannot be checked", (await Assert.ThrowsAsync<UsageException>(() =>
            VerbAsync(options, "verify", "--from-seq", "3", "--witness", "2:" + new string('a', 64)))).Message);
    }

    [Fact]
    public async Task Prune_deletes_old_rows_through_the_allowed_path_records_an_anchor_and_verify_still_passes()
    {
        await using var db = await NewDatabaseAsync("audit_prune");
        var old = DateTime.UtcNow.AddDays(-3_000);
        await AuditLog.AppendAsync(db, Enumerable.Range(1, 3).Select(i => Entry(i, old.AddMinutes(i))).ToList());
        await AuditLog.AppendAsync(db, Enumerable.Range(4, 4).Select(i => Entry(i)).ToList());
        var options = Options(db);
        Assert.Equal(2_557, options.Audit.RetentionDays);
        var (code, text) = await VerbAsync(options, "prune");
        Assert.Equal(0, code);
        Assert.Contains("pruned 3 audit rows", text);
        (code, text) = await VerbAsync(options, "verify");
        Assert.Equal(0, code);
        Assert.Contains("OK: 4 rows, seq 4..7, continuing the anchor of pruned rows through seq 3", text);
        Assert.Contains("no audit rows recorded before", (await VerbAsync(options, "prune")).Text);

        // Pruning every row leaves the anchor as the chain's end: new rows continue from it.
        Assert.Equal((4L, (long?)7), await AuditLog.PruneAsync(db, DateTime.UtcNow.AddMinutes(1)));
        await AuditLog.AppendAsync(db, [Entry(8), Entry(9)]);
        var verdict = await AuditLog.VerifyAsync(db);
        Assert.True(verdict.Intact, verdict.ToString());
        Assert.Equal((2L, 8L, 9L, 7L), (verdict.Rows, verdict.FirstSeq, verdict.LastSeq, verdict.AnchorSeq));
        await using (var anchors = db.CreateCommand("SELECT string_agg(through_seq || ':' || pruned_rows, ',' ORDER BY through_seq) FROM audit.anchors"))
            Assert.Equal("3:3,7:4", await anchors.ExecuteScalarAsync());

        // A row deleted right after the anchor is still a gap.
        await using var gap = await NewDatabaseAsync("audit_prune_gap");
        await AuditLog.AppendAsync(gap, Enumerable.Range(1, 2).Select(i => Entry(i, old)).Concat(Enumerable.Range(3, 3).Select(i => Entry(i))).ToList());
        await AuditLog.PruneAsync(gap, DateTime.UtcNow.AddDays(-2_557));
        await TamperAsync(gap, "DELETE FROM audit.events WHERE seq = 3");
        var broken = await AuditLog.VerifyAsync(gap);
        Assert.Equal(3, broken.BrokenSeq);
    }

    [Fact]
    public async Task Two_writers_at_once_build_one_linear_chain()
    {
        await using var db = await NewDatabaseAsync("audit_concurrent");
        await using var second = NpgsqlDataSource.Create(db.ConnectionString);
        var writers = new[] { new AuditWriter(db, 1_000, NullLogger<AuditWriter>.Instance), new AuditWriter(second, 1_000, NullLogger<AuditWriter>.Instance) };
        foreach (var w in writers) w.Start();
        const int PerWriter = 600;
        await Task.WhenAll(writers.SelectMany((w, k) => Enumerable.Range(0, 4).Select(t => Task.Run(async () =>
        {
            for (var i = 0; i < PerWriter / 4; i++) await w.EnqueueAsync(Entry(k * 10_000 + t * 1_000 + i));
        }))));
        foreach (var w in writers) await w.DrainAsync(CancellationToken.None);
        Assert.All(writers, w => Assert.Equal(PerWriter, w.Written));
        await using (var cmd = db.CreateCommand("SELECT count(*), min(seq), max(seq), count(DISTINCT prev_hash) FROM audit.events"))
        await using (var reader = await cmd.ExecuteReaderAsync())
        {
            await reader.ReadAsync();
            Assert.Equal(2L * PerWriter, reader.GetInt64(0));
            Assert.Equal(1L, reader.GetInt64(1));
            Assert.Equal(2L * PerWriter, reader.GetInt64(2));
            Assert.Equal(2L * PerWriter, reader.GetInt64(3));   // no two rows follow the same row: no fork
        }
        var verdict = await AuditLog.VerifyAsync(db);
        Assert.True(verdict.Intact, verdict.ToString());
        Assert.Equal(2L * PerWriter, verdict.Rows);
    }

    [Fact]
    public async Task While_postgres_is_unreachable_the_writer_keeps_its_entries_and_writes_them_when_it_is_back()
    {
        await using var db = await NewDatabaseAsync("audit_outage");
        using var proxy = new TcpProxy(LocalServices.PostgresPort);
        var through = new NpgsqlConnectionStringBuilder(db.ConnectionString) { Port = proxy.Port, Timeout = 2 }.ConnectionString;
        await using var viaProxy = NpgsqlDataSource.Create(through);
        var logs = new TestLogs();
        var writer = new AuditWriter(viaProxy, 100, new Microsoft.Extensions.Logging.Logger<AuditWriter>(logs));
        writer.Start();
        proxy.Cut();
        for (var i = 1; i <= 50; i++) await writer.EnqueueAsync(Entry(i));
        await Task.Delay(1_500);
        Assert.Equal(0, writer.Written);
        Assert.Contains("not written yet", logs.Text);
        proxy.Open();
        await writer.DrainAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.Equal(50, writer.Written);
        var verdict = await AuditLog.VerifyAsync(db);
        Assert.True(verdict.Intact && verdict.Rows == 50, verdict.ToString());
    }

    [Fact]
    public void The_hash_encoding_is_unambiguous_and_covers_every_field()
    {
        var at = new DateTime(2026, 12, 3, 7, 0, 0, DateTimeKind.Utc);
        var entry = new AuditEntry(at, "user:ab", "c", "read", "GET / /", 200);
        var hash = AuditChain.Hash(1, entry, AuditChain.GenesisHash);
        Assert.Equal(32, hash.Length);
        Assert.Equal(hash, AuditChain.Hash(1, entry, AuditChain.GenesisHash));
        var variants = new[]
        {
            AuditChain.Hash(2, entry, AuditChain.GenesisHash),
            AuditChain.Hash(1, entry with { At = at.AddTicks(10) }, AuditChain.GenesisHash),
            AuditChain.Hash(1, entry with { Actor = "user:a", Subject = "bc" }, AuditChain.GenesisHash),   // same concatenation
            AuditChain.Hash(1, entry with { Action = "write" }, AuditChain.GenesisHash),
            AuditChain.Hash(1, entry with { Resource = "GET / /x" }, AuditChain.GenesisHash),
            AuditChain.Hash(1, entry with { Outcome = 403 }, AuditChain.GenesisHash),
            AuditChain.Hash(1, entry, hash),
        };
        Assert.All(variants, v => Assert.NotEqual(hash, v));
        Assert.Equal(variants.Length, variants.Select(Convert.ToHexString).Distinct().Count());
        // Normalised: microseconds (PostgreSQL's precision), bounded text without control characters or lone surrogates.
        var raw = new AuditEntry(at.AddTicks(7), "user:x", "s", "read", "GET /a\u0000b\ud800 /" + new string('p', 700) + "😀", 200).Normalised();
        Assert.Equal(at, raw.At);
        Assert.Equal(AuditEntry.MaxResourceLength, raw.Resource.Length);
        Assert.StartsWith("GET /a?b? /", raw.Resource);
        Assert.Equal("ab😀", AuditChain.Clean("ab😀c", 4));
        Assert.Equal("ab", AuditChain.Clean("ab😀c", 3));
    }

    private static async Task TamperAsync(NpgsqlDataSource db, string sql)
    {
        // As the superuser with triggers off: what the append-only trigger cannot stop, and the chain must catch.
        await using var cmd = db.CreateCommand($"BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT;");
        await cmd.ExecuteNonQueryAsync();
    }

    private static async Task<(int Code, string Text)> VerbAsync(StreamHealthOptions options, params string[] args)
    {
        var output = new StringWriter();
        var code = await AuditVerb.RunAsync(args, options, output);
        return (code, output.ToString());
    }

    private static async Task<List<(string, string, string, string, int)>> RowsAsync(NpgsqlDataSource db)
    {
        var rows = new List<(string, string, string, string, int)>();
        await using var cmd = db.CreateCommand("SELECT actor, subject, action, resource, outcome FROM audit.events ORDER BY seq");
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetInt32(4)));
        return rows;
    }

    private static async Task<(string UserId, string Token)> SignUpAsync(HttpClient client)
    {
        var email = $"audit-{Guid.NewGuid():N}@example.org";
        var registered = await client.PostAsJsonAsync("/api/v1/users/register", new { email, password = Password });
        Assert.Equal(HttpStatusCode.Created, registered.StatusCode);
        var token = await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password = Password });
        var body = JsonDocument.Parse(await token.Content.ReadAsStringAsync()).RootElement;
        return (body.GetProperty("user_id").GetString()!, body.GetProperty("access_token").GetString()!);
    }
}
