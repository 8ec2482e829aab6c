using System.ComponentModel;
using System.Text.Json.Serialization;
using Confluent.Kafka;
using Npgsql;
using StreamHealth.Gateway.Identity;
using StreamHealth.Gateway.Insights;
using StreamHealth.Insights.Nutrition;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using static StreamHealth.Gateway.Apis.JsonBodyInput;
using NutritionLog = StreamHealth.Schemas.Avro.Insights.NutritionLog;

namespace StreamHealth.Gateway.Apis;

/// <summary>/api/v1/nutrition-logs: a person's meals with calories and macronutrients. POST validates
/// (<see cref="NutritionRules"/>), claims the log id and answers 202 once insights.nutrition has the record; the nutrition
/// sink stores it in insights.nutrition_logs, which the GET reads. The same shape as the health metrics API.</summary>
public static class NutritionLogsApi
{
    public const int MaxBodyBytes = 16 * 1024;
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1_000;
    public static readonly TimeSpan DefaultRange = TimeSpan.FromDays(30);
    private const string PipelineTitle = "Nutrition pipeline unavailable";

    /// <summary>The request body of POST (for the API description; the handler reads the JSON field by field).</summary>
    public sealed record NutritionLogRequest(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("log_id"), Description("optional idempotency id, " + InputRules.IdRuleText)] string? LogId,
        [property: JsonPropertyName("eaten_at"), Description("ISO-8601 date-time with an offset")] DateTimeOffset EatenAt,
        [property: JsonPropertyName("meal"), Description("breakfast, lunch, dinner or snack")] string Meal,
        [property: JsonPropertyName("description"), Description("what was eaten: 1-500 characters, no control characters")] string Description,
        [property: JsonPropertyName("calories_kcal"), Description("kcal, 0-10000")] double CaloriesKcal,
        [property: JsonPropertyName("protein_g"), Description("g, 0-2000")] double ProteinG,
        [property: JsonPropertyName("carbohydrate_g"), Description("g, 0-2000")] double CarbohydrateG,
        [property: JsonPropertyName("fat_g"), Description("g, 0-2000")] double FatG,
        [property: JsonPropertyName("fiber_g"), Description("optional, g, 0-2000")] double? FiberG,
        [property: JsonPropertyName("sugar_g"), Description("optional, g, 0-2000, at most carbohydrate_g")] double? SugarG,
        [property: JsonPropertyName("sodium_mg"), Description("optional, mg, 0-20000")] double? SodiumMg);

    public sealed record NutritionLogEntry(
        [property: JsonPropertyName("log_id")] string LogId,
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("eaten_at")] DateTime EatenAt,
        [property: JsonPropertyName("meal")] string Meal,
        [property: JsonPropertyName("description")] string Description,
        [property: JsonPropertyName("calories_kcal")] double CaloriesKcal,
        [property: JsonPropertyName("protein_g")] double ProteinG,
        [property: JsonPropertyName("carbohydrate_g")] double CarbohydrateG,
        [property: JsonPropertyName("fat_g")] double FatG,
        [property: JsonPropertyName("fiber_g")] double? FiberG,
        [property: JsonPropertyName("sugar_g")] double? SugarG,
        [property: JsonPropertyName("sodium_mg")] double? SodiumMg);

    public sealed record NutritionLogPage(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("from")] DateTime From,
        [property: JsonPropertyName("to")] DateTime To,
        [property: JsonPropertyName("limit")] int Limit,
        [property: JsonPropertyName("logs")] IReadOnlyList<NutritionLogEntry> Logs,
        [property: JsonPropertyName("next_cursor"), Description("pass as `cursor` for the next page; null on the last page")] string? NextCursor);

    public static RouteGroupBuilder MapNutritionLogsApi(this IEndpointRouteBuilder app)
    {
        var logs = app.MapGroup("/api/v1/nutrition-logs")
            .WithTags("Nutrition logs")
            .ProducesProblem(StatusCodes.Status429TooManyRequests);

        logs.MapPost("/", PostAsync).WithName("PostNutritionLog")
            .WithSummary("Log one meal")
            .WithDescription("Every field but `log_id`, `fiber_g`, `sugar_g` and `sodium_mg` is required. Per meal: calories 0-10000 kcal, " +
                             "grams 0-2000, sodium 0-20000 mg, sugars at most the carbohydrate; the macronutrients' energy (4 kcal/g protein " +
                             "and carbohydrate, 9 kcal/g fat) may exceed `calories_kcal` by at most 25 % + 50 kcal (label rounding), more is " +
                             "a 400 naming calories_kcal. 202 once insights.nutrition has acknowledged the record; `GET /user/{userId}` shows " +
                             "it when the nutrition sink has stored it (about a second). `log_id` (generated when absent) names one meal of " +
                             "one user: re-sending the same meal is accepted again and stored once, the same id with other content is a 409.")
            .Accepts<NutritionLogRequest>("application/json")
            .Produces<NutritionLogEntry>(StatusCodes.Status202Accepted)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxBodyBytes))
            .RequireAccess(Access.OwnDataInBody("user_id", Scopes.NutritionWrite));

        logs.MapGet("/user/{userId}", ListAsync).WithName("ListNutritionLogs")
            .WithSummary("A person's logged meals in a time range, oldest first, a page at a time")
            .WithDescription("from <= eaten_at < to, at most `limit` per page; `next_cursor` continues the same query. A person with no " +
                             "meals gets an empty page, not 404.")
            .Produces<NutritionLogPage>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.NutritionRead));
        return logs;
    }

    private static async Task<IResult> PostAsync(HttpRequest http, InsightsPublisher publisher, StreamHealthOptions options,
        NpgsqlDataSource postgres, ILoggerFactory loggers, CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, MaxBodyBytes, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var userId = RequiredId(body, "user_id", errors);
        var logId = OptionalId(body, "log_id", errors);
        var eatenAtMs = EventTime(body, "eaten_at", options.Input.TimeRule, errors);
        var meal = String(body, "meal", required: true, errors);
        if (meal is not null && NutritionRules.CheckMeal(meal) is { } mealProblem) errors["meal"] = [mealProblem];
        var description = String(body, "description", required: true, errors);
        if (description is not null && NutritionRules.CheckDescription(description) is { } textProblem) errors["description"] = [textProblem];
        var values = new double?[NutritionRules.Fields.Count];
        var complete = true;
        for (var i = 0; i < values.Length; i++)
        {
            var field = NutritionRules.Fields[i];
            values[i] = Number(body, field.Name, field.Required, errors);
            complete &= values[i] is not null || !field.Required;
        }
        MealNutrients nutrients = default;
        if (complete && !NutritionRules.Fields.Any(f => errors.ContainsKey(f.Name)))
        {
            nutrients = NutritionRules.FromValues(values);
            foreach (var (field, problem) in NutritionRules.Check(nutrients)) errors[field] = [problem];
        }
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await http.HttpContext.AuthorizeSubjectAsync(userId!) is { } forbidden) return forbidden;
        if (!publisher.Configured)
            return TypedResults.Problem("Kafka:BootstrapServers is not configured; nothing was sent",
                statusCode: StatusCodes.Status503ServiceUnavailable, title: PipelineTitle);

        var log = new NutritionLog
        {
            log_id = logId ?? Guid.NewGuid().ToString("N"), user_id = userId!, event_time_unix_ms = AvroTime.FromUnixMs(eatenAtMs!.Value),
            meal = meal!, description = description!, calories_kcal = nutrients.CaloriesKcal, protein_g = nutrients.ProteinG,
            carbohydrate_g = nutrients.CarbohydrateG, fat_g = nutrients.FatG, fiber_g = nutrients.FiberG, sugar_g = nutrients.SugarG,
            sodium_mg = nutrients.SodiumMg,
        };
        var logger = loggers.CreateLogger(typeof(NutritionLogsApi));
        await publisher.PrepareAsync<NutritionLog>(Topics.InsightsNutrition);
        if (await EventIdClaims.ClaimAsync(postgres, NutritionLogPostgresWriter.EventIdWorkload, "log_id", log.log_id, log.user_id,
                NutritionLogPostgresWriter.Fingerprint(log), "meal", "eaten_at, meal, description and every nutrient", PipelineTitle, logger, ct)
            is { } claimProblem)
            return claimProblem;
        try
        {
            await publisher.ProduceAsync(Topics.InsightsNutrition, log.user_id, log, ct);
        }
        catch (KafkaException e)
        {
            // A retry with the same log_id is the remedy: the claim is the retry's own.
            logger.LogWarning(e, "producing nutrition log {LogId} failed", log.log_id);
            return TypedResults.Problem($"insights.nutrition did not acknowledge the meal ({e.Error.Reason}); retry with log_id {InputRules.Quote(log.log_id)}",
                statusCode: StatusCodes.Status503ServiceUnavailable, title: PipelineTitle);
        }
        return TypedResults.Accepted((string?)null, new NutritionLogEntry(log.log_id, log.user_id, DateTime.UnixEpoch.AddMilliseconds(eatenAtMs.Value),
            log.meal, log.description, log.calories_kcal, log.protein_g, log.carbohydrate_g, log.fat_g, log.fiber_g, log.sugar_g, log.sodium_mg));
    }

    private static async Task<IResult> ListAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("ISO-8601 date-time, inclusive (UTC when no offset is given); default: `to` minus 30 days")] string? from,
        [Description("ISO-8601 date-time, exclusive (UTC when no offset is given); default: now plus the allowed clock skew")] string? to,
        [Description("Most meals per page, 1-1000; default 100")] string? limit,
        [Description("`next_cursor` of the previous page")] string? cursor,
        StreamHealthOptions options, NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var page = KeysetPaging.Parse(from, to, limit, cursor, DefaultRange, DefaultLimit, MaxLimit, options.Input.TimeRule, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        await using var cmd = KeysetPaging.Command(pg, """
            SELECT log_id, user_id, eaten_at, meal, description, calories_kcal, protein_g, carbohydrate_g, fat_g, fiber_g, sugar_g, sodium_mg
            FROM insights.nutrition_logs
            WHERE user_id = $1 AND eaten_at >= $2 AND eaten_at < $3 AND ($4::timestamptz IS NULL OR (eaten_at, log_id) > ($4, $5))
            ORDER BY eaten_at, log_id
            LIMIT $6
            """, userId, page);
        var (rows, next) = await KeysetPaging.ReadAsync(cmd, page, Read, static l => (l.EatenAt, l.LogId), ct);
        return TypedResults.Ok(new NutritionLogPage(userId, page.FromUtc, page.ToUtc, page.Limit, rows, next));
    }

    private static NutritionLogEntry Read(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), DateTime.SpecifyKind(r.GetDateTime(2), DateTimeKind.Utc),
        r.GetString(3), r.GetString(4), r.GetDouble(5), r.GetDouble(6), r.GetDouble(7), r.GetDouble(8), Optional(r, 9), Optional(r, 10), Optional(r, 11));

    private static double? Optional(NpgsqlDataReader r, int column) => r.IsDBNull(column) ? null : r.GetDouble(column);
}
