using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace StreamHealth.Tests.Gateway.Contract;

/// <summary>Property: no input a client can send gets a 5xx (504 only where the document lists it), every answer
/// is one the OpenAPI document lists, and no sink is stuck afterwards. Driven by the document itself: every
/// operation, every path and query parameter and every body property (top level and inside arrays of objects)
/// is replaced in turn by hostile JSON values of every type, and every body by random JSON and random bytes.
/// Seeded (STREAMHEALTH_FUZZ_SEED overrides) and bounded (STREAMHEALTH_FUZZ_VALUES values per field).</summary>
public sealed class HostileInputPropertyTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    private static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable("STREAMHEALTH_FUZZ_SEED"), out var s) ? s : 20261111;
    private static readonly int ValuesPerField = int.TryParse(Environment.GetEnvironmentVariable("STREAMHEALTH_FUZZ_VALUES"), out var v) ? v : 8;

    [Fact]
    public async Task Random_values_in_every_field_and_random_bodies_never_get_a_5xx_and_no_sink_stalls()
    {
        using var client = f.Client();
        var contract = await OpenApiContract.FetchAsync(client);
        var failures = new List<string>();
        var sent = 0;
        var statuses = new SortedDictionary<string, int>(StringComparer.Ordinal);
        async Task SendAsync(ApiOperation operation, Request request)
        {
            sent++;
            using var message = new HttpRequestMessage(new HttpMethod(operation.Method), request.Path) { Content = request.Body };
            HttpResponseMessage response;
            try { response = await client.SendAsync(message); }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                failures.Add($"{operation} {request.What}: no answer ({e.GetType().Name}: {e.Message})");
                return;
            }
            using (response)
            {
                var status = (int)response.StatusCode;
                var key = $"{operation} {status}";
                statuses[key] = statuses.GetValueOrDefault(key) + 1;
                var body = await response.Content.ReadAsStringAsync();
                var documented = operation.Responses.Any(r => r.Status == status.ToString(CultureInfo.InvariantCulture));
                if (status >= 500 && !(status == 504 && documented))
                    failures.Add($"{operation} {request.What}: {status} {OpenApiContract.Shorten(body)}");
                // Kestrel refuses a NUL in the request line before any middleware runs: a bare 400, no body.
                else if (status == 400 && body.Length == 0 && request.Path.Contains("%00", StringComparison.Ordinal)) { }
                // An empty path parameter leaves an empty segment ("/api/v1/cgm//readings"): that path is no operation's, and
                // routing answers 404 with problem details.
                else if (status == 404 && request.Path.Split('?')[0].Contains("//", StringComparison.Ordinal)
                         && response.Content.Headers.ContentType?.MediaType == "application/problem+json") { }
                else if (contract.Check(operation, status, response.Content.Headers.ContentType?.ToString(), body) is { } mismatch)
                    failures.Add($"{request.What}: {mismatch}");
                else if (body.Contains("System.", StringComparison.Ordinal) || body.Contains("   at ", StringComparison.Ordinal))
                    failures.Add($"{operation} {request.What}: {status} leaks a .NET type name or stack trace: {OpenApiContract.Shorten(body)}");
            }
        }

        const string WeightProcessAccepted = "POST /api/weight/process 200";
        foreach (var operation in contract.Operations)
        {
            // A generator per operation, so that an endpoint added to the document does not change the values every
            // later operation gets (the seed still reproduces a run).
            var random = new Random(Seed ^ StableHash(operation.ToString()));
            foreach (var request in Requests(contract, operation, random)) await SendAsync(operation, request);
            // Hostile values that pass validation must reach the pipeline for the sink check below to mean anything:
            // keep drawing for the weight command (bounded) until one does, whatever the seed.
            if (operation.ToString() == "POST /api/weight/process")
                for (var round = 0; round < 20 && statuses.GetValueOrDefault(WeightProcessAccepted) == 0; round++)
                    foreach (var request in Requests(contract, operation, random)) await SendAsync(operation, request);
        }
        Assert.True(sent > 200, $"only {sent} requests were generated");
        Assert.True(statuses.GetValueOrDefault(WeightProcessAccepted) > 0, "no hostile weight measurement was accepted: " + string.Join(", ", statuses));
        // Whatever was accepted above must not have stopped a sink: fresh valid input still reaches PostgreSQL.
        var stalled = await Record(() => f.AssertSinksFlowAsync(client));
        if (stalled is not null) failures.Add(stalled);
        Assert.True(failures.Count == 0,
            $"seed {Seed} (STREAMHEALTH_FUZZ_SEED), {sent} requests, {failures.Count} failures:\n" + string.Join("\n", failures.Take(60))
            + "\nanswers: " + string.Join(", ", statuses.Select(kv => $"{kv.Key}×{kv.Value}")));
    }

    /// <summary>FNV-1a of the operation's name: string.GetHashCode differs between processes.</summary>
    private static int StableHash(string text)
    {
        var hash = 2166136261u;
        foreach (var c in text) hash = (hash ^ c) * 16777619u;
        return (int)hash;
    }

    private static async Task<string?> Record(Func<Task> check)
    {
        try { await check(); return null; }
        catch (Exception e) when (e is Xunit.Sdk.XunitException) { return "after the hostile requests: " + e.Message; }
    }

    private sealed record Request(string What, string Path, HttpContent? Body);

    /// <summary>For one operation: each parameter and each body field replaced in turn, then whole random bodies.</summary>
    private static IEnumerable<Request> Requests(OpenApiContract contract, ApiOperation operation, Random random)
    {
        var parameters = operation.Parameters.Select(p => (Name: p.GetProperty("name").GetString()!, In: p.GetProperty("in").GetString()!))
            .Where(p => p.In is "path" or "query").ToList();
        var jsonBody = operation.RequestBody is { } b && b.GetProperty("content").TryGetProperty("application/json", out var media)
                       && !operation.RequestContentTypes.Contains("multipart/form-data")
            ? contract.Resolve(media.GetProperty("schema")) : (JsonElement?)null;
        var fields = jsonBody is { } schema ? Fields(contract, schema, "") : [];

        Request Build(string what, Func<string, string?>? parameter = null, HttpContent? body = null)
        {
            var path = operation.PathTemplate;
            var query = new List<string>();
            foreach (var (name, location) in parameters)
            {
                var value = parameter?.Invoke(name) ?? (location == "path" ? GatewayStackFixture.NewUser("fuzz") : null);
                if (location == "path") path = path.Replace("{" + name + "}", value);
                else if (value is not null) query.Add($"{name}={value}");
            }
            body ??= jsonBody is not null ? Json(ValidBody(operation)) : operation.RequestBody is not null ? Bytes(GatewayStackFixture.RecentUnifiedCsv(), "text/csv") : null;
            return new Request(what, query.Count > 0 ? path + "?" + string.Join('&', query) : path, body);
        }

        foreach (var (name, _) in parameters)
            for (var i = 0; i < ValuesPerField; i++)
            {
                var raw = RandomUrlValue(random);
                yield return Build($"{name}={raw}", n => n == name ? raw : null);
            }
        foreach (var field in fields)
            for (var i = 0; i < ValuesPerField; i++)
            {
                // The issue's own example first, then every kind of value in turn (random within each kind).
                var value = i == 0 ? new RawJson("\"a\\u0000b\"") : RandomJson(random, depth: 0, kind: i);
                var body = ValidBody(operation);
                Set(body, field, value);
                yield return Build($"body {field} = {Describe(value)}", body: Json(body));
            }
        if (operation.RequestBody is null) yield break;
        var types = operation.RequestContentTypes.Concat(["application/x-www-form-urlencoded", "text/plain"]).ToArray();
        for (var i = 0; i < ValuesPerField; i++)
        {
            var value = RandomJson(random, depth: 0);
            yield return Build($"body = {Describe(value)}", body: Json(value));
            var bytes = new byte[random.Next(0, 4096)];
            random.NextBytes(bytes);
            var type = types[random.Next(types.Length)];
            yield return Build($"body = {bytes.Length} random bytes as {type}", body: Bytes(bytes, type));
            // A valid file with a few bytes changed: the parsers' edge cases rather than their first check.
            var csv = GatewayStackFixture.RecentUnifiedCsv(40);
            for (var k = 0; k < 1 + random.Next(8); k++) csv[random.Next(csv.Length)] = (byte)random.Next(256);
            yield return Build($"body = unified CSV with corrupted bytes (seed-derived) as {type}", body: Bytes(csv, type));
        }
    }

    /// <summary>Dotted paths of the body's properties, with [0] for arrays of objects (one level down).</summary>
    private static List<string> Fields(OpenApiContract contract, JsonElement schema, string prefix)
    {
        var fields = new List<string>();
        if (!schema.TryGetProperty("properties", out var properties)) return fields;
        foreach (var property in properties.EnumerateObject())
        {
            fields.Add(prefix + property.Name);
            var resolved = contract.Resolve(property.Value);
            if (prefix.Length == 0 && resolved.TryGetProperty("items", out var items))
                fields.AddRange(Fields(contract, contract.Resolve(items), $"{property.Name}[0]."));
        }
        return fields;
    }

    /// <summary>A body the operation accepts, so that each mutation tests one field; ids fresh per request.</summary>
    private static JsonNode ValidBody(ApiOperation operation)
    {
        var user = GatewayStackFixture.NewUser("fuzz");
        JsonNode Measurement(int minutesAgo) => JsonSerializer.SerializeToNode(GatewayStackFixture.Measurement(user, 80 + minutesAgo / 10.0, DateTime.UtcNow.AddMinutes(-minutesAgo)))!;
        return operation.PathTemplate switch
        {
            "/api/weight/process" => Measurement(5),
            "/api/weight/initialize" => new JsonObject
            {
                ["user_id"] = user, ["measurement_id"] = Guid.NewGuid().ToString("N"),
                ["measurements"] = new JsonArray(Measurement(30), Measurement(20), Measurement(10)),
            },
            "/api/v1/health-metrics" => new JsonObject
            {
                ["user_id"] = user, ["type"] = "heart_rate", ["value"] = 61, ["unit"] = "bpm",
                ["recorded_at"] = DateTimeOffset.UtcNow.AddMinutes(-5).ToString("O"), ["metric_id"] = Guid.NewGuid().ToString("N"),
            },
            "/api/v1/nutrition-logs" => JsonSerializer.SerializeToNode(NutritionLogsApiTests.Meal(user, DateTimeOffset.UtcNow.AddMinutes(-5), Guid.NewGuid().ToString("N")))!,
            "/api/v1/health-goals" => JsonSerializer.SerializeToNode(HealthGoalsApiTests.StepsGoal(user, Guid.NewGuid().ToString("N")))!,
            "/draw_a_plot" => new JsonObject { ["handle"] = "no-such-handle", ["index"] = 0 },
            "/cache_management" => new JsonObject { ["action"] = "info" },
            "/api/v1/users/{userId}/profile" => new JsonObject
            {
                ["time_zone"] = "Europe/Paris", ["sex"] = "female", ["date_of_birth"] = "1980-02-29", ["medical_history"] = "none",
            },
            _ => new JsonObject(),
        };
    }

    private static void Set(JsonNode body, string field, RawJson value)
    {
        var parts = field.Split('.');
        var node = body;
        foreach (var part in parts[..^1])
            node = part.EndsWith("[0]", StringComparison.Ordinal) ? node[part[..^3]]![0]! : node[part]!;
        node[parts[^1]] = new JsonObject { [Placeholder] = value.Text };
    }

    private const string Placeholder = "__raw_json__";

    /// <summary>A JSON token as text: System.Text.Json will not write lone surrogates, hostile clients will.</summary>
    private readonly record struct RawJson(string Text);

    private static HttpContent Json(JsonNode body)
    {
        var text = body.ToJsonString();
        // Swap each placeholder object for its raw token.
        while (text.IndexOf("{\"" + Placeholder + "\":", StringComparison.Ordinal) is var start and >= 0)
        {
            var valueStart = start + Placeholder.Length + 4;
            var token = JsonDocument.Parse(text[valueStart..FindEnd(text, valueStart)]).RootElement.GetString()!;
            text = text[..start] + token + text[(FindEnd(text, valueStart) + 1)..];
        }
        return new ByteArrayContent(Encoding.UTF8.GetBytes(text)) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } };
    }

    private static HttpContent Json(RawJson value) =>
        new ByteArrayContent(Encoding.UTF8.GetBytes(value.Text)) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } };

    private static int FindEnd(string text, int stringStart)
    {
        for (var i = stringStart + 1; i < text.Length; i++)
        {
            if (text[i] == '\\') i++;
            else if (text[i] == '"') return i + 1;
        }
        throw new InvalidOperationException("unterminated placeholder");
    }

    private static HttpContent Bytes(byte[] bytes, string type)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.TryAddWithoutValidation("Content-Type", type);
        return content;
    }

    private static readonly string[] HostileStrings =
    [
        "", " ", "a\\u0000b", "\\u0000", "\\u0001\\u001f", "tab\\tline\\ncr\\r", "\\u007f", "\\ud800", "x\\udfffy", "\\ud83d\\ude00",
        "NaN", "Infinity", "-Infinity", "1e309", "80", "-1", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1961-04-12T00:56:47Z",
        "2026-02-30T00:00:00Z", "../../etc/passwd", "' OR 1=1 --", "%00", "<script>", "kg", "lb", "info", "delete", "flush",
        "user.name:1_2-3", "\\u202e", "ÿ", "日本語",
    ];

    private static readonly string[] HostileNumbers =
    [
        "0", "-0", "-1", "1", "0.1", "80", "1e308", "-1e308", "1e309", "-1e309", "1e-320", "2147483648", "-2147483649",
        "9223372036854775808", "123456789012345678901234567890", "1.7976931348623157e308", "5e-324", "3.14159265358979323846264338327950288",
    ];

    private static RawJson RandomJson(Random random, int depth, int? kind = null) => (kind % 8 ?? random.Next(depth > 2 ? 4 : 8)) switch
    {
        0 => new RawJson("\"" + HostileStrings[random.Next(HostileStrings.Length)] + "\""),
        1 => new RawJson(HostileNumbers[random.Next(HostileNumbers.Length)]),
        2 => new RawJson(random.Next(3) switch { 0 => "true", 1 => "false", _ => "null" }),
        3 => new RawJson("\"" + new string((char)random.Next('a', 'z' + 1), random.Next(2) == 0 ? 129 : 10_000) + "\""),
        4 => new RawJson("{" + string.Join(',', Enumerable.Range(0, random.Next(4)).Select(i => $"\"k{i}\":{RandomJson(random, depth + 1).Text}")) + "}"),
        5 => new RawJson("[" + string.Join(',', Enumerable.Range(0, random.Next(5)).Select(_ => RandomJson(random, depth + 1).Text)) + "]"),
        6 => new RawJson(new string('[', 200) + new string(']', 200)),
        _ => new RawJson("\"" + RandomUnicode(random) + "\""),
    };

    private static string RandomUnicode(Random random)
    {
        var text = new StringBuilder();
        for (var i = random.Next(1, 40); i > 0; i--) text.Append(CultureInfo.InvariantCulture, $"\\u{random.Next(0, 0x10000):x4}");
        return text.ToString();
    }

    /// <summary>A hostile route or query value, percent-encoded as a client may send it, invalid UTF-8 included.</summary>
    private static string RandomUrlValue(Random random) => random.Next(6) switch
    {
        0 => "%00", 1 => "%ED%A0%80", 2 => "%FF%FE", 3 => new string('x', random.Next(2) == 0 ? 129 : 10_000),
        4 => Uri.EscapeDataString(HostileStrings[random.Next(HostileStrings.Length)].Replace("\\u0000", "\0").Replace("\\u0001\\u001f", "\u0001\u001f")),
        _ => HostileNumbers[random.Next(HostileNumbers.Length)],
    };

    private static string Describe(RawJson value) => value.Text.Length <= 80 ? value.Text : value.Text[..80] + $"… ({value.Text.Length} chars)";
}
