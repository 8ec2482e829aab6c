using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Gateway.Contract;

/// <summary>The OpenAPI document is the contract: it documents every operation's request body and every status
/// the operation can return with a schema, and real responses (valid and invalid requests) match it.</summary>
public sealed class OpenApiContractTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    private static readonly string[] RawUploadTypes = ["application/octet-stream", "text/csv", "application/json", "multipart/form-data"];

    /// <summary>What each operation can answer, from its handler and from the shared pipeline (RequestProblems,
    /// authentication, rate limiting, body limits). 504 only where the gateway waits on the stream pipeline.</summary>
    private static readonly Dictionary<string, int[]> ExpectedStatuses = new()
    {
        ["GET /health"] = [200, 503],
        ["GET /health/ready"] = [200, 503],
        ["GET /health/live"] = [200],
        ["GET /api/v1/topics"] = [200, 503],
        ["GET /api/v1/streams"] = [200, 503],
        ["POST /api/weight/process"] = [200, 400, 401, 403, 409, 413, 422, 429, 503, 504],
        ["POST /api/weight/initialize"] = [200, 400, 401, 403, 409, 413, 422, 429, 503, 504],
        ["GET /api/weight/{userId}/latest"] = [200, 400, 401, 403, 404, 429, 503],
        ["GET /api/weight/{userId}/history"] = [200, 400, 401, 403, 429, 503],
        ["GET /api/weight/{userId}/state"] = [200, 400, 401, 403, 404, 429, 503],
        ["POST /convert_to_unified"] = [200, 400, 413, 422, 429],
        ["POST /process_unified"] = [200, 400, 401, 403, 413, 422, 429, 503],
        ["POST /api/v1/cgm/{userId}/upload"] = [202, 400, 401, 403, 413, 422, 429, 503],
        ["GET /api/v1/cgm/{userId}/readings"] = [200, 400, 401, 403, 429, 503],
        ["GET /api/v1/cgm/{userId}/latest"] = [200, 400, 401, 403, 404, 429, 503],
        ["GET /api/v1/cgm/{userId}/forecast"] = [200, 400, 401, 403, 404, 429, 503],
        ["POST /draw_a_plot"] = [200, 400, 401, 403, 404, 413, 415, 429, 503],
        ["POST /quick_plot"] = [200, 400, 401, 403, 413, 422, 429, 503],
        ["POST /cache_management"] = [200, 400, 401, 403, 404, 413, 415, 429, 503],
        ["POST /api/v1/users/register"] = [201, 400, 409, 413, 429, 503],
        ["POST /api/v1/auth/token"] = [200, 400, 413, 429, 503],
        ["GET /api/v1/users/{userId}"] = [200, 400, 401, 403, 404, 429, 503],
        ["PUT /api/v1/users/{userId}/profile"] = [200, 400, 401, 403, 404, 413, 429, 503],
        ["POST /api/v1/health-metrics"] = [202, 400, 401, 403, 409, 413, 429, 503],
        ["GET /api/v1/health-metrics/{metricId}"] = [200, 400, 401, 403, 404, 429, 503],
        ["GET /api/v1/health-metrics/user/{userId}"] = [200, 400, 401, 403, 429, 503],
        ["GET /api/v1/recommendations/{userId}"] = [200, 400, 401, 403, 404, 429, 503],
        ["GET /api/v1/health-insights/user/{userId}"] = [200, 400, 401, 403, 429, 503],
        ["GET /api/v1/cache"] = [200, 401, 403, 429],
        ["POST /api/v1/nutrition-logs"] = [202, 400, 401, 403, 409, 413, 429, 503],
        ["GET /api/v1/nutrition-logs/user/{userId}"] = [200, 400, 401, 403, 429, 503],
        ["GET /api/v1/checkins/user/{userId}"] = [200, 400, 401, 403, 429, 503],
        ["GET /api/v1/health-entries/user/{userId}"] = [200, 400, 401, 403, 429, 503],
        ["GET /api/v1/nodes"] = [200, 400, 401, 403, 429, 503],
        ["PUT /api/v1/nodes/{nodeId}"] = [200, 400, 401, 403, 409, 413, 429, 503],
        ["GET /api/v1/nodes/{nodeId}/metrics"] = [200, 400, 401, 403, 404, 429, 503],
        ["GET /api/v1/nodes/{nodeId}/history"] = [200, 400, 401, 403, 404, 429, 503],
        ["GET /api/v1/status"] = [200, 401, 403, 429, 503],
        ["GET /api/v1/anomalies"] = [200, 400, 401, 403, 429, 503],
        ["POST /api/v1/anomalies/{anomalyId}/acknowledge"] = [200, 400, 401, 403, 404, 409, 429, 503],
        ["GET /api/v1/quality/{nodeId}"] = [200, 400, 401, 403, 404, 429, 503],
        ["GET /api/v1/network/efficiency"] = [200, 400, 401, 403, 429, 503],
        ["GET /api/v1/network/metrics"] = [200, 401, 403, 429, 503],
        ["GET /api/v1/dashboard/summary"] = [200, 401, 403, 429, 503],
        ["GET /api/v1/predictions/{nodeId}"] = [200, 400, 401, 403, 404, 429, 503],
        ["POST /api/v1/health-goals"] = [200, 201, 400, 401, 403, 409, 413, 422, 429, 503],
        ["GET /api/v1/health-goals/user/{userId}"] = [200, 400, 401, 403, 429, 503],
        ["GET /api/v1/health-metrics/user/{userId}/summary"] = [200, 400, 401, 403, 429, 503],
        ["POST /webhooks/call-completed"] = [200, 202, 400, 401, 409, 413, 429, 503],
    };

    [Fact]
    public async Task Every_operation_documents_its_request_body_and_every_status_it_can_return_with_a_schema()
    {
        using var client = f.Client();
        var contract = await OpenApiContract.FetchAsync(client);
        var problems = new List<string>();
        Assert.Equal(ExpectedStatuses.Keys.Order(), contract.Operations.Select(o => o.ToString()).Order());
        foreach (var operation in contract.Operations)
        {
            if (operation.Method == "POST")
            {
                if (operation.RequestBody is not { } body) problems.Add($"{operation}: no request body");
                else
                    foreach (var media in body.GetProperty("content").EnumerateObject())
                        if (!media.Value.TryGetProperty("schema", out _)) problems.Add($"{operation}: request {media.Name} has no schema");
            }
            var documented = operation.Responses.Select(r => r.Status).ToHashSet();
            foreach (var status in ExpectedStatuses[operation.ToString()])
                if (!documented.Contains(status.ToString())) problems.Add($"{operation}: {status} is not documented");
            foreach (var (status, response) in operation.Responses)
            {
                if (!response.TryGetProperty("content", out var content) || !content.EnumerateObject().Any())
                {
                    if (status != "414") problems.Add($"{operation}: {status} has no content");
                }
                else
                    foreach (var media in content.EnumerateObject())
                        if (!media.Value.TryGetProperty("schema", out _)) problems.Add($"{operation}: {status} {media.Name} has no schema");
                if (status.StartsWith('4') && status != "414" || status == "503" && operation.PathTemplate is not ("/health" or "/health/ready"))
                    if (content.ValueKind != JsonValueKind.Object || !content.TryGetProperty("application/problem+json", out _))
                        problems.Add($"{operation}: {status} is not problem details");
            }
        }
        foreach (var path in new[] { "/convert_to_unified", "/process_unified", "/quick_plot", "/api/v1/cgm/{userId}/upload" })
        {
            var types = contract.Operation("POST", path).RequestContentTypes.ToHashSet();
            foreach (var type in RawUploadTypes)
                if (!types.Contains(type)) problems.Add($"POST {path}: request content type {type} is not documented");
        }
        // The weight commands read their body themselves: the document must still say what it is, in the names read.
        foreach (var path in new[] { "/api/weight/process", "/api/weight/initialize" })
        {
            var schema = contract.Resolve(contract.Operation("POST", path).RequestBody!.Value.GetProperty("content").GetProperty("application/json").GetProperty("schema"));
            if (!schema.GetProperty("properties").TryGetProperty("user_id", out _)) problems.Add($"POST {path}: body schema has no user_id: {schema}");
        }
        var process = contract.Resolve(contract.Operation("POST", "/api/weight/process").Responses.Single(r => r.Status == "200").Response
            .GetProperty("content").GetProperty("application/json").GetProperty("schema"));
        if (!process.GetProperty("properties").TryGetProperty("filtered_weight", out _)) problems.Add($"POST /api/weight/process: 200 schema {process}");
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public async Task Real_responses_to_valid_and_invalid_requests_match_the_document()
    {
        using var client = f.Client();
        var contract = await OpenApiContract.FetchAsync(client);
        var weightUser = GatewayStackFixture.NewUser("contract-w");
        var cgmUser = GatewayStackFixture.NewUser("contract-c");
        var clarity = File.ReadAllBytes(Path.Combine(Repo.SharedData, "cgm", "Clarity_Export_synthetic.csv"));
        var now = DateTime.UtcNow;
        var email = $"contract-{Guid.NewGuid():N}@example.org";
        string Measurement(int minutesAgo, double kg = 80) => JsonSerializer.Serialize(GatewayStackFixture.Measurement(weightUser, kg, now.AddMinutes(-minutesAgo)));

        var cases = new List<Case>
        {
            new("GET", "/health"), new("GET", "/health/ready"), new("GET", "/health/live"), new("GET", "/api/v1/topics"), new("GET", "/api/v1/streams"),
            new("POST", "/api/weight/process", Json(Measurement(30))),
            new("POST", "/api/weight/process", Json($$"""{"user_id":"{{weightUser}}","unit":"kg","timestamp":"{{now:O}}"}""")),
            new("POST", "/api/weight/process", Json($$"""{"user_id":"{{weightUser}}","weight":"80","unit":"kg","timestamp":"{{now:O}}"}""")),
            new("POST", "/api/weight/process", Json("{\"user_id\": \"x\", \"weight\": ")),
            new("POST", "/api/weight/process", Json(new string('[', 70_000))),
            new("POST", "/api/weight/process", Json(Measurement(20)), ApiKey: null),
            new("POST", "/api/weight/process", Json(Measurement(20)), ApiKey: "not-a-configured-key-at-all"),
            new("POST", "/api/weight/initialize", Json($$"""{"user_id":"{{weightUser}}i","measurements":[{{Measurement(9)}},{{Measurement(8, 80.4)}},{{Measurement(7, 79.8)}}]}""")),
            new("POST", "/api/weight/initialize", Json($$"""{"user_id":"{{weightUser}}","measurements":[]}""")),
            new("GET", $"/api/weight/{weightUser}/latest"), new("GET", "/api/weight/nobody-here/latest"), new("GET", "/api/weight/bad%20id/latest"),
            new("GET", $"/api/weight/{weightUser}/history"), new("GET", $"/api/weight/{weightUser}/history?limit=abc"),
            new("GET", "/api/weight/nobody-here/state"), new("GET", "/api/weight/bad%20id/state"), new("GET", "/api/weight/nobody-here/state", ApiKey: null),
            new("GET", $"/api/weight/{weightUser}/history", ApiKey: null),
            new("POST", "/convert_to_unified", Raw(clarity, "text/csv")), new("POST", "/convert_to_unified", Raw("hello,world\n1,2\n"u8.ToArray(), "text/csv")),
            new("POST", "/convert_to_unified", Multipart(clarity)),
            new("POST", "/process_unified", Raw(clarity, "application/octet-stream")), new("POST", "/process_unified", Raw("{}"u8.ToArray(), "application/json")),
            new("POST", "/process_unified", Raw(clarity, "text/csv"), ApiKey: null),
            new("POST", $"/api/v1/cgm/{cgmUser}/upload", Raw(GatewayStackFixture.RecentUnifiedCsv(), "text/csv")),
            new("POST", $"/api/v1/cgm/{cgmUser}/upload", Raw("not,a,cgm,file\n"u8.ToArray(), "text/csv")),
            new("POST", "/api/v1/cgm/bad%20id/upload", Raw(GatewayStackFixture.RecentUnifiedCsv(), "text/csv")),
            new("GET", $"/api/v1/cgm/{cgmUser}/readings"), new("GET", $"/api/v1/cgm/{cgmUser}/readings?from=yesterday"),
            new("GET", $"/api/v1/cgm/{cgmUser}/latest"), new("GET", "/api/v1/cgm/nobody-here/latest"),
            new("GET", $"/api/v1/cgm/{cgmUser}/forecast"), new("GET", "/api/v1/cgm/bad%20id/forecast"),
            new("POST", "/draw_a_plot", Json("""{"handle":"no-such-handle","index":0}""")), new("POST", "/draw_a_plot", Json("""{"handle":"h","index":"x"}""")),
            new("POST", "/draw_a_plot", Raw("""{"handle":"h","index":0}"""u8.ToArray(), "text/plain")),
            new("POST", "/quick_plot", Raw(clarity, "text/csv")), new("POST", "/quick_plot", Raw("x"u8.ToArray(), "text/csv")),
            new("POST", "/cache_management", Json("""{"action":"info"}""")), new("POST", "/cache_management", Json("""{"action":"explode"}""")),
            new("POST", "/cache_management", Json("""{"action":"delete","handle":"no-such-handle"}""")),
            new("POST", "/api/v1/users/register", Json($$"""{"email":"{{email}}","password":"Contract-pw-1"}""")),
            new("POST", "/api/v1/users/register", Json($$"""{"email":"{{email.ToUpperInvariant()}}","password":"Contract-pw-1"}""")),
            new("POST", "/api/v1/users/register", Json("""{"email":"x","password":"short"}""")),
            new("POST", "/api/v1/auth/token", Json($$"""{"grant_type":"password","email":"{{email}}","password":"Contract-pw-1"}""")),
            new("POST", "/api/v1/auth/token", Json("""{"grant_type":"refresh_token","refresh_token":"not-issued-here"}""")),
            new("POST", "/api/v1/auth/token", Json("""{"grant_type":"magic"}""")),
            new("POST", "/api/v1/health-metrics", Json($$"""{"user_id":"{{weightUser}}","type":"steps","value":5200,"unit":"steps","recorded_at":"{{now.AddMinutes(-9):O}}","metric_id":"contract-{{weightUser}}"}""")),
            new("POST", "/api/v1/health-metrics", Json($$"""{"user_id":"{{weightUser}}","type":"steps","value":5300,"unit":"steps","recorded_at":"{{now.AddMinutes(-9):O}}","metric_id":"contract-{{weightUser}}"}""")),
            new("POST", "/api/v1/health-metrics", Json($$"""{"user_id":"{{weightUser}}","type":"heart_rate","value":400,"unit":"bpm","recorded_at":"{{now:O}}"}""")),
            new("GET", $"/api/v1/health-metrics/user/{weightUser}"), new("GET", $"/api/v1/health-metrics/user/{weightUser}?cursor=x"),
            new("GET", "/api/v1/health-metrics/no-such-metric"), new("GET", "/api/v1/health-metrics/bad%20id"),
            new("GET", $"/api/v1/recommendations/{weightUser}"), new("GET", $"/api/v1/recommendations/{weightUser}?days=0"),
            new("GET", $"/api/v1/health-insights/user/{weightUser}"), new("GET", $"/api/v1/health-insights/user/{weightUser}?from=soon"),
            new("GET", "/api/v1/cache"), new("GET", "/api/v1/cache", ApiKey: null),
            new("POST", "/api/v1/nutrition-logs", Json(JsonSerializer.Serialize(NutritionLogsApiTests.Meal(weightUser, now.AddMinutes(-40), "contract-meal-" + weightUser)))),
            new("POST", "/api/v1/nutrition-logs", Json(JsonSerializer.Serialize(NutritionLogsApiTests.Meal(weightUser, now.AddMinutes(-41), "contract-meal-" + weightUser)))),
            new("POST", "/api/v1/nutrition-logs", Json($$"""{"user_id":"{{weightUser}}","meal":"brunch"}""")),
            new("GET", $"/api/v1/nutrition-logs/user/{weightUser}"), new("GET", $"/api/v1/nutrition-logs/user/{weightUser}?limit=0"),
            new("GET", $"/api/v1/checkins/user/{weightUser}"), new("GET", $"/api/v1/checkins/user/{weightUser}?cursor=x"),
            new("GET", $"/api/v1/health-entries/user/{weightUser}"), new("GET", $"/api/v1/health-entries/user/{weightUser}?kind=food"),
            new("GET", $"/api/v1/health-entries/user/{weightUser}?kind=drug"),
            new("GET", "/api/v1/health-entries/user/bad%20id"), new("GET", $"/api/v1/health-entries/user/{weightUser}", ApiKey: null),
            new("POST", "/api/v1/health-goals", Json(JsonSerializer.Serialize(HealthGoalsApiTests.StepsGoal(weightUser, "contract-goal-" + weightUser)))),
            new("POST", "/api/v1/health-goals", Json(JsonSerializer.Serialize(HealthGoalsApiTests.StepsGoal(weightUser, "contract-goal-" + weightUser)))),
            new("POST", "/api/v1/health-goals", Json($$"""{"user_id":"{{weightUser}}","goal_id":"contract-goal-{{weightUser}}","metric":"steps","target":12000,"unit":"steps","period":"day","direction":"at_least"}""")),
            new("POST", "/api/v1/health-goals", Json($$"""{"user_id":"{{weightUser}}","metric":"steps","target":-1}""")),
            new("GET", $"/api/v1/health-goals/user/{weightUser}"), new("GET", "/api/v1/health-goals/user/bad%20id"),
            new("GET", $"/api/v1/health-metrics/user/{weightUser}/summary?days=30"), new("GET", $"/api/v1/health-metrics/user/{weightUser}/summary?days=91"),
            new("GET", "/api/v1/users/bad%20id"), new("GET", $"/api/v1/users/{Guid.NewGuid():N}"), new("GET", $"/api/v1/users/{Guid.NewGuid():N}", ApiKey: null),
            new("PUT", $"/api/v1/nodes/contract-{weightUser}", Json("""{"district_id":"dma-contract","kind":"meter","metrics":["flow"],"cadence_seconds":60}""")),
            new("PUT", $"/api/v1/nodes/contract-{weightUser}", Json("""{"district_id":"dma-elsewhere","kind":"meter","metrics":["flow"],"cadence_seconds":60}""")),
            new("PUT", $"/api/v1/nodes/contract-{weightUser}", Json("""{"district_id":"dma-contract","kind":"pump"}""")),
            new("GET", "/api/v1/nodes"), new("GET", "/api/v1/nodes?district_id=%01"),
            new("GET", $"/api/v1/nodes/contract-{weightUser}/metrics"), new("GET", "/api/v1/nodes/no-such-node/metrics"), new("GET", "/api/v1/nodes/bad%20id/metrics"),
            new("GET", $"/api/v1/nodes/contract-{weightUser}/history"), new("GET", $"/api/v1/nodes/contract-{weightUser}/history?window_minutes=7"),
            new("GET", "/api/v1/nodes/no-such-node/history"),
            new("GET", "/api/v1/status"),
            new("GET", "/api/v1/anomalies"), new("GET", "/api/v1/anomalies?state=closed"),
            new("POST", $"/api/v1/anomalies/contract-{weightUser}/acknowledge", Json("""{"note":"checked"}""")),
            new("POST", "/api/v1/anomalies/no-such-anomaly/acknowledge", Json("{}")), new("POST", "/api/v1/anomalies/bad%20id/acknowledge", Json("{}")),
            new("GET", $"/api/v1/quality/contract-{weightUser}"), new("GET", $"/api/v1/quality/contract-{weightUser}?window_minutes=1"),
            new("GET", "/api/v1/quality/no-such-node"),
            new("GET", "/api/v1/network/efficiency"), new("GET", "/api/v1/network/efficiency?days=0"),
            new("GET", "/api/v1/network/metrics"), new("GET", "/api/v1/dashboard/summary"),
            new("GET", $"/api/v1/predictions/contract-{weightUser}"), new("GET", "/api/v1/predictions/no-such-node"), new("GET", "/api/v1/predictions/bad%20id"),
            // Signed by the local-dev provider of gateway.Development.json: accepted, repeated (a duplicate), tampered, malformed.
            Webhook($$"""{"event_id":"contract-{{weightUser}}","call_id":"contract-{{weightUser}}","occurred_at":"{{now.AddMinutes(-3):O}}"}"""),
            Webhook($$"""{"event_id":"contract-{{weightUser}}","call_id":"contract-{{weightUser}}","occurred_at":"{{now.AddMinutes(-3):O}}"}"""),
            Webhook($$"""{"event_id":"contract-{{weightUser}}","call_id":"contract-{{weightUser}}","occurred_at":"{{now.AddMinutes(-3):O}}"}""", tamper: true),
            Webhook("""{"event_id":"contract-bad","call_id":"a b","occurred_at":"soon"}"""),
        };
        var failures = new List<string>();
        var seen = new Dictionary<string, List<int>>();
        // An open anomaly for the acknowledgement to succeed on (the district analysis writes them; none has run here).
        await using (var anomaly = f.Postgres.CreateCommand("""
            INSERT INTO sensors.anomalies (anomaly_id, kind, district_id, started_at, severity, score, state, reason)
            VALUES ($1, 'burst', 'dma-contract', now(), 'high', 7, 'open', 'contract')
            """))
        {
            anomaly.Parameters.Add(new Npgsql.NpgsqlParameter { Value = $"contract-{weightUser}" });
            await anomaly.ExecuteNonQueryAsync();
        }
        // A call's check-in and one entry of each kind (the calllogs sinks write them; no call pipeline runs here), so the
        // reads' pages hold items for their schemas to be checked against, nulls of the other kinds' attributes included.
        await using (var checkin = f.Postgres.CreateCommand("""
            WITH c AS (INSERT INTO calllogs.checkins (call_id, patient_id, event_time, provider, duration_s, medication_count, food_count, symptom_count, extractor)
                       VALUES ($1, $2, now() - interval '1 hour', 'local-dev', 240, 1, 1, 1, 'contract') RETURNING event_time),
            m AS (INSERT INTO calllogs.medication_entries (entry_id, call_id, patient_id, event_time, generic_name, dose_value, dose_unit, frequency, status, confidence, span_start, span_length, extractor)
                  SELECT $1 || ':0', $1, $2, event_time, 'metformin', NULL, NULL, NULL, 'unspecified', 0.5, 0, 9, 'contract' FROM c),
            s AS (INSERT INTO calllogs.symptom_entries (entry_id, call_id, patient_id, event_time, name, present, severity, onset, confidence, span_start, span_length, extractor)
                  SELECT $1 || ':2', $1, $2, event_time, 'headache', true, '3/10', NULL, 0.8, 20, 8, 'contract' FROM c)
            INSERT INTO calllogs.food_entries (entry_id, call_id, patient_id, event_time, item, quantity_value, quantity_unit, meal, confidence, span_start, span_length, extractor)
            SELECT $1 || ':1', $1, $2, event_time, 'oatmeal', 1, 'servings', NULL, 0.7, 10, 7, 'contract' FROM c
            """))
        {
            checkin.Parameters.Add(new Npgsql.NpgsqlParameter { Value = $"contract-call-{weightUser}" });
            checkin.Parameters.Add(new Npgsql.NpgsqlParameter { Value = weightUser });
            await checkin.ExecuteNonQueryAsync();
        }
        foreach (var c in cases) await SendAndCheckAsync(c);
        // The latest reads answer 200 once the sinks have stored what the requests above sent.
        await EventuallyAsync(new("GET", $"/api/weight/{weightUser}i/latest"));
        await EventuallyAsync(new("GET", $"/api/weight/{weightUser}i/state"));
        await EventuallyAsync(new("GET", $"/api/v1/cgm/{cgmUser}/latest"));
        await EventuallyAsync(new("GET", $"/api/v1/health-metrics/contract-{weightUser}"));
        // A processed dataset's handle makes the plot endpoints answer for real (200, or 503 without a model).
        var handle = seen.ContainsKey("POST /process_unified") ? await HandleAsync() : null;
        if (handle is not null)
            await SendAndCheckAsync(new("POST", "/draw_a_plot", Json($$"""{"handle":"{{handle}}","index":0}""")));

        // The profile of the account registered above (the dev key has admin, which reads profiles).
        await using (var lookup = f.Postgres.CreateCommand("SELECT user_id FROM identity.users WHERE email = $1"))
        {
            lookup.Parameters.Add(new Npgsql.NpgsqlParameter { Value = email });
            if (await lookup.ExecuteScalarAsync() is string registered)
            {
                await SendAndCheckAsync(new("PUT", $"/api/v1/users/{registered}/profile",
                    Json("""{"time_zone":"Europe/Paris","sex":"female","date_of_birth":"1980-02-29","medical_history":"none"}""")));
                await SendAndCheckAsync(new("PUT", $"/api/v1/users/{registered}/profile", Json("""{"time_zone":"Nowhere/Atlantis"}""")));
                await SendAndCheckAsync(new("GET", $"/api/v1/users/{registered}"));
                await SendAndCheckAsync(new("GET", $"/api/v1/recommendations/{registered}"));
            }
        }

        foreach (var operation in contract.Operations)
        {
            if (!seen.TryGetValue(operation.ToString(), out var statuses)) failures.Add($"{operation} was not exercised");
            else if (!statuses.Any(s => s is >= 200 and < 300) && operation.Id != "GetCgmForecast")
                failures.Add($"{operation} never succeeded: {string.Join(", ", statuses)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));

        async Task EventuallyAsync(Case c)
        {
            for (var deadline = DateTime.UtcNow.AddSeconds(60); DateTime.UtcNow < deadline; await Task.Delay(250))
            {
                using var probe = f.Client(c.ApiKey);
                if ((await probe.GetAsync(c.Path)).IsSuccessStatusCode) break;
            }
            await SendAndCheckAsync(c);
        }

        async Task SendAndCheckAsync(Case c)
        {
            using var request = new HttpRequestMessage(new HttpMethod(c.Method), c.Path) { Content = c.Body?.Invoke() };
            request.Headers.Remove("X-Api-Key");
            c.Prepare?.Invoke(request);
            using var anonymous = f.Client(c.ApiKey);
            using var response = await anonymous.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            var operation = Match(contract, c.Method, c.Path);
            if (operation is null) { failures.Add($"{c.Method} {c.Path}: no documented operation"); return; }
            seen.TryAdd(operation.ToString(), []);
            seen[operation.ToString()].Add((int)response.StatusCode);
            if ((int)response.StatusCode >= 500 && (int)response.StatusCode is not (503 or 504))
                failures.Add($"{c.Method} {c.Path}: {(int)response.StatusCode} {OpenApiContract.Shorten(body)}");
            if (contract.Check(operation, (int)response.StatusCode, response.Content.Headers.ContentType?.ToString(), body) is { } problem)
                failures.Add(problem);
        }

        async Task<string?> HandleAsync()
        {
            using var r = await client.PostAsync("/process_unified", Raw(clarity, "text/csv")());
            return r.IsSuccessStatusCode ? JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("handle").GetString() : null;
        }
    }

    /// <summary>The documented operation a concrete request path falls under.</summary>
    internal static ApiOperation? Match(OpenApiContract contract, string method, string path)
    {
        var segments = path.Split('?')[0].Split('/');
        return contract.Operations.FirstOrDefault(o =>
        {
            var template = o.PathTemplate.Split('/');
            return o.Method == method && template.Length == segments.Length
                   && template.Zip(segments).All(p => p.First.StartsWith('{') || p.First == p.Second);
        });
    }

    internal sealed record Case(string Method, string Path, Func<HttpContent>? Body = null, string? ApiKey = GatewayStackFixture.ApiKey,
        Action<HttpRequestMessage>? Prepare = null);

    /// <summary>A call webhook signed now as the local-dev provider (gateway.Development.json) signs it; <paramref name="tamper"/>
    /// sends a body other than the one signed.</summary>
    internal static Case Webhook(string json, bool tamper = false) => new("POST", "/webhooks/call-completed", ApiKey: null, Prepare: request =>
    {
        // Signed as it is sent: a timestamp taken when the case list was built could be out of the 5-minute window by now.
        var body = Encoding.UTF8.GetBytes(json);
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var sent = tamper ? Encoding.UTF8.GetBytes(json.Replace("contract-", "contrast-", StringComparison.Ordinal)) : body;
        request.Content = Raw(sent, "application/json")();
        request.Headers.Add("X-StreamHealth-Provider", "local-dev");
        request.Headers.Add("X-StreamHealth-Timestamp", timestamp);
        request.Headers.Add("X-StreamHealth-Signature", CallLogs.FakeCallProvider.Signature(StreamHealth.Gateway.GatewayCallWebhookOptions.DevelopmentSecret, timestamp, body));
    });

    internal static Func<HttpContent> Json(string json) => () => new StringContent(json, Encoding.UTF8, "application/json");

    internal static Func<HttpContent> Raw(byte[] bytes, string type) => () =>
        new ByteArrayContent(bytes) { Headers = { ContentType = new MediaTypeHeaderValue(type) } };

    private static Func<HttpContent> Multipart(byte[] bytes) => () =>
    {
        var form = new MultipartFormDataContent();
        form.Add(Raw(bytes, "text/csv")(), "file", "export.txt");
        return form;
    };
}
