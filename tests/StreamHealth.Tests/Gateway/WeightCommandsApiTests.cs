using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Pipeline;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway;

/// <summary>The gateway in front of a running weights pipeline (catalogue topics, as deployed).</summary>
public sealed class WeightGatewayFixture : IAsyncLifetime
{
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public TestLogs Logs { get; } = new();
    public WebApplicationFactory<Program> App { get; private set; } = null!;
    public string ConnectionString { get; private set; } = "";
    public WeightPipeline Pipeline => _pipeline;
    /// <summary>The registry (on this fixture's database) the pipeline, the gateway and the tests' producers use.</summary>
    public TestRegistry Registry { get; private set; } = null!;
    private WeightPipeline _pipeline = null!;
    private NpgsqlDataSource _postgres = null!;
    private ConnectionMultiplexer _redis = null!;
    private readonly string _stateDir = Directory.CreateTempSubdirectory("streamhealth-gateway-weights-").FullName;

    public async Task InitializeAsync()
    {
        var database = LocalServices.NewDatabaseName("gateway_weights");
        ConnectionString = LocalServices.PostgresConnectionString(database);
        await PostgresMigrator.MigrateAsync(ConnectionString);
        _postgres = NpgsqlDataSource.Create(ConnectionString);
        _redis = await ConnectionMultiplexer.ConnectAsync(LocalServices.RedisConfiguration);
        Registry = TestRegistry.Start(ConnectionString);
        _pipeline = new WeightPipeline(new StreamHostOptions { SchemaRegistry = Registry.Connection, BootstrapServers = Kafka.BootstrapServers, CreateInternalTopic = (topic, partitions) => Kafka.Cluster.CreateTopic(topic, partitions), StateDirectory = _stateDir },
            _postgres, _redis, Logs).Start();
        var settings = Registry.With(LocalServices.Overrides(database, Kafka.BootstrapServers));
        App = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
        WaitFor(() => _pipeline.Host.Metrics.ActiveTasks == 4, TimeSpan.FromSeconds(60), () => "weights tasks not assigned");
    }

    public HttpClient Client(string? apiKey = "dev-key-change-me")
    {
        var client = App.CreateClient();
        if (apiKey is not null) client.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        return client;
    }

    public async Task DisposeAsync()
    {
        await App.DisposeAsync();
        _pipeline.Dispose();
        Registry?.Dispose();
        _redis.Dispose();
        await _postgres.DisposeAsync();
        Kafka.Dispose();
        Directory.Delete(_stateDir, recursive: true);
    }
}

public sealed class WeightCommandsApiTests(WeightGatewayFixture f) : IClassFixture<WeightGatewayFixture>
{
    private static string U(string name) => $"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)];

    private static object Measurement(string user, double kg, string day, string unit = "kg") =>
        new { user_id = user, weight = kg, unit, timestamp = $"2026-04-{day}T07:30:00Z", source = "connected_scale" };

    [Fact]
    public async Task Process_answers_from_the_stream_pipeline_and_the_result_is_served_by_latest_and_history()
    {
        using var client = f.Client();
        var user = U("api");
        var answers = new List<JsonElement>();
        foreach (var (kg, day) in new[] { (81.0, "01"), (80.6, "02"), (80.2, "03") })
        {
            var response = await client.PostAsJsonAsync("/api/weight/process", Measurement(user, kg, day));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            answers.Add(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
        }
        Assert.True(answers[0].GetProperty("needs_initialization").GetBoolean());
        Assert.Contains("buffered_for_initialization", answers[1].GetProperty("reasons").EnumerateArray().Select(r => r.GetString()));
        var third = answers[2];
        Assert.False(third.GetProperty("needs_initialization").GetBoolean());
        Assert.Contains("initialized", third.GetProperty("reasons").EnumerateArray().Select(r => r.GetString()));
        Assert.InRange(third.GetProperty("filtered_weight").GetDouble(), 79.5, 81.5);
        Assert.Equal(user, third.GetProperty("user_id").GetString());

        // Through the sinks: Redis first for latest, PostgreSQL for history.
        JsonElement latest = default;
        WaitFor(() =>
        {
            var r = client.GetAsync($"/api/weight/{user}/latest").Result;
            if (r.StatusCode != HttpStatusCode.OK) return false;
            latest = JsonDocument.Parse(r.Content.ReadAsStringAsync().Result).RootElement;
            // PostgreSQL may answer first (the two sinks run independently); wait for the Redis copy.
            return latest.GetProperty("measurement_id").GetString() == third.GetProperty("measurement_id").GetString()
                   && latest.GetProperty("source").GetString() == "redis";
        }, TimeSpan.FromSeconds(30), () => $"latest weight never reached the gateway from Redis: {latest}");
        Assert.Equal(third.GetProperty("filtered_weight").GetDouble(), latest.GetProperty("filtered_weight").GetDouble(), 6);
        Assert.Equal("redis", latest.GetProperty("source").GetString());

        JsonElement history = default;
        WaitFor(() =>
        {
            var r = client.GetAsync($"/api/weight/{user}/history?from=2026-03-01T00:00:00Z&to=2026-05-01T00:00:00Z").Result;
            history = JsonDocument.Parse(r.Content.ReadAsStringAsync().Result).RootElement;
            return r.StatusCode == HttpStatusCode.OK && Rows(history).Count() == 3;
        }, TimeSpan.FromSeconds(30), () => $"history: {history}");
    }

    private static IEnumerable<JsonElement> Rows(JsonElement history) =>
        history.ValueKind == JsonValueKind.Array ? history.EnumerateArray()
        : history.TryGetProperty("measurements", out var m) ? m.EnumerateArray() : [];

    [Fact]
    public async Task Initialize_starts_the_filter_from_a_batch_and_refuses_an_implausible_one_naming_the_measurement()
    {
        using var client = f.Client();
        var user = U("init");
        var ok = await client.PostAsJsonAsync("/api/weight/initialize", new
        {
            user_id = user,
            measurements = new[] { Measurement(user, 70.2, "01"), Measurement(user, 70.6, "02"), Measurement(user, 69.9, "04") },
        });
        var body = await ok.Content.ReadAsStringAsync();
        Assert.True(ok.StatusCode == HttpStatusCode.OK, body);
        var result = JsonDocument.Parse(body).RootElement;
        Assert.False(result.GetProperty("needs_initialization").GetBoolean());
        Assert.InRange(result.GetProperty("filtered_weight").GetDouble(), 69.5, 71);

        var bad = await client.PostAsJsonAsync("/api/weight/initialize", new
        {
            user_id = user, measurements = new[] { Measurement(user, 70.2, "01"), Measurement(user, 900, "02") },
        });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        // 900 kg is outside the plausible range every weight must be in (WeightFilter:MaxPlausibleKg).
        Assert.Contains("measurements[1].weight", await bad.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Bad_requests_get_problem_details_naming_the_field_and_nothing_is_sent()
    {
        using var client = f.Client();
        var user = U("bad");
        async Task<(HttpStatusCode Status, JsonElement Body)> Post(HttpContent content)
        {
            var r = await client.PostAsync("/api/weight/process", content);
            var text = await r.Content.ReadAsStringAsync();
            return (r.StatusCode, text.Length > 0 ? JsonDocument.Parse(text).RootElement : default);
        }
        HttpContent J(string json) => new StringContent(json, Encoding.UTF8, "application/json");

        var missingWeight = await Post(J($$"""{"user_id":"{{user}}","unit":"kg","timestamp":"2026-04-01T07:00:00Z"}"""));
        Assert.Equal(HttpStatusCode.BadRequest, missingWeight.Status);
        Assert.True(missingWeight.Body.GetProperty("errors").TryGetProperty("weight", out _));

        var badUnit = await Post(J($$"""{"user_id":"{{user}}","weight":80,"unit":"stone","timestamp":"2026-04-01T07:00:00Z"}"""));
        Assert.Equal(HttpStatusCode.BadRequest, badUnit.Status);
        Assert.Contains("stone", badUnit.Body.GetProperty("errors").GetProperty("unit")[0].GetString());

        var badUser = await Post(J("""{"user_id":"no spaces allowed","weight":80,"unit":"kg","timestamp":"2026-04-01T07:00:00Z"}"""));
        Assert.True(badUser.Body.GetProperty("errors").TryGetProperty("user_id", out _));

        var notJson = await Post(J("{\"user_id\": \"x\", \"weight\": "));
        Assert.Equal(HttpStatusCode.BadRequest, notJson.Status);

        var huge = await Post(J($$"""{"user_id":"{{user}}","weight":80,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"{{new string('x', 70_000)}}"}"""));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, huge.Status);

        using var anonymous = f.Client(apiKey: null);
        var unauthorised = await anonymous.PostAsJsonAsync("/api/weight/process", Measurement(user, 80, "01"));
        Assert.Equal(HttpStatusCode.Unauthorized, unauthorised.StatusCode);

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/weight/{user}/latest")).StatusCode);
    }

    [Fact]
    public async Task Process_is_a_503_problem_naming_kafka_when_the_gateway_cannot_reach_it()
    {
        // Migrated as every deployment's is: the audit trail records this request (an unmigrated database would hold its
        // entry, retried, until the host's shutdown timeout).
        var database = LocalServices.NewDatabaseName("gateway_nokafka");
        await PostgresMigrator.MigrateAsync(LocalServices.PostgresConnectionString(database));
        var settings = LocalServices.Overrides(database, "127.0.0.1:1");   // nothing listens there
        await using var app = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
        using var client = app.CreateClient();
        client.DefaultRequestHeaders.Add("X-Api-Key", "dev-key-change-me");
        var response = await client.PostAsJsonAsync("/api/weight/process", Measurement(U("down"), 80, "01"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Contains("127.0.0.1:1", body.GetProperty("detail").GetString());
        Assert.Contains("nothing was sent", body.GetProperty("detail").GetString());
        Assert.Equal(TimeSpan.FromSeconds(5), response.Headers.RetryAfter?.Delta);
    }

    [Fact]
    public async Task Process_is_a_503_problem_naming_the_schema_registry_when_the_gateway_cannot_reach_it()
    {
        // Kafka and PostgreSQL answer; the registry does not, and this gateway has resolved no schema id yet.
        var database = LocalServices.NewDatabaseName("gateway_noregistry");
        await PostgresMigrator.MigrateAsync(LocalServices.PostgresConnectionString(database));
        var settings = LocalServices.Overrides(database, f.Kafka.BootstrapServers);
        settings["SchemaRegistry:Url"] = "http://127.0.0.1:1";   // nothing listens there
        await using var app = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
        using var client = app.CreateClient();
        client.DefaultRequestHeaders.Add("X-Api-Key", "dev-key-change-me");
        var response = await client.PostAsJsonAsync("/api/weight/process", Measurement(U("noreg"), 80, "01"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable, $"{(int)response.StatusCode}: {text}");
        Assert.True(response.Headers.RetryAfter?.Delta == TimeSpan.FromSeconds(5), text);
        Assert.Equal("Schema Registry", JsonDocument.Parse(text).RootElement.GetProperty("title").GetString());
    }
}
