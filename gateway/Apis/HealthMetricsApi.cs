using System.ComponentModel;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Confluent.Kafka;
using Npgsql;
using StreamHealth.Gateway.Identity;
using StreamHealth.Gateway.Insights;
using StreamHealth.Insights.Metrics;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using static StreamHealth.Gateway.Apis.JsonBodyInput;
using HealthMetric = StreamHealth.Schemas.Avro.Insights.HealthMetric;

namespace StreamHealth.Gateway.Apis;

/// <summary>/api/v1/health-metrics: a person's health metrics (steps, heart rate, sleep, weight, water, calories). POST
/// validates (<see cref="HealthMetricTypes"/>), claims the metric id and answers 202 once insights.metrics has the record;
/// the insights sink stores it in streamhealth.health_metrics, which the GETs read. Values are stored and returned in
/// each type's own unit. The record carries the person's local offset (recorded_at's, or their profile time zone's when it
/// is Z), which decides the local day of the insights topology's daily aggregates that GET …/summary reads.</summary>
public static class HealthMetricsApi
{
    public const int MaxBodyBytes = 16 * 1024;
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1_000;
    public static readonly TimeSpan DefaultRange = TimeSpan.FromDays(30);

    /// <summary>The request body of POST (for the API description; the handler reads the JSON field by field).</summary>
    public sealed record MetricRequest(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("type"), Description("steps, heart_rate, sleep_hours, weight, water_ml or calories")] string Type,
        [property: JsonPropertyName("value")] double Value,
        [property: JsonPropertyName("unit"), Description("steps: steps or count; heart_rate: bpm or /min; sleep_hours: h, hours or min; weight: kg, lb or lbs; water_ml: ml or l; calories: kcal")] string Unit,
        [property: JsonPropertyName("recorded_at"), Description("ISO-8601 date-time with an offset. A numeric offset (+01:00, -05:00, +00:00) is the person's local time and decides the local day of the daily aggregates; with Z the person's profile time zone does")] DateTimeOffset RecordedAt,
        [property: JsonPropertyName("metric_id"), Description("optional idempotency id, " + InputRules.IdRuleText)] string? MetricId);

    public sealed record Metric(
        [property: JsonPropertyName("metric_id")] string MetricId,
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("type")] string Type,
        [property: JsonPropertyName("value")] double Value,
        [property: JsonPropertyName("unit")] string Unit,
        [property: JsonPropertyName("recorded_at")] DateTime RecordedAt);

    public sealed record MetricPage(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("from")] DateTime From,
        [property: JsonPropertyName("to")] DateTime To,
        [property: JsonPropertyName("type")] string? Type,
        [property: JsonPropertyName("limit")] int Limit,
        [property: JsonPropertyName("metrics")] IReadOnlyList<Metric> Metrics,
        [property: JsonPropertyName("next_cursor"), Description("pass as `cursor` for the next page; null on the last page")] string? NextCursor);

    public static RouteGroupBuilder MapHealthMetricsApi(this IEndpointRouteBuilder app)
    {
        var metrics = app.MapGroup("/api/v1/health-metrics")
            .WithTags("Health metrics")
            .ProducesProblem(StatusCodes.Status429TooManyRequests);

        metrics.MapPost("/", PostAsync).WithName("PostHealthMetric")
            .WithSummary("Record one health metric")
            .WithDescription("Every field but `metric_id` is required. `value` in `unit` must be plausible for one record of the type " +
                             "(heart_rate 20-250 bpm, steps 0-100000, sleep_hours 0-24 h, water_ml 0-10000 ml, calories 0-20000 kcal, " +
                             "weight as the weights workload's bounds); it is stored in the type's own unit (weight in kg). 202 once " +
                             "insights.metrics has acknowledged the record; `GET /{metricId}` shows it when the insights sink has stored it " +
                             "(about a second). `metric_id` (generated when absent) names one metric of one user: re-sending the same " +
                             "metric is accepted again and stored once, the same id with other content is a 409. The metric counts towards the " +
                             "person's local day: recorded_at's numeric offset, or with Z the profile time zone.")
            .Accepts<MetricRequest>("application/json")
            .Produces<Metric>(StatusCodes.Status202Accepted)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxBodyBytes))
            .RequireAccess(Access.OwnDataInBody("user_id", Scopes.MetricsWrite));

        metrics.MapGet("/{metricId}", GetAsync).WithName("GetHealthMetric")
            .WithSummary("One stored metric of the caller's")
            .WithDescription("A person's token reads only that person's metrics: another person's id is answered 404, as an id that " +
                             "does not exist. A service key with metrics:read reads any.")
            .Produces<Metric>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Caller(Scopes.MetricsRead));

        metrics.MapGet("/user/{userId}", ListAsync).WithName("ListHealthMetrics")
            .WithSummary("A person's stored metrics in a time range, oldest first, a page at a time")
            .WithDescription("from <= recorded_at < to, optionally one `type`, at most `limit` per page; `next_cursor` continues " +
                             "the same query. A person with no metrics gets an empty page, not 404.")
            .Produces<MetricPage>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.MetricsRead));

        metrics.MapGet("/user/{userId}/summary", SummaryAsync).WithName("GetHealthMetricsSummary")
            .WithSummary("A person's daily aggregates for the last `days` local days and their rolling 7- and 30-day summaries")
            .WithDescription("Aggregated by the insights topology by the person's local day (recorded_at's offset, or the profile time zone " +
                             "when it was Z), each metric_id counted once; a late record (within Insights:GraceHours, 48 h by default) " +
                             "updates its day. The window ends with the person's local today, or their latest local day with data when " +
                             "later. Values in each type's stored unit. A person with no metrics gets empty lists, not 404.")
            .Produces<InsightsSummary>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.MetricsRead));
        return metrics;
    }

    public const int DefaultSummaryDays = 7;
    public const int MaxSummaryDays = 90;

    private static async Task<IResult> SummaryAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("Local days of daily aggregates, 1-90; default 7")] string? days,
        NpgsqlDataSource pg, PersonalCache cache, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var dayCount = ApiInput.ParseDays(days, DefaultSummaryDays, MaxSummaryDays, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        // Five minutes in Redis; the insights sink drops the person's entries when it stores new aggregates.
        var json = await cache.GetOrLoadJsonAsync(CacheTier.MetricSummaries, userId, dayCount.ToString(CultureInfo.InvariantCulture),
            token => InsightsQueries.LoadSummaryAsync(pg, userId, dayCount, token)!, ct);
        return TypedResults.Bytes(json!, "application/json");
    }

    public static IServiceCollection AddHealthMetrics(this IServiceCollection services) =>
        services.AddSingleton(sp => new InsightsPublisher(sp.GetRequiredService<StreamHealthOptions>(),
                sp.GetRequiredService<StreamHealth.Runtime.SchemaRegistry.SchemaRegistryConnection>()))
            .AddSingleton(sp => new UserTimeZones(sp.GetRequiredService<NpgsqlDataSource>()));

    private static async Task<IResult> PostAsync(HttpRequest http, InsightsPublisher publisher, UserTimeZones zones, StreamHealthOptions options,
        NpgsqlDataSource postgres, ILoggerFactory loggers, CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, MaxBodyBytes, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var userId = RequiredId(body, "user_id", errors);
        var metricId = OptionalId(body, "metric_id", errors);
        var typeText = String(body, "type", required: true, errors);
        var type = HealthMetricTypes.Find(typeText);
        if (typeText is not null && type is null)
            errors["type"] = [$"type = {InputRules.Quote(typeText)}: must be one of {HealthMetricTypes.NamesText}"];
        var unit = String(body, "unit", required: true, errors);
        var value = Number(body, "value", required: true, errors);
        double stored = 0;
        if (type is not null && unit is not null && value is { } raw)
        {
            var (normalized, unitProblem, valueProblem) = HealthMetricTypes.Normalize(type, raw, unit);
            if (unitProblem is not null) errors["unit"] = [unitProblem];
            else if (valueProblem is not null) errors["value"] = [valueProblem];
            stored = normalized;
        }
        else if (type is not null && unit is not null && !type.Conversions.ContainsKey(unit.ToLowerInvariant()))
            errors["unit"] = [$"unit = {InputRules.Quote(unit)}: {type.Name} takes {type.UnitsText}"];
        var recordedAtMs = EventTime(body, "recorded_at", options.Input.TimeRule, errors, out var localOffsetMinutes) ?? 0;
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await http.HttpContext.AuthorizeSubjectAsync(userId!) is { } forbidden) return forbidden;
        if (!publisher.Configured)
            return TypedResults.Problem("Kafka:BootstrapServers is not configured; nothing was sent",
                statusCode: StatusCodes.Status503ServiceUnavailable, title: "Health metrics pipeline unavailable");
        // The subject's zone, also when a service key writes for them (PostgreSQL down: the shared 503, nothing sent).
        localOffsetMinutes ??= await zones.OffsetMinutesAsync(userId!, DateTimeOffset.FromUnixTimeMilliseconds(recordedAtMs), ct);

        var metric = new HealthMetric
        {
            metric_id = metricId ?? Guid.NewGuid().ToString("N"), user_id = userId!, metric = type!.Name, value = stored, unit = type.Unit,
            event_time_unix_ms = AvroTime.FromUnixMs(recordedAtMs), utc_offset_minutes = localOffsetMinutes.Value,
        };
        await publisher.PrepareAsync<HealthMetric>(Topics.InsightsMetrics);
        if (await EventIdClaims.ClaimAsync(postgres, HealthMetricPostgresWriter.EventIdWorkload, "metric_id", metric.metric_id, metric.user_id,
                HealthMetricTypes.Fingerprint(metric.metric, recordedAtMs, metric.value, metric.unit), "metric",
                "user, type, value, unit and recorded_at", "Health metrics pipeline unavailable",
                loggers.CreateLogger(typeof(HealthMetricsApi)), ct) is { } claimProblem)
            return claimProblem;
        try
        {
            await publisher.ProduceAsync(Topics.InsightsMetrics, metric.user_id, metric, ct);
        }
        catch (KafkaException e)
        {
            // A retry with the same metric_id is the remedy: the claim is the retry's own.
            loggers.CreateLogger(typeof(HealthMetricsApi)).LogWarning(e, "producing health metric {MetricId} failed", metric.metric_id);
            return TypedResults.Problem($"insights.metrics did not acknowledge the metric ({e.Error.Reason}); retry with metric_id {InputRules.Quote(metric.metric_id)}",
                statusCode: StatusCodes.Status503ServiceUnavailable, title: "Health metrics pipeline unavailable");
        }
        var answer = new Metric(metric.metric_id, metric.user_id, metric.metric, metric.value, metric.unit, DateTime.UnixEpoch.AddMilliseconds(recordedAtMs));
        return TypedResults.Accepted($"/api/v1/health-metrics/{metric.metric_id}", answer);
    }

    private static async Task<IResult> GetAsync([Description(InputRules.IdRuleText)] string metricId, HttpContext http,
        NpgsqlDataSource pg, CancellationToken ct)
    {
        if (InputRules.CheckId("metricId", metricId) is { } badId)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["metricId"] = [badId] });
        // A person's token sees its own rows only: another's id and an unknown one get the same 404.
        var person = http.User.PersonalUserId();
        await using var cmd = pg.CreateCommand("""
            SELECT metric_id, user_id, metric, value, unit, event_time FROM streamhealth.health_metrics
            WHERE metric_id = $1 AND ($2::text IS NULL OR user_id = $2)
            LIMIT 1
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = metricId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)person ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
            return TypedResults.Problem(title: "No such metric", statusCode: StatusCodes.Status404NotFound,
                detail: "No stored metric with this id that this credential may read (a metric just posted is stored within about a second).");
        return TypedResults.Ok(Read(reader));
    }

    private static async Task<IResult> ListAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("ISO-8601 date-time, inclusive (UTC when no offset is given); default: `to` minus 30 days")] string? from,
        [Description("ISO-8601 date-time, exclusive (UTC when no offset is given); default: now plus the allowed clock skew")] string? to,
        [Description("one metric type: steps, heart_rate, sleep_hours, weight, water_ml or calories; default: all")] string? type,
        [Description("Most metrics per page, 1-1000; default 100")] string? limit,
        [Description("`next_cursor` of the previous page")] string? cursor,
        StreamHealthOptions options, NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var page = KeysetPaging.Parse(from, to, limit, cursor, DefaultRange, DefaultLimit, MaxLimit, options.Input.TimeRule, errors);
        if (type is not null && HealthMetricTypes.Find(type) is null)
            errors["type"] = [$"type = {InputRules.Quote(type)}: must be one of {HealthMetricTypes.NamesText}"];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        await using var cmd = KeysetPaging.Command(pg, """
            SELECT metric_id, user_id, metric, value, unit, event_time FROM streamhealth.health_metrics
            WHERE user_id = $1 AND event_time >= $2 AND event_time < $3 AND ($4::timestamptz IS NULL OR (event_time, metric_id) > ($4, $5))
              AND ($7::text IS NULL OR metric = $7)
            ORDER BY event_time, metric_id
            LIMIT $6
            """, userId, page);
        cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)type ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        var (rows, next) = await KeysetPaging.ReadAsync(cmd, page, Read, static m => (m.RecordedAt, m.MetricId), ct);
        return TypedResults.Ok(new MetricPage(userId, page.FromUtc, page.ToUtc, type, page.Limit, rows, next));
    }

    private static Metric Read(NpgsqlDataReader reader) => new(reader.GetString(0), reader.GetString(1), reader.GetString(2),
        reader.GetDouble(3), reader.GetString(4), DateTime.SpecifyKind(reader.GetDateTime(5), DateTimeKind.Utc));
}
