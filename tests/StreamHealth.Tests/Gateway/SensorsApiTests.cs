using System.Net;
using System.Net.Http.Json;
using System.Text;
using StreamHealth.Runtime.Streams;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Tests.Gateway.Contract;
using static StreamHealth.Tests.Gateway.PeopleOnTheStack;
using SensorMetric = StreamHealth.Schemas.Avro.Sensors.SensorMetric;

namespace StreamHealth.Tests.Gateway;

/// <summary>The water-network endpoints over the real gateway, PostgreSQL and Redis. The windows are written as the sensors
/// sinks write them (rows of sensors.window_metrics, <see cref="SensorLatestCache"/>); the sinks themselves are tested on the
/// running pipeline in SensorsTopologyTests.</summary>
public sealed class SensorsApiTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    private static readonly DateTime Hour = new(DateTime.UtcNow.Year, DateTime.UtcNow.Month, DateTime.UtcNow.Day, DateTime.UtcNow.Hour, 0, 0, DateTimeKind.Utc);

    private static object Node(string district, string kind = "meter", params string[] metrics) => new
    {
        district_id = district, kind, metrics = metrics.Length == 0 ? ["flow"] : metrics, cadence_seconds = 60, name = "Via Roma 12",
    };

    private async Task InsertWindowAsync(string node, string metric, int minutes, DateTime start, int count, double? mean)
    {
        await using var command = f.Postgres.CreateCommand("""
            INSERT INTO sensors.window_metrics (node_id, district_id, metric, unit, window_minutes, window_start, window_end, reading_count,
                duplicate_count, late_count, min, max, mean, stddev, p50, p95, source_partition, source_offset)
            VALUES ($1, 'dma-api', $2, 'L/s', $3, $4, $5, $6, 0, 0, $7, $7, $7, 0, $7, $7, 0, 0)
            """);
        command.Parameters.AddWithValue(node);
        command.Parameters.AddWithValue(metric);
        command.Parameters.AddWithValue(minutes);
        command.Parameters.AddWithValue(start);
        command.Parameters.AddWithValue(start.AddMinutes(minutes));
        command.Parameters.AddWithValue(count);
        command.Parameters.AddWithValue(mean is { } m ? m : DBNull.Value);
        await command.ExecuteNonQueryAsync();
    }

    [Fact]
    public async Task Operators_register_nodes_and_read_their_latest_windows_and_history_from_the_precomputed_results()
    {
        var client = f.Client();
        var node = GatewayStackFixture.NewUser("meter");
        var put = await JsonAsync(await client.PutAsJsonAsync($"/api/v1/nodes/{node}", Node("dma-api")), HttpStatusCode.OK);
        Assert.Equal(("dma-api", "meter", 60), (put.GetProperty("district_id").GetString(), put.GetProperty("kind").GetString(), put.GetProperty("cadence_seconds").GetInt32()));
        // Described again in place (more metrics); moving district is a conflict and changes nothing.
        await JsonAsync(await client.PutAsJsonAsync($"/api/v1/nodes/{node}", Node("dma-api", "meter", "flow", "pressure")), HttpStatusCode.OK);
        var moved = await ProblemAsync(await client.PutAsJsonAsync($"/api/v1/nodes/{node}", Node("dma-other")), HttpStatusCode.Conflict);
        Assert.Contains("registered in another district", moved.GetProperty("detail").GetString());
        var list = await JsonAsync(await client.GetAsync("/api/v1/nodes?district_id=dma-api"), HttpStatusCode.OK);
        var listed = Assert.Single(list.GetProperty("nodes").EnumerateArray(), n => n.GetProperty("node_id").GetString() == node);
        Assert.Equal(["flow", "pressure"], listed.GetProperty("metrics").EnumerateArray().Select(m => m.GetString()));

        // Nothing computed yet: an empty list from the database, not 404 (the node exists).
        var none = await JsonAsync(await client.GetAsync($"/api/v1/nodes/{node}/metrics"), HttpStatusCode.OK);
        Assert.Equal(("database", 0), (none.GetProperty("source").GetString(), none.GetProperty("windows").GetArrayLength()));

        // Four quarter hours and an empty one in the database; the newest quarter cached as the sink caches it.
        for (var q = 0; q < 4; q++) await InsertWindowAsync(node, "flow", 15, Hour.AddHours(-2).AddMinutes(15 * q), 15, 2.0 + q);
        await InsertWindowAsync(node, "flow", 15, Hour.AddHours(-1), 0, null);
        var fromDb = await JsonAsync(await client.GetAsync($"/api/v1/nodes/{node}/metrics"), HttpStatusCode.OK);
        var newest = Assert.Single(fromDb.GetProperty("windows").EnumerateArray());
        Assert.Equal((0, true), (newest.GetProperty("reading_count").GetInt32(), newest.GetProperty("mean").ValueKind == System.Text.Json.JsonValueKind.Null));
        await SensorLatestCache.WriteAsync(f.Redis.GetDatabase(), new SensorMetric
        {
            node_id = node, district_id = "dma-api", metric = "flow", unit = "L/s", window_minutes = 15, window_start_unix_ms = AvroTime.FromUnixMs(
                new DateTimeOffset(Hour.AddHours(-2).AddMinutes(45)).ToUnixTimeMilliseconds()), event_time_unix_ms = AvroTime.FromUnixMs(
                new DateTimeOffset(Hour.AddHours(-1)).ToUnixTimeMilliseconds()), reading_count = 15, min = 5, max = 5, mean = 5, stddev = 0, p50 = 5, p95 = 5,
        });
        var fromCache = await JsonAsync(await client.GetAsync($"/api/v1/nodes/{node}/metrics"), HttpStatusCode.OK);
        Assert.Equal("cache", fromCache.GetProperty("source").GetString());
        Assert.Equal(5.0, Assert.Single(fromCache.GetProperty("windows").EnumerateArray()).GetProperty("mean").GetDouble());
        Assert.Equal(node, fromCache.GetProperty("node").GetProperty("node_id").GetString());

        // History, two at a time: the four quarters then the empty one, oldest first, the cursor continuing the same query.
        var from = Hour.AddHours(-3).ToString("O");
        var page1 = await JsonAsync(await client.GetAsync($"/api/v1/nodes/{node}/history?metric=flow&window_minutes=15&from={from}&limit=2"), HttpStatusCode.OK);
        Assert.Equal([2.0, 3.0], page1.GetProperty("windows").EnumerateArray().Select(w => w.GetProperty("mean").GetDouble()));
        var cursor = page1.GetProperty("next_cursor").GetString();
        var page2 = await JsonAsync(await client.GetAsync($"/api/v1/nodes/{node}/history?metric=flow&window_minutes=15&from={from}&limit=2&cursor={cursor}"), HttpStatusCode.OK);
        Assert.Equal([4.0, 5.0], page2.GetProperty("windows").EnumerateArray().Select(w => w.GetProperty("mean").GetDouble()));
        var page3 = await JsonAsync(await client.GetAsync($"/api/v1/nodes/{node}/history?metric=flow&window_minutes=15&from={from}&limit=2&cursor={page2.GetProperty("next_cursor").GetString()}"), HttpStatusCode.OK);
        Assert.Equal(0, Assert.Single(page3.GetProperty("windows").EnumerateArray()).GetProperty("reading_count").GetInt32());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, page3.GetProperty("next_cursor").ValueKind);

        var status = await JsonAsync(await client.GetAsync("/api/v1/status"), HttpStatusCode.OK);
        Assert.True(status.GetProperty("nodes").GetInt32() >= 1);
        Assert.True(status.GetProperty("latest_window_end").GetDateTimeOffset() >= new DateTimeOffset(Hour.AddMinutes(-45)));
    }

    [Fact]
    public async Task Bad_requests_unknown_nodes_and_callers_without_the_scope_get_problems_not_data()
    {
        var client = f.Client();
        var node = GatewayStackFixture.NewUser("probe");
        await JsonAsync(await client.PutAsJsonAsync($"/api/v1/nodes/{node}", Node("dma-api", "quality_probe", "chlorine")), HttpStatusCode.OK);

        foreach (var (body, field) in new (object, string)[]
                 {
                     (new { kind = "meter", metrics = new[] { "flow" }, cadence_seconds = 60 }, "district_id"),
                     (new { district_id = "dma-api", kind = "pump", metrics = new[] { "flow" }, cadence_seconds = 60 }, "kind"),
                     (new { district_id = "dma-api", kind = "meter", metrics = new[] { "voltage" }, cadence_seconds = 60 }, "metrics"),
                     (new { district_id = "dma-api", kind = "meter", metrics = new[] { "flow" }, cadence_seconds = 1e12 }, "cadence_seconds"),
                     (new { district_id = "dma-api", kind = "meter", metrics = new[] { "flow" }, cadence_seconds = 60, latitude = 123.0 }, "latitude"),
                     (new { district_id = "dma\u0000api", kind = "meter", metrics = new[] { "flow" }, cadence_seconds = 60 }, "district_id"),
                 })
        {
            var problem = await ProblemAsync(await client.PutAsJsonAsync($"/api/v1/nodes/{GatewayStackFixture.NewUser("bad")}", body), HttpStatusCode.BadRequest);
            Assert.Contains(field, ErrorFields(problem));
        }
        var big = new StringContent("{\"name\":\"" + new string('x', 20_000) + "\"}", Encoding.UTF8, "application/json");
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await client.PutAsync($"/api/v1/nodes/{node}", big)).StatusCode);

        Assert.Contains("window_minutes", ErrorFields(await ProblemAsync(await client.GetAsync($"/api/v1/nodes/{node}/history?window_minutes=5"), HttpStatusCode.BadRequest)));
        Assert.Contains("metric", ErrorFields(await ProblemAsync(await client.GetAsync($"/api/v1/nodes/{node}/history?metric=voltage"), HttpStatusCode.BadRequest)));
        Assert.Contains("from", ErrorFields(await ProblemAsync(await client.GetAsync($"/api/v1/nodes/{node}/history?from=yesterday"), HttpStatusCode.BadRequest)));
        Assert.Contains("cursor", ErrorFields(await ProblemAsync(await client.GetAsync($"/api/v1/nodes/{node}/history?cursor=forged"), HttpStatusCode.BadRequest)));
        Assert.Contains("district_id", ErrorFields(await ProblemAsync(await client.GetAsync("/api/v1/nodes?district_id=%01"), HttpStatusCode.BadRequest)));
        var unknown = await ProblemAsync(await client.GetAsync("/api/v1/nodes/no-such-node/metrics"), HttpStatusCode.NotFound);
        Assert.Contains("not a registered node", unknown.GetProperty("detail").GetString());
        await ProblemAsync(await client.GetAsync("/api/v1/nodes/no-such-node/history"), HttpStatusCode.NotFound);

        // A person's own token reaches their own data only: the network is an operator's.
        var (_, token) = await SignUpAsync(f, "network-reader");
        var person = Bearer(f, token);
        Assert.Equal(HttpStatusCode.Forbidden, (await person.GetAsync("/api/v1/nodes")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await person.GetAsync($"/api/v1/nodes/{node}/metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await person.PutAsJsonAsync($"/api/v1/nodes/{node}", Node("dma-api"))).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await f.Client(apiKey: null).GetAsync("/api/v1/status")).StatusCode);
    }
}
