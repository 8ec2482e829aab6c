using System.Globalization;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Storage;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Pipeline;

namespace StreamHealth.Tests.Gateway;

/// <summary>The /api/weight read endpoints over the real PostgreSQL and Redis of the test profile.
/// One migrated database for the class; every test uses user ids of its own (Redis is shared).</summary>
// Solo: one of its tests reads the gateway's own OpenTelemetry series (SoloCollection says why).
[Collection(SoloCollection.Name)]
public sealed class WeightReadApiTests(MigratedDatabase stores) : IClassFixture<MigratedDatabase>
{
    private const string Key = "tests-key-0123456789abcdef";
    private const string OtherClientKey = "tests-other-client-0123456789";

    private sealed record Row(
        string UserId, string MeasurementId, DateTime MeasuredAt, double RawWeightKg, bool Accepted, double FilteredWeightKg,
        bool NeedsInitialization = false, string[]? Reasons = null, string Source = "connected_scale");

    [Fact]
    public async Task Weight_endpoints_answer_401_problem_naming_the_header_without_or_with_a_wrong_key()
    {
        await using var app = Gateway();
        using var anonymous = app.CreateClient();
        var path = $"/api/weight/{NewUser()}/latest";

        var missing = await anonymous.GetAsync(path);
        var missingBody = await Problem(missing, HttpStatusCode.Unauthorized);
        Assert.Contains("X-Api-Key", missingBody.GetProperty("title").GetString());
        Assert.Contains("no X-Api-Key header", missingBody.GetProperty("detail").GetString());
        Assert.Contains("X-Api-Key", missing.Headers.WwwAuthenticate.ToString());

        foreach (var wrong in new[] { "not-a-configured-key-at-all", "dev-key-change-me-but-not-quite" })
        {
            var response = await Send(app, HttpMethod.Get, $"/api/weight/{NewUser()}/history", wrong);
            var body = await Problem(response, HttpStatusCode.Unauthorized);
            Assert.Contains("X-Api-Key", body.GetProperty("title").GetString());
            Assert.Contains("does not hold a key", body.GetProperty("detail").GetString());
        }

        // The same request with a configured key gets through (404: the user is unknown), and the
        // operational reads stay open.
        Assert.Equal(HttpStatusCode.NotFound, (await Send(app, HttpMethod.Get, path, Key)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/openapi/v1.json")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/")).StatusCode);
    }

    [Fact]
    public async Task Latest_comes_from_redis_when_the_cache_holds_the_user()
    {
        var user = NewUser();
        var at = new DateTime(2026, 3, 1, 8, 0, 0, 250, DateTimeKind.Utc);
        await WeightLatestCache.WriteAsync(stores.Redis.GetDatabase(), new WeightResult
        {
            UserId = user, MeasurementId = "m-redis", EventTimeUnixMs = new DateTimeOffset(at).ToUnixTimeMilliseconds(),
            FilteredWeightKg = 81.25, TrendKgPerWeek = -0.35, Confidence = 0.9, RawWeightKg = 81.9, Accepted = true,
        });
        // PostgreSQL holds an older value: Redis must win.
        await Seed(new Row(user, "m-pg", at.AddDays(-1), 83, true, 83.1));

        await using var app = Gateway();
        var response = await Send(app, HttpMethod.Get, $"/api/weight/{user}/latest", Key);
        var body = await Json(response, HttpStatusCode.OK);
        Assert.Equal("redis", body.GetProperty("source").GetString());
        Assert.Equal(user, body.GetProperty("user_id").GetString());
        Assert.Equal("m-redis", body.GetProperty("measurement_id").GetString());
        Assert.Equal(81.25, body.GetProperty("filtered_weight").GetDouble());
        Assert.Equal(-0.35, body.GetProperty("trend_kg_per_week").GetDouble());
        Assert.Equal(0.9, body.GetProperty("confidence").GetDouble());
        Assert.Equal(81.9, body.GetProperty("raw_weight").GetDouble());
        Assert.True(body.GetProperty("accepted").GetBoolean());
        Assert.False(body.GetProperty("needs_initialization").GetBoolean());
        AssertUtc(at, body.GetProperty("timestamp").GetString()!);
    }

    [Fact]
    public async Task Latest_falls_back_to_postgres_when_redis_has_no_entry()
    {
        var user = NewUser();
        var t0 = new DateTime(2026, 2, 1, 7, 0, 0, DateTimeKind.Utc);
        await Seed(
            new Row(user, "m-old", t0, 90.4, true, 90.0),
            new Row(user, "m-latest-accepted", t0.AddDays(2), 89.2, true, 89.5),
            new Row(user, "m-rejected-later", t0.AddDays(3), 120, false, 89.4, Reasons: ["outlier"]),
            new Row(user, "m-buffering-later", t0.AddDays(4), 88, true, 0, NeedsInitialization: true),
            new Row(NewUser(), "m-other-user", t0.AddDays(5), 70, true, 70.1));

        await using var app = Gateway();
        var body = await Json(await Send(app, HttpMethod.Get, $"/api/weight/{user}/latest", Key), HttpStatusCode.OK);
        Assert.Equal("postgres", body.GetProperty("source").GetString());
        Assert.Equal("m-latest-accepted", body.GetProperty("measurement_id").GetString());
        Assert.Equal(89.5, body.GetProperty("filtered_weight").GetDouble());
        Assert.Equal(89.2, body.GetProperty("raw_weight").GetDouble());
        AssertUtc(t0.AddDays(2), body.GetProperty("timestamp").GetString()!);
    }

    [Fact]
    public async Task Latest_falls_back_to_postgres_when_redis_is_down()
    {
        var user = NewUser();
        var at = new DateTime(2026, 2, 10, 6, 30, 0, DateTimeKind.Utc);
        await Seed(new Row(user, "m-1", at, 75.5, true, 75.2));

        await using var app = Gateway(("Redis:Port", "1"));   // nothing listens there
        var body = await Json(await Send(app, HttpMethod.Get, $"/api/weight/{user}/latest", Key), HttpStatusCode.OK);
        Assert.Equal("postgres", body.GetProperty("source").GetString());
        Assert.Equal(75.2, body.GetProperty("filtered_weight").GetDouble());
    }

    [Fact]
    public async Task Latest_is_404_problem_naming_the_user_when_neither_store_has_it()
    {
        var user = NewUser();
        // Only a buffering row: no filtered weight exists yet.
        await Seed(new Row(user, "m-buffering", DateTime.UtcNow.AddDays(-1), 80, true, 0, NeedsInitialization: true));
        await using var app = Gateway();
        var body = await Problem(await Send(app, HttpMethod.Get, $"/api/weight/{user}/latest", Key), HttpStatusCode.NotFound);
        Assert.Contains(user, body.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task History_filters_the_range_orders_by_time_and_returns_reasons()
    {
        var user = NewUser();
        var t0 = new DateTime(2026, 1, 10, 0, 0, 0, DateTimeKind.Utc);
        // Inserted out of order; two rows fall outside [from, to), one belongs to someone else.
        await Seed(
            new Row(user, "m3", t0.AddDays(3), double.NaN, false, 80.2, Reasons: ["unknown_unit"]),
            new Row(user, "m1", t0.AddDays(1), 80.9, true, 0, NeedsInitialization: true, Reasons: ["buffered_for_initialization"]),
            new Row(user, "m-before", t0, 81, true, 80.8),
            new Row(user, "m2", t0.AddDays(2), 80.4, true, 80.5, Reasons: ["initialized", "accepted"], Source: "care_team"),
            new Row(user, "m-at-to", t0.AddDays(4), 80, true, 80.1),
            new Row(NewUser(), "m-other", t0.AddDays(2), 60, true, 60));

        await using var app = Gateway();
        var range = $"from={Iso(t0.AddDays(1))}&to={Iso(t0.AddDays(4))}";
        var body = await Json(await Send(app, HttpMethod.Get, $"/api/weight/{user}/history?{range}", Key), HttpStatusCode.OK);
        Assert.Equal(user, body.GetProperty("user_id").GetString());
        Assert.False(body.GetProperty("truncated").GetBoolean());
        var rows = body.GetProperty("measurements").EnumerateArray().ToList();
        Assert.Equal(["m1", "m2", "m3"], rows.Select(r => r.GetProperty("measurement_id").GetString()));
        AssertUtc(t0.AddDays(1), rows[0].GetProperty("timestamp").GetString()!);
        Assert.Equal(JsonValueKind.Null, rows[0].GetProperty("filtered_weight").ValueKind);   // buffering: no estimate yet
        Assert.True(rows[0].GetProperty("needs_initialization").GetBoolean());
        Assert.Equal(["initialized", "accepted"], rows[1].GetProperty("reasons").EnumerateArray().Select(r => r.GetString()));
        Assert.Equal("care_team", rows[1].GetProperty("source").GetString());
        Assert.Equal(80.5, rows[1].GetProperty("filtered_weight").GetDouble());
        Assert.Equal(-0.25, rows[1].GetProperty("prediction_error").GetDouble());
        Assert.Equal(JsonValueKind.Null, rows[2].GetProperty("raw_weight").ValueKind);   // NaN in PostgreSQL
        Assert.False(rows[2].GetProperty("accepted").GetBoolean());
        Assert.Equal(["unknown_unit"], rows[2].GetProperty("reasons").EnumerateArray().Select(r => r.GetString()));

        var limited = await Json(await Send(app, HttpMethod.Get, $"/api/weight/{user}/history?{range}&limit=2", Key), HttpStatusCode.OK);
        Assert.True(limited.GetProperty("truncated").GetBoolean());
        Assert.Equal(["m1", "m2"], limited.GetProperty("measurements").EnumerateArray().Select(r => r.GetProperty("measurement_id").GetString()));

        // Defaults: the last 90 days up to now; an unknown user gets an empty list, not 404.
        var unknown = await Json(await Send(app, HttpMethod.Get, $"/api/weight/{NewUser()}/history", Key), HttpStatusCode.OK);
        Assert.Empty(unknown.GetProperty("measurements").EnumerateArray());
        Assert.Equal(1000, unknown.GetProperty("limit").GetInt32());
        var span = DateTime.Parse(unknown.GetProperty("to").GetString()!, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind)
                   - DateTime.Parse(unknown.GetProperty("from").GetString()!, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);
        Assert.Equal(TimeSpan.FromDays(90), span);
    }

    [Theory]
    [InlineData("history?from=yesterday", "from", "yesterday")]
    [InlineData("history?to=2026-13-45T00:00:00Z", "to", "2026-13-45")]
    [InlineData("history?from=01/02/2026", "from", "01/02/2026")]
    [InlineData("history?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from", "is after to")]
    [InlineData("history?limit=0", "limit", "'0'")]
    [InlineData("history?limit=10001", "limit", "'10001'")]
    [InlineData("history?limit=ten", "limit", "'ten'")]
    public async Task History_bad_query_values_are_400_problems_naming_the_field(string pathAndQuery, string field, string mentioned)
    {
        await using var app = Gateway();
        var body = await Problem(await Send(app, HttpMethod.Get, $"/api/weight/{NewUser()}/{pathAndQuery}", Key), HttpStatusCode.BadRequest);
        var errors = body.GetProperty("errors");
        Assert.Equal([field], errors.EnumerateObject().Select(e => e.Name));
        Assert.Contains(mentioned, errors.GetProperty(field)[0].GetString());
    }

    [Theory]
    [InlineData("latest")]
    [InlineData("history")]
    public async Task Bad_userId_is_a_400_problem_naming_userId(string endpoint)
    {
        await using var app = Gateway();
        foreach (var userId in new[] { "has%20space", "semi;colon", new string('a', 129) })
        {
            var body = await Problem(await Send(app, HttpMethod.Get, $"/api/weight/{userId}/{endpoint}", Key), HttpStatusCode.BadRequest);
            Assert.True(body.GetProperty("errors").TryGetProperty("userId", out var messages), body.ToString());
            var shown = Uri.UnescapeDataString(userId);
            Assert.Contains(shown[..Math.Min(20, shown.Length)], messages[0].GetString());
        }
        // The longest and widest valid id is accepted (404: nobody has it).
        var widest = ("Az09._:-" + new string('x', 120))[..128];
        Assert.Equal(HttpStatusCode.NotFound, (await Send(app, HttpMethod.Get, $"/api/weight/{widest}/latest", Key)).StatusCode);
    }

    [Fact]
    public async Task Rate_limit_answers_429_with_retry_after_once_a_clients_bucket_is_empty()
    {
        await using var app = Gateway(("Gateway:RateLimit:PerCaller:PermitsPerSecond", "1"), ("Gateway:RateLimit:PerCaller:Burst", "2"));
        var path = $"/api/weight/{NewUser()}/history";
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? rejected = null;
        for (var i = 0; i < 10 && rejected is null; i++)
        {
            var response = await Send(app, HttpMethod.Get, path, Key);
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests) rejected = response;
        }
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK], statuses.Take(2));
        Assert.NotNull(rejected);
        Assert.InRange(rejected.Headers.RetryAfter?.Delta?.TotalSeconds ?? -1, 1, 2);
        var body = await Problem(rejected, HttpStatusCode.TooManyRequests);
        Assert.Contains("This caller may send 1 requests/s", body.GetProperty("detail").GetString());

        // Buckets are per client: another key still gets through.
        Assert.Equal(HttpStatusCode.OK, (await Send(app, HttpMethod.Get, path, OtherClientKey)).StatusCode);
    }

    [Fact]
    public async Task Prometheus_scrapes_metrics_without_credentials()
    {
        await using var app = Gateway();
        using var client = app.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/openapi/v1.json")).StatusCode);
        string text = "";
        // The exporter caches a scrape for a moment: ask until the request above and the probes' gauges are in.
        StreamTestKit.WaitFor(() => (text = client.GetStringAsync("/metrics").Result).Contains("http_server_request_duration_seconds_count")
                                    && text.Contains("streamhealth_dependency_up{"), TimeSpan.FromSeconds(30), () => text);
        // This gateway has PostgreSQL and no Kafka: the probes say so.
        Assert.Matches(@"streamhealth_dependency_up\{[^}]*dependency=""postgres""[^}]*\} 1", text);
        Assert.Matches(@"streamhealth_dependency_up\{[^}]*dependency=""kafka""[^}]*\} 0", text);
        Assert.Contains("http_route=\"/openapi/{documentName}.json\"", text);
        // Runtime instrumentation: the garbage collector's counts.
        Assert.Contains("gc_collections", text);
    }

    [Fact]
    public async Task The_api_reference_at_docs_is_open_and_served_without_a_cdn()
    {
        await using var app = Gateway();
        using var client = app.CreateClient();
        var page = await client.GetAsync("/docs");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        var html = await page.Content.ReadAsStringAsync();
        // Scalar's script resolves the source against the app's root (the page's path less /docs/): /openapi/v1.json.
        Assert.Contains("\"url\":\"openapi/v1.json\"", html);
        // Every script it loads is the gateway's own (an air-gapped clinic network still gets its reference).
        var scripts = System.Text.RegularExpressions.Regex.Matches(html, "<script[^>]*src=\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(scripts);
        foreach (var src in scripts)
        {
            Assert.DoesNotContain("://", src);
            var script = await client.GetAsync(new Uri(page.RequestMessage!.RequestUri!, src));
            Assert.Equal(HttpStatusCode.OK, script.StatusCode);
        }
    }

    [Fact]
    public async Task OpenApi_document_lists_the_weight_endpoints_and_the_api_key_scheme()
    {
        await using var app = Gateway();
        using var client = app.CreateClient();
        var doc = JsonDocument.Parse(await client.GetStringAsync("/openapi/v1.json")).RootElement;
        var paths = doc.GetProperty("paths");
        foreach (var (path, operationId) in new[] { ("/api/weight/{userId}/latest", "GetLatestWeight"), ("/api/weight/{userId}/history", "GetWeightHistory") })
        {
            var get = paths.GetProperty(path).GetProperty("get");
            Assert.Equal(operationId, get.GetProperty("operationId").GetString());
            Assert.False(string.IsNullOrEmpty(get.GetProperty("description").GetString()));
            Assert.True(get.GetProperty("security")[0].TryGetProperty("ApiKey", out _), get.ToString());
            Assert.True(get.GetProperty("responses").TryGetProperty("401", out _), path);
        }
        Assert.True(paths.TryGetProperty("/health", out _));
        Assert.False(paths.GetProperty("/health").GetProperty("get").TryGetProperty("security", out _));
        var scheme = doc.GetProperty("components").GetProperty("securitySchemes").GetProperty("ApiKey");
        Assert.Equal("apiKey", scheme.GetProperty("type").GetString());
        Assert.Equal("header", scheme.GetProperty("in").GetString());
        Assert.Equal("X-Api-Key", scheme.GetProperty("name").GetString());
        var latestSchema = doc.GetProperty("components").GetProperty("schemas").GetProperty("LatestWeight").GetProperty("properties");
        Assert.True(latestSchema.TryGetProperty("filtered_weight", out _), latestSchema.ToString());
    }

    [Fact]
    public async Task Dev_credentials_are_local_only_and_production_must_bring_its_own()
    {
        var user = NewUser();
        // Development (the local stack, the tests): gateway.Development.json's key has every scope.
        await using (var local = Gateway(withTestKeys: false))
            Assert.Equal(HttpStatusCode.NotFound, (await Send(local, HttpMethod.Get, $"/api/weight/{user}/latest", "dev-key-change-me")).StatusCode);

        // Production reads no dev file: without a signing key the gateway does not start, and says which setting.
        await using (var bare = Gateway(false, "Production"))
            Assert.Contains("Gateway:Identity:SigningKey is not set", Assert.ThrowsAny<Exception>(() => bare.CreateClient()).ToString());
        var signing = ("Gateway:Identity:SigningKey", (string?)("prod-signing-" + Guid.NewGuid().ToString("N")));
        await using (var shortKey = Gateway(false, "Production", ("Gateway:Identity:SigningKey", "too-short")))
            Assert.Contains("Gateway:Identity:SigningKey is 9 characters", Assert.ThrowsAny<Exception>(() => shortKey.CreateClient()).ToString());
        await using (var devSigning = Gateway(false, "Production", ("Gateway:Identity:SigningKey", StreamHealth.Gateway.GatewayIdentityOptions.DevelopmentSigningKey)))
            Assert.Contains("local development key", Assert.ThrowsAny<Exception>(() => devSigning.CreateClient()).ToString());
        await using (var devKey = Gateway(false, "Production", signing, ("Gateway:ApiKeys:0:Key", "dev-key-change-me")))
            Assert.Contains("Gateway:ApiKeys holds the local development key", Assert.ThrowsAny<Exception>(() => devKey.CreateClient()).ToString());

        // The field-encryption key likewise: required, and the dev key is refused.
        await using (var noFieldKey = Gateway(false, "Production", signing))
            Assert.Contains("Gateway:Encryption:ActiveKeyId is not set", Assert.ThrowsAny<Exception>(() => noFieldKey.CreateClient()).ToString());
        await using (var devFieldKey = Gateway(false, "Production", signing, ("Gateway:Encryption:ActiveKeyId", "local-dev"),
                         ("Gateway:Encryption:Keys:local-dev", StreamHealth.Gateway.GatewayEncryptionOptions.DevelopmentKey)))
            Assert.Contains("Gateway:Encryption:Keys:local-dev is the local development key", Assert.ThrowsAny<Exception>(() => devFieldKey.CreateClient()).ToString());

        // Production with its own secrets: the dev key is unknown, its own key works within its scopes.
        var productionKey = "prod-" + Guid.NewGuid().ToString("N");
        await using var production = Gateway(false, "Production", signing, ("Gateway:ApiKeys:0:Key", productionKey),
            ("Gateway:ApiKeys:0:Scopes", "weights:read"), ("Gateway:Encryption:ActiveKeyId", "k1"),
            ("Gateway:Encryption:Keys:k1", Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32))));
        Assert.Equal(HttpStatusCode.Unauthorized, (await Send(production, HttpMethod.Get, $"/api/weight/{user}/latest", "dev-key-change-me")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Send(production, HttpMethod.Get, $"/api/weight/{user}/latest", productionKey)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await Send(production, HttpMethod.Get, $"/api/v1/cgm/{user}/latest", productionKey)).StatusCode);
    }

    private WebApplicationFactory<Program> Gateway(params (string Key, string? Value)[] settings) => Gateway(true, settings);

    private WebApplicationFactory<Program> Gateway(bool withTestKeys, params (string Key, string? Value)[] settings) =>
        Gateway(withTestKeys, "Development", settings);

    private WebApplicationFactory<Program> Gateway(bool withTestKeys, string environment, params (string Key, string? Value)[] settings)
    {
        var all = LocalServices.Overrides(stores.Name);
        if (withTestKeys)
        {
            all["Gateway:ApiKeys:0:Key"] = Key;
            all["Gateway:ApiKeys:0:Name"] = "tests";
            all["Gateway:ApiKeys:0:Scopes"] = "weights:read weights:write";
            all["Gateway:ApiKeys:1:Key"] = OtherClientKey;
            all["Gateway:ApiKeys:1:Name"] = "tests-other";
            all["Gateway:ApiKeys:1:Scopes"] = "weights:read";
        }
        foreach (var (key, value) in settings) all[key] = value;
        return new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
            b.UseEnvironment(environment).ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(all)));
    }

    private static async Task<HttpResponseMessage> Send(WebApplicationFactory<Program> app, HttpMethod method, string path, string apiKey)
    {
        using var client = app.CreateClient();
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Add("X-Api-Key", apiKey);
        return await client.SendAsync(request);
    }

    private static async Task<JsonElement> Json(HttpResponseMessage response, HttpStatusCode expected)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    private static async Task<JsonElement> Problem(HttpResponseMessage response, HttpStatusCode expected)
    {
        var body = await Json(response, expected);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal((int)expected, body.GetProperty("status").GetInt32());
        return body;
    }

    private async Task Seed(params Row[] rows)
    {
        await using var conn = new NpgsqlConnection(stores.ConnectionString);
        await conn.OpenAsync();
        var offset = 0L;
        foreach (var r in rows)
        {
            await using var cmd = new NpgsqlCommand("""
                INSERT INTO weights.measurements (measurement_id, user_id, measured_at, source, raw_weight_kg, accepted,
                    filtered_weight_kg, trend_kg_per_week, confidence, prediction_error_kg, normalized_innovation,
                    needs_initialization, needs_reinitialization, reasons, source_partition, source_offset)
                VALUES ($1, $2, $3, $4, $5, $6, $7, -0.2, 0.8, -0.25, 0.5, $8, false, $9, 0, $10)
                """, conn);
            foreach (var value in new object[] { r.MeasurementId, r.UserId, r.MeasuredAt, r.Source, r.RawWeightKg, r.Accepted,
                         r.FilteredWeightKg, r.NeedsInitialization, r.Reasons ?? ["accepted"], offset++ })
                cmd.Parameters.Add(new NpgsqlParameter { Value = value });
            await cmd.ExecuteNonQueryAsync();
        }
    }

    private static string NewUser() => "user-" + Guid.NewGuid().ToString("N");

    private static string Iso(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    private static void AssertUtc(DateTime expected, string timestamp)
    {
        Assert.EndsWith("Z", timestamp);
        Assert.Equal(expected, DateTime.Parse(timestamp, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind));
    }
}
