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

    private async Task ExecuteAsync(string sql, params object[] args)
    {
        await using var command = f.Postgres.CreateCommand(sql);
        foreach (var a in args) command.Parameters.AddWithValue(a);
        await command.ExecuteNonQueryAsync();
    }

    [Fact]
    public async Task Anomalies_are_listed_acknowledged_once_and_a_resolved_one_cannot_be()
    {
        var client = f.Client();
        var district = GatewayStackFixture.NewUser("dma");
        var open = district + ":burst:1";
        var resolved = district + ":burst:2";
        await ExecuteAsync("""
            INSERT INTO sensors.anomalies (anomaly_id, kind, district_id, started_at, severity, score, state, reason, observed, expected, unit)
            VALUES ($1, 'burst', $2, now() - interval '20 minutes', 'high', 7.5, 'open', 'net flow up 2.1 L/s', 2.6, 0.5, 'L/s')
            """, open, district);
        await ExecuteAsync("""
            INSERT INTO sensors.anomalies (anomaly_id, kind, district_id, started_at, ended_at, severity, score, state, reason, resolved_at)
            VALUES ($1, 'burst', $2, now() - interval '2 days', now() - interval '1 day', 'medium', 4, 'resolved', 'net flow up 1 L/s', now() - interval '1 day')
            """, resolved, district);

        var list = await JsonAsync(await client.GetAsync($"/api/v1/anomalies?district_id={district}"), HttpStatusCode.OK);
        Assert.Equal([open, resolved], list.GetProperty("anomalies").EnumerateArray().Select(a => a.GetProperty("anomaly_id").GetString()));
        var onlyOpen = await JsonAsync(await client.GetAsync($"/api/v1/anomalies?district_id={district}&state=open"), HttpStatusCode.OK);
        var first = Assert.Single(onlyOpen.GetProperty("anomalies").EnumerateArray());
        Assert.Equal((2.6, 0.5, "L/s"), (first.GetProperty("observed").GetDouble(), first.GetProperty("expected").GetDouble(), first.GetProperty("unit").GetString()));

        var acknowledged = await JsonAsync(await client.PostAsJsonAsync($"/api/v1/anomalies/{open}/acknowledge", new { note = "crew sent" }), HttpStatusCode.OK);
        Assert.Equal(("acknowledged", "crew sent"), (acknowledged.GetProperty("state").GetString(), acknowledged.GetProperty("acknowledged_note").GetString()));
        Assert.Equal("local-dev", acknowledged.GetProperty("acknowledged_by").GetString());
        var at = acknowledged.GetProperty("acknowledged_at").GetDateTimeOffset();
        // Again: nothing changes, not even the time.
        var again = await JsonAsync(await client.PostAsJsonAsync($"/api/v1/anomalies/{open}/acknowledge", new { }), HttpStatusCode.OK);
        Assert.Equal(at, again.GetProperty("acknowledged_at").GetDateTimeOffset());
        Assert.Contains("resolved", (await ProblemAsync(await client.PostAsJsonAsync($"/api/v1/anomalies/{resolved}/acknowledge", new { }), HttpStatusCode.Conflict))
            .GetProperty("detail").GetString());
        await ProblemAsync(await client.PostAsJsonAsync("/api/v1/anomalies/no-such-anomaly/acknowledge", new { }), HttpStatusCode.NotFound);
        Assert.Contains("note", ErrorFields(await ProblemAsync(await client.PostAsJsonAsync($"/api/v1/anomalies/{open}/acknowledge", new { note = "a\u0000b" }),
            HttpStatusCode.BadRequest)));
        Assert.Contains("body", ErrorFields(await ProblemAsync(await client.PostAsync($"/api/v1/anomalies/{open}/acknowledge", null), HttpStatusCode.BadRequest)));
        foreach (var (query, field) in new[] { ("state=closed", "state"), ("kind=flood", "kind"), ("limit=0", "limit"), ("district_id=%00", "district_id") })
            Assert.Contains(field, ErrorFields(await ProblemAsync(await client.GetAsync($"/api/v1/anomalies?{query}"), HttpStatusCode.BadRequest)));
    }

    [Fact]
    public async Task Quality_efficiency_and_the_network_now_are_served_from_the_stored_results()
    {
        var client = f.Client();
        var district = GatewayStackFixture.NewUser("dmq");
        var inflow = GatewayStackFixture.NewUser("inflow");
        var meter = GatewayStackFixture.NewUser("meter");
        await JsonAsync(await client.PutAsJsonAsync($"/api/v1/nodes/{inflow}", Node(district, "inflow", "flow", "pressure")), HttpStatusCode.OK);
        await JsonAsync(await client.PutAsJsonAsync($"/api/v1/nodes/{meter}", Node(district, "meter", "flow")), HttpStatusCode.OK);
        var quarter = Hour.AddMinutes(-30);
        foreach (var (node, metric, mean) in new[] { (inflow, "flow", 6.5), (meter, "flow", 5.0), (inflow, "pressure", 410.0) })
            await ExecuteAsync("""
                INSERT INTO sensors.window_metrics (node_id, district_id, metric, unit, window_minutes, window_start, window_end, reading_count,
                    duplicate_count, late_count, mean, source_partition, source_offset)
                VALUES ($1, $2, $3, 'L/s', 15, $4, $4 + interval '15 minutes', 15, 0, 0, $5, 0, 0)
                """, node, district, metric, quarter, mean);
        // Two quarters judged: one clean, one stuck and incomplete.
        await ExecuteAsync("""
            INSERT INTO sensors.window_quality (node_id, district_id, metric, window_minutes, window_start, window_end, usable, score, problems, checks) VALUES
              ($1, $2, 'flow', 15, $3, $3 + interval '15 minutes', true, 0.9, '{}', '{"flatline": {"score": 0.9, "problem": false, "reason": "moving"}}'),
              ($1, $2, 'flow', 15, $3 + interval '15 minutes', $3 + interval '30 minutes', false, 0.1, '{flatline,completeness}',
               '{"flatline": {"score": 0.1, "problem": true, "reason": "unchanged for 15 min"}}')
            """, meter, district, quarter.AddMinutes(-15));
        await ExecuteAsync("""
            INSERT INTO sensors.efficiency (district_id, day_start, inflow_m3, metered_m3, non_revenue_m3, non_revenue_percent, completeness, rolling_days,
                rolling_inflow_m3, rolling_metered_m3, rolling_non_revenue_m3, rolling_non_revenue_percent, rolling_completeness)
            VALUES ($1, date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 day', 500, 420, 80, 16, 0.99, 1, 500, 420, 80, 16, 0.99)
            """, district);

        var quality = await JsonAsync(await client.GetAsync($"/api/v1/quality/{meter}?from={Hour.AddHours(-3):O}"), HttpStatusCode.OK);
        Assert.Equal((2, 0.5), (quality.GetProperty("windows_judged").GetInt32(), quality.GetProperty("usable_fraction").GetDouble()));
        Assert.Equal(1, quality.GetProperty("problems_by_rule").GetProperty("flatline").GetInt32());
        var newest = quality.GetProperty("windows")[0];
        Assert.False(newest.GetProperty("usable").GetBoolean());
        Assert.Equal("unchanged for 15 min", newest.GetProperty("checks").GetProperty("flatline").GetProperty("reason").GetString());

        var efficiency = await JsonAsync(await client.GetAsync($"/api/v1/network/efficiency?district_id={district}&days=3"), HttpStatusCode.OK);
        var day = Assert.Single(efficiency.GetProperty("days").EnumerateArray());
        Assert.Equal((80.0, 16.0), (day.GetProperty("non_revenue_m3").GetDouble(), day.GetProperty("non_revenue_percent").GetDouble()));

        var network = await JsonAsync(await client.GetAsync("/api/v1/network/metrics"), HttpStatusCode.OK);
        var now = Assert.Single(network.GetProperty("districts").EnumerateArray(), d => d.GetProperty("district_id").GetString() == district);
        Assert.Equal((2, 6.5, 5.0, 410.0), (now.GetProperty("nodes").GetInt32(), now.GetProperty("inflow_l_per_s").GetDouble(),
            now.GetProperty("metered_l_per_s").GetDouble(), now.GetProperty("min_pressure_kpa").GetDouble()));
        Assert.Equal(1.5, now.GetProperty("net_flow_l_per_s").GetDouble(), 9);

        // Predictions: none yet (200, no hours), then the newest issue only, in hour order, null where an interval is unknown.
        var none = await JsonAsync(await client.GetAsync($"/api/v1/predictions/{meter}"), HttpStatusCode.OK);
        Assert.Equal((System.Text.Json.JsonValueKind.Null, 0), (none.GetProperty("issued_at").ValueKind, none.GetProperty("hours").GetArrayLength()));
        foreach (var (issued, mean) in new[] { (Hour.AddHours(-1), 1.0), (Hour, 2.0) })
            for (var h = 0; h < 24; h++)
                await ExecuteAsync("""
                    INSERT INTO sensors.predictions (node_id, district_id, metric, issued_at, target_time, method, mean, lower_80, upper_80, lower_95, upper_95)
                    VALUES ($1, $2, 'flow', $3, $4, 'seasonal_naive_weekly', $5, NULL, NULL, NULL, NULL)
                    """, meter, district, issued, issued.AddHours(h), mean + h);
        var prediction = await JsonAsync(await client.GetAsync($"/api/v1/predictions/{meter}"), HttpStatusCode.OK);
        Assert.Equal(("seasonal_naive_weekly", 24), (prediction.GetProperty("method").GetString(), prediction.GetProperty("hours").GetArrayLength()));
        Assert.Equal(new DateTimeOffset(Hour), prediction.GetProperty("issued_at").GetDateTimeOffset());
        Assert.Equal(Enumerable.Range(0, 24).Select(h => 2.0 + h), prediction.GetProperty("hours").EnumerateArray().Select(x => x.GetProperty("mean").GetDouble()));
        Assert.Equal(System.Text.Json.JsonValueKind.Null, prediction.GetProperty("hours")[0].GetProperty("lower_80").ValueKind);
        await ProblemAsync(await client.GetAsync("/api/v1/predictions/no-such-node"), HttpStatusCode.NotFound);

        var dashboard = await JsonAsync(await client.GetAsync("/api/v1/dashboard/summary"), HttpStatusCode.OK);
        Assert.True(dashboard.GetProperty("status").GetProperty("nodes").GetInt32() >= 2);
        Assert.Contains(dashboard.GetProperty("latest_efficiency").EnumerateArray(), e => e.GetProperty("district_id").GetString() == district);
        Assert.True(dashboard.GetProperty("open_anomalies_by_severity").TryGetProperty("critical", out _));

        Assert.Contains("window_minutes", ErrorFields(await ProblemAsync(await client.GetAsync($"/api/v1/quality/{meter}?window_minutes=1"), HttpStatusCode.BadRequest)));
        await ProblemAsync(await client.GetAsync("/api/v1/quality/no-such-node"), HttpStatusCode.NotFound);
        Assert.Contains("days", ErrorFields(await ProblemAsync(await client.GetAsync("/api/v1/network/efficiency?days=91"), HttpStatusCode.BadRequest)));
    }
}
