using System.ComponentModel;
using System.Globalization;
using System.Text.Json.Serialization;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Validation;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Sensors.Network;
using static StreamHealth.Gateway.Apis.JsonBodyInput;

namespace StreamHealth.Gateway.Apis;

/// <summary>The water network's nodes and their results, for operators (service keys with network:read; registering nodes needs
/// network:write). Everything is served from what the sensors pipeline pre-computed: the latest windows from the Redis cache the
/// metrics sink writes through (one HGETALL), history and the registry from PostgreSQL by index; no computation per request.</summary>
public static class SensorsApi
{
    public const int MaxBodyBytes = 8 * 1024;
    public const int DefaultLimit = 500;
    public const int MaxLimit = 5_000;
    public static readonly TimeSpan DefaultHistory = TimeSpan.FromDays(1);

    public sealed record NodeView(
        [property: JsonPropertyName("node_id")] string NodeId,
        [property: JsonPropertyName("district_id")] string DistrictId,
        [property: JsonPropertyName("kind")] string Kind,
        [property: JsonPropertyName("metrics")] IReadOnlyList<string> Metrics,
        [property: JsonPropertyName("cadence_seconds")] int CadenceSeconds,
        [property: JsonPropertyName("name")] string? Name,
        [property: JsonPropertyName("latitude")] double? Latitude,
        [property: JsonPropertyName("longitude")] double? Longitude,
        [property: JsonPropertyName("retired_at")] DateTimeOffset? RetiredAt)
    {
        public static NodeView From(SensorNode n) => new(n.NodeId, n.DistrictId, n.Kind, n.Metrics, n.CadenceSeconds, n.Name, n.Latitude, n.Longitude,
            n.RetiredAtUnixMs is { } r ? DateTimeOffset.FromUnixTimeMilliseconds(r) : null);
    }

    /// <summary>The body of PUT /api/v1/nodes/{node_id} (for the API description; the handler reads it field by field).</summary>
    public sealed record NodeRequest(
        [property: JsonPropertyName("district_id"), Description(InputRules.IdRuleText + "; a registered node never moves district")] string DistrictId,
        [property: JsonPropertyName("kind"), Description("inflow, meter, pressure_logger or quality_probe")] string Kind,
        [property: JsonPropertyName("metrics"), Description("what it measures: flow, pressure, level, chlorine, turbidity")] IReadOnlyList<string> Metrics,
        [property: JsonPropertyName("cadence_seconds"), Description("how often it reports, 1-86400 s")] int CadenceSeconds,
        [property: JsonPropertyName("name")] string? Name,
        [property: JsonPropertyName("latitude")] double? Latitude,
        [property: JsonPropertyName("longitude")] double? Longitude);

    public sealed record NodeList([property: JsonPropertyName("nodes")] IReadOnlyList<NodeView> Nodes);

    public sealed record NodeMetrics(
        [property: JsonPropertyName("node")] NodeView Node,
        [property: JsonPropertyName("source"), Description("cache (the metrics sink's write-through) or database")] string Source,
        [property: JsonPropertyName("windows")] IReadOnlyList<NodeWindowView> Windows);

    public sealed record NodeHistory(
        [property: JsonPropertyName("node_id")] string NodeId,
        [property: JsonPropertyName("metric")] string Metric,
        [property: JsonPropertyName("window_minutes")] int WindowMinutes,
        [property: JsonPropertyName("from")] DateTime From,
        [property: JsonPropertyName("to")] DateTime To,
        [property: JsonPropertyName("windows")] IReadOnlyList<NodeWindowView> Windows,
        [property: JsonPropertyName("next_cursor"), Description("pass as `cursor` for the next page; null on the last page")] string? NextCursor);

    public sealed record NetworkStatus(
        [property: JsonPropertyName("nodes")] int Nodes,
        [property: JsonPropertyName("districts")] int Districts,
        [property: JsonPropertyName("nodes_reporting"), Description("nodes with a 1-minute window holding readings in the last 15 minutes")] int NodesReporting,
        [property: JsonPropertyName("latest_window_end")] DateTimeOffset? LatestWindowEnd,
        [property: JsonPropertyName("open_anomalies")] int OpenAnomalies);

    public static RouteGroupBuilder MapSensorsApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1").WithTags("Water network").ProducesProblem(StatusCodes.Status429TooManyRequests);

        api.MapGet("/nodes", ListNodesAsync).WithName("ListNodes")
            .WithSummary("The registered nodes, optionally of one district")
            .Produces<NodeList>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.NetworkRead));

        api.MapPut("/nodes/{nodeId}", PutNodeAsync).WithName("PutNode")
            .WithSummary("Register a node or update its description")
            .WithDescription("The sensors topology dead-letters readings of a node it does not know (\"not a registered node\"); a node is " +
                             "known to it within a second of this call. A node never changes district: moving it is a new node id (409).")
            .Accepts<NodeRequest>("application/json")
            .Produces<NodeView>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxBodyBytes))
            .RequireAccess(Access.Service(Scopes.NetworkWrite));

        api.MapGet("/nodes/{nodeId}/metrics", NodeMetricsAsync).WithName("GetNodeMetrics")
            .WithSummary("A node's newest closed 1-, 15- and 60-minute window of each metric")
            .WithDescription("From the Redis cache the metrics sink writes through; from PostgreSQL when the cache has nothing for the node " +
                             "(expired, or Redis unreachable). Values in each metric's canonical unit (L/s, kPa, m, mg/L, NTU); statistics " +
                             "are null for a window without readings.")
            .Produces<NodeMetrics>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.NetworkRead));

        api.MapGet("/nodes/{nodeId}/history", NodeHistoryAsync).WithName("GetNodeHistory")
            .WithSummary("A node's closed windows of one metric and size in a time range, oldest first, a page at a time")
            .WithDescription("from <= window_start < to (default: the last day), `metric` (default flow), `window_minutes` 1, 15 or 60 " +
                             "(default 15), at most `limit` per page; `next_cursor` continues the same query.")
            .Produces<NodeHistory>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.NetworkRead));

        api.MapGet("/status", StatusAsync).WithName("GetNetworkStatus")
            .WithSummary("The network at a glance: nodes, districts, nodes reporting, the newest window, open anomalies")
            .Produces<NetworkStatus>()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.NetworkRead));
        return api;
    }

    private static Dictionary<string, string[]>? NodeIdProblem(string nodeId) =>
        InputRules.CheckId("node_id", nodeId) is { } bad ? new() { ["node_id"] = [bad] } : null;

    private static async Task<SensorNode?> FindNodeAsync(NpgsqlDataSource pg, string nodeId, CancellationToken ct)
    {
        await using var command = pg.CreateCommand(
            "SELECT node_id, district_id, kind, metrics, cadence_seconds, name, latitude, longitude, retired_at FROM sensors.nodes WHERE node_id = $1");
        command.Parameters.AddWithValue(nodeId);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? ReadNode(reader) : null;
    }

    private static SensorNode ReadNode(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetFieldValue<string[]>(3), r.GetInt32(4),
        r.IsDBNull(5) ? null : r.GetString(5), r.IsDBNull(6) ? null : r.GetDouble(6), r.IsDBNull(7) ? null : r.GetDouble(7),
        r.IsDBNull(8) ? null : new DateTimeOffset(r.GetDateTime(8)).ToUnixTimeMilliseconds());

    private static IResult UnknownNode(string nodeId) =>
        TypedResults.Problem($"node_id {InputRules.Quote(nodeId)}: not a registered node", statusCode: StatusCodes.Status404NotFound, title: "Unknown node");

    private static async Task<IResult> ListNodesAsync([Description(InputRules.IdRuleText)] string? district_id, NpgsqlDataSource pg, CancellationToken ct)
    {
        if (district_id is not null && InputRules.CheckId("district_id", district_id) is { } bad)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["district_id"] = [bad] });
        await using var command = pg.CreateCommand(
            "SELECT node_id, district_id, kind, metrics, cadence_seconds, name, latitude, longitude, retired_at FROM sensors.nodes " +
            "WHERE $1::text IS NULL OR district_id = $1 ORDER BY district_id, node_id");
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)district_id ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        var nodes = new List<NodeView>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) nodes.Add(NodeView.From(ReadNode(reader)));
        return TypedResults.Ok(new NodeList(nodes));
    }

    private static async Task<IResult> PutNodeAsync([Description(InputRules.IdRuleText)] string nodeId, HttpRequest http, NpgsqlDataSource pg, CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, MaxBodyBytes, ct);
        if (bad is not null) return bad;
        var errors = NodeIdProblem(nodeId) ?? [];
        var district = RequiredId(body, "district_id", errors);
        var kind = String(body, "kind", required: true, errors);
        var metrics = new List<string>();
        if (body.TryGetProperty("metrics", out var list) && list.ValueKind == System.Text.Json.JsonValueKind.Array && list.GetArrayLength() <= 5)
        {
            foreach (var item in list.EnumerateArray())
                if (item.ValueKind == System.Text.Json.JsonValueKind.String) metrics.Add(item.GetString()!);
                else errors["metrics"] = ["metrics: every item must be a metric name"];
        }
        else errors["metrics"] = ["metrics: required, a list of at most 5 metric names (flow, pressure, level, chlorine, turbidity)"];
        var cadence = Number(body, "cadence_seconds", required: true, errors);
        var name = String(body, "name", required: false, errors);
        var latitude = Number(body, "latitude", required: false, errors);
        var longitude = Number(body, "longitude", required: false, errors);
        if (cadence is { } c && (c != Math.Floor(c) || c is < 1 or > 86_400)) errors["cadence_seconds"] = [$"cadence_seconds = {c.ToString(CultureInfo.InvariantCulture)}: a whole number of seconds, 1-86400"];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        var node = new SensorNode(nodeId, district!, kind!, metrics, (int)cadence!.Value, name, latitude, longitude);
        if (node.Check() is { } problem)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { [problem.Split(' ', 2)[0].TrimEnd(':')] = [problem] });
        try
        {
            await NodeRegistry.RegisterAsync(pg, [node], ct);
        }
        catch (ArgumentException e)
        {
            return TypedResults.Problem(e.Message, statusCode: StatusCodes.Status409Conflict, title: "Node registered elsewhere");
        }
        return TypedResults.Ok(NodeView.From(await FindNodeAsync(pg, nodeId, ct) ?? node));
    }

    private static async Task<IResult> NodeMetricsAsync([Description(InputRules.IdRuleText)] string nodeId, NpgsqlDataSource pg, IConnectionMultiplexer redis,
        ILoggerFactory logs, CancellationToken ct)
    {
        if (NodeIdProblem(nodeId) is { } errors) return TypedResults.ValidationProblem(errors);
        // The cache first: a node with windows cached is registered (the topology checked it); the registry row is read after, by key.
        List<NodeWindowView>? cached = null;
        if (redis.IsConnected)
        {
            try { cached = await SensorLatestCache.ReadAsync(redis.GetDatabase(), nodeId); }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                logs.CreateLogger(typeof(SensorsApi)).LogWarning("node metrics: Redis read failed ({Error}); reading PostgreSQL", e.Message);
            }
        }
        if (await FindNodeAsync(pg, nodeId, ct) is not { } node) return UnknownNode(nodeId);
        if (cached is { Count: > 0 }) return TypedResults.Ok(new NodeMetrics(NodeView.From(node), "cache", cached));
        await using var command = pg.CreateCommand("""
            SELECT DISTINCT ON (metric, window_minutes) node_id, district_id, metric, unit, window_minutes, window_start, window_end, reading_count,
                   duplicate_count, late_count, min, max, mean, stddev, p50, p95
            FROM sensors.window_metrics WHERE node_id = $1 AND window_start > now() - interval '7 days'
            ORDER BY metric, window_minutes, window_start DESC
            """);
        command.Parameters.AddWithValue(nodeId);
        var windows = new List<NodeWindowView>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) windows.Add(ReadWindow(reader));
        return TypedResults.Ok(new NodeMetrics(NodeView.From(node), "database", windows));
    }

    private static NodeWindowView ReadWindow(NpgsqlDataReader r)
    {
        double? Stat(int i) => r.IsDBNull(i) ? null : r.GetDouble(i);
        return new NodeWindowView(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt32(4),
            new DateTimeOffset(r.GetDateTime(5)), new DateTimeOffset(r.GetDateTime(6)), r.GetInt32(7), r.GetInt32(8), r.GetInt32(9),
            Stat(10), Stat(11), Stat(12), Stat(13), Stat(14), Stat(15));
    }

    private static async Task<IResult> NodeHistoryAsync([Description(InputRules.IdRuleText)] string nodeId,
        [Description("flow, pressure, level, chlorine or turbidity; default flow")] string? metric,
        [Description("1, 15 or 60; default 15")] string? window_minutes,
        [Description("ISO-8601; default `to` minus one day")] string? from,
        [Description("ISO-8601; default now")] string? to,
        [Description("1-5000; default 500")] string? limit,
        string? cursor, NpgsqlDataSource pg, StreamHealthOptions options, CancellationToken ct)
    {
        var errors = NodeIdProblem(nodeId) ?? [];
        metric ??= "flow";
        if (StreamHealth.Sensors.Readings.SensorQuantities.Find(metric) is null)
            errors["metric"] = [$"metric = {InputRules.Quote(metric)}: not one of flow, pressure, level, chlorine, turbidity"];
        var minutes = 15;
        if (window_minutes is not null && (!int.TryParse(window_minutes, NumberStyles.None, CultureInfo.InvariantCulture, out minutes) || minutes is not (1 or 15 or 60)))
            errors["window_minutes"] = [$"window_minutes = {InputRules.Quote(window_minutes)}: must be 1, 15 or 60"];
        var page = KeysetPaging.Parse(from, to, limit, cursor, DefaultHistory, DefaultLimit, MaxLimit, options.Input.TimeRule, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await FindNodeAsync(pg, nodeId, ct) is null) return UnknownNode(nodeId);
        // Keyset on (window_start, metric): the metric is fixed, so the page continues after the last window's start.
        await using var command = KeysetPaging.Command(pg, """
            SELECT node_id, district_id, metric, unit, window_minutes, window_start, window_end, reading_count, duplicate_count, late_count,
                   min, max, mean, stddev, p50, p95
            FROM sensors.window_metrics
            WHERE node_id = $1 AND window_start >= $2 AND window_start < $3 AND ($4::timestamptz IS NULL OR (window_start, metric) > ($4, $5))
              AND metric = $7 AND window_minutes = $8
            ORDER BY window_start, metric LIMIT $6
            """, nodeId, page);
        command.Parameters.Add(new NpgsqlParameter { Value = metric });
        command.Parameters.Add(new NpgsqlParameter { Value = minutes });
        var (windows, next) = await KeysetPaging.ReadAsync(command, page, ReadWindow, w => (w.WindowStart.UtcDateTime, w.Metric), ct);
        return TypedResults.Ok(new NodeHistory(nodeId, metric, minutes, page.FromUtc, page.ToUtc, windows, next));
    }

    private static async Task<IResult> StatusAsync(NpgsqlDataSource pg, CancellationToken ct)
    {
        await using var command = pg.CreateCommand("""
            SELECT (SELECT count(*) FROM sensors.nodes WHERE retired_at IS NULL),
                   (SELECT count(DISTINCT district_id) FROM sensors.nodes WHERE retired_at IS NULL),
                   (SELECT count(DISTINCT node_id) FROM sensors.window_metrics
                     WHERE window_minutes = 1 AND reading_count > 0 AND window_start > now() - interval '15 minutes'),
                   (SELECT max(window_end) FROM sensors.window_metrics WHERE window_start > now() - interval '7 days'),
                   (SELECT count(*) FROM sensors.anomalies WHERE state <> 'resolved')
            """);
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        return TypedResults.Ok(new NetworkStatus((int)reader.GetInt64(0), (int)reader.GetInt64(1), (int)reader.GetInt64(2),
            reader.IsDBNull(3) ? null : new DateTimeOffset(reader.GetDateTime(3)), (int)reader.GetInt64(4)));
    }
}
