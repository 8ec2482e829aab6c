using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Npgsql;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway.Contract;

/// <summary>Walks the gateway's OpenAPI document over the whole stack: every operation declares its access rule
/// (<c>x-access</c>), and for every operation that holds someone's data, a call without credentials is 401, person A's
/// token on person B's data is 403 (and changes nothing of B's), and A's token on A's own data gets through.
/// A new endpoint fails here until it declares a rule and has a request in <see cref="Requests"/>.</summary>
public sealed class AccessWalkTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    /// <summary>The only operations anyone may call without a credential: none of them holds a person's data.</summary>
    private static readonly string[] PublicOperations =
    [
        "GET /health", "GET /health/ready", "GET /health/live", "GET /api/v1/topics", "GET /api/v1/streams",
        "POST /convert_to_unified", "POST /api/v1/users/register", "POST /api/v1/auth/token",
    ];

    private sealed record Person(string UserId, string Token, string Handle);

    /// <summary>A request for each non-public operation, about <paramref name="subject"/>'s data (the person in the
    /// path or body, or whose dataset handle it names).</summary>
    private static readonly Dictionary<string, Func<Person, HttpRequestMessage>> Requests = new()
    {
        ["GET /api/weight/{userId}/latest"] = p => Get($"/api/weight/{p.UserId}/latest"),
        ["GET /api/weight/{userId}/history"] = p => Get($"/api/weight/{p.UserId}/history"),
        ["GET /api/weight/{userId}/state"] = p => Get($"/api/weight/{p.UserId}/state"),
        ["POST /api/weight/process"] = p => Post("/api/weight/process", JsonContent.Create(GatewayStackFixture.Measurement(p.UserId, 81, DateTime.UtcNow.AddMinutes(-2)))),
        ["POST /api/weight/initialize"] = p => Post("/api/weight/initialize", JsonContent.Create(new
        {
            user_id = p.UserId,
            measurements = new[] { 80.0, 80.4, 80.2 }.Select((kg, i) => GatewayStackFixture.Measurement(p.UserId, kg, DateTime.UtcNow.AddHours(-3 + i))).ToArray(),
        })),
        ["POST /api/v1/cgm/{userId}/upload"] = p => Post($"/api/v1/cgm/{p.UserId}/upload", Csv()),
        ["GET /api/v1/cgm/{userId}/readings"] = p => Get($"/api/v1/cgm/{p.UserId}/readings"),
        ["GET /api/v1/cgm/{userId}/latest"] = p => Get($"/api/v1/cgm/{p.UserId}/latest"),
        ["GET /api/v1/cgm/{userId}/forecast"] = p => Get($"/api/v1/cgm/{p.UserId}/forecast"),
        ["POST /api/v1/health-metrics"] = p => Post("/api/v1/health-metrics/", JsonContent.Create(new
        {
            user_id = p.UserId, type = "steps", value = 4200, unit = "steps", recorded_at = DateTimeOffset.UtcNow.AddMinutes(-3).ToString("O"),
        })),
        ["GET /api/v1/health-metrics/{metricId}"] = p => Get($"/api/v1/health-metrics/walk-{p.UserId}"),
        ["GET /api/v1/health-metrics/user/{userId}"] = p => Get($"/api/v1/health-metrics/user/{p.UserId}"),
        ["POST /api/v1/nutrition-logs"] = p => Post("/api/v1/nutrition-logs/", JsonContent.Create(NutritionLogsApiTests.Meal(p.UserId, DateTimeOffset.UtcNow.AddMinutes(-20)))),
        ["GET /api/v1/nutrition-logs/user/{userId}"] = p => Get($"/api/v1/nutrition-logs/user/{p.UserId}"),
        ["GET /api/v1/checkins/user/{userId}"] = p => Get($"/api/v1/checkins/user/{p.UserId}"),
        ["GET /api/v1/health-entries/user/{userId}"] = p => Get($"/api/v1/health-entries/user/{p.UserId}"),
        ["POST /api/v1/health-goals"] = p => Post("/api/v1/health-goals/", JsonContent.Create(HealthGoalsApiTests.StepsGoal(p.UserId))),
        ["GET /api/v1/health-goals/user/{userId}"] = p => Get($"/api/v1/health-goals/user/{p.UserId}"),
        ["GET /api/v1/health-metrics/user/{userId}/summary"] = p => Get($"/api/v1/health-metrics/user/{p.UserId}/summary?days=30"),
        ["GET /api/v1/users/{userId}"] = p => Get($"/api/v1/users/{p.UserId}"),
        ["GET /api/v1/recommendations/{userId}"] = p => Get($"/api/v1/recommendations/{p.UserId}"),
        ["GET /api/v1/health-insights/user/{userId}"] = p => Get($"/api/v1/health-insights/user/{p.UserId}"),
        ["GET /api/v1/cache"] = _ => Get("/api/v1/cache"),
        ["PUT /api/v1/users/{userId}/profile"] = p => new(HttpMethod.Put, $"/api/v1/users/{p.UserId}/profile")
        {
            Content = JsonContent.Create(new { time_zone = "Europe/Paris", date_of_birth = "1980-02-29", medical_history = "walk" }),
        },
        ["POST /process_unified"] = _ => Post("/process_unified", Csv(200)),
        ["POST /quick_plot"] = _ => Post("/quick_plot", Csv(200)),
        ["POST /draw_a_plot"] = p => Post("/draw_a_plot", JsonContent.Create(new { handle = p.Handle, index = 0 })),
        ["POST /cache_management"] = _ => Post("/cache_management", JsonContent.Create(new { action = "info" })),
        ["GET /api/v1/nodes"] = _ => Get("/api/v1/nodes"),
        ["PUT /api/v1/nodes/{nodeId}"] = p => new(HttpMethod.Put, $"/api/v1/nodes/walk-{p.UserId}")
        {
            Content = JsonContent.Create(new { district_id = "dma-walk", kind = "meter", metrics = new[] { "flow" }, cadence_seconds = 60 }),
        },
        ["GET /api/v1/nodes/{nodeId}/metrics"] = p => Get($"/api/v1/nodes/walk-{p.UserId}/metrics"),
        ["GET /api/v1/nodes/{nodeId}/history"] = p => Get($"/api/v1/nodes/walk-{p.UserId}/history"),
        ["GET /api/v1/status"] = _ => Get("/api/v1/status"),
        ["GET /api/v1/anomalies"] = _ => Get("/api/v1/anomalies"),
        ["POST /api/v1/anomalies/{anomalyId}/acknowledge"] = p => Post($"/api/v1/anomalies/walk-{p.UserId}/acknowledge", JsonContent.Create(new { note = "walk" })),
        ["GET /api/v1/quality/{nodeId}"] = p => Get($"/api/v1/quality/walk-{p.UserId}"),
        ["GET /api/v1/network/efficiency"] = _ => Get("/api/v1/network/efficiency"),
        ["GET /api/v1/network/metrics"] = _ => Get("/api/v1/network/metrics"),
        ["GET /api/v1/dashboard/summary"] = _ => Get("/api/v1/dashboard/summary"),
        ["GET /api/v1/predictions/{nodeId}"] = p => Get($"/api/v1/predictions/walk-{p.UserId}"),
        // Unsigned: no credential of ours may stand in for a provider's signature.
        ["POST /webhooks/call-completed"] = p => Post("/webhooks/call-completed", JsonContent.Create(new
        {
            event_id = $"walk-{p.UserId}", call_id = $"walk-{p.UserId}", patient_id = p.UserId, occurred_at = DateTimeOffset.UtcNow.ToString("O"),
        })),
    };

    [Fact]
    public async Task Every_operation_declares_its_access_rule_and_no_token_reaches_another_persons_data()
    {
        using var anonymous = f.Client(apiKey: null);
        var contract = await OpenApiContract.FetchAsync(anonymous);
        Assert.Empty(MissingRules(contract));
        var publicOps = contract.Operations.Where(o => Rule(o) == "public").Select(o => o.ToString()).Order();
        Assert.Equal(PublicOperations.Order(), publicOps);
        var unlisted = contract.Operations.Where(o => Rule(o) != "public" && !Requests.ContainsKey(o.ToString())).Select(o => o.ToString()).ToList();
        Assert.True(unlisted.Count == 0, "operations with no request in AccessWalkTests.Requests (add one): " + string.Join(", ", unlisted));

        var a = await SignUpAsync(anonymous, "walk-a");
        var b = await SignUpAsync(anonymous, "walk-b");
        var problems = new List<string>();
        foreach (var operation in contract.Operations.Where(o => Rule(o) != "public"))
        {
            var name = operation.ToString();
            var rule = Rule(operation);
            var unauthenticated = await SendAsync(anonymous, Requests[name](a));
            if (unauthenticated.Status != 401) problems.Add($"{name}: no credential → {unauthenticated}");

            var own = await SendAsync(Bearer(a), Requests[name](a));
            var othersData = await SendAsync(Bearer(a), Requests[name](b));
            var service = await SendAsync(f.Client(), Requests[name](a));   // the dev key: every scope
            switch (rule)
            {
                case "own-data":
                    if (othersData.Status != 403) problems.Add($"{name}: A's token on B's data → {othersData}");
                    if (!Through(own)) problems.Add($"{name}: A's token on A's own data → {own}");
                    if (!Through(service)) problems.Add($"{name}: a service key with the scope → {service}");
                    break;
                case "caller":
                    if (!Through(own)) problems.Add($"{name}: A's token → {own}");
                    break;
                case "owned-resource":
                    // Another person's handle is answered like one that does not exist.
                    if (othersData.Status != 404) problems.Add($"{name}: A's token on B's dataset → {othersData}");
                    if (!Through(own) || own.Status == 404) problems.Add($"{name}: A's token on A's dataset → {own}");
                    break;
                case "signed":
                    // Only the provider's signature admits: a person's token and the all-scopes service key are refused alike.
                    if (own.Status != 401) problems.Add($"{name}: a person's token on a signed operation → {own}");
                    if (service.Status != 401) problems.Add($"{name}: a service key on a signed operation → {service}");
                    break;
                case "service":
                    if (own.Status != 403) problems.Add($"{name}: a person's token on a service-only operation → {own}");
                    if (!Through(service)) problems.Add($"{name}: the admin key → {service}");
                    break;
                default:
                    problems.Add($"{name}: unknown rule {rule}");
                    break;
            }
            if (othersData.Status == 403 && !othersData.Body.Contains("application/problem+json", StringComparison.Ordinal))
                problems.Add($"{name}: 403 is not problem details: {othersData}");
            if (othersData.Body.Contains(b.UserId, StringComparison.Ordinal)) problems.Add($"{name}: the answer names B: {othersData}");
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));

        // Nothing of B's changed: A's own upload and measurement (sent after A's attempts on B) have landed, B has nothing.
        long aReadings = 0;
        WaitFor(() => (aReadings = Count("SELECT count(*) FROM cgm.readings WHERE user_id = $1", a.UserId)) >= 12
                      && Count("SELECT count(*) FROM weights.measurements WHERE user_id = $1", a.UserId) >= 1,
            TimeSpan.FromSeconds(90), () => $"A's own writes did not land (readings {aReadings})");
        Assert.Equal(0, Count("SELECT count(*) FROM cgm.readings WHERE user_id = $1", b.UserId));
        Assert.Equal(0, Count("SELECT count(*) FROM weights.measurements WHERE user_id = $1", b.UserId));
        WaitFor(() => Count("SELECT count(*) FROM streamhealth.health_metrics WHERE user_id = $1", a.UserId) >= 1,
            TimeSpan.FromSeconds(60), () => "A's own metric did not land");
        Assert.Equal(0, Count("SELECT count(*) FROM streamhealth.health_metrics WHERE user_id = $1", b.UserId));
        WaitFor(() => Count("SELECT count(*) FROM insights.nutrition_logs WHERE user_id = $1", a.UserId) >= 1,
            TimeSpan.FromSeconds(60), () => "A's own meal did not land");
        Assert.Equal(0, Count("SELECT count(*) FROM insights.nutrition_logs WHERE user_id = $1", b.UserId));
        Assert.True(Count("SELECT count(*) FROM insights.goals WHERE user_id = $1", a.UserId) >= 1, "A's own goal was not stored");
        Assert.Equal(0, Count("SELECT count(*) FROM insights.goals WHERE user_id = $1", b.UserId));
    }

    [Fact]
    public void The_walk_names_an_operation_that_declares_no_rule()
    {
        var document = """
            {"openapi":"3.1.1","paths":{
              "/declared":{"get":{"x-access":{"rule":"public"},"responses":{"200":{"description":"ok"}}}},
              "/api/v1/new-endpoint/{userId}":{"get":{"responses":{"200":{"description":"ok"}}}}}}
            """;
        Assert.Equal(["GET /api/v1/new-endpoint/{userId}"], MissingRules(new OpenApiContract(document)));
    }

    private static List<string> MissingRules(OpenApiContract contract) =>
        [.. contract.Operations.Where(o => !o.Node.TryGetProperty("x-access", out _)).Select(o => o.ToString())];

    private static string Rule(ApiOperation operation) => operation.Node.GetProperty("x-access").GetProperty("rule").GetString()!;

    /// <summary>Past the access rule: not 401/403, and no failure of the gateway's own (a 503 or 504 from a backing
    /// service or the pipeline is the handler speaking, after the rule let the call in).</summary>
    private static bool Through((int Status, string Body) answer) =>
        answer.Status is not (401 or 403) && (answer.Status < 500 || answer.Status is 503 or 504);

    private async Task<Person> SignUpAsync(HttpClient client, string prefix)
    {
        var email = $"{prefix}-{Guid.NewGuid():N}@example.org";
        const string password = "Walk-the-doc-1";
        var registered = await client.PostAsJsonAsync("/api/v1/users/register", new { email, password });
        Assert.Equal(HttpStatusCode.Created, registered.StatusCode);
        var token = await client.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password });
        var body = JsonDocument.Parse(await token.Content.ReadAsStringAsync()).RootElement;
        var person = new Person(body.GetProperty("user_id").GetString()!, body.GetProperty("access_token").GetString()!, "");
        // A dataset of the person's own (identical files from two people would share a handle, rightly: both sent it).
        var glucoseDecimals = prefix.EndsWith('a') ? ".0," : ".5,";
        var csv = Encoding.UTF8.GetString(GatewayStackFixture.RecentUnifiedCsv(200)).Split('\n')
            .Select((line, i) => i == 0 ? line : line.Replace(".0,", glucoseDecimals));
        var saved = await Bearer(person).SendAsync(Post("/process_unified",
            new ByteArrayContent(Encoding.UTF8.GetBytes(string.Join('\n', csv))) { Headers = { ContentType = new MediaTypeHeaderValue("text/csv") } }));
        var handle = JsonDocument.Parse(await saved.Content.ReadAsStringAsync()).RootElement.GetProperty("handle").GetString()!;
        return person with { Handle = handle };
    }

    private HttpClient Bearer(Person person)
    {
        var client = f.Client(apiKey: null);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", person.Token);
        return client;
    }

    private static async Task<(int Status, string Body)> SendAsync(HttpClient client, HttpRequestMessage request)
    {
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, $"{(int)response.StatusCode} {response.Content.Headers.ContentType?.MediaType} {text[..Math.Min(text.Length, 300)]}");
    }

    private long Count(string sql, string user)
    {
        using var cmd = f.Postgres.CreateCommand(sql);
        cmd.Parameters.Add(new NpgsqlParameter { Value = user });
        return (long)cmd.ExecuteScalar()!;
    }

    private static HttpRequestMessage Get(string path) => new(HttpMethod.Get, path);
    private static HttpRequestMessage Post(string path, HttpContent body) => new(HttpMethod.Post, path) { Content = body };
    private static HttpContent Csv(int readings = 12) =>
        new ByteArrayContent(GatewayStackFixture.RecentUnifiedCsv(readings)) { Headers = { ContentType = new MediaTypeHeaderValue("text/csv") } };
}
