using System.Buffers.Text;
using System.ComponentModel;
using System.Globalization;
using System.Text;
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
            .RequireApiRateLimit()
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
        NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var dayCount = DefaultSummaryDays;
        if (days is not null && (!int.TryParse(days, NumberStyles.None, CultureInfo.InvariantCulture, out dayCount) || dayCount is < 1 or > MaxSummaryDays))
            errors["days"] = [$"'{ApiInput.Shorten(days)}' is not a whole number of days from 1 to {MaxSummaryDays}."];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        return TypedResults.Ok(await InsightsQueries.LoadSummaryAsync(pg, userId, dayCount, ct));
    }

    public static IServiceCollection AddHealthMetrics(this IServiceCollection services) =>
        services.AddSingleton(sp => new HealthMetricsPublisher(sp.GetRequiredService<StreamHealthOptions>(),
                sp.GetRequiredService<StreamHealth.Runtime.SchemaRegistry.SchemaRegistryConnection>()))
            .AddSingleton(sp => new UserTimeZones(sp.GetRequiredService<NpgsqlDataSource>()));

    private static async Task<IResult> PostAsync(HttpRequest http, HealthMetricsPublisher publisher, UserTimeZones zones, StreamHealthOptions options,
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
        double? value = null;
        if (!body.TryGetProperty("value", out var valueElement) || valueElement.ValueKind == JsonValueKind.Null)
            errors["value"] = ["value is required"];
        else if (valueElement.ValueKind != JsonValueKind.Number)
            errors["value"] = [$"value must be a number, not {Kind(valueElement)}"];
        else if (!valueElement.TryGetDouble(out var number) || !double.IsFinite(number))
            errors["value"] = [$"value = {InputRules.Quote(valueElement.GetRawText())}: must be a finite number"];
        else value = number;
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
        long recordedAtMs = 0;
        int? localOffsetMinutes = null;
        var timeText = String(body, "recorded_at", required: true, errors);
        if (timeText is not null)
        {
            if (!body.GetProperty("recorded_at").TryGetDateTimeOffset(out var time) || !HasOffset(timeText))
                errors["recorded_at"] = [$"recorded_at = {InputRules.Quote(timeText)}: must be an ISO-8601 date-time with an offset, such as 2026-01-31T07:30:00Z"];
            else if (options.Input.TimeRule.Check("recorded_at", time, DateTimeOffset.UtcNow) is { } problem)
                errors["recorded_at"] = [problem];
            else
            {
                recordedAtMs = time.ToUnixTimeMilliseconds();
                // "Z" says the instant, not where the person was (clients serialise UTC so); a numeric offset, "+00:00" included, is
                // the person's local time and decides the local day. Without one the profile's time zone does.
                if (timeText[^1] is not ('Z' or 'z')) localOffsetMinutes = (int)time.Offset.TotalMinutes;
            }
        }
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
        if (await EventIdClaims.ClaimAsync(postgres, HealthMetricPostgresWriter.EventIdWorkload, "metric_id", metric.metric_id, metric.user_id,
                HealthMetricTypes.Fingerprint(metric.metric, recordedAtMs, metric.value, metric.unit), "metric",
                "user, type, value, unit and recorded_at", "Health metrics pipeline unavailable",
                loggers.CreateLogger(typeof(HealthMetricsApi)), ct) is { } claimProblem)
            return claimProblem;
        try
        {
            await publisher.ProduceAsync(metric, ct);
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
        var toUtc = ApiInput.ParseTime(to, "to", errors) ?? DateTime.UtcNow.AddMilliseconds(options.Input.TimeRule.MaxAheadMs);
        var fromUtc = ApiInput.ParseTime(from, "from", errors) ?? toUtc - DefaultRange;
        if (!errors.ContainsKey("from") && !errors.ContainsKey("to") && fromUtc > toUtc)
            errors["from"] = [$"'{fromUtc:O}' is after to = '{toUtc:O}'."];
        if (type is not null && HealthMetricTypes.Find(type) is null)
            errors["type"] = [$"type = {InputRules.Quote(type)}: must be one of {HealthMetricTypes.NamesText}"];
        var pageSize = DefaultLimit;
        if (limit is not null && (!int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out pageSize) || pageSize is < 1 or > MaxLimit))
            errors["limit"] = [$"'{ApiInput.Shorten(limit)}' is not a whole number from 1 to {MaxLimit}."];
        (DateTime Time, string MetricId)? after = null;
        if (cursor is not null)
        {
            after = DecodeCursor(cursor);
            if (after is null) errors["cursor"] = [$"'{ApiInput.Shorten(cursor)}' is not a cursor this API returned."];
        }
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        // Keyset paging on (recorded_at, metric_id): a page is one index range, whatever the page number.
        await using var cmd = pg.CreateCommand("""
            SELECT metric_id, user_id, metric, value, unit, event_time FROM streamhealth.health_metrics
            WHERE user_id = $1 AND event_time >= $2 AND event_time < $3 AND ($4::text IS NULL OR metric = $4)
              AND ($5::timestamptz IS NULL OR (event_time, metric_id) > ($5, $6))
            ORDER BY event_time, metric_id
            LIMIT $7
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = fromUtc });
        cmd.Parameters.Add(new NpgsqlParameter { Value = toUtc });
        cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)type ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        cmd.Parameters.Add(new NpgsqlParameter { Value = after is { } a ? a.Time : DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
        cmd.Parameters.Add(new NpgsqlParameter { Value = after?.MetricId ?? "", NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        // One row more than asked tells whether there is a next page.
        cmd.Parameters.Add(new NpgsqlParameter { Value = pageSize + 1 });
        var rows = new List<Metric>(Math.Min(pageSize + 1, 256));
        await using (var reader = await cmd.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct)) rows.Add(Read(reader));
        }
        string? next = null;
        if (rows.Count > pageSize)
        {
            rows.RemoveAt(rows.Count - 1);
            next = EncodeCursor(rows[^1].RecordedAt, rows[^1].MetricId);
        }
        return TypedResults.Ok(new MetricPage(userId, fromUtc, toUtc, type, pageSize, rows, next));
    }

    private static Metric Read(NpgsqlDataReader reader) => new(reader.GetString(0), reader.GetString(1), reader.GetString(2),
        reader.GetDouble(3), reader.GetString(4), DateTime.SpecifyKind(reader.GetDateTime(5), DateTimeKind.Utc));

    // Opaque to clients: base64url of "unix microseconds:metric_id" (the last row of the page).
    private static string EncodeCursor(DateTime time, string metricId) =>
        Base64Url.EncodeToString(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{(time - DateTime.UnixEpoch).Ticks / 10}:{metricId}")));

    private static (DateTime, string)? DecodeCursor(string cursor)
    {
        if (cursor.Length > 256 || !Base64Url.IsValid(cursor)) return null;
        string text;
        try { text = Encoding.UTF8.GetString(Base64Url.DecodeFromChars(cursor)); }
        catch (FormatException) { return null; }
        var colon = text.IndexOf(':');
        if (colon < 1 || !long.TryParse(text.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var micros)
            || micros > 7_258_118_400_000_000L || !InputRules.IsValidId(text[(colon + 1)..])) return null;
        return (DateTime.UnixEpoch.AddTicks(micros * 10), text[(colon + 1)..]);
    }
}
