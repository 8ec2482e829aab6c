using System.Net.Http.Headers;
using System.Net.Http.Json;
using StreamHealth.Tests.Gateway;
using StreamHealth.Tests.Gateway.Contract;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Dashboard;

/// <summary>One gateway stack for the dashboard's tests (its event stream and the browser), holding what the local
/// stack's samples would: a registered person with weights (one far off the trend), CGM readings and a call check-in;
/// a water network of two districts with an open anomaly. The stream hosts publish their reports every 500 ms.</summary>
public sealed class DashboardStack : IAsyncLifetime
{
    public GatewayStackFixture Stack { get; } = new();
    public string Email { get; } = $"dashboard-{Guid.NewGuid():N}@example.org";
    public const string Password = "Dashboard-walk-1";
    public string UserId { get; private set; } = "";

    public async Task InitializeAsync()
    {
        await Stack.InitializeAsync();
        using var anonymous = Stack.Client(apiKey: null);
        Assert.True((await anonymous.PostAsJsonAsync("/api/v1/users/register", new { email = Email, password = Password })).IsSuccessStatusCode);
        var token = await PeopleOnTheStack.JsonAsync(await anonymous.PostAsJsonAsync("/api/v1/auth/token",
            new { grant_type = "password", email = Email, password = Password }), System.Net.HttpStatusCode.OK);
        UserId = token.GetProperty("user_id").GetString()!;

        using var person = PeopleOnTheStack.Bearer(Stack, token.GetProperty("access_token").GetString()!);
        var now = DateTime.UtcNow;
        for (var i = 10; i >= 1; i--)
            Assert.True((await person.PostAsJsonAsync("/api/weight/process",
                GatewayStackFixture.Measurement(UserId, i == 3 ? 140 : 80 + (i % 3) / 10.0, now.AddHours(-6 * i)))).IsSuccessStatusCode);
        var upload = await person.PostAsync($"/api/v1/cgm/{UserId}/upload",
            new ByteArrayContent(GatewayStackFixture.RecentUnifiedCsv(36)) { Headers = { ContentType = new MediaTypeHeaderValue("text/csv") } });
        Assert.Equal(202, (int)upload.StatusCode);

        using var service = Stack.Client();
        foreach (var (node, district, kind, metric) in new[]
                 {
                     ("dash-inflow-north", "dma-north", "inflow", "flow"), ("dash-meter-north", "dma-north", "meter", "flow"),
                     ("dash-probe-south", "dma-south", "quality_probe", "chlorine"),
                 })
            Assert.True((await service.PutAsJsonAsync($"/api/v1/nodes/{node}",
                new { district_id = district, kind, metrics = new[] { metric }, cadence_seconds = 60 })).IsSuccessStatusCode);
        // The district analysis and the call pipeline write these; neither runs in this stack.
        await using (var command = Stack.Postgres.CreateCommand("""
            WITH anomaly AS (INSERT INTO sensors.anomalies (anomaly_id, kind, district_id, started_at, severity, score, state, reason)
                VALUES ($1, 'background_leak', 'dma-north', now() - interval '20 minutes', 'high', 6.5, 'open', 'night flow above the baseline'))
            INSERT INTO calllogs.checkins (call_id, patient_id, event_time, provider, duration_s, medication_count, food_count, symptom_count, extractor)
            VALUES ($2, $3, now() - interval '1 hour', 'local-dev', 240, 1, 2, 0, 'dashboard-test')
            """))
        {
            command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = $"dashboard-{UserId}" });
            command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = $"dashboard-call-{UserId}" });
            command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = UserId });
            await command.ExecuteNonQueryAsync();
        }
        WaitFor(() => person.GetAsync($"/api/weight/{UserId}/history").Result.Content.ReadAsStringAsync().Result.Contains("\"filtered_weight\":", StringComparison.Ordinal)
                      && person.GetAsync($"/api/v1/cgm/{UserId}/latest").Result.IsSuccessStatusCode
                      && StreamsListATask(service),
            TimeSpan.FromSeconds(60), () => "the seeded weights, CGM readings or the hosts' tasks (read from their /metrics) never became readable");
    }

    // The gateway finds the hosts in the discovery registry and scrapes their /metrics in the background: until its first read
    // after they registered, /api/v1/streams answers with no host.
    private static bool StreamsListATask(HttpClient service)
    {
        using var response = service.GetAsync("/api/v1/streams").Result;
        if (!response.IsSuccessStatusCode) return false;
        using var view = System.Text.Json.JsonDocument.Parse(response.Content.ReadAsStringAsync().Result);
        return view.RootElement.GetProperty("hosts").EnumerateArray().Any(h => h.GetProperty("tasks").GetArrayLength() > 0);
    }

    public Task DisposeAsync() => Stack.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class DashboardCollection : ICollectionFixture<DashboardStack>
{
    public const string Name = "dashboard";
}
