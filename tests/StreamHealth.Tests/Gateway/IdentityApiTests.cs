using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Npgsql;
using StreamHealth.Gateway;
using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Gateway;

/// <summary>Accounts, tokens and the access rules, over the real PostgreSQL and Redis of the test profile (no Kafka:
/// the rules decide before any handler reaches it). One migrated database for the class; every test registers
/// addresses of its own.</summary>
public sealed class IdentityApiTests(IdentityApiTests.Stores stores) : IClassFixture<IdentityApiTests.Stores>
{
    private const string CareTeamKey = "care-team-key-0123456789abcdef";
    private const string ScaleKey = "scale-integration-key-0123456789";

    public sealed class Stores : IAsyncLifetime
    {
        private readonly MigratedDatabase _database = new();
        public string Database => _database.Name;
        public WebApplicationFactory<Program> App { get; private set; } = null!;
        /// <summary>The care team's key is assigned this (registered) person.</summary>
        public (string UserId, string Token) Assigned { get; private set; }
        public NpgsqlDataSource Postgres => _database.Postgres;

        public async Task InitializeAsync()
        {
            await _database.InitializeAsync();
            // The care team's assigned person must exist before the key's configuration names it.
            await using (var bootstrap = Gateway(Database))
                Assigned = await SignUpAsync(bootstrap.CreateClient(), "assigned");
            App = Gateway(Database,
                ("Gateway:ApiKeys:0:Key", CareTeamKey), ("Gateway:ApiKeys:0:Name", "care-team"), ("Gateway:ApiKeys:0:Scopes", "care-team:read"),
                ("Gateway:ApiKeys:0:CareTeamUsers", Assigned.UserId),
                // Many sign-ups from one address in this class; Sign_in_is_rate_limited_per_address... tests the limit.
                ("Gateway:Identity:SignInPermitsPerMinute", "100000"),
                ("Gateway:ApiKeys:1:Key", ScaleKey), ("Gateway:ApiKeys:1:Name", "scale"), ("Gateway:ApiKeys:1:Scopes", "weights:write cgm:write"));
        }

        public async Task DisposeAsync()
        {
            await App.DisposeAsync();
            await _database.DisposeAsync();
        }
    }

    private static WebApplicationFactory<Program> Gateway(string database, params (string Key, string? Value)[] settings)
    {
        var all = LocalServices.Overrides(database);
        foreach (var (key, value) in settings) all[key] = value;
        return new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(all)));
    }

    private const string Password = "Correct-horse-9";

    private static string NewEmail(string prefix) => $"{prefix}-{Guid.NewGuid():N}@example.org";

    private static async Task<(string UserId, string Token)> SignUpAsync(HttpClient client, string prefix)
    {
        var email = NewEmail(prefix);
        var registered = await Json(await client.PostAsJsonAsync("/api/v1/users/register", new { email, password = Password }), HttpStatusCode.Created);
        var token = await Json(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password = Password }), HttpStatusCode.OK);
        Assert.Equal(registered.GetProperty("user_id").GetString(), token.GetProperty("user_id").GetString());
        return (registered.GetProperty("user_id").GetString()!, token.GetProperty("access_token").GetString()!);
    }

    private HttpClient Client(string? bearer = null, string? apiKey = null)
    {
        var client = stores.App.CreateClient();
        if (bearer is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        if (apiKey is not null) client.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        return client;
    }

    [Fact]
    public async Task Register_sign_in_and_read_only_ones_own_profile()
    {
        using var anonymous = Client();
        var email = NewEmail("Profile").ToUpperInvariant();
        var registered = await Json(await anonymous.PostAsJsonAsync("/api/v1/users/register", new { email, password = Password }), HttpStatusCode.Created);
        var userId = registered.GetProperty("user_id").GetString()!;
        Assert.Matches("^[0-9a-f]{32}$", userId);
        Assert.Equal(email.ToLowerInvariant(), registered.GetProperty("email").GetString());

        // Signing in with another spelling of the same address works: it is normalised the same way.
        var token = await Json(await anonymous.PostAsJsonAsync("/api/v1/auth/token",
            new { grant_type = "password", email = "  " + email.ToLowerInvariant() + " ", password = Password }), HttpStatusCode.OK);
        Assert.Equal("Bearer", token.GetProperty("token_type").GetString());
        Assert.Equal(15 * 60, token.GetProperty("expires_in").GetInt32());
        Assert.True(token.GetProperty("refresh_token").GetString()!.Length >= 40);
        var jwt = new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(token.GetProperty("access_token").GetString());
        Assert.Equal(userId, jwt.Subject);
        Assert.Equal("HS256", jwt.Alg);
        Assert.InRange(jwt.ValidTo - jwt.ValidFrom, TimeSpan.FromMinutes(14), TimeSpan.FromMinutes(16));

        using var own = Client(bearer: token.GetProperty("access_token").GetString());
        var profile = await Json(await own.GetAsync($"/api/v1/users/{userId}"), HttpStatusCode.OK);
        Assert.Equal(userId, profile.GetProperty("user_id").GetString());

        // Another person's profile and an id nobody has are the same 403: existence is not disclosed.
        var other = await Problem(await own.GetAsync($"/api/v1/users/{stores.Assigned.UserId}"), HttpStatusCode.Forbidden);
        var nobody = await Problem(await own.GetAsync($"/api/v1/users/{Guid.NewGuid():N}"), HttpStatusCode.Forbidden);
        Assert.Equal(other.GetProperty("detail").GetString(), nobody.GetProperty("detail").GetString());
        Assert.DoesNotContain(stores.Assigned.UserId, other.ToString());
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync($"/api/v1/users/{userId}")).StatusCode);

        // Passwords are stored as ASP.NET Core Identity V3 (PBKDF2) hashes, never as sent.
        await using var cmd = stores.Postgres.CreateCommand("SELECT password_hash FROM identity.users WHERE user_id = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        var hash = Convert.FromBase64String((string)(await cmd.ExecuteScalarAsync())!);
        Assert.Equal(0x01, hash[0]);
        Assert.DoesNotContain(Password, Encoding.UTF8.GetString(hash));
    }

    public static TheoryData<string, string> BadPasswords => new()
    {
        { "Short-1", "8-128 characters" },
        { "lower-case-only-1", "upper-case" },
        { "No-Digits-Here", "digit" },
        { "NoSpecial123", "special" },
        { "Aa1-" + new string('x', 200), "at most 128" },
        { "Tab\tInside-1A", "control character" },
    };

    [Theory]
    [MemberData(nameof(BadPasswords))]
    public async Task Password_policy_answers_400_naming_password(string password, string expected)
    {
        using var client = Client();
        var problem = await Problem(await client.PostAsJsonAsync("/api/v1/users/register", new { email = NewEmail("policy"), password }), HttpStatusCode.BadRequest);
        Assert.Contains(expected, problem.GetProperty("errors").GetProperty("password")[0].GetString());
    }

    public static TheoryData<string, string> BadEmails => new()
    {
        { "", "required" },
        { "no-at-sign.example.org", "name@domain" },
        { new string('a', 300) + "@example.org", "at most 254" },
        { "bell\u0007@example.org", "control character" },
        // Cyrillic 'а' (U+0430) looks like Latin 'a': refused, not stored as a second "same-looking" account.
        { "\u0430lice@example.org", "ASCII" },
        { "two@@example.org", "name@domain" },
        { "a..b@example.org", "dot" },
        { "user@localhost", "domain" },
        // (An unpaired surrogate cannot be sent through JsonSerializer, which writes U+FFFD: see the raw-body test.)
        { "\ufffdx@example.org", "ASCII" },
    };

    [Theory]
    [MemberData(nameof(BadEmails))]
    public async Task Hostile_or_malformed_emails_answer_400_naming_email(string email, string expected)
    {
        using var client = Client();
        var response = await client.PostAsync("/api/v1/users/register",
            new StringContent(JsonSerializer.Serialize(new { email, password = Password }), Encoding.UTF8, "application/json"));
        var problem = await Problem(response, HttpStatusCode.BadRequest);
        Assert.Contains(expected, problem.GetProperty("errors").GetProperty("email")[0].GetString());
    }

    [Fact]
    public async Task A_taken_email_is_409_whatever_its_case_or_compatibility_form_and_concurrent_registrations_let_exactly_one_win()
    {
        using var client = Client();
        var local = $"taken{Guid.NewGuid():N}"[..20];
        await Json(await client.PostAsJsonAsync("/api/v1/users/register", new { email = $"{local}@example.org", password = Password }), HttpStatusCode.Created);
        // Upper case, surrounding spaces, and full-width letters (folded to ASCII) are the same address.
        var fullWidth = string.Concat(local.Select(c => char.IsAsciiLetterLower(c) ? (char)(c - 'a' + 'ａ') : c));
        foreach (var variant in new[] { $"{local.ToUpperInvariant()}@EXAMPLE.ORG", $"  {local}@example.org ", $"{fullWidth}@example.org" })
        {
            var problem = await Problem(await client.PostAsJsonAsync("/api/v1/users/register", new { email = variant, password = Password }), HttpStatusCode.Conflict);
            Assert.Contains("already registered", problem.GetProperty("title").GetString());
        }

        var race = NewEmail("race");
        var answers = await Task.WhenAll(Enumerable.Range(0, 6).Select(async _ =>
        {
            using var c = Client();
            return (await c.PostAsJsonAsync("/api/v1/users/register", new { email = race, password = Password })).StatusCode;
        }));
        Assert.Equal(1, answers.Count(s => s == HttpStatusCode.Created));
        Assert.Equal(5, answers.Count(s => s == HttpStatusCode.Conflict));
    }

    [Fact]
    public async Task Refresh_tokens_rotate_and_reusing_a_used_one_revokes_the_whole_family()
    {
        using var client = Client();
        var email = NewEmail("refresh");
        await Json(await client.PostAsJsonAsync("/api/v1/users/register", new { email, password = Password }), HttpStatusCode.Created);
        var first = await Json(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password = Password }), HttpStatusCode.OK);
        var r1 = first.GetProperty("refresh_token").GetString();

        var second = await Json(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "refresh_token", refresh_token = r1 }), HttpStatusCode.OK);
        var r2 = second.GetProperty("refresh_token").GetString();
        Assert.NotEqual(r1, r2);
        Assert.Equal(first.GetProperty("user_id").GetString(), second.GetProperty("user_id").GetString());
        using (var withNew = Client(bearer: second.GetProperty("access_token").GetString()))
            Assert.Equal(HttpStatusCode.OK, (await withNew.GetAsync($"/api/v1/users/{second.GetProperty("user_id").GetString()}")).StatusCode);

        // r1 again: a copy is in someone else's hands. Refused, and r2 (its legitimate successor) dies with it.
        var reuse = await Problem(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "refresh_token", refresh_token = r1 }), HttpStatusCode.BadRequest);
        Assert.Equal("invalid_grant", reuse.GetProperty("error").GetString());
        Assert.Contains("already used", reuse.GetProperty("detail").GetString());
        var revoked = await Problem(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "refresh_token", refresh_token = r2 }), HttpStatusCode.BadRequest);
        Assert.Equal("invalid_grant", revoked.GetProperty("error").GetString());

        // A new password sign-in starts a new family that works.
        var fresh = await Json(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password = Password }), HttpStatusCode.OK);
        await Json(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "refresh_token", refresh_token = fresh.GetProperty("refresh_token").GetString() }), HttpStatusCode.OK);

        foreach (var junk in new[] { "not-a-token", new string('x', 200) })
            await Problem(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "refresh_token", refresh_token = junk }), HttpStatusCode.BadRequest);
        var grant = await Problem(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "client_credentials" }), HttpStatusCode.BadRequest);
        Assert.True(grant.GetProperty("errors").TryGetProperty("grant_type", out _));
    }

    [Fact]
    public async Task Five_wrong_passwords_lock_the_account_with_429_and_retry_after_even_for_the_right_password()
    {
        using var client = Client();
        var email = NewEmail("lockout");
        await Json(await client.PostAsJsonAsync("/api/v1/users/register", new { email, password = Password }), HttpStatusCode.Created);
        for (var i = 1; i <= 4; i++)
        {
            var wrong = await Problem(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password = "Wrong-pass-" + i }), HttpStatusCode.BadRequest);
            Assert.Equal("invalid_grant", wrong.GetProperty("error").GetString());
        }
        var fifth = await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password = "Wrong-pass-5" });
        await Problem(fifth, HttpStatusCode.TooManyRequests);
        Assert.InRange(int.Parse(fifth.Headers.GetValues("Retry-After").Single()), 14 * 60, 15 * 60);
        var right = await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password = Password });
        Assert.Contains("locked", (await Problem(right, HttpStatusCode.TooManyRequests)).GetProperty("title").GetString());
        Assert.True(right.Headers.Contains("Retry-After"));

        // An unknown address and a wrong password get the same answer.
        var unknown = await Problem(await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email = NewEmail("nobody"), password = Password }), HttpStatusCode.BadRequest);
        Assert.Equal("The email or password is wrong.", unknown.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Sign_in_is_rate_limited_per_address_apart_from_the_api()
    {
        await using var strict = Gateway(stores.Database, ("Gateway:Identity:SignInPermitsPerMinute", "3"));
        using var client = strict.CreateClient();
        for (var i = 0; i < 3; i++)
            Assert.Equal(HttpStatusCode.BadRequest, (await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email = NewEmail("rl"), password = "x" })).StatusCode);
        var limited = await client.PostAsJsonAsync("/api/v1/users/register", new { email = NewEmail("rl"), password = Password });
        Assert.Contains("sign-in requests per minute", (await Problem(limited, HttpStatusCode.TooManyRequests)).GetProperty("detail").GetString());
        Assert.True(limited.Headers.Contains("Retry-After"));
        // The API itself is not in that bucket.
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
    }

    [Fact]
    public async Task Expired_tampered_foreign_and_wrong_audience_tokens_are_401()
    {
        var (userId, token) = stores.Assigned;
        var dev = new GatewayIdentityOptions { SigningKey = GatewayIdentityOptions.DevelopmentSigningKey };
        var expired = AccessTokens.Issue(dev, userId, DateTime.UtcNow.AddHours(-1), out _);
        var parts = token.Split('.');
        var claims = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(Base64UrlDecode(parts[1]))!;
        var forged = JsonSerializer.Serialize(claims.ToDictionary(kv => kv.Key, kv => kv.Key == "sub" ? (object)"someone-else" : kv.Value));
        var tampered = $"{parts[0]}.{Base64UrlEncode(Encoding.UTF8.GetBytes(forged))}.{parts[2]}";
        var foreign = AccessTokens.Issue(new GatewayIdentityOptions { SigningKey = "another-gateways-signing-key-0123456789" }, userId, DateTime.UtcNow, out _);
        var audience = AccessTokens.Issue(new GatewayIdentityOptions { SigningKey = dev.SigningKey, Audience = "another-api" }, userId, DateTime.UtcNow, out _);
        var none = $"{Base64UrlEncode("""{"alg":"none","typ":"JWT"}"""u8.ToArray())}.{parts[1]}.";

        using (var valid = Client(bearer: token))
            Assert.Equal(HttpStatusCode.OK, (await valid.GetAsync($"/api/v1/users/{userId}")).StatusCode);
        foreach (var (name, bad) in new[] { ("expired", expired), ("tampered", tampered), ("foreign", foreign), ("audience", audience), ("none", none) })
        {
            using var client = Client(bearer: bad);
            var response = await client.GetAsync($"/api/v1/users/{userId}");
            var problem = await Problem(response, HttpStatusCode.Unauthorized);
            Assert.Contains("Bearer", response.Headers.WwwAuthenticate.ToString());
            if (name == "expired") Assert.Contains("expired", problem.GetProperty("detail").GetString());
        }
    }

    [Fact]
    public async Task A_care_team_key_reads_only_its_assigned_people_and_writes_nothing()
    {
        using var careTeam = Client(apiKey: CareTeamKey);
        var stranger = Guid.NewGuid().ToString("N");
        // Assigned: through the rule (404: no weight stored yet), on weights and CGM alike.
        Assert.Equal(HttpStatusCode.NotFound, (await careTeam.GetAsync($"/api/weight/{stores.Assigned.UserId}/latest")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await careTeam.GetAsync($"/api/v1/cgm/{stores.Assigned.UserId}/readings")).StatusCode);
        await Problem(await careTeam.GetAsync($"/api/weight/{stranger}/latest"), HttpStatusCode.Forbidden);
        await Problem(await careTeam.GetAsync($"/api/v1/cgm/{stranger}/readings"), HttpStatusCode.Forbidden);
        // Not the profile (no scope for it), no writes, no datasets, no cache management.
        await Problem(await careTeam.GetAsync($"/api/v1/users/{stores.Assigned.UserId}"), HttpStatusCode.Forbidden);
        await Problem(await careTeam.PostAsJsonAsync("/api/weight/process", Measurement(stores.Assigned.UserId)), HttpStatusCode.Forbidden);
        await Problem(await careTeam.PostAsync($"/api/v1/cgm/{stores.Assigned.UserId}/upload", Csv()), HttpStatusCode.Forbidden);
        await Problem(await careTeam.PostAsJsonAsync("/cache_management", new { action = "info" }), HttpStatusCode.Forbidden);

        // A write-only integration key writes (here: 503, no Kafka in this test, after the rule let it through) and reads nothing.
        using var scale = Client(apiKey: ScaleKey);
        Assert.NotEqual(HttpStatusCode.Forbidden, (await scale.PostAsJsonAsync("/api/weight/process", Measurement(stranger))).StatusCode);
        await Problem(await scale.GetAsync($"/api/weight/{stranger}/latest"), HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Cache_management_is_admin_only()
    {
        using var person = Client(bearer: stores.Assigned.Token);
        await Problem(await person.PostAsJsonAsync("/cache_management", new { action = "flush" }), HttpStatusCode.Forbidden);
        using var scale = Client(apiKey: ScaleKey);
        await Problem(await scale.PostAsJsonAsync("/cache_management", new { action = "flush" }), HttpStatusCode.Forbidden);
        using var anonymous = Client();
        await Problem(await anonymous.PostAsJsonAsync("/cache_management", new { action = "info" }), HttpStatusCode.Unauthorized);
        using var admin = Client(apiKey: "dev-key-change-me");
        Assert.Equal(HttpStatusCode.OK, (await admin.PostAsJsonAsync("/cache_management", new { action = "info" })).StatusCode);
    }

    [Fact]
    public async Task A_dataset_belongs_to_its_uploader_another_person_cannot_plot_or_delete_it()
    {
        using var anonymous = Client();
        var owner = await SignUpAsync(anonymous, "ds-owner");
        var other = await SignUpAsync(anonymous, "ds-other");
        using var ownerClient = Client(bearer: owner.Token);
        using var otherClient = Client(bearer: other.Token);
        var csv = GatewayStackFixtureCsv(200);
        var saved = await Json(await ownerClient.PostAsync("/process_unified", new ByteArrayContent(csv) { Headers = { ContentType = new MediaTypeHeaderValue("text/csv") } }),
            HttpStatusCode.OK);
        var handle = saved.GetProperty("handle").GetString();

        // The owner reaches it (200, or 503 where the forecast model is not installed); the other person gets the same
        // 404 as for a handle that does not exist.
        var mine = await ownerClient.PostAsJsonAsync("/draw_a_plot", new { handle, index = 0 });
        Assert.True(mine.StatusCode is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable or HttpStatusCode.BadRequest, $"{(int)mine.StatusCode} {await mine.Content.ReadAsStringAsync()}");
        var theirs = await Problem(await otherClient.PostAsJsonAsync("/draw_a_plot", new { handle, index = 0 }), HttpStatusCode.NotFound);
        var unknown = await Problem(await otherClient.PostAsJsonAsync("/draw_a_plot", new { handle = Guid.NewGuid().ToString("N"), index = 0 }), HttpStatusCode.NotFound);
        Assert.Equal(theirs.GetProperty("title").GetString(), unknown.GetProperty("title").GetString());
        await Problem(await otherClient.PostAsJsonAsync("/cache_management", new { action = "delete", handle }), HttpStatusCode.Forbidden);
        // A service key with cgm:read that did not upload it does not reach it either; admin does.
        using var scale = Client(apiKey: ScaleKey);
        await Problem(await scale.PostAsJsonAsync("/draw_a_plot", new { handle, index = 0 }), HttpStatusCode.Forbidden);
        using var admin = Client(apiKey: "dev-key-change-me");
        Assert.NotEqual(HttpStatusCode.NotFound, (await admin.PostAsJsonAsync("/draw_a_plot", new { handle, index = 0 })).StatusCode);

        // A tail of the owner's data sent by the other person is not matched to the owner's longer dataset.
        var tail = Encoding.UTF8.GetBytes(string.Join('\n', Encoding.UTF8.GetString(csv).Split('\n').Where((_, i) => i == 0 || i > 100)));
        var otherSaved = await Json(await otherClient.PostAsync("/process_unified", new ByteArrayContent(tail) { Headers = { ContentType = new MediaTypeHeaderValue("text/csv") } }),
            HttpStatusCode.OK);
        Assert.NotEqual(handle, otherSaved.GetProperty("handle").GetString());
        Assert.False(otherSaved.GetProperty("reused").GetBoolean());
    }

    [Fact]
    public async Task Json_bombs_oversized_and_malformed_bodies_are_4xx_problems_never_5xx()
    {
        using var client = Client();
        var deep = new string('[', 2_000) + new string(']', 2_000);
        var bodies = new (string Path, HttpContent Body, HttpStatusCode Expected)[]
        {
            ("/api/v1/users/register", Text(deep), HttpStatusCode.BadRequest),
            ("/api/v1/auth/token", Text("""{"grant_type":{"a":{"b":{"c":{"d":{}}}}}}"""), HttpStatusCode.BadRequest),
            ("/api/v1/users/register", Text("""{"email":"x@example.org","password":""" + "\"" + new string('A', 1_000_000) + "\"}"), HttpStatusCode.RequestEntityTooLarge),
            ("/api/v1/auth/token", Text("not json"), HttpStatusCode.BadRequest),
            ("/api/v1/auth/token", Text("[1,2,3]"), HttpStatusCode.BadRequest),
            ("/api/v1/users/register", Text("""{"email":5,"password":true}"""), HttpStatusCode.BadRequest),
            ("/api/v1/auth/token", Text("""{"grant_type":"password","email":"a@example.org","password":"x\ud800"}"""), HttpStatusCode.BadRequest),
            ("/api/v1/users/register", Text("""{"email":"\ud800x@example.org","password":"Correct-horse-9"}"""), HttpStatusCode.BadRequest),
            ("/api/v1/users/register", Text("""{"email":"nul\u0000@example.org","password":"Correct-horse-9"}"""), HttpStatusCode.BadRequest),
        };
        foreach (var (path, body, expected) in bodies)
            await Problem(await client.PostAsync(path, body), expected);
    }

    private static HttpContent Text(string json) => new StringContent(json, Encoding.UTF8, "application/json");
    private static HttpContent Csv() => new ByteArrayContent(GatewayStackFixtureCsv(12)) { Headers = { ContentType = new MediaTypeHeaderValue("text/csv") } };
    private static byte[] GatewayStackFixtureCsv(int count) => Contract.GatewayStackFixture.RecentUnifiedCsv(count);
    private static object Measurement(string user) => Contract.GatewayStackFixture.Measurement(user, 80, DateTime.UtcNow.AddMinutes(-1));

    private static string Base64UrlEncode(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    private static byte[] Base64UrlDecode(string text)
    {
        var s = text.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(s + new string('=', (4 - s.Length % 4) % 4));
    }

    private static async Task<JsonElement> Json(HttpResponseMessage response, HttpStatusCode expected)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode} (expected {(int)expected}): {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    private static async Task<JsonElement> Problem(HttpResponseMessage response, HttpStatusCode expected)
    {
        var body = await Json(response, expected);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal((int)expected, body.GetProperty("status").GetInt32());
        return body;
    }
}
