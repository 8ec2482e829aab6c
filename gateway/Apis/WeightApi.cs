using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Validation;
using System.ComponentModel;
using System.Globalization;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Schemas;
using StreamHealth.Weight.Pipeline;

namespace StreamHealth.Gateway.Apis;

/// <summary>/api/weight: each user's Kalman-filtered weight, latest (Redis first, PostgreSQL when Redis
/// misses or is down) and history (PostgreSQL weights.measurements). Every endpoint takes the person's own
/// token or a service key with weights:read / weights:write, and is rate limited per caller; JSON is snake_case, weights in kg, timestamps ISO-8601 UTC.</summary>
public static class WeightApi
{
    public const int DefaultHistoryLimit = 1_000;
    public const int MaxHistoryLimit = 10_000;
    public static readonly TimeSpan DefaultHistoryRange = TimeSpan.FromDays(90);

    public sealed record LatestWeight(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("measurement_id")] string MeasurementId,
        [property: JsonPropertyName("timestamp")] DateTime Timestamp,
        [property: JsonPropertyName("filtered_weight")] double? FilteredWeightKg,
        [property: JsonPropertyName("trend_kg_per_week")] double? TrendKgPerWeek,
        [property: JsonPropertyName("confidence")] double? Confidence,
        [property: JsonPropertyName("raw_weight")] double? RawWeightKg,
        [property: JsonPropertyName("accepted")] bool Accepted,
        [property: JsonPropertyName("needs_initialization")] bool NeedsInitialization,
        [property: JsonPropertyName("source")] string Source);

    public sealed record WeightPoint(
        [property: JsonPropertyName("measurement_id")] string MeasurementId,
        [property: JsonPropertyName("timestamp")] DateTime Timestamp,
        [property: JsonPropertyName("source")] string Source,
        [property: JsonPropertyName("raw_weight")] double? RawWeightKg,
        [property: JsonPropertyName("accepted")] bool Accepted,
        [property: JsonPropertyName("filtered_weight")] double? FilteredWeightKg,
        [property: JsonPropertyName("trend_kg_per_week")] double? TrendKgPerWeek,
        [property: JsonPropertyName("confidence")] double? Confidence,
        [property: JsonPropertyName("prediction_error")] double? PredictionErrorKg,
        [property: JsonPropertyName("needs_initialization")] bool NeedsInitialization,
        [property: JsonPropertyName("needs_reinitialization")] bool NeedsReinitialization,
        [property: JsonPropertyName("reasons")] string[] Reasons);

    public sealed record WeightHistory(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("from")] DateTime From,
        [property: JsonPropertyName("to")] DateTime To,
        [property: JsonPropertyName("limit")] int Limit,
        [property: JsonPropertyName("truncated")] bool Truncated,
        [property: JsonPropertyName("measurements")] IReadOnlyList<WeightPoint> Measurements);

    /// <summary>Maps the /api/weight group (per-caller rate limit; each endpoint's access rule) and its read endpoints;
    /// returns the group so that more endpoints can join it.</summary>
    public static RouteGroupBuilder MapWeightApi(this IEndpointRouteBuilder app)
    {
        var weight = app.MapGroup("/api/weight")
            .WithTags("Weight")
            .ProducesProblem(StatusCodes.Status429TooManyRequests);

        weight.MapGet("/{userId}/latest", GetLatestAsync)
            .WithName("GetLatestWeight")
            .RequireAccess(Access.OwnData("userId", Scopes.WeightsRead))
            .WithSummary("A user's latest filtered weight")
            .WithDescription("Redis (the processors' write-through cache) first; PostgreSQL weights.measurements " +
                             "(latest accepted, initialised row) when Redis has no entry or is unreachable. " +
                             "`source` says which answered. 404 when neither knows the user. A 200 from `POST /process` has already " +
                             "written its result to Redis, so the caller's next read sees it; only while Redis is unreachable can " +
                             "this answer (then from PostgreSQL) lag a 200 by the weights sinks' delay (a few seconds).")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

        weight.MapGet("/{userId}/history", GetHistoryAsync)
            .WithName("GetWeightHistory")
            .RequireAccess(Access.OwnData("userId", Scopes.WeightsRead))
            .WithSummary("A user's measurements with their filter results, oldest first")
            .WithDescription("Rows of weights.measurements with from <= timestamp < to, ordered by timestamp, at most " +
                             "`limit` (`truncated` is true when more rows were in range). A user with no rows " +
                             "gets an empty list, not 404: the range is what was asked about.")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

        weight.MapGet("/{userId}/state", GetStateAsync)
            .WithName("GetWeightFilterState")
            .RequireAccess(Access.OwnData("userId", Scopes.WeightsRead))
            .WithSummary("A user's live filter state, read from the stream task that owns it")
            .WithDescription("An interactive query: the weights topology's state store on the processing host that owns the user's " +
                             "partition of weights.raw (not the sinks, so it includes the last record applied a moment ago, and " +
                             "readings buffered for initialisation). 404 when the topology has no state for the user; 503 with " +
                             "Retry-After while the store is being restored or moved between hosts for longer than the gateway waits.")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

        // Ingest endpoints: answered by the stream pipeline over Kafka request/reply (WeightCommandsApi).
        weight.MapWeightCommands();

        return weight;
    }

    private static async Task<Results<Ok<LatestWeight>, ValidationProblem, ProblemHttpResult>> GetLatestAsync(
        [Description(InputRules.IdRuleText)] string userId,
        IConnectionMultiplexer redis, NpgsqlDataSource pg, ILoggerFactory loggers, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        var cached = await ReadCacheAsync(redis, userId, loggers);
        if (cached is not null)
            return TypedResults.Ok(new LatestWeight(cached.UserId, cached.MeasurementId,
                DateTimeOffset.FromUnixTimeMilliseconds(cached.EventTimeUnixMs).UtcDateTime,
                Finite(cached.FilteredWeightKg), Finite(cached.TrendKgPerWeek), Finite(cached.Confidence), Finite(cached.RawWeightKg),
                cached.Accepted, cached.NeedsInitialization, "redis"));

        await using var cmd = pg.CreateCommand("""
            SELECT measurement_id, measured_at, filtered_weight_kg, trend_kg_per_week, confidence, raw_weight_kg,
                   accepted, needs_initialization
            FROM weights.measurements
            WHERE user_id = $1 AND accepted AND NOT needs_initialization
            ORDER BY measured_at DESC
            LIMIT 1
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
            return TypedResults.Problem(title: "No weight for this user", statusCode: StatusCodes.Status404NotFound,
                detail: $"User '{userId}' has no filtered weight in Redis or PostgreSQL.");
        return TypedResults.Ok(new LatestWeight(userId, reader.GetString(0), UtcTime(reader, 1),
            Finite(reader.GetDouble(2)), Finite(reader.GetDouble(3)), Finite(reader.GetDouble(4)), Finite(reader.GetDouble(5)),
            reader.GetBoolean(6), reader.GetBoolean(7), "postgres"));
    }

    private static async Task<Results<Ok<WeightStateView>, ValidationProblem, ProblemHttpResult>> GetStateAsync(
        [Description(InputRules.IdRuleText)] string userId,
        Streams.InteractiveQueries queries, StreamHealth.Runtime.SchemaRegistry.SchemaRegistryConnection registry, HttpContext http, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        // The key schema's id resolved without blocking a thread; the key is then serialised synchronously.
        await registry.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>().PrepareAsync(Topics.WeightsRaw, Confluent.Kafka.MessageComponentType.Key);
        var answer = await queries.QueryAsync<WeightStateView>(WeightTopology.ApplicationId, WeightTopology.StateStore, userId,
            WeightTopology.SourceKey(registry, userId), ct);
        switch (answer.Outcome)
        {
            case Streams.InteractiveQueries.Outcome.Found:
                return TypedResults.Ok(answer.Value!);
            case Streams.InteractiveQueries.Outcome.NotFound:
                return TypedResults.Problem(title: "No filter state for this user", statusCode: StatusCodes.Status404NotFound,
                    detail: $"The weights topology holds no state for user '{userId}'.");
            default:
                http.Response.Headers.RetryAfter = "1";
                return TypedResults.Problem(title: "Filter state not queryable now", statusCode: StatusCodes.Status503ServiceUnavailable,
                    detail: answer.Detail);
        }
    }

    // Redis only speeds reads up: when it is down or holds an unreadable entry, PostgreSQL answers.
    private static async Task<WeightLatest?> ReadCacheAsync(IConnectionMultiplexer redis, string userId, ILoggerFactory loggers)
    {
        try
        {
            if (redis.IsConnected) return await WeightLatestCache.ReadAsync(redis.GetDatabase(), userId);
            loggers.CreateLogger(typeof(WeightApi)).LogWarning("Redis is not connected; reading the latest weight of {UserId} from PostgreSQL", userId);
        }
        // RedisTimeoutException is a TimeoutException, not a RedisException (StackExchange.Redis 1.x to 3.4 alike).
        catch (Exception e) when (e is RedisException or TimeoutException or KeyNotFoundException or FormatException)
        {
            loggers.CreateLogger(typeof(WeightApi)).LogWarning(e, "Redis read of the latest weight of {UserId} failed; reading PostgreSQL", userId);
        }
        return null;
    }

    private static async Task<Results<Ok<WeightHistory>, ValidationProblem>> GetHistoryAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("ISO-8601 date-time, inclusive (UTC when no offset is given); default: `to` minus 90 days")] string? from,
        [Description("ISO-8601 date-time, exclusive (UTC when no offset is given); default: now")] string? to,
        [Description("Most rows returned, 1-10000; default 1000")] string? limit,
        NpgsqlDataSource pg, CancellationToken ct)
    {
        // Query values arrive as strings so that a bad one gets a 400 naming it, not a bare binding failure.
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var (fromUtc, toUtc) = ApiInput.ParseRange(from, to, DefaultHistoryRange, DateTime.UtcNow, errors);
        var rowLimit = ApiInput.ParseCount(limit, "limit", DefaultHistoryLimit, MaxHistoryLimit, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        await using var cmd = pg.CreateCommand("""
            SELECT measurement_id, measured_at, source, raw_weight_kg, accepted, filtered_weight_kg, trend_kg_per_week,
                   confidence, prediction_error_kg, needs_initialization, needs_reinitialization, reasons
            FROM weights.measurements
            WHERE user_id = $1 AND measured_at >= $2 AND measured_at < $3
            ORDER BY measured_at, measurement_id
            LIMIT $4
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = fromUtc });
        cmd.Parameters.Add(new NpgsqlParameter { Value = toUtc });
        // One row more than asked tells whether the range held more.
        cmd.Parameters.Add(new NpgsqlParameter { Value = rowLimit + 1 });
        var points = new List<WeightPoint>(Math.Min(rowLimit + 1, 256));
        await using (var reader = await cmd.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var needsInitialization = reader.GetBoolean(9);
                points.Add(new WeightPoint(reader.GetString(0), UtcTime(reader, 1), reader.GetString(2),
                    Finite(reader.GetDouble(3)), reader.GetBoolean(4),
                    // Stored as 0 while the user's filter has no estimate yet: null says so plainly.
                    needsInitialization || reader.GetDouble(5) <= 0 ? null : Finite(reader.GetDouble(5)),
                    Finite(reader.GetDouble(6)), Finite(reader.GetDouble(7)), Finite(reader.GetDouble(8)),
                    needsInitialization, reader.GetBoolean(10), reader.GetFieldValue<string[]>(11)));
            }
        }
        var truncated = points.Count > rowLimit;
        if (truncated) points.RemoveAt(points.Count - 1);
        return TypedResults.Ok(new WeightHistory(userId, fromUtc, toUtc, rowLimit, truncated, points));
    }

    // timestamptz is an instant: say so (Kind Utc serialises with "Z"), whatever the driver's mapping of an edge value
    // such as -infinity (rows stored before the event-time rule), so a client never gets a time without a zone.
    private static DateTime UtcTime(NpgsqlDataReader reader, int ordinal) => DateTime.SpecifyKind(reader.GetDateTime(ordinal), DateTimeKind.Utc);

    // NaN marks an unknown unit or unparsable value in weights.measurements; JSON has no NaN, so null.
    private static double? Finite(double value) => double.IsFinite(value) ? value : null;

}
