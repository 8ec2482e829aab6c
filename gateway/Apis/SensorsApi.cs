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

    public sealed record AnomalyView(
        [property: JsonPropertyName("anomaly_id")] string AnomalyId,
        [property: JsonPropertyName("kind"), Description("burst, background_leak or residual")] string Kind,
        [property: JsonPropertyName("district_id")] string DistrictId,
        [property: JsonPropertyName("node_id")] string? NodeId,
        [property: JsonPropertyName("metric")] string? Metric,
        [property: JsonPropertyName("started_at")] DateTimeOffset StartedAt,
        [property: JsonPropertyName("ended_at")] DateTimeOffset? EndedAt,
        [property: JsonPropertyName("severity"), Description("low, medium, high or critical")] string Severity,
        [property: JsonPropertyName("score"), Description("how far beyond the detector's threshold, in robust standard deviations")] double Score,
        [property: JsonPropertyName("state"), Description("open, acknowledged or resolved")] string State,
        [property: JsonPropertyName("reason")] string Reason,
        [property: JsonPropertyName("observed"), Description("in `unit`, as the anomaly opened: a leak's net flow, a residual's 15-minute mean")] double? Observed,
        [property: JsonPropertyName("expected"), Description("in `unit`: the reference it departed from")] double? Expected,
        [property: JsonPropertyName("unit")] string? Unit,
        [property: JsonPropertyName("acknowledged_at")] DateTimeOffset? AcknowledgedAt,
        [property: JsonPropertyName("acknowledged_by")] string? AcknowledgedBy,
        [property: JsonPropertyName("acknowledged_note")] string? AcknowledgedNote,
        [property: JsonPropertyName("resolved_at")] DateTimeOffset? ResolvedAt);

    public sealed record AnomalyList([property: JsonPropertyName("anomalies")] IReadOnlyList<AnomalyView> Anomalies);

    public sealed record QualityWindow(
        [property: JsonPropertyName("metric")] string Metric,
        [property: JsonPropertyName("window_minutes")] int WindowMinutes,
        [property: JsonPropertyName("window_start")] DateTimeOffset WindowStart,
        [property: JsonPropertyName("usable")] bool Usable,
        [property: JsonPropertyName("score"), Description("the lowest rule score, 0 (worst) to 1 (clean)")] double Score,
        [property: JsonPropertyName("problems")] IReadOnlyList<string> Problems,
        [property: JsonPropertyName("checks"), Description("per rule: score, problem, reason")] System.Text.Json.JsonElement Checks);

    public sealed record NodeQuality(
        [property: JsonPropertyName("node_id")] string NodeId,
        [property: JsonPropertyName("from")] DateTime From,
        [property: JsonPropertyName("to")] DateTime To,
        [property: JsonPropertyName("windows_judged")] int WindowsJudged,
        [property: JsonPropertyName("usable_fraction")] double? UsableFraction,
        [property: JsonPropertyName("problems_by_rule")] IReadOnlyDictionary<string, int> ProblemsByRule,
        [property: JsonPropertyName("windows"), Description("newest first, at most `limit`")] IReadOnlyList<QualityWindow> Windows);

    public sealed record EfficiencyDay(
        [property: JsonPropertyName("district_id")] string DistrictId,
        [property: JsonPropertyName("day")] DateOnly Day,
        [property: JsonPropertyName("inflow_m3")] double InflowM3,
        [property: JsonPropertyName("metered_m3")] double MeteredM3,
        [property: JsonPropertyName("non_revenue_m3")] double NonRevenueM3,
        [property: JsonPropertyName("non_revenue_percent")] double NonRevenuePercent,
        [property: JsonPropertyName("completeness"), Description("fraction of the balance measured with usable quality, 0-1")] double Completeness,
        [property: JsonPropertyName("rolling_days")] int RollingDays,
        [property: JsonPropertyName("rolling_non_revenue_m3")] double RollingNonRevenueM3,
        [property: JsonPropertyName("rolling_non_revenue_percent")] double RollingNonRevenuePercent);

    public sealed record EfficiencyList([property: JsonPropertyName("days")] IReadOnlyList<EfficiencyDay> Days);

    public sealed record DistrictNow(
        [property: JsonPropertyName("district_id")] string DistrictId,
        [property: JsonPropertyName("nodes")] int Nodes,
        [property: JsonPropertyName("quarter_start"), Description("the newest 15-minute window of the district's flows")] DateTimeOffset? QuarterStart,
        [property: JsonPropertyName("inflow_l_per_s")] double? InflowLitresPerSecond,
        [property: JsonPropertyName("metered_l_per_s")] double? MeteredLitresPerSecond,
        [property: JsonPropertyName("net_flow_l_per_s"), Description("inflow minus metered: losses and unmetered use")] double? NetFlowLitresPerSecond,
        [property: JsonPropertyName("min_pressure_kpa")] double? MinPressureKpa,
        [property: JsonPropertyName("open_anomalies")] int OpenAnomalies);

    public sealed record NetworkMetrics([property: JsonPropertyName("districts")] IReadOnlyList<DistrictNow> Districts);

    public sealed record DashboardSummary(
        [property: JsonPropertyName("status")] NetworkStatus Status,
        [property: JsonPropertyName("open_anomalies_by_severity")] IReadOnlyDictionary<string, int> OpenAnomaliesBySeverity,
        [property: JsonPropertyName("quality_problems_last_hour")] int QualityProblemsLastHour,
        [property: JsonPropertyName("districts")] IReadOnlyList<DistrictNow> Districts,
        [property: JsonPropertyName("latest_efficiency")] IReadOnlyList<EfficiencyDay> LatestEfficiency);

    public sealed record PredictionHour(
        [property: JsonPropertyName("hour_start")] DateTimeOffset HourStart,
        [property: JsonPropertyName("mean")] double Mean,
        [property: JsonPropertyName("lower_80")] double? Lower80,
        [property: JsonPropertyName("upper_80")] double? Upper80,
        [property: JsonPropertyName("lower_95")] double? Lower95,
        [property: JsonPropertyName("upper_95")] double? Upper95);

    public sealed record NodePrediction(
        [property: JsonPropertyName("node_id")] string NodeId,
        [property: JsonPropertyName("metric")] string Metric,
        [property: JsonPropertyName("unit")] string Unit,
        [property: JsonPropertyName("issued_at"), Description("the end of the newest hour the forecast knew; null before the node's first forecast")] DateTimeOffset? IssuedAt,
        [property: JsonPropertyName("method"), Description("holt_winters_daily, seasonal_naive_daily, seasonal_naive_weekly or combined: the forecaster that did best on the node's last week")] string? Method,
        [property: JsonPropertyName("hours")] IReadOnlyList<PredictionHour> Hours);

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
                             "known to it within a second of this call. A node never changes district: moving it is a new node id (409). A " +
                             "district holds at most 64 series (node and metric): one more is a 409 too.")
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

        api.MapGet("/anomalies", ListAnomaliesAsync).WithName("ListAnomalies")
            .WithSummary("Anomalies and leaks, newest first")
            .WithDescription("Optionally of one `state` (open, acknowledged, resolved; default all), `district_id` and `kind` (burst, " +
                             "background_leak, residual), at most `limit` (1-1000, default 100). Kept until resolved plus 30 days.")
            .Produces<AnomalyList>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.NetworkRead));

        api.MapPost("/anomalies/{anomalyId}/acknowledge", AcknowledgeAsync).WithName("AcknowledgeAnomaly")
            .WithSummary("An operator acknowledges an open anomaly")
            .WithDescription("open → acknowledged, recording when, by which credential and the optional `note`; acknowledging again " +
                             "changes nothing (200). A resolved anomaly cannot be acknowledged (409). The detector's later events keep the " +
                             "acknowledgement. The body is a JSON object ({} without a note).")
            .Accepts<AcknowledgeRequest>("application/json")
            .Produces<AnomalyView>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxBodyBytes))
            .RequireAccess(Access.Service(Scopes.NetworkWrite));

        api.MapGet("/quality/{nodeId}", NodeQualityAsync).WithName("GetNodeQuality")
            .WithSummary("A node's data quality: each judged window with every rule's score and reason, and a summary")
            .WithDescription("from <= window_start < to (default: the last day), `window_minutes` 15 or 60 (default 15), the newest `limit` " +
                             "windows (1-1000, default 96). Rules: completeness, out_of_range, flatline, drift (against the node's " +
                             "correlated neighbours), late, duplicates.")
            .Produces<NodeQuality>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.NetworkRead));

        api.MapGet("/network/efficiency", EfficiencyAsync).WithName("GetNetworkEfficiency")
            .WithSummary("Non-revenue water per district and UTC day (inflow minus metered consumption), with the rolling 7 days")
            .WithDescription("The last `days` days (1-90, default 7), optionally of one `district_id`, newest first.")
            .Produces<EfficiencyList>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.NetworkRead));

        api.MapGet("/network/metrics", NetworkMetricsAsync).WithName("GetNetworkMetrics")
            .WithSummary("Each district now: inflow, metered flow and their difference over the newest quarter hour, the lowest pressure, open anomalies")
            .Produces<NetworkMetrics>()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.NetworkRead));

        api.MapGet("/dashboard/summary", DashboardAsync).WithName("GetNetworkDashboardSummary")
            .WithSummary("The network dashboard's summary: status, open anomalies by severity, quality problems in the last hour, districts now, latest efficiency")
            .Produces<DashboardSummary>()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.NetworkRead));

        api.MapGet("/predictions/{nodeId}", PredictionAsync).WithName("GetNodePrediction")
            .WithSummary("A node's newest flow forecast: the next 24 hours with 80 % and 95 % intervals (L/s)")
            .WithDescription("Issued by the district analysis as each hour of an inflow's or meter's flow closes, once the node has three days " +
                             "of history; the hours of bursts and of windows its quality rules found unusable are left out of what the model " +
                             "learns. Intervals are null while the node has too few past errors to give them; `issued_at` is null before the " +
                             "node's first forecast.")
            .Produces<NodePrediction>()
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
        await using var command = pg.CreateCommand($"SELECT {NodeRegistry.Columns} FROM sensors.nodes WHERE node_id = $1");
        command.Parameters.AddWithValue(nodeId);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? NodeRegistry.Read(reader) : null;
    }

    private static IResult UnknownNode(string nodeId) =>
        TypedResults.Problem($"node_id {InputRules.Quote(nodeId)}: not a registered node", statusCode: StatusCodes.Status404NotFound, title: "Unknown node");

    private static async Task<IResult> ListNodesAsync([Description(InputRules.IdRuleText)] string? district_id, NpgsqlDataSource pg, CancellationToken ct)
    {
        if (district_id is not null && InputRules.CheckId("district_id", district_id) is { } bad)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["district_id"] = [bad] });
        await using var command = pg.CreateCommand(
            $"SELECT {NodeRegistry.Columns} FROM sensors.nodes WHERE $1::text IS NULL OR district_id = $1 ORDER BY district_id, node_id");
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)district_id ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        var nodes = new List<NodeView>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) nodes.Add(NodeView.From(NodeRegistry.Read(reader)));
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
            return TypedResults.Problem(e.Message, statusCode: StatusCodes.Status409Conflict, title: "Node not registered");
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

    private static async Task<IResult> StatusAsync(NpgsqlDataSource pg, CancellationToken ct) => TypedResults.Ok(await ReadStatusAsync(pg, ct));

    private const string AnomalyColumns = "anomaly_id, kind, district_id, node_id, metric, started_at, ended_at, severity, score, state, reason, " +
                                          "observed, expected, unit, acknowledged_at, acknowledged_by, acknowledged_note, resolved_at";

    private static AnomalyView ReadAnomaly(NpgsqlDataReader r)
    {
        DateTimeOffset? Time(int i) => r.IsDBNull(i) ? null : new DateTimeOffset(r.GetDateTime(i));
        string? Text(int i) => r.IsDBNull(i) ? null : r.GetString(i);
        double? Number(int i) => r.IsDBNull(i) ? null : r.GetDouble(i);
        return new AnomalyView(r.GetString(0), r.GetString(1), r.GetString(2), Text(3), Text(4), new DateTimeOffset(r.GetDateTime(5)), Time(6), r.GetString(7),
            r.GetDouble(8), r.GetString(9), r.GetString(10), Number(11), Number(12), Text(13), Time(14), Text(15), Text(16), Time(17));
    }

    private static readonly string[] States = ["open", "acknowledged", "resolved"];
    private static readonly string[] Kinds = ["burst", "background_leak", "residual"];

    private static async Task<IResult> ListAnomaliesAsync(string? state, string? district_id, string? kind, string? limit, NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        if (state is not null && !States.Contains(state)) errors["state"] = [$"state = {InputRules.Quote(state)}: one of open, acknowledged, resolved"];
        if (kind is not null && !Kinds.Contains(kind)) errors["kind"] = [$"kind = {InputRules.Quote(kind)}: one of burst, background_leak, residual"];
        if (district_id is not null && InputRules.CheckId("district_id", district_id) is { } bad) errors["district_id"] = [bad];
        var rows = ApiInput.ParseCount(limit, "limit", 100, 1_000, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        await using var command = pg.CreateCommand($"""
            SELECT {AnomalyColumns} FROM sensors.anomalies
            WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR district_id = $2) AND ($3::text IS NULL OR kind = $3)
            ORDER BY started_at DESC, anomaly_id LIMIT $4
            """);
        foreach (var value in new[] { state, district_id, kind })
            command.Parameters.Add(new NpgsqlParameter { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        command.Parameters.AddWithValue(rows);
        var anomalies = new List<AnomalyView>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) anomalies.Add(ReadAnomaly(reader));
        return TypedResults.Ok(new AnomalyList(anomalies));
    }

    /// <summary>The body of POST …/acknowledge (for the API description; the handler reads it field by field).</summary>
    public sealed record AcknowledgeRequest(
        [property: JsonPropertyName("note"), Description("optional: what the operator is doing about it, at most 500 characters")] string? Note);

    private static async Task<IResult> AcknowledgeAsync([Description(InputRules.IdRuleText)] string anomalyId, HttpContext http, NpgsqlDataSource pg, CancellationToken ct)
    {
        var (body, badBody) = await ReadAsync(http.Request, MaxBodyBytes, ct);
        if (badBody is not null) return badBody;
        var errors = new Dictionary<string, string[]>();
        if (InputRules.CheckId("anomaly_id", anomalyId) is { } bad) errors["anomaly_id"] = [bad];
        var note = String(body, "note", required: false, errors);
        if (note is not null && InputRules.CheckText("note", note, 500) is { } badNote) errors["note"] = [badNote];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        // The credential's name, as the audit trail names callers; never the key itself.
        var by = http.User.Identity?.Name ?? "service";
        await using var command = pg.CreateCommand($"""
            WITH before AS (SELECT state FROM sensors.anomalies WHERE anomaly_id = $1),
                 changed AS (
                   UPDATE sensors.anomalies SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = $2, acknowledged_note = $3,
                          updated_at = now()
                   WHERE anomaly_id = $1 AND state = 'open' RETURNING 1)
            SELECT (SELECT state FROM before), (SELECT count(*) FROM changed)
            """);
        command.Parameters.AddWithValue(anomalyId);
        command.Parameters.AddWithValue(by);
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)note ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        string? before;
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            await reader.ReadAsync(ct);
            before = reader.IsDBNull(0) ? null : reader.GetString(0);
        }
        if (before is null)
            return TypedResults.Problem($"anomaly_id {InputRules.Quote(anomalyId)}: no such anomaly", statusCode: StatusCodes.Status404NotFound, title: "Unknown anomaly");
        if (before == "resolved")
            return TypedResults.Problem($"anomaly {InputRules.Quote(anomalyId)} is resolved; only an open anomaly can be acknowledged",
                statusCode: StatusCodes.Status409Conflict, title: "Anomaly resolved");
        await using var read = pg.CreateCommand($"SELECT {AnomalyColumns} FROM sensors.anomalies WHERE anomaly_id = $1");
        read.Parameters.AddWithValue(anomalyId);
        await using var row = await read.ExecuteReaderAsync(ct);
        await row.ReadAsync(ct);
        return TypedResults.Ok(ReadAnomaly(row));
    }

    private static async Task<IResult> NodeQualityAsync([Description(InputRules.IdRuleText)] string nodeId,
        [Description("15 or 60; default 15")] string? window_minutes, [Description("ISO-8601; default `to` minus one day")] string? from,
        [Description("ISO-8601; default now")] string? to, [Description("1-1000; default 96")] string? limit, NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = NodeIdProblem(nodeId) ?? [];
        var minutes = 15;
        if (window_minutes is not null && (!int.TryParse(window_minutes, NumberStyles.None, CultureInfo.InvariantCulture, out minutes) || minutes is not (15 or 60)))
            errors["window_minutes"] = [$"window_minutes = {InputRules.Quote(window_minutes)}: must be 15 or 60"];
        var (fromUtc, toUtc) = ApiInput.ParseRange(from, to, DefaultHistory, DateTime.UtcNow, errors);
        var rows = ApiInput.ParseCount(limit, "limit", 96, 1_000, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await FindNodeAsync(pg, nodeId, ct) is null) return UnknownNode(nodeId);
        // The totals count each window once; the per-rule counts count a window under each rule that found a problem in it.
        await using var summary = pg.CreateCommand("""
            WITH q AS (SELECT usable, problems FROM sensors.window_quality
                       WHERE node_id = $1 AND window_minutes = $2 AND window_start >= $3 AND window_start < $4)
            SELECT (SELECT count(*) FROM q), (SELECT avg(usable::int)::float8 FROM q),
                   coalesce((SELECT jsonb_object_agg(rule, n) FROM (SELECT rule, count(*) AS n FROM q, unnest(q.problems) rule GROUP BY rule) r),
                            '{}'::jsonb)::text
            """);
        summary.Parameters.AddWithValue(nodeId);
        summary.Parameters.AddWithValue(minutes);
        summary.Parameters.AddWithValue(fromUtc);
        summary.Parameters.AddWithValue(toUtc);
        int judged;
        double? usableFraction;
        Dictionary<string, int> byRule;
        await using (var reader = await summary.ExecuteReaderAsync(ct))
        {
            await reader.ReadAsync(ct);
            judged = (int)reader.GetInt64(0);
            usableFraction = reader.IsDBNull(1) ? null : reader.GetDouble(1);
            byRule = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(reader.GetString(2)) ?? [];
        }
        await using var command = pg.CreateCommand("""
            SELECT metric, window_minutes, window_start, usable, score, problems, checks::text FROM sensors.window_quality
            WHERE node_id = $1 AND window_minutes = $2 AND window_start >= $3 AND window_start < $4
            ORDER BY window_start DESC, metric LIMIT $5
            """);
        command.Parameters.AddWithValue(nodeId);
        command.Parameters.AddWithValue(minutes);
        command.Parameters.AddWithValue(fromUtc);
        command.Parameters.AddWithValue(toUtc);
        command.Parameters.AddWithValue(rows);
        var windows = new List<QualityWindow>();
        await using (var reader = await command.ExecuteReaderAsync(ct))
            while (await reader.ReadAsync(ct))
                windows.Add(new QualityWindow(reader.GetString(0), reader.GetInt32(1), new DateTimeOffset(reader.GetDateTime(2)), reader.GetBoolean(3),
                    reader.GetDouble(4), reader.GetFieldValue<string[]>(5), System.Text.Json.JsonDocument.Parse(reader.GetString(6)).RootElement.Clone()));
        return TypedResults.Ok(new NodeQuality(nodeId, fromUtc, toUtc, judged, usableFraction, byRule, windows));
    }

    private const string EfficiencyColumns = "district_id, day_start, inflow_m3, metered_m3, non_revenue_m3, non_revenue_percent, completeness, rolling_days, " +
                                             "rolling_non_revenue_m3, rolling_non_revenue_percent";

    private static EfficiencyDay ReadEfficiency(NpgsqlDataReader r) => new(r.GetString(0), DateOnly.FromDateTime(r.GetDateTime(1)), r.GetDouble(2), r.GetDouble(3),
        r.GetDouble(4), r.GetDouble(5), r.GetDouble(6), r.GetInt32(7), r.GetDouble(8), r.GetDouble(9));

    private static async Task<IResult> EfficiencyAsync(string? district_id, [Description("1-90; default 7")] string? days, NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        if (district_id is not null && InputRules.CheckId("district_id", district_id) is { } bad) errors["district_id"] = [bad];
        var dayCount = ApiInput.ParseDays(days, 7, 90, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        await using var command = pg.CreateCommand($"""
            SELECT {EfficiencyColumns} FROM sensors.efficiency
            WHERE ($1::text IS NULL OR district_id = $1) AND day_start >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => $2)
            ORDER BY day_start DESC, district_id
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)district_id ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        command.Parameters.AddWithValue(dayCount);
        var list = new List<EfficiencyDay>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) list.Add(ReadEfficiency(reader));
        return TypedResults.Ok(new EfficiencyList(list));
    }

    /// <summary>Each district from the newest 15-minute flow and pressure windows of its nodes (the last two hours).</summary>
    private static async Task<List<DistrictNow>> DistrictsNowAsync(NpgsqlDataSource pg, CancellationToken ct)
    {
        await using var command = pg.CreateCommand("""
            WITH latest AS (
              SELECT DISTINCT ON (m.node_id, m.metric) m.node_id, m.metric, m.window_start, m.mean, n.kind, n.district_id
              FROM sensors.window_metrics m JOIN sensors.nodes n USING (node_id)
              WHERE m.window_minutes = 15 AND m.window_start > now() - interval '2 hours' AND m.metric IN ('flow', 'pressure')
              ORDER BY m.node_id, m.metric, m.window_start DESC),
            quarter AS (SELECT district_id, max(window_start) AS q FROM latest WHERE metric = 'flow' GROUP BY district_id)
            SELECT d.district_id, d.nodes, q.q,
                   (SELECT sum(mean) FROM latest l WHERE l.district_id = d.district_id AND l.metric = 'flow' AND l.kind = 'inflow' AND l.window_start = q.q),
                   (SELECT sum(mean) FROM latest l WHERE l.district_id = d.district_id AND l.metric = 'flow' AND l.kind = 'meter' AND l.window_start = q.q),
                   (SELECT min(mean) FROM latest l WHERE l.district_id = d.district_id AND l.metric = 'pressure'),
                   (SELECT count(*) FROM sensors.anomalies a WHERE a.district_id = d.district_id AND a.state <> 'resolved')
            FROM (SELECT district_id, count(*) AS nodes FROM sensors.nodes WHERE retired_at IS NULL GROUP BY district_id) d
            LEFT JOIN quarter q USING (district_id)
            ORDER BY d.district_id
            """);
        var list = new List<DistrictNow>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            double? Number(int i) => reader.IsDBNull(i) ? null : reader.GetDouble(i);
            var inflow = Number(3);
            var metered = Number(4);
            list.Add(new DistrictNow(reader.GetString(0), (int)reader.GetInt64(1), reader.IsDBNull(2) ? null : new DateTimeOffset(reader.GetDateTime(2)),
                inflow, metered, inflow - metered, Number(5), (int)reader.GetInt64(6)));
        }
        return list;
    }

    private static async Task<IResult> NetworkMetricsAsync(NpgsqlDataSource pg, CancellationToken ct) =>
        TypedResults.Ok(new NetworkMetrics(await DistrictsNowAsync(pg, ct)));

    private static async Task<NetworkStatus> ReadStatusAsync(NpgsqlDataSource pg, CancellationToken ct)
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
        return new NetworkStatus((int)reader.GetInt64(0), (int)reader.GetInt64(1), (int)reader.GetInt64(2),
            reader.IsDBNull(3) ? null : new DateTimeOffset(reader.GetDateTime(3)), (int)reader.GetInt64(4));
    }

    private static async Task<IResult> DashboardAsync(NpgsqlDataSource pg, CancellationToken ct)
    {
        var status = await ReadStatusAsync(pg, ct);
        var bySeverity = new Dictionary<string, int> { ["low"] = 0, ["medium"] = 0, ["high"] = 0, ["critical"] = 0 };
        int problems;
        await using (var command = pg.CreateCommand("""
            SELECT severity, count(*) FROM sensors.anomalies WHERE state <> 'resolved' GROUP BY severity
            """))
        await using (var reader = await command.ExecuteReaderAsync(ct))
            while (await reader.ReadAsync(ct)) bySeverity[reader.GetString(0)] = (int)reader.GetInt64(1);
        await using (var command = pg.CreateCommand(
                         "SELECT count(*) FROM sensors.window_quality WHERE NOT usable AND window_start > now() - interval '75 minutes' AND window_end <= now()"))
            problems = (int)(long)(await command.ExecuteScalarAsync(ct))!;
        var latest = new List<EfficiencyDay>();
        await using (var command = pg.CreateCommand($"""
            SELECT DISTINCT ON (district_id) {EfficiencyColumns} FROM sensors.efficiency WHERE day_start > now() - interval '8 days'
            ORDER BY district_id, day_start DESC
            """))
        await using (var reader = await command.ExecuteReaderAsync(ct))
            while (await reader.ReadAsync(ct)) latest.Add(ReadEfficiency(reader));
        return TypedResults.Ok(new DashboardSummary(status, bySeverity, problems, await DistrictsNowAsync(pg, ct), latest));
    }

    private static async Task<IResult> PredictionAsync([Description(InputRules.IdRuleText)] string nodeId, NpgsqlDataSource pg, CancellationToken ct)
    {
        if (NodeIdProblem(nodeId) is { } errors) return TypedResults.ValidationProblem(errors);
        if (await FindNodeAsync(pg, nodeId, ct) is null) return UnknownNode(nodeId);
        // The newest issue only (the primary key's order: node, metric, issue time).
        await using var command = pg.CreateCommand("""
            SELECT issued_at, method, target_time, mean, lower_80, upper_80, lower_95, upper_95 FROM sensors.predictions
            WHERE node_id = $1 AND metric = 'flow'
              AND issued_at = (SELECT max(issued_at) FROM sensors.predictions WHERE node_id = $1 AND metric = 'flow')
            ORDER BY target_time
            """);
        command.Parameters.AddWithValue(nodeId);
        DateTimeOffset? issued = null;
        string? method = null;
        var hours = new List<PredictionHour>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            double? Number(int i) => reader.IsDBNull(i) ? null : reader.GetDouble(i);
            issued = new DateTimeOffset(reader.GetDateTime(0));
            method = reader.GetString(1);
            hours.Add(new PredictionHour(new DateTimeOffset(reader.GetDateTime(2)), reader.GetDouble(3), Number(4), Number(5), Number(6), Number(7)));
        }
        return TypedResults.Ok(new NodePrediction(nodeId, "flow", "L/s", issued, method, hours));
    }
}
