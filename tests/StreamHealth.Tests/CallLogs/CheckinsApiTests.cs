using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Npgsql;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.CallLogs;

/// <summary>The gateway and a migrated database of their own, with keys for the scope rules: the dev key (every scope), a
/// care team's key for one patient, and a key whose scopes do not include checkins:read. Rows go straight into the calllogs
/// tables, as the sinks write them.</summary>
public sealed class CheckinsApiFixture : IAsyncLifetime
{
    public const string DevKey = "dev-key-change-me";
    public const string CareTeamKey = "checkins-care-team-key-0123456789";
    public const string MetricsOnlyKey = "checkins-metrics-only-key-0123456789";
    /// <summary>The one patient the care team's key is assigned.</summary>
    public string CareTeamPatient { get; } = "ct-patient-" + Guid.NewGuid().ToString("N")[..12];
    public WebApplicationFactory<Program> App { get; private set; } = null!;
    public NpgsqlDataSource Postgres { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var database = LocalServices.NewDatabaseName("gateway_checkins");
        var connectionString = LocalServices.PostgresConnectionString(database);
        await PostgresMigrator.MigrateAsync(connectionString);
        Postgres = NpgsqlDataSource.Create(connectionString);
        var settings = LocalServices.Overrides(database);
        settings["Gateway:ApiKeys:0:Key"] = CareTeamKey;
        settings["Gateway:ApiKeys:0:Name"] = "clinic";
        settings["Gateway:ApiKeys:0:Scopes"] = "care-team:read";
        settings["Gateway:ApiKeys:0:CareTeamUsers"] = CareTeamPatient;
        settings["Gateway:ApiKeys:1:Key"] = MetricsOnlyKey;
        settings["Gateway:ApiKeys:1:Name"] = "tracker";
        settings["Gateway:ApiKeys:1:Scopes"] = "metrics:read nutrition:read";
        App = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
    }

    public HttpClient Client(string? apiKey = DevKey, string? bearer = null)
    {
        var client = App.CreateClient();
        if (apiKey is not null) client.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        if (bearer is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        return client;
    }

    public async Task<(string UserId, string Token)> SignUpAsync(string prefix)
    {
        using var anonymous = Client(apiKey: null);
        var email = $"{prefix}-{Guid.NewGuid():N}@example.org";
        const string password = "Checkins-read-1";
        Assert.Equal(HttpStatusCode.Created, (await anonymous.PostAsJsonAsync("/api/v1/users/register", new { email, password })).StatusCode);
        var token = JsonDocument.Parse(await (await anonymous.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password }))
            .Content.ReadAsStringAsync()).RootElement;
        return (token.GetProperty("user_id").GetString()!, token.GetProperty("access_token").GetString()!);
    }

    public async Task DisposeAsync()
    {
        await App.DisposeAsync();
        await Postgres.DisposeAsync();
    }
}

/// <summary>GET /api/v1/checkins/user/{userId} and GET /api/v1/health-entries/user/{userId} (issue 17) over the real gateway and
/// PostgreSQL: pages in time order with the cursor, each kind's attributes, the kind filter, and the access rules the other
/// per-person reads have (own data, checkins:read, care team), with hostile query values answered 400 naming the field.</summary>
public sealed class CheckinsApiTests(CheckinsApiFixture f) : IClassFixture<CheckinsApiFixture>
{
    private const string Checkins = "/api/v1/checkins/user/";
    private const string Entries = "/api/v1/health-entries/user/";

    /// <summary>Whole seconds, two hours back: inside the default range, and exact through the JSON round trip.</summary>
    private static readonly DateTime Start = DateTime.UnixEpoch.AddSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()).AddHours(-2);

    /// <summary>Three calls of <paramref name="user"/>, an hour apart from <see cref="Start"/> (+<paramref name="offsetMinutes"/>):
    /// call 0 has a medication, a food and a symptom; call 1 a denied symptom and a medication with nothing said but its name;
    /// call 2 no entries. Entry names carry <paramref name="tag"/>, so another person's rows are recognisable.</summary>
    private async Task<string[]> SeedAsync(string user, string tag, int offsetMinutes = 0)
    {
        var calls = Enumerable.Range(0, 3).Select(i => $"call-{tag}-{i}-{Guid.NewGuid().ToString("N")[..8]}").ToArray();
        var times = Enumerable.Range(0, 3).Select(i => Start.AddMinutes(offsetMinutes + 60 * i)).ToArray();
        int[][] counts = [[1, 1, 1], [1, 0, 1], [0, 0, 0]];
        for (var i = 0; i < 3; i++)
            await ExecuteAsync("""
                INSERT INTO calllogs.checkins (call_id, patient_id, event_time, provider, duration_s, medication_count, food_count, symptom_count, extractor)
                VALUES ($1, $2, $3, 'local-dev', $4, $5, $6, $7, 'embedded-1')
                """, calls[i], user, times[i], 300 + i, counts[i][0], counts[i][1], counts[i][2]);
        await ExecuteAsync("""
            INSERT INTO calllogs.medication_entries (entry_id, call_id, patient_id, event_time, generic_name, dose_value, dose_unit, frequency, status,
                                                    confidence, span_start, span_length, extractor)
            VALUES ($1 || ':0', $1, $2, $3, 'metformin-' || $5, 500, 'mg', 'twice a day', 'taken', 0.9, 10, 25, 'embedded-1'),
                   ($4 || ':1', $4, $2, $6, 'aspirin-' || $5, NULL, NULL, NULL, 'unspecified', 0.6, 3, 7, 'embedded-1')
            """, calls[0], user, times[0], calls[1], tag, times[1]);
        await ExecuteAsync("""
            INSERT INTO calllogs.food_entries (entry_id, call_id, patient_id, event_time, item, quantity_value, quantity_unit, meal,
                                              confidence, span_start, span_length, extractor)
            VALUES ($1 || ':1', $1, $2, $3, 'oatmeal-' || $4, 2, 'servings', 'breakfast', 0.8, 40, 12, 'embedded-1')
            """, calls[0], user, times[0], tag);
        await ExecuteAsync("""
            INSERT INTO calllogs.symptom_entries (entry_id, call_id, patient_id, event_time, name, present, severity, onset,
                                                 confidence, span_start, span_length, extractor)
            VALUES ($1 || ':2', $1, $2, $3, 'headache-' || $5, true, '4/10', 'since Monday', 0.7, 60, 20, 'embedded-1'),
                   ($4 || ':0', $4, $2, $6, 'dizziness-' || $5, false, NULL, NULL, 0.95, 0, 14, 'embedded-1')
            """, calls[0], user, times[0], calls[1], tag, times[1]);
        return calls;
    }

    [Fact]
    public async Task A_person_reads_their_own_checkins_and_entries_in_time_order_with_each_kinds_attributes_and_never_anothers()
    {
        var (a, tokenA) = await f.SignUpAsync("checkins-a");
        var (b, tokenB) = await f.SignUpAsync("checkins-b");
        var callsA = await SeedAsync(a, "a");
        await SeedAsync(b, "b", offsetMinutes: 1);   // interleaved in time with A's
        using var asA = f.Client(apiKey: null, bearer: tokenA);

        var checkins = await OkAsync(asA, Checkins + a);
        Assert.Equal(a, checkins.GetProperty("user_id").GetString());
        var rows = checkins.GetProperty("checkins").EnumerateArray().ToList();
        Assert.Equal(callsA, rows.Select(c => c.GetProperty("call_id").GetString()));
        Assert.All(rows, c => Assert.Equal(a, c.GetProperty("user_id").GetString()));
        Assert.Equal(Start, rows[0].GetProperty("started_at").GetDateTime().ToUniversalTime());
        Assert.Equal("local-dev", rows[0].GetProperty("provider").GetString());
        Assert.Equal([300, 301, 302], rows.Select(c => c.GetProperty("duration_s").GetInt32()));
        Assert.Equal([1, 1, 0], rows.Select(c => c.GetProperty("medication_count").GetInt32()));
        Assert.Equal([1, 0, 0], rows.Select(c => c.GetProperty("food_count").GetInt32()));
        Assert.Equal([1, 1, 0], rows.Select(c => c.GetProperty("symptom_count").GetInt32()));
        Assert.Equal(JsonValueKind.Null, checkins.GetProperty("next_cursor").ValueKind);

        var page = await OkAsync(asA, Entries + a);
        var entries = page.GetProperty("entries").EnumerateArray().ToList();
        // By the call's start, then the entry id: call 0's three, then call 1's two (":0" before ":1").
        Assert.Equal([$"{callsA[0]}:0", $"{callsA[0]}:1", $"{callsA[0]}:2", $"{callsA[1]}:0", $"{callsA[1]}:1"],
            entries.Select(e => e.GetProperty("entry_id").GetString()));
        Assert.Equal(["medication", "food", "symptom", "symptom", "medication"], entries.Select(e => e.GetProperty("kind").GetString()));
        Assert.Equal(["metformin-a", "oatmeal-a", "headache-a", "dizziness-a", "aspirin-a"], entries.Select(e => e.GetProperty("name").GetString()));
        Assert.All(entries, e => Assert.Equal(a, e.GetProperty("user_id").GetString()));
        Assert.Equal(Start.AddHours(1), entries[3].GetProperty("call_started_at").GetDateTime().ToUniversalTime());

        var medication = entries[0];
        Assert.Equal(callsA[0], medication.GetProperty("call_id").GetString());
        Assert.Equal(0.9, medication.GetProperty("confidence").GetDouble());
        Assert.Equal(10, medication.GetProperty("span_start").GetInt32());
        Assert.Equal(25, medication.GetProperty("span_length").GetInt32());
        Assert.Equal("embedded-1", medication.GetProperty("extractor").GetString());
        Assert.Equal(500, medication.GetProperty("medication").GetProperty("dose_value").GetDouble());
        Assert.Equal("mg", medication.GetProperty("medication").GetProperty("dose_unit").GetString());
        Assert.Equal("twice a day", medication.GetProperty("medication").GetProperty("frequency").GetString());
        Assert.Equal("taken", medication.GetProperty("medication").GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, medication.GetProperty("food").ValueKind);
        Assert.Equal(JsonValueKind.Null, medication.GetProperty("symptom").ValueKind);

        var food = entries[1].GetProperty("food");
        Assert.Equal(2, food.GetProperty("quantity_value").GetDouble());
        Assert.Equal("servings", food.GetProperty("quantity_unit").GetString());
        Assert.Equal("breakfast", food.GetProperty("meal").GetString());
        Assert.Equal(JsonValueKind.Null, entries[1].GetProperty("medication").ValueKind);
        Assert.Equal(JsonValueKind.Null, entries[1].GetProperty("symptom").ValueKind);

        var headache = entries[2].GetProperty("symptom");
        Assert.True(headache.GetProperty("present").GetBoolean());
        Assert.Equal("4/10", headache.GetProperty("severity").GetString());
        Assert.Equal("since Monday", headache.GetProperty("onset").GetString());
        var dizziness = entries[3].GetProperty("symptom");
        Assert.False(dizziness.GetProperty("present").GetBoolean());
        Assert.Equal(JsonValueKind.Null, dizziness.GetProperty("severity").ValueKind);
        // Nothing said but the name: the attributes are null, the status unspecified.
        var bare = entries[4].GetProperty("medication");
        Assert.Equal(JsonValueKind.Null, bare.GetProperty("dose_value").ValueKind);
        Assert.Equal(JsonValueKind.Null, bare.GetProperty("dose_unit").ValueKind);
        Assert.Equal("unspecified", bare.GetProperty("status").GetString());

        // B's rows never appear in A's pages, and B reads exactly B's.
        Assert.DoesNotContain(b, checkins.GetRawText());
        Assert.DoesNotContain(b, page.GetRawText());
        Assert.DoesNotContain("-b\"", page.GetRawText());
        using var asB = f.Client(apiKey: null, bearer: tokenB);
        var theirs = (await OkAsync(asB, Entries + b)).GetProperty("entries").EnumerateArray().ToList();
        Assert.Equal(5, theirs.Count);
        Assert.All(theirs, e => Assert.EndsWith("-b", e.GetProperty("name").GetString()));
    }

    [Fact]
    public async Task The_kind_filter_the_range_and_the_cursor_page_through_exactly_the_matching_entries()
    {
        var user = NewUser("entries-page");
        var calls = await SeedAsync(user, "p");
        await SeedAsync(NewUser("entries-other"), "o");
        using var client = f.Client();

        Assert.Equal(["oatmeal-p"], Names(await OkAsync(client, $"{Entries}{user}?kind=food")));
        var symptoms = await OkAsync(client, $"{Entries}{user}?kind=symptom");
        Assert.Equal("symptom", symptoms.GetProperty("kind").GetString());
        Assert.Equal(["headache-p", "dizziness-p"], Names(symptoms));
        Assert.Equal(["metformin-p", "aspirin-p"], Names(await OkAsync(client, $"{Entries}{user}?kind=medication")));

        // from <= call start < to: call 1 alone.
        var from = Uri.EscapeDataString(Start.AddMinutes(30).ToString("O"));
        var to = Uri.EscapeDataString(Start.AddMinutes(90).ToString("O"));
        Assert.Equal(["dizziness-p", "aspirin-p"], Names(await OkAsync(client, $"{Entries}{user}?from={from}&to={to}")));
        Assert.Equal([calls[1]], (await OkAsync(client, $"{Checkins}{user}?from={from}&to={to}")).GetProperty("checkins").EnumerateArray()
            .Select(c => c.GetProperty("call_id").GetString()));
        // `to` is exclusive: the call that starts at it is not in the range.
        var atStart = Uri.EscapeDataString(Start.ToString("O"));
        Assert.Empty((await OkAsync(client, $"{Checkins}{user}?to={atStart}")).GetProperty("checkins").EnumerateArray());

        // Two at a time across the kinds (three of them share the first call's start), and one at a time within one kind.
        Assert.Equal(["metformin-p", "oatmeal-p", "headache-p", "dizziness-p", "aspirin-p"], await PagesAsync($"{Entries}{user}?limit=2", "entries", 3));
        Assert.Equal(["metformin-p", "aspirin-p"], await PagesAsync($"{Entries}{user}?kind=medication&limit=1", "entries", 2));
        Assert.Equal(calls, await PagesAsync($"{Checkins}{user}?limit=2", "checkins", 2));
        // An exact fit: the last full page says there is no next one.
        Assert.Equal(JsonValueKind.Null, (await OkAsync(client, $"{Checkins}{user}?limit=3")).GetProperty("next_cursor").ValueKind);

        async Task<List<string>> PagesAsync(string query, string list, int expectedPages)
        {
            var seen = new List<string>();
            string? cursor = null;
            var pages = 0;
            do
            {
                var page = await OkAsync(client, query + (cursor is null ? "" : "&cursor=" + cursor));
                seen.AddRange(page.GetProperty(list).EnumerateArray().Select(e => (list == "entries" ? e.GetProperty("name") : e.GetProperty("call_id")).GetString()!));
                cursor = page.GetProperty("next_cursor").GetString();
                pages++;
            } while (cursor is not null && pages < 10);
            Assert.Equal(expectedPages, pages);
            return seen;
        }
    }

    [Fact]
    public async Task Another_persons_token_a_key_without_the_scope_and_a_care_team_for_others_are_refused_and_an_unknown_user_gets_an_empty_page()
    {
        var (a, tokenA) = await f.SignUpAsync("checkins-own-a");
        var (b, _) = await f.SignUpAsync("checkins-own-b");
        await SeedAsync(b, "secret");
        await SeedAsync(f.CareTeamPatient, "ct");
        using var asA = f.Client(apiKey: null, bearer: tokenA);
        using var anonymous = f.Client(apiKey: null);
        using var clinic = f.Client(CheckinsApiFixture.CareTeamKey);
        using var tracker = f.Client(CheckinsApiFixture.MetricsOnlyKey);
        foreach (var list in new[] { Checkins, Entries })
        {
            var forbidden = await ProblemAsync(await asA.GetAsync(list + b), HttpStatusCode.Forbidden);
            Assert.DoesNotContain("secret", forbidden.GetRawText());
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync(list + b)).StatusCode);
            await ProblemAsync(await tracker.GetAsync(list + b), HttpStatusCode.Forbidden);
            await ProblemAsync(await clinic.GetAsync(list + b), HttpStatusCode.Forbidden);
            // The care team reads its patient; the dev key (checkins:read) reads anyone's.
            Assert.NotEmpty((await OkAsync(clinic, list + f.CareTeamPatient)).GetProperty(list == Checkins ? "checkins" : "entries").EnumerateArray());
            Assert.NotEmpty((await OkAsync(f.Client(), list + b)).GetProperty(list == Checkins ? "checkins" : "entries").EnumerateArray());
            // A's own, with nothing stored: an empty page, as for a user id no one has (no 404 to tell them apart).
            Assert.Empty((await OkAsync(asA, list + a)).GetProperty(list == Checkins ? "checkins" : "entries").EnumerateArray());
            var unknown = await OkAsync(f.Client(), list + NewUser("nobody"));
            Assert.Empty(unknown.GetProperty(list == Checkins ? "checkins" : "entries").EnumerateArray());
            Assert.Equal(JsonValueKind.Null, unknown.GetProperty("next_cursor").ValueKind);
        }
    }

    [Theory]
    [InlineData("bad%20id", "", "userId")]
    [InlineData("a%01b", "", "userId")]
    [InlineData("LONG", "", "userId")]
    [InlineData("USER", "limit=0", "limit")]
    [InlineData("USER", "limit=1001", "limit")]
    [InlineData("USER", "limit=-1", "limit")]
    [InlineData("USER", "limit=abc", "limit")]
    [InlineData("USER", "limit=99999999999999999999", "limit")]
    [InlineData("USER", "cursor=nope!", "cursor")]
    [InlineData("USER", "cursor=%00", "cursor")]
    [InlineData("USER", "cursor=bm90IGEgY3Vyc29y", "cursor")]   // base64url of "not a cursor"
    [InlineData("USER", "cursor=OTk5OTk5OTk5OTk5OTk5OTk6YQ", "cursor")]   // "99999999999999999:a": past 2200
    [InlineData("USER", "from=yesterday", "from")]
    [InlineData("USER", "to=0001-01-01T00:00:00Z", "to")]
    [InlineData("USER", "from=2026-02-01&to=2026-01-01", "from")]
    [InlineData("USER", "from=2026-01-01%01", "from")]
    public async Task Hostile_query_values_are_400_problems_naming_the_field_on_both_reads(string user, string query, string field)
    {
        user = user switch { "USER" => NewUser("hostile"), "LONG" => new string('x', 129), _ => user };
        using var client = f.Client();
        foreach (var list in new[] { Checkins, Entries })
        {
            var problem = await ProblemAsync(await client.GetAsync($"{list}{user}?{query}"), HttpStatusCode.BadRequest);
            Assert.Contains(field, ErrorFields(problem));
            Assert.DoesNotContain("System.", problem.GetRawText());
        }
    }

    [Theory]
    [InlineData("medications")]
    [InlineData("MEDICATION")]
    [InlineData("")]
    [InlineData("food%00")]
    [InlineData("symptom%0A")]
    public async Task An_unknown_kind_is_a_400_naming_kind(string kind)
    {
        using var client = f.Client();
        var problem = await ProblemAsync(await client.GetAsync($"{Entries}{NewUser("kind")}?kind={kind}"), HttpStatusCode.BadRequest);
        Assert.Equal(["kind"], ErrorFields(problem));
    }

    private static string NewUser(string prefix) => StreamHealth.Tests.Gateway.Contract.GatewayStackFixture.NewUser(prefix);

    private static IEnumerable<string> Names(JsonElement page) => page.GetProperty("entries").EnumerateArray().Select(e => e.GetProperty("name").GetString()!);

    private static IEnumerable<string> ErrorFields(JsonElement problem) => problem.GetProperty("errors").EnumerateObject().Select(p => p.Name);

    private static async Task<JsonElement> OkAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    private static async Task<JsonElement> ProblemAsync(HttpResponseMessage response, HttpStatusCode expected)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode} {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(text).RootElement;
    }

    private async Task ExecuteAsync(string sql, params object[] values)
    {
        await using var cmd = f.Postgres.CreateCommand(sql);
        foreach (var value in values) cmd.Parameters.Add(new NpgsqlParameter { Value = value });
        await cmd.ExecuteNonQueryAsync();
    }
}
