using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using StreamHealth.Insights.Nutrition;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Gateway.Contract;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Gateway.PeopleOnTheStack;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using NutritionLog = StreamHealth.Schemas.Avro.Insights.NutritionLog;

namespace StreamHealth.Tests.Gateway;

/// <summary>/api/v1/nutrition-logs over the whole stack: the gateway produces to insights.nutrition (embedded Kafka, Avro
/// through the registry), the nutrition sink stores into insights.nutrition_logs, and the GET reads what the sink wrote.</summary>
public sealed class NutritionLogsApiTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    private const string Path = "/api/v1/nutrition-logs/";

    /// <summary>A plausible lunch: 4·30 + 4·60 + 9·20 = 540 kcal of macros for 560 kcal stated.</summary>
    public static Dictionary<string, object?> Meal(string user, DateTimeOffset eatenAt, string? id = null) => new()
    {
        ["user_id"] = user, ["log_id"] = id, ["eaten_at"] = eatenAt.ToString("O"), ["meal"] = "lunch",
        ["description"] = "Lentil soup with bread", ["calories_kcal"] = 560, ["protein_g"] = 30, ["carbohydrate_g"] = 60, ["fat_g"] = 20,
        ["fiber_g"] = 12.5, ["sugar_g"] = 8, ["sodium_mg"] = 900,
    };

    [Fact]
    public async Task A_logged_meal_is_stored_by_the_sink_and_read_back_by_user()
    {
        var (user, token) = await SignUpAsync(f, "meal-a");
        var client = Bearer(f, token);
        var at = DateTimeOffset.UtcNow.AddMinutes(-30);
        var accepted = await JsonAsync(await client.PostAsJsonAsync(Path, Meal(user, at, "lunch-" + Guid.NewGuid().ToString("N"))), HttpStatusCode.Accepted);
        Assert.Equal(560, accepted.GetProperty("calories_kcal").GetDouble());
        // No log_id and no optional nutrients: the gateway names the log, the optional ones stay null.
        var bare = Meal(user, at.AddMinutes(5));
        foreach (var optional in new[] { "log_id", "fiber_g", "sugar_g", "sodium_mg" }) bare.Remove(optional);
        var named = await JsonAsync(await client.PostAsJsonAsync(Path, With(bare, "meal", "snack")), HttpStatusCode.Accepted);
        Assert.Matches("^[0-9a-f]{32}$", named.GetProperty("log_id").GetString());

        WaitFor(() => Count(user) == 2, TimeSpan.FromSeconds(60), () => $"stored {Count(user)} of 2");
        var page = await client.GetFromJsonAsync<JsonElement>($"{Path}user/{user}");
        var logs = page.GetProperty("logs").EnumerateArray().ToList();
        Assert.Equal(["lunch", "snack"], logs.Select(l => l.GetProperty("meal").GetString()));
        Assert.Equal(accepted.GetProperty("log_id").GetString(), logs[0].GetProperty("log_id").GetString());
        Assert.Equal("Lentil soup with bread", logs[0].GetProperty("description").GetString());
        Assert.Equal(12.5, logs[0].GetProperty("fiber_g").GetDouble());
        Assert.Equal(900, logs[0].GetProperty("sodium_mg").GetDouble());
        Assert.Equal(at.ToUnixTimeMilliseconds(), new DateTimeOffset(logs[0].GetProperty("eaten_at").GetDateTime()).ToUnixTimeMilliseconds());
        Assert.Equal(JsonValueKind.Null, logs[1].GetProperty("fiber_g").ValueKind);
        Assert.Equal(JsonValueKind.Null, page.GetProperty("next_cursor").ValueKind);
        // A service key with nutrition:read (the dev key holds every scope) reads any person's.
        Assert.Equal(2, (await f.Client().GetFromJsonAsync<JsonElement>($"{Path}user/{user}")).GetProperty("logs").GetArrayLength());
    }

    [Fact]
    public async Task Pages_follow_the_cursor_in_time_order_within_the_range_and_bad_query_values_are_400s()
    {
        var user = GatewayStackFixture.NewUser("meal-page");
        var client = f.Client();
        var now = DateTimeOffset.UtcNow;
        var start = new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, now.Minute, now.Second, TimeSpan.Zero).AddHours(-3);
        for (var i = 0; i < 5; i++)
            await JsonAsync(await client.PostAsJsonAsync(Path, Meal(user, start.AddMinutes(10 * i), $"meal-{user}-{i}")), HttpStatusCode.Accepted);
        WaitFor(() => Count(user) == 5, TimeSpan.FromSeconds(60), () => $"stored {Count(user)} of 5");

        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await client.GetFromJsonAsync<JsonElement>($"{Path}user/{user}?limit=2" + (cursor is null ? "" : "&cursor=" + cursor));
            seen.AddRange(page.GetProperty("logs").EnumerateArray().Select(m => m.GetProperty("log_id").GetString()!));
            cursor = page.GetProperty("next_cursor").GetString();
            pages++;
        } while (cursor is not null && pages < 10);
        Assert.Equal(3, pages);
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"meal-{user}-{i}"), seen);

        var from = Uri.EscapeDataString(start.AddMinutes(10).ToString("O"));
        var to = Uri.EscapeDataString(start.AddMinutes(30).ToString("O"));
        var ranged = await client.GetFromJsonAsync<JsonElement>($"{Path}user/{user}?from={from}&to={to}");
        Assert.Equal([$"meal-{user}-1", $"meal-{user}-2"], ranged.GetProperty("logs").EnumerateArray().Select(m => m.GetProperty("log_id").GetString()!));

        foreach (var (query, field) in new[] { ("limit=0", "limit"), ("limit=1001", "limit"), ("cursor=nope!", "cursor"), ("from=yesterday", "from"),
                     ($"from={to}&to={from}", "from") })
            Assert.Contains(field, ErrorFields(await ProblemAsync(await client.GetAsync($"{Path}user/{user}?{query}"), HttpStatusCode.BadRequest)));
        Assert.Contains("userId", ErrorFields(await ProblemAsync(await client.GetAsync($"{Path}user/bad%20id"), HttpStatusCode.BadRequest)));
    }

    [Fact]
    public async Task A_person_with_no_meals_gets_an_empty_page_not_404()
    {
        var page = await JsonAsync(await f.Client().GetAsync($"{Path}user/{GatewayStackFixture.NewUser("nobody")}"), HttpStatusCode.OK);
        Assert.Empty(page.GetProperty("logs").EnumerateArray());
        Assert.Equal(JsonValueKind.Null, page.GetProperty("next_cursor").ValueKind);
    }

    [Fact]
    public async Task A_retry_is_accepted_and_stored_once_and_reusing_the_id_for_other_content_is_a_conflict()
    {
        var (user, token) = await SignUpAsync(f, "meal-retry");
        var client = Bearer(f, token);
        var id = "retry-" + Guid.NewGuid().ToString("N");
        var at = DateTimeOffset.UtcNow.AddMinutes(-45);
        Assert.Equal(HttpStatusCode.Accepted, (await client.PostAsJsonAsync(Path, Meal(user, at, id))).StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, (await client.PostAsJsonAsync(Path, Meal(user, at, id))).StatusCode);
        foreach (var (field, value) in new (string, object)[] { ("calories_kcal", 600), ("description", "Lentil soup"), ("meal", "dinner"),
                     ("eaten_at", at.AddSeconds(1).ToString("O")), ("sodium_mg", 901) })
        {
            var conflict = await ProblemAsync(await client.PostAsJsonAsync(Path, With(Meal(user, at, id), field, value)), HttpStatusCode.Conflict);
            Assert.Contains("log_id", conflict.GetProperty("detail").GetString());
        }
        // Another person's reuse of the id is a conflict too, without saying whose it is.
        var (other, otherToken) = await SignUpAsync(f, "meal-retry-b");
        var theirs = await ProblemAsync(await Bearer(f, otherToken).PostAsJsonAsync(Path, Meal(other, at, id)), HttpStatusCode.Conflict);
        Assert.DoesNotContain(user, theirs.GetRawText());

        WaitFor(() => Count(user) == 1, TimeSpan.FromSeconds(60), () => $"stored {Count(user)}");
        await Task.Delay(1500);   // the retry's record has reached the sink too by now; still one row
        Assert.Equal(1, Count(user));
        Assert.Equal(0, Count(other));
    }

    [Theory]
    [InlineData("user_id", null)]
    [InlineData("user_id", "a b")]
    [InlineData("log_id", "a/b")]
    [InlineData("eaten_at", null)]
    [InlineData("eaten_at", "2026-01-31T12:00:00")]
    [InlineData("eaten_at", "2999-01-01T00:00:00Z")]
    [InlineData("meal", "brunch")]
    [InlineData("meal", null)]
    [InlineData("description", "")]
    [InlineData("description", "soup\u0001")]
    [InlineData("description", "LONG")]
    [InlineData("calories_kcal", null)]
    [InlineData("calories_kcal", "560")]
    [InlineData("calories_kcal", 10_001.0)]
    [InlineData("protein_g", -1.0)]
    [InlineData("carbohydrate_g", 2_001.0)]
    [InlineData("fat_g", null)]
    [InlineData("fiber_g", 2_001.0)]
    [InlineData("sugar_g", "8")]
    [InlineData("sodium_mg", 20_001.0)]
    public async Task Bad_input_is_a_400_naming_the_field(string field, object? value)
    {
        var meal = Meal(GatewayStackFixture.NewUser("bad"), DateTimeOffset.UtcNow.AddMinutes(-5));
        meal[field] = value as string == "LONG" ? new string('x', NutritionRules.MaxDescriptionLength + 1) : value;
        var problem = await ProblemAsync(await f.Client().PostAsJsonAsync(Path, meal), HttpStatusCode.BadRequest);
        Assert.Contains(field, ErrorFields(problem));
    }

    [Fact]
    public async Task Inconsistent_nutrients_and_bodies_that_are_not_json_objects_are_400s_naming_the_field()
    {
        var user = GatewayStackFixture.NewUser("bad");
        var at = DateTimeOffset.UtcNow.AddMinutes(-5);
        // 100 g of fat is 900 kcal: "100 kcal" is a typo or kJ.
        var fat = await ProblemAsync(await f.Client().PostAsJsonAsync(Path, With(With(Meal(user, at), "fat_g", 100), "calories_kcal", 100)), HttpStatusCode.BadRequest);
        Assert.Contains("9 kcal/g fat", fat.GetProperty("errors").GetProperty("calories_kcal")[0].GetString());
        var sugar = await ProblemAsync(await f.Client().PostAsJsonAsync(Path, With(Meal(user, at), "sugar_g", 70)), HttpStatusCode.BadRequest);
        Assert.Equal(["sugar_g"], ErrorFields(sugar));
        foreach (var body in new[] { "[1,2]", "{\"user_id\":" })
            Assert.Contains("body", ErrorFields(await ProblemAsync(await f.Client().PostAsync(Path, new StringContent(body, Encoding.UTF8, "application/json")),
                HttpStatusCode.BadRequest)));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge,
            (await f.Client().PostAsJsonAsync(Path, With(Meal(user, at), "description", new string('x', 20_000)))).StatusCode);
        Assert.Equal(0, Count(user));
    }

    [Fact]
    public async Task Another_persons_token_is_refused_and_no_credential_is_401()
    {
        var (a, tokenA) = await SignUpAsync(f, "meal-own-a");
        var (b, _) = await SignUpAsync(f, "meal-own-b");
        var asA = Bearer(f, tokenA);
        await ProblemAsync(await asA.PostAsJsonAsync(Path, Meal(b, DateTimeOffset.UtcNow.AddHours(-1))), HttpStatusCode.Forbidden);
        await ProblemAsync(await asA.GetAsync($"{Path}user/{b}"), HttpStatusCode.Forbidden);
        Assert.Equal(HttpStatusCode.Unauthorized, (await f.Client(apiKey: null).GetAsync($"{Path}user/{b}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await f.Client(apiKey: null).PostAsJsonAsync(Path, Meal(b, DateTimeOffset.UtcNow.AddHours(-1)))).StatusCode);
        await Task.Delay(1000);
        Assert.Equal(0, Count(a));
        Assert.Equal(0, Count(b));
    }

    [Fact]
    public async Task Without_the_registry_or_the_broker_the_post_is_a_503_and_nothing_is_written()
    {
        var database = LocalServices.NewDatabaseName("gateway_nutrition_down");
        var connectionString = LocalServices.PostgresConnectionString(database);
        await PostgresMigrator.MigrateAsync(connectionString);
        var user = GatewayStackFixture.NewUser("down");

        var noRegistry = LocalServices.Overrides(database, f.Stack.BootstrapServers);
        noRegistry["SchemaRegistry:Url"] = "http://127.0.0.1:1";   // nothing listens there
        await using (var app = Gateway(noRegistry))
        {
            var problem = await ProblemAsync(await Post(app, Meal(user, DateTimeOffset.UtcNow.AddMinutes(-5), "down-1")), HttpStatusCode.ServiceUnavailable);
            Assert.Equal("Schema Registry", problem.GetProperty("title").GetString());
        }
        // The registry answers, the broker does not: the claim is the retry's own, nothing reaches a table.
        await using (var app = Gateway(f.Registry.With(LocalServices.Overrides(database, "127.0.0.1:1"))))
        {
            var problem = await ProblemAsync(await Post(app, Meal(user, DateTimeOffset.UtcNow.AddMinutes(-5), "down-2")), HttpStatusCode.ServiceUnavailable);
            Assert.Contains("retry with log_id 'down-2'", problem.GetProperty("detail").GetString());
        }
        await using var db = Npgsql.NpgsqlDataSource.Create(connectionString);
        await using var claims = db.CreateCommand("SELECT count(*) FROM streamhealth.event_ids WHERE event_id = 'down-1'");
        Assert.Equal(0L, await claims.ExecuteScalarAsync());
        await using var stored = db.CreateCommand("SELECT count(*) FROM insights.nutrition_logs");
        Assert.Equal(0L, await stored.ExecuteScalarAsync());

        static WebApplicationFactory<Program> Gateway(Dictionary<string, string?> settings) =>
            new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
        static async Task<HttpResponseMessage> Post(WebApplicationFactory<Program> app, object meal)
        {
            using var client = app.CreateClient();
            client.Timeout = TimeSpan.FromSeconds(60);
            client.DefaultRequestHeaders.Add("X-Api-Key", GatewayStackFixture.ApiKey);
            return await client.PostAsJsonAsync(Path, meal);
        }
    }

    [Fact]
    public async Task Records_produced_past_the_gateway_that_break_the_rules_are_dead_lettered_and_the_rest_stored()
    {
        var user = GatewayStackFixture.NewUser("meal-sink");
        NutritionLog Log(string id, string meal = "dinner", double kcal = 700, double fatG = 25, string text = "Pasta") => new()
        {
            event_time_unix_ms = DateTime.UtcNow.AddMinutes(-1), log_id = id, user_id = user, meal = meal, description = text,
            calories_kcal = kcal, protein_g = 25, carbohydrate_g = 90, fat_g = fatG,
        };
        var topic = StreamHealth.Schemas.Topics.InsightsNutrition;
        var key = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>().Serialize(new StreamHealth.Schemas.Avro.Common.UserKey { user_id = user },
            new Confluent.Kafka.SerializationContext(Confluent.Kafka.MessageComponentType.Key, topic));
        var sent = new[]
        {
            f.Registry.Value(topic, Log($"{user}-ok")),
            f.Registry.Value(topic, Log($"{user}-meal", meal: "elevenses")),        // no such meal
            f.Registry.Value(topic, Log($"{user}-kcal", kcal: 100, fatG: 80)),      // macros carry 1,180 kcal
            f.Registry.Value(topic, Log($"{user}-text", text: "bad\u0001text")),     // a control character
            "not avro at all"u8.ToArray(),                                          // undecodable
        };
        var offsets = new List<long>();
        using (var producer = new Confluent.Kafka.ProducerBuilder<byte[], byte[]>(new Confluent.Kafka.ProducerConfig { BootstrapServers = f.Stack.BootstrapServers }).Build())
            foreach (var value in sent)
                offsets.Add((await producer.ProduceAsync(topic, new Confluent.Kafka.Message<byte[], byte[]> { Key = key, Value = value })).Offset.Value);

        WaitFor(() => Count(user) == 1 && DeadLetters(offsets) == 4, TimeSpan.FromSeconds(60),
            () => $"stored {Count(user)}, dead letters {DeadLetters(offsets)}");
    }

    [Theory]
    // calories, protein, carbohydrate, fat, sugar → the fields refused (none: consistent)
    [InlineData(560, 30, 60, 20, 8.0, "")]
    [InlineData(0, 0, 0, 0, 0.0, "")]                               // black coffee
    [InlineData(100, 0, 0, 16.6, null, "")]                         // 149.4 kcal of fat: within 100·1.25 + 50 = 175
    [InlineData(100, 0, 0, 19.5, null, "calories_kcal")]            // 175.5 kcal: just past the tolerance
    [InlineData(2_345, 100, 200, 100, null, "")]                    // macros 2,100 kcal, less than stated: alcohol, polyols
    [InlineData(500, 20, 50, 20, 51.5, "sugar_g")]                  // sugars beyond the carbohydrate and its rounding
    [InlineData(500, 20, 50, 20, 51.0, "")]
    [InlineData(10_000.5, 0, 0, 0, null, "calories_kcal")]
    [InlineData(500, 2_000.5, 0, 0, null, "protein_g")]
    public void Nutrition_rules_bound_each_field_and_the_energy_of_the_macros(double kcal, double protein, double carbohydrate, double fat,
        double? sugar, string refused)
    {
        var problems = NutritionRules.Check(new MealNutrients(kcal, protein, carbohydrate, fat, null, sugar, null));
        Assert.Equal(refused.Length == 0 ? [] : [refused], problems.Select(p => p.Field));
        Assert.Equal(refused.Length == 0, NutritionRules.Refuse("lunch", "soup", new MealNutrients(kcal, protein, carbohydrate, fat, null, sugar, null)) is null);
    }

    private long DeadLetters(List<long> offsets)
    {
        using var cmd = f.Postgres.CreateCommand("""
            SELECT count(*) FROM streamhealth.dead_letters
            WHERE processor = $1 AND source_topic = $2 AND source_offset = ANY($3)
            """);
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = NutritionLogPostgresWriter.Name });
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = StreamHealth.Schemas.Topics.InsightsNutrition });
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = offsets.ToArray() });
        return (long)cmd.ExecuteScalar()!;
    }

    private long Count(string user)
    {
        using var cmd = f.Postgres.CreateCommand("SELECT count(*) FROM insights.nutrition_logs WHERE user_id = $1");
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = user });
        return (long)cmd.ExecuteScalar()!;
    }
}
