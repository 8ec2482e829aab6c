using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using StreamHealth.Insights.Metrics;
using StreamHealth.Tests.Gateway.Contract;
using static StreamHealth.Tests.Gateway.PeopleOnTheStack;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway;

/// <summary>/api/v1/health-metrics over the whole stack: the gateway produces to insights.metrics (embedded Kafka, Avro
/// through the registry), the insights sink stores into PostgreSQL, and the GETs read what the sink wrote.</summary>
public sealed class HealthMetricsApiTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    private const string Path = "/api/v1/health-metrics/";

    private static object Metric(string user, string type, double value, string unit, DateTimeOffset at, string? id = null) =>
        new { user_id = user, type, value, unit, recorded_at = at.ToString("O"), metric_id = id };

    [Fact]
    public async Task A_posted_metric_is_stored_by_the_sink_and_read_back_by_id_and_by_user()
    {
        var (user, token) = await SignUpAsync(f, "metrics-a");
        var client = Bearer(f, token);
        var at = DateTimeOffset.UtcNow.AddMinutes(-10);
        var posted = await client.PostAsJsonAsync(Path, Metric(user, "heart_rate", 64, "bpm", at, "hr-" + Guid.NewGuid().ToString("N")));
        Assert.Equal(HttpStatusCode.Accepted, posted.StatusCode);
        var accepted = JsonDocument.Parse(await posted.Content.ReadAsStringAsync()).RootElement;
        var id = accepted.GetProperty("metric_id").GetString()!;
        Assert.Equal($"/api/v1/health-metrics/{id}", posted.Headers.Location?.OriginalString);

        // Weight in pounds is stored in kg; no metric_id: the gateway names it.
        var pounds = await client.PostAsJsonAsync(Path, Metric(user, "weight", 176.37, "lb", at.AddMinutes(1)));
        Assert.Equal(HttpStatusCode.Accepted, pounds.StatusCode);
        var weight = JsonDocument.Parse(await pounds.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("kg", weight.GetProperty("unit").GetString());
        Assert.Equal(80.0, weight.GetProperty("value").GetDouble(), 2);

        var stored = await WaitForAsync(client, $"{Path}{id}");
        Assert.Equal(user, stored.GetProperty("user_id").GetString());
        Assert.Equal("heart_rate", stored.GetProperty("type").GetString());
        Assert.Equal(64, stored.GetProperty("value").GetDouble());
        Assert.Equal("bpm", stored.GetProperty("unit").GetString());
        Assert.Equal(at.ToUnixTimeMilliseconds(), new DateTimeOffset(stored.GetProperty("recorded_at").GetDateTime()).ToUnixTimeMilliseconds());
        await WaitForAsync(client, $"{Path}{weight.GetProperty("metric_id").GetString()}");

        var page = await client.GetFromJsonAsync<JsonElement>($"{Path}user/{user}");
        Assert.Equal(2, page.GetProperty("metrics").GetArrayLength());
        var hearts = await client.GetFromJsonAsync<JsonElement>($"{Path}user/{user}?type=heart_rate");
        Assert.Equal(id, hearts.GetProperty("metrics")[0].GetProperty("metric_id").GetString());
        Assert.Equal(1, hearts.GetProperty("metrics").GetArrayLength());
        // A service key with metrics:read (the dev key holds every scope) reads any person's.
        Assert.Equal(HttpStatusCode.OK, (await f.Client().GetAsync($"{Path}{id}")).StatusCode);
    }

    [Fact]
    public async Task Pages_follow_the_cursor_in_time_order_within_the_range()
    {
        var (user, token) = await SignUpAsync(f, "metrics-page");
        var client = Bearer(f, token);
        // Whole seconds: recorded_at is kept to the millisecond, and the range bounds below must fall on stored times.
        var now = DateTimeOffset.UtcNow;
        var start = new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, now.Minute, now.Second, TimeSpan.Zero).AddHours(-2);
        for (var i = 0; i < 7; i++)
            Assert.Equal(HttpStatusCode.Accepted, (await client.PostAsJsonAsync(Path, Metric(user, "steps", 100 * i, "steps", start.AddMinutes(i), $"steps-{user}-{i}"))).StatusCode);
        WaitFor(() => Count(user) == 7, TimeSpan.FromSeconds(60), () => $"stored {Count(user)} of 7");

        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await client.GetFromJsonAsync<JsonElement>($"{Path}user/{user}?limit=3" + (cursor is null ? "" : "&cursor=" + cursor));
            seen.AddRange(page.GetProperty("metrics").EnumerateArray().Select(m => m.GetProperty("metric_id").GetString()!));
            cursor = page.GetProperty("next_cursor").GetString();
            pages++;
        } while (cursor is not null && pages < 10);
        Assert.Equal(3, pages);
        Assert.Equal(Enumerable.Range(0, 7).Select(i => $"steps-{user}-{i}"), seen);

        var from = Uri.EscapeDataString(start.AddMinutes(2).ToString("O"));
        var to = Uri.EscapeDataString(start.AddMinutes(4).ToString("O"));
        var ranged = await client.GetFromJsonAsync<JsonElement>($"{Path}user/{user}?from={from}&to={to}");
        Assert.Equal([$"steps-{user}-2", $"steps-{user}-3"], ranged.GetProperty("metrics").EnumerateArray().Select(m => m.GetProperty("metric_id").GetString()!));
        Assert.Empty((await client.GetFromJsonAsync<JsonElement>($"{Path}user/{user}?type=calories")).GetProperty("metrics").EnumerateArray());

        foreach (var (query, field) in new[] { ("limit=0", "limit"), ("cursor=nope!", "cursor"), ("type=mood", "type"), ("from=yesterday", "from") })
            Assert.Contains(field, (await ProblemAsync(await client.GetAsync($"{Path}user/{user}?{query}"), HttpStatusCode.BadRequest)).GetProperty("errors").EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public async Task A_retry_is_accepted_and_stored_once_and_reusing_the_id_for_other_content_is_a_conflict()
    {
        var (user, token) = await SignUpAsync(f, "metrics-retry");
        var client = Bearer(f, token);
        var id = "retry-" + Guid.NewGuid().ToString("N");
        var at = DateTimeOffset.UtcNow.AddMinutes(-30);
        Assert.Equal(HttpStatusCode.Accepted, (await client.PostAsJsonAsync(Path, Metric(user, "water_ml", 250, "ml", at, id))).StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, (await client.PostAsJsonAsync(Path, Metric(user, "water_ml", 250, "ml", at, id))).StatusCode);
        // The same metric in another accepted unit is the same content once stored.
        Assert.Equal(HttpStatusCode.Accepted, (await client.PostAsJsonAsync(Path, Metric(user, "water_ml", 0.25, "l", at, id))).StatusCode);
        var conflict = await ProblemAsync(await client.PostAsJsonAsync(Path, Metric(user, "water_ml", 300, "ml", at, id)), HttpStatusCode.Conflict);
        Assert.Contains("metric_id", conflict.GetProperty("detail").GetString());
        Assert.Equal(HttpStatusCode.Conflict, (await client.PostAsJsonAsync(Path, Metric(user, "water_ml", 250, "ml", at.AddSeconds(1), id))).StatusCode);
        // Another person's reuse of the id is a conflict too, without saying whose it is.
        var (other, otherToken) = await SignUpAsync(f, "metrics-retry-b");
        var theirs = await ProblemAsync(await Bearer(f, otherToken).PostAsJsonAsync(Path, Metric(other, "water_ml", 250, "ml", at, id)), HttpStatusCode.Conflict);
        Assert.DoesNotContain(user, theirs.GetRawText());

        WaitFor(() => Count(user) == 1, TimeSpan.FromSeconds(60), () => $"stored {Count(user)}");
        await Task.Delay(1500);   // the retries' records have reached the sink too by now; still one row
        Assert.Equal(1, Count(user));
        Assert.Equal(0, Count(other));
    }

    [Theory]
    [InlineData("user_id", "{\"type\":\"steps\",\"value\":10,\"unit\":\"steps\",\"recorded_at\":\"$T\"}")]
    [InlineData("user_id", "{\"user_id\":\"a b\",\"type\":\"steps\",\"value\":10,\"unit\":\"steps\",\"recorded_at\":\"$T\"}")]
    [InlineData("type", "{\"user_id\":\"$U\",\"type\":\"mood\",\"value\":10,\"unit\":\"steps\",\"recorded_at\":\"$T\"}")]
    [InlineData("type", "{\"user_id\":\"$U\",\"value\":10,\"unit\":\"steps\",\"recorded_at\":\"$T\"}")]
    [InlineData("value", "{\"user_id\":\"$U\",\"type\":\"steps\",\"value\":\"10\",\"unit\":\"steps\",\"recorded_at\":\"$T\"}")]
    [InlineData("value", "{\"user_id\":\"$U\",\"type\":\"steps\",\"unit\":\"steps\",\"recorded_at\":\"$T\"}")]
    [InlineData("unit", "{\"user_id\":\"$U\",\"type\":\"weight\",\"value\":80,\"unit\":\"stone\",\"recorded_at\":\"$T\"}")]
    [InlineData("unit", "{\"user_id\":\"$U\",\"type\":\"steps\",\"value\":10,\"recorded_at\":\"$T\"}")]
    [InlineData("recorded_at", "{\"user_id\":\"$U\",\"type\":\"steps\",\"value\":10,\"unit\":\"steps\",\"recorded_at\":\"2026-01-31T07:30:00\"}")]
    [InlineData("recorded_at", "{\"user_id\":\"$U\",\"type\":\"steps\",\"value\":10,\"unit\":\"steps\",\"recorded_at\":\"2999-01-01T00:00:00Z\"}")]
    [InlineData("recorded_at", "{\"user_id\":\"$U\",\"type\":\"steps\",\"value\":10,\"unit\":\"steps\",\"recorded_at\":\"1970-01-01T00:00:00Z\"}")]
    [InlineData("metric_id", "{\"user_id\":\"$U\",\"type\":\"steps\",\"value\":10,\"unit\":\"steps\",\"recorded_at\":\"$T\",\"metric_id\":\"a/b\"}")]
    [InlineData("body", "[1,2]")]
    [InlineData("body", "{\"user_id\":")]
    public async Task Bad_input_is_a_400_naming_the_field(string field, string body)
    {
        var json = body.Replace("$U", GatewayStackFixture.NewUser("bad")).Replace("$T", DateTimeOffset.UtcNow.AddMinutes(-5).ToString("O"));
        var problem = await ProblemAsync(await f.Client().PostAsync(Path, new StringContent(json, Encoding.UTF8, "application/json")), HttpStatusCode.BadRequest);
        Assert.Contains(field, problem.GetProperty("errors").EnumerateObject().Select(p => p.Name));
    }

    [Theory]
    [InlineData("heart_rate", 19, "bpm")]
    [InlineData("heart_rate", 251, "bpm")]
    [InlineData("steps", 100_001, "steps")]
    [InlineData("steps", -1, "steps")]
    [InlineData("sleep_hours", 25, "h")]
    [InlineData("water_ml", 10_001, "ml")]
    [InlineData("calories", 20_001, "kcal")]
    [InlineData("weight", 900, "lb")]
    [InlineData("weight", 5, "kg")]
    public async Task Implausible_values_are_refused_naming_value(string type, double value, string unit)
    {
        var problem = await ProblemAsync(await f.Client().PostAsJsonAsync(Path, Metric(GatewayStackFixture.NewUser("implausible"), type, value, unit, DateTimeOffset.UtcNow.AddMinutes(-5))),
            HttpStatusCode.BadRequest);
        var message = problem.GetProperty("errors").GetProperty("value")[0].GetString()!;
        Assert.Contains(type, message);
    }

    [Fact]
    public async Task Another_persons_token_is_refused_and_their_metric_is_not_found()
    {
        var (a, tokenA) = await SignUpAsync(f, "metrics-own-a");
        var (b, tokenB) = await SignUpAsync(f, "metrics-own-b");
        var id = "b-" + Guid.NewGuid().ToString("N");
        Assert.Equal(HttpStatusCode.Accepted, (await Bearer(f, tokenB).PostAsJsonAsync(Path, Metric(b, "calories", 2100, "kcal", DateTimeOffset.UtcNow.AddHours(-1), id))).StatusCode);
        await WaitForAsync(Bearer(f, tokenB), $"{Path}{id}");

        var asA = Bearer(f, tokenA);
        await ProblemAsync(await asA.PostAsJsonAsync(Path, Metric(b, "calories", 2100, "kcal", DateTimeOffset.UtcNow.AddHours(-1))), HttpStatusCode.Forbidden);
        await ProblemAsync(await asA.GetAsync($"{Path}user/{b}"), HttpStatusCode.Forbidden);
        // B's metric id is answered as one that does not exist.
        var missing = await ProblemAsync(await asA.GetAsync($"{Path}{id}"), HttpStatusCode.NotFound);
        Assert.DoesNotContain(b, missing.GetRawText());
        Assert.Equal(0, Count(a));
        Assert.Equal(HttpStatusCode.Unauthorized, (await f.Client(apiKey: null).GetAsync($"{Path}user/{b}")).StatusCode);
    }

    [Fact]
    public async Task Records_produced_past_the_gateway_that_break_the_rules_are_dead_lettered_and_the_rest_stored()
    {
        var user = GatewayStackFixture.NewUser("sink");
        var keys = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var values = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Insights.HealthMetric>();
        byte[] Value(string id, string type, double value, string unit) => values.Serialize(new StreamHealth.Schemas.Avro.Insights.HealthMetric
        {
            event_time_unix_ms = DateTime.UtcNow.AddMinutes(-1), metric_id = id, user_id = user, metric = type, value = value, unit = unit,
        }, new Confluent.Kafka.SerializationContext(Confluent.Kafka.MessageComponentType.Value, StreamHealth.Schemas.Topics.InsightsMetrics));
        var key = keys.Serialize(new StreamHealth.Schemas.Avro.Common.UserKey { user_id = user },
            new Confluent.Kafka.SerializationContext(Confluent.Kafka.MessageComponentType.Key, StreamHealth.Schemas.Topics.InsightsMetrics));
        var sent = new[]
        {
            Value($"{user}-ok", "steps", 300, "steps"),
            Value($"{user}-hr", "heart_rate", 400, "bpm"),          // implausible
            Value($"{user}-mood", "mood", 3, "points"),             // no such type
            "not avro at all"u8.ToArray(),                          // undecodable
        };
        var offsets = new List<long>();
        using (var producer = new Confluent.Kafka.ProducerBuilder<byte[], byte[]>(new Confluent.Kafka.ProducerConfig { BootstrapServers = f.Stack.BootstrapServers }).Build())
            foreach (var value in sent)
                offsets.Add((await producer.ProduceAsync(StreamHealth.Schemas.Topics.InsightsMetrics, new Confluent.Kafka.Message<byte[], byte[]> { Key = key, Value = value })).Offset.Value);

        WaitFor(() => Count(user) == 1 && DeadLetters(offsets) == 3, TimeSpan.FromSeconds(60),
            () => $"stored {Count(user)}, dead letters {DeadLetters(offsets)}");
    }

    private long DeadLetters(List<long> offsets)
    {
        using var cmd = f.Postgres.CreateCommand("""
            SELECT count(*) FROM streamhealth.dead_letters
            WHERE processor = $1 AND source_topic = $2 AND source_offset = ANY($3)
            """);
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = HealthMetricPostgresWriter.Name });
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = StreamHealth.Schemas.Topics.InsightsMetrics });
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = offsets.ToArray() });
        return (long)cmd.ExecuteScalar()!;
    }

    [Fact]
    public void The_sink_refuses_records_the_gateway_would_refuse()
    {
        Assert.Null(HealthMetricTypes.Refuse("steps", 12, "steps"));
        Assert.NotNull(HealthMetricTypes.Refuse("resting_heart_rate_bpm", 60, "/min"));
        Assert.NotNull(HealthMetricTypes.Refuse("weight", 176, "lb"));   // stored unit only
        Assert.NotNull(HealthMetricTypes.Refuse("heart_rate", 400, "bpm"));
    }

    private long Count(string user)
    {
        using var cmd = f.Postgres.CreateCommand("SELECT count(*) FROM streamhealth.health_metrics WHERE user_id = $1");
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = user });
        return (long)cmd.ExecuteScalar()!;
    }

    private static async Task<JsonElement> WaitForAsync(HttpClient client, string path)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var response = await client.GetAsync(path);
            if (response.StatusCode == HttpStatusCode.OK) return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.True(response.StatusCode == HttpStatusCode.NotFound && DateTime.UtcNow < deadline, $"{path}: {(int)response.StatusCode}");
            await Task.Delay(200);
        }
    }
}
