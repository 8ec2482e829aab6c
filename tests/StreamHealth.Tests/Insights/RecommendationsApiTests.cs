using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Caching;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Insights;

/// <summary>GET /api/v1/recommendations and /api/v1/health-insights over real PostgreSQL and Redis: rules evaluated on
/// the stored daily aggregates, the answer cached near (in the gateway) and in Redis until the person's data changes (the
/// insights sink's drop: a DEL and an announcement every gateway hears),
/// PostgreSQL answering when Redis is down, and nobody reading another person's recommendations.</summary>
public sealed class RecommendationsApiTests(RecommendationsApiTests.Stores stores) : IClassFixture<RecommendationsApiTests.Stores>
{
    public sealed class Stores : IAsyncLifetime
    {
        private readonly MigratedDatabase _database = new();
        public string Database => _database.Name;
        public NpgsqlDataSource Postgres => _database.Postgres;
        public ConnectionMultiplexer Redis => _database.Redis;
        public WebApplicationFactory<Program> App { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            await _database.InitializeAsync();
            App = Gateway();
        }

        public WebApplicationFactory<Program> Gateway(params (string Key, string? Value)[] settings)
        {
            var all = LocalServices.Overrides(Database);
            foreach (var (key, value) in settings) all[key] = value;
            return new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
                b.UseEnvironment("Development").ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(all)));
        }

        public async Task DisposeAsync()
        {
            await App.DisposeAsync();
            await _database.DisposeAsync();
        }
    }

    private const string DevKey = "dev-key-change-me";

    [Fact]
    public async Task Recommendations_come_from_the_aggregates_are_stored_and_name_their_figures()
    {
        var (user, token) = await SignUpAsync();
        // Five days of 3,000 steps and 5 h of sleep, water on 2 days only (too few to judge).
        await SeedDaysAsync(user, "steps", 3000, days: 5);
        await SeedDaysAsync(user, "sleep_hours", 5, days: 5);
        await SeedDaysAsync(user, "water_ml", 500, days: 2);

        var answer = await GetJsonAsync(Bearer(token), $"/api/v1/recommendations/{user}?days=7");
        Assert.Equal(user, answer.GetProperty("user_id").GetString());
        Assert.Equal(7, answer.GetProperty("days").GetInt32());
        Assert.Equal("40-64", answer.GetProperty("age_band").GetString());   // no date of birth: 40 assumed
        var recs = answer.GetProperty("recommendations").EnumerateArray().ToList();
        Assert.Equal(new[] { "insufficient_sleep", "low_step_count" }, recs.Select(r => r.GetProperty("rule").GetString()!).Order().ToArray());
        var steps = recs.Single(r => r.GetProperty("rule").GetString() == "low_step_count");
        Assert.Equal(1, steps.GetProperty("priority").GetInt32());
        Assert.Equal(3000, steps.GetProperty("figures").GetProperty("steps_per_day").GetDouble());
        Assert.Equal(5, steps.GetProperty("figures").GetProperty("days_with_data").GetInt32());
        Assert.Contains("3,000 steps a day over the last 7 days (5 days with data)", steps.GetProperty("reason").GetString());

        // What was answered is kept, with the same ids.
        var history = await GetJsonAsync(Bearer(token), $"/api/v1/health-insights/user/{user}");
        var stored = history.GetProperty("insights").EnumerateArray().Select(i => i.GetProperty("insight_id").GetString()).Order().ToArray();
        Assert.Equal(recs.Select(r => r.GetProperty("insight_id").GetString()).Order().ToArray(), stored);
        Assert.Equal(3000, history.GetProperty("insights").EnumerateArray()
            .Single(i => i.GetProperty("rule").GetString() == "low_step_count").GetProperty("figures").GetProperty("steps_per_day").GetDouble());
    }

    [Fact]
    public async Task A_cached_answer_is_served_until_the_sink_drops_the_person_s_key()
    {
        var (user, token) = await SignUpAsync();
        await SeedDaysAsync(user, "steps", 2000, days: 4);
        var client = Bearer(token);
        var first = await GetJsonAsync(client, $"/api/v1/recommendations/{user}");
        // New data without invalidation: the cached answer (same generation time) still comes back.
        await SeedDaysAsync(user, "steps", 9000, days: 4, replace: true);
        var cached = await GetJsonAsync(client, $"/api/v1/recommendations/{user}");
        Assert.Equal(first.GetProperty("generated_at").GetString(), cached.GetProperty("generated_at").GetString());
        Assert.Single(cached.GetProperty("recommendations").EnumerateArray());
        // Another window is another entry of the same person's key.
        Assert.NotEqual(first.GetProperty("generated_at").GetString(),
            (await GetJsonAsync(client, $"/api/v1/recommendations/{user}?days=30")).GetProperty("generated_at").GetString());

        // A bare DEL of the Redis key is not an invalidation: this gateway's near copy still answers (and says so).
        await stores.Redis.GetDatabase().KeyDeleteAsync($"insights:recs:{user}");
        var near = await GetJsonAsync(client, $"/api/v1/recommendations/{user}");
        Assert.Equal(first.GetProperty("generated_at").GetString(), near.GetProperty("generated_at").GetString());

        // What the insights sink does after it stores new aggregates: the drop, which every gateway hears.
        await CacheInvalidation.DropAsync(stores.Redis.GetDatabase(), [(RedisKey)$"insights:recs:{user}"]);
        var fresh = await FreshAsync(client, user, first.GetProperty("generated_at").GetString()!);
        Assert.Empty(fresh.GetProperty("recommendations").EnumerateArray());
        var ttl = await stores.Redis.GetDatabase().KeyTimeToLiveAsync($"insights:recs:{user}");
        Assert.NotNull(ttl);
        Assert.InRange(ttl!.Value, TimeSpan.FromMinutes(59), TimeSpan.FromHours(1));

        var stats = await GetJsonAsync(Key(), "/api/v1/cache");
        var tier = stats.EnumerateArray().Single(t => t.GetProperty("tier").GetString() == "recommendations");
        Assert.True(tier.GetProperty("near_hits").GetInt64() >= 2);
        Assert.True(tier.GetProperty("hits").GetInt64() >= tier.GetProperty("near_hits").GetInt64());
        Assert.True(tier.GetProperty("misses").GetInt64() >= 3);
    }

    [Fact]
    public async Task The_near_cache_holds_at_most_its_configured_people_and_still_answers_everyone()
    {
        await using var small = stores.Gateway(("Gateway:NearCache:MaxPeople", "2"));
        var cache = small.Services.GetRequiredService<StreamHealth.Gateway.Insights.PersonalCache>();
        StreamTestKit.WaitFor(() => cache.NearListening, TimeSpan.FromSeconds(10), () => "gateway subscribed to the drops");
        var people = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            var (user, token) = await SignUpAsync();
            await SeedDaysAsync(user, "steps", 1000 + i, days: 3);
            var client = BearerOn(small, token);
            for (var read = 0; read < 2; read++)
                Assert.Equal(1000 + i, (await GetJsonAsync(client, $"/api/v1/recommendations/{user}")).GetProperty("recommendations")[0]
                    .GetProperty("figures").GetProperty("steps_per_day").GetDouble());
            people.Add(user);
        }
        var held = people.Count(u => cache.HoldsNear(StreamHealth.Gateway.Insights.CacheTier.Recommendations, u));
        Assert.InRange(held, 1, 2);
    }

    [Fact]
    public async Task A_drop_reaches_the_near_copies_of_every_gateway()
    {
        var (user, token) = await SignUpAsync();
        await SeedDaysAsync(user, "steps", 2500, days: 3);
        await using var second = stores.Gateway();
        var tier = StreamHealth.Gateway.Insights.CacheTier.Recommendations;
        var caches = new[] { stores.App, second }.Select(a => a.Services.GetRequiredService<StreamHealth.Gateway.Insights.PersonalCache>()).ToArray();
        StreamTestKit.WaitFor(() => caches.All(c => c.NearListening), TimeSpan.FromSeconds(10), () => "both gateways subscribed to the drops");
        var clients = new[] { Bearer(token), BearerOn(second, token) };
        // The first gateway loads and stores; the second takes the Redis copy; both then hold it near.
        var answers = new List<string>();
        foreach (var client in clients) answers.Add((await GetJsonAsync(client, $"/api/v1/recommendations/{user}")).GetProperty("generated_at").GetString()!);
        Assert.Equal(answers[0], answers[1]);
        Assert.All(caches, c => Assert.True(c.HoldsNear(tier, user)));

        await CacheInvalidation.DropAsync(stores.Redis.GetDatabase(), [(RedisKey)$"insights:recs:{user}"]);
        StreamTestKit.WaitFor(() => caches.All(c => !c.HoldsNear(tier, user)), TimeSpan.FromSeconds(5), () => "near copies dropped on both gateways");
        await SeedDaysAsync(user, "steps", 9000, days: 3, replace: true);
        foreach (var client in clients)
            Assert.Empty((await GetJsonAsync(client, $"/api/v1/recommendations/{user}")).GetProperty("recommendations").EnumerateArray());
    }

    [Fact]
    public async Task A_profile_write_personalises_the_rules_and_drops_the_cached_answer_and_profile()
    {
        var (user, token) = await SignUpAsync();
        await SeedDaysAsync(user, "steps", 7000, days: 4);
        var client = Bearer(token);
        var assumed = await GetJsonAsync(client, $"/api/v1/recommendations/{user}");
        Assert.Equal("40-64", assumed.GetProperty("age_band").GetString());
        Assert.Equal("low_step_count", assumed.GetProperty("recommendations")[0].GetProperty("rule").GetString());
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/api/v1/users/{user}")).StatusCode);   // cached now

        // 71 years old: 6,000 steps a day is the target from 65, so 7,000 is enough.
        var born = DateOnly.FromDateTime(DateTime.UtcNow).AddYears(-71).ToString("yyyy-MM-dd");
        var put = await client.PutAsJsonAsync($"/api/v1/users/{user}/profile", new { time_zone = "Europe/Paris", sex = "female", date_of_birth = born });
        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        var personal = await GetJsonAsync(client, $"/api/v1/recommendations/{user}");
        Assert.Equal("65+", personal.GetProperty("age_band").GetString());
        Assert.Equal("Europe/Paris", personal.GetProperty("time_zone").GetString());
        Assert.Empty(personal.GetProperty("recommendations").EnumerateArray());
        // The profile read after the write is the new one, not the cached old one; the cache keeps it sealed.
        var profile = await GetJsonAsync(client, $"/api/v1/users/{user}");
        Assert.Equal(born, profile.GetProperty("date_of_birth").GetString());
        var cached = await stores.Redis.GetDatabase().HashGetAsync($"insights:profile:{user}", "sealed");
        Assert.True(cached.HasValue);
        Assert.DoesNotContain(born, System.Text.Encoding.UTF8.GetString((byte[])cached!));
        Assert.Contains("v1.", System.Text.Encoding.UTF8.GetString((byte[])cached!));
    }

    [Fact]
    public async Task A_load_that_raced_an_invalidation_does_not_put_the_old_answer_back()
    {
        var (user, _) = await SignUpAsync();
        var cache = stores.App.Services.GetRequiredService<StreamHealth.Gateway.Insights.PersonalCache>();
        var tier = StreamHealth.Gateway.Insights.CacheTier.Recommendations;
        StreamTestKit.WaitFor(() => cache.NearListening, TimeSpan.FromSeconds(10), () => "gateway subscribed to the drops");
        // The load reads the old data, then the sink drops the key before the load stores its answer.
        var answered = await cache.GetOrLoadJsonAsync(tier, user, "7", async _ =>
        {
            await CacheInvalidation.DropAsync(stores.Redis.GetDatabase(), [tier.Key(user)]);
            return new { old = true };
        }, CancellationToken.None);
        Assert.Equal("{\"old\":true}", System.Text.Encoding.UTF8.GetString(answered!));
        Assert.False(await stores.Redis.GetDatabase().HashExistsAsync(tier.Key(user), "7"));
        Assert.False(cache.HoldsNear(tier, user));
        // That drop also reaches this gateway as an announcement, some time later (later still on a loaded machine), and drops
        // whatever near copy of the person it finds then. Wait for it: a drop of another key announced after it has arrived
        // (announcements come in order) once that key's near copy is gone.
        var sentinel = "sentinel-" + Guid.NewGuid().ToString("N")[..12];
        await cache.GetOrLoadJsonAsync(tier, sentinel, "7", _ => Task.FromResult<object?>(new { sentinel = true }), CancellationToken.None);
        Assert.True(cache.HoldsNear(tier, sentinel));
        await CacheInvalidation.DropAsync(stores.Redis.GetDatabase(), [tier.Key(sentinel)]);
        StreamTestKit.WaitFor(() => !cache.HoldsNear(tier, sentinel), TimeSpan.FromSeconds(10), () => "the drop announcements did not arrive");
        // Without a race the answer is stored, in Redis and near, and the next read is the stored one.
        await cache.GetOrLoadJsonAsync(tier, user, "7", _ => Task.FromResult<object?>(new { old = false }), CancellationToken.None);
        Assert.True(await stores.Redis.GetDatabase().HashExistsAsync(tier.Key(user), "7"));
        Assert.True(cache.HoldsNear(tier, user));
        var again = await cache.GetOrLoadJsonAsync<object>(tier, user, "7", _ => throw new InvalidOperationException("loaded although cached"), CancellationToken.None);
        Assert.Equal("{\"old\":false}", System.Text.Encoding.UTF8.GetString(again!));
    }

    [Fact]
    public async Task With_Redis_down_the_answer_comes_from_PostgreSQL_and_the_error_is_counted()
    {
        var (user, token) = await SignUpAsync();
        await SeedDaysAsync(user, "steps", 1500, days: 3);
        await using var app = stores.Gateway(("Redis:Port", "1"));   // nothing listens there
        var client = app.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        for (var i = 0; i < 2; i++)
        {
            var answer = await GetJsonAsync(client, $"/api/v1/recommendations/{user}");
            Assert.Equal("low_step_count", answer.GetProperty("recommendations")[0].GetProperty("rule").GetString());
        }
        var keyClient = app.CreateClient();
        keyClient.DefaultRequestHeaders.Add("X-Api-Key", DevKey);
        var tier = (await GetJsonAsync(keyClient, "/api/v1/cache")).EnumerateArray().Single(t => t.GetProperty("tier").GetString() == "recommendations");
        Assert.Equal(2, tier.GetProperty("errors").GetInt64());
        Assert.Equal(1.0, tier.GetProperty("error_rate").GetDouble());
        Assert.Equal(0, tier.GetProperty("hits").GetInt64());
    }

    [Fact]
    public async Task Another_person_s_recommendations_are_forbidden_and_bad_input_names_the_field()
    {
        var (a, tokenA) = await SignUpAsync();
        var (b, _) = await SignUpAsync();
        await SeedDaysAsync(b, "steps", 1000, days: 3);
        var asA = Bearer(tokenA);
        // Another person, and someone who does not exist: the same 403.
        Assert.Equal(HttpStatusCode.Forbidden, (await asA.GetAsync($"/api/v1/recommendations/{b}")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await asA.GetAsync($"/api/v1/recommendations/{Guid.NewGuid():N}")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await asA.GetAsync($"/api/v1/health-insights/user/{b}")).StatusCode);
        // A service key with insights:read sees anyone's; an unknown user is a 404 naming it.
        var unknown = Guid.NewGuid().ToString("N");
        var missing = await Key().GetAsync($"/api/v1/recommendations/{unknown}");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains(unknown, await missing.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, (await Key().GetAsync($"/api/v1/recommendations/{b}")).StatusCode);

        foreach (var (query, field) in new[] { ("days=0", "days"), ("days=91", "days"), ("days=seven", "days"), ("days=-1", "days") })
        {
            var bad = await asA.GetAsync($"/api/v1/recommendations/{a}?{query}");
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            Assert.True(JsonDocument.Parse(await bad.Content.ReadAsStringAsync()).RootElement.GetProperty("errors").TryGetProperty(field, out _), query);
        }
        var badLimit = await asA.GetAsync($"/api/v1/health-insights/user/{a}?limit=0");
        Assert.Equal(HttpStatusCode.BadRequest, badLimit.StatusCode);
        Assert.Contains("limit", await badLimit.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task The_local_day_window_follows_the_profile_time_zone()
    {
        var (user, token) = await SignUpAsync();
        // Kiritimati is UTC+14: its "today" is tomorrow in UTC for most of the day, so a row for the local today counts.
        await using (var cmd = stores.Postgres.CreateCommand("UPDATE identity.users SET time_zone = 'Pacific/Kiritimati', sex = 'male' WHERE user_id = $1"))
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = user });
            await cmd.ExecuteNonQueryAsync();
        }
        var zone = TimeZoneInfo.FindSystemTimeZoneById("Pacific/Kiritimati");
        var localToday = DateOnly.FromDateTime(TimeZoneInfo.ConvertTimeFromUtc(DateTime.UtcNow, zone));
        await SeedDaysAsync(user, "water_ml", 900, days: 1, lastDay: localToday);
        var answer = await GetJsonAsync(Bearer(token), $"/api/v1/recommendations/{user}?days=1");
        Assert.Equal("Pacific/Kiritimati", answer.GetProperty("time_zone").GetString());
        Assert.Equal(localToday.ToString("yyyy-MM-dd"), answer.GetProperty("to_date").GetString());
        var water = answer.GetProperty("recommendations").EnumerateArray().Single();
        Assert.Equal("low_water_intake", water.GetProperty("rule").GetString());
        Assert.Equal(2000, water.GetProperty("figures").GetProperty("target_water_ml_per_day").GetDouble());   // male
    }

    /// <summary>Daily aggregates as the insights topology's sink writes them (one row per local day, ending today in UTC
    /// unless <paramref name="lastDay"/> says otherwise).</summary>
    private async Task SeedDaysAsync(string user, string metric, double perDay, int days, bool replace = false, DateOnly? lastDay = null)
    {
        var today = lastDay ?? DateOnly.FromDateTime(DateTime.UtcNow);
        await using var cmd = stores.Postgres.CreateCommand($"""
            INSERT INTO insights.daily_metrics (user_id, metric, local_date, day_start, utc_offset_minutes, count, total, min, max, mean, last_value, last_time)
            SELECT $1, $2, d::date, d::timestamptz, 0, 1, $3, $3, $3, $3, $3, d::timestamptz + interval '12 hours'
            FROM generate_series($4::date - ($5 - 1), $4::date, interval '1 day') AS d
            {(replace ? "ON CONFLICT (user_id, metric, day_start, local_date) DO UPDATE SET total = EXCLUDED.total, min = EXCLUDED.min, mean = EXCLUDED.mean" : "")}
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = user });
        cmd.Parameters.Add(new NpgsqlParameter { Value = metric });
        cmd.Parameters.Add(new NpgsqlParameter { Value = perDay });
        cmd.Parameters.Add(new NpgsqlParameter { Value = today, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Date });
        cmd.Parameters.Add(new NpgsqlParameter { Value = days });
        await cmd.ExecuteNonQueryAsync();
    }

    private async Task<(string UserId, string Token)> SignUpAsync()
    {
        using var anonymous = stores.App.CreateClient();
        var email = $"recs-{Guid.NewGuid():N}@example.org";
        const string password = "Recommend-1";
        Assert.Equal(HttpStatusCode.Created, (await anonymous.PostAsJsonAsync("/api/v1/users/register", new { email, password })).StatusCode);
        var token = JsonDocument.Parse(await (await anonymous.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password }))
            .Content.ReadAsStringAsync()).RootElement;
        return (token.GetProperty("user_id").GetString()!, token.GetProperty("access_token").GetString()!);
    }

    private HttpClient Bearer(string token) => BearerOn(stores.App, token);

    private static HttpClient BearerOn(WebApplicationFactory<Program> app, string token)
    {
        var client = app.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    /// <summary>The answer once it is not the one generated at <paramref name="staleGeneratedAt"/>: a drop reaches the
    /// gateway's near copy through Redis pub/sub, a moment after the DEL.</summary>
    private static async Task<JsonElement> FreshAsync(HttpClient client, string user, string staleGeneratedAt)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (true)
        {
            var answer = await GetJsonAsync(client, $"/api/v1/recommendations/{user}");
            if (answer.GetProperty("generated_at").GetString() != staleGeneratedAt) return answer;
            Assert.True(DateTime.UtcNow < deadline, "the drop did not reach the gateway's near copy within 5 s");
            await Task.Delay(20);
        }
    }

    private HttpClient Key()
    {
        var client = stores.App.CreateClient();
        client.DefaultRequestHeaders.Add("X-Api-Key", DevKey);
        return client;
    }

    private static async Task<JsonElement> GetJsonAsync(HttpClient client, string path)
    {
        var response = await client.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }
}
