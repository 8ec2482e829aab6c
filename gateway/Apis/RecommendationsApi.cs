using System.ComponentModel;
using System.Globalization;
using System.Text.Json.Serialization;
using Npgsql;
using StreamHealth.Gateway.Identity;
using StreamHealth.Gateway.Insights;
using StreamHealth.Insights.Recommendations;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Gateway.Apis;

/// <summary>Rule-based recommendations from the person's aggregates (cached an hour, dropped when their data changes),
/// the history of what was recommended, and the cache's own figures.</summary>
public static class RecommendationsApi
{
    public const int DefaultDays = 7;
    public const int MaxDays = 90;
    private const int DefaultLimit = 50;
    private const int MaxLimit = 500;

    public sealed record StoredInsight(
        [property: JsonPropertyName("insight_id")] string InsightId,
        [property: JsonPropertyName("generated_at")] DateTime GeneratedAt,
        [property: JsonPropertyName("days")] int Days,
        [property: JsonPropertyName("rule")] string Rule,
        [property: JsonPropertyName("priority")] int Priority,
        [property: JsonPropertyName("title")] string Title,
        [property: JsonPropertyName("reason")] string Reason,
        [property: JsonPropertyName("figures")] System.Text.Json.JsonElement Figures);

    public sealed record InsightHistory(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("from")] DateTime From,
        [property: JsonPropertyName("to")] DateTime To,
        [property: JsonPropertyName("insights"), Description("newest first")] IReadOnlyList<StoredInsight> Insights);

    public static void MapRecommendationsApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/recommendations/{userId}", GetRecommendationsAsync)
            .WithTags("Insights").WithName("GetRecommendations")
            .WithSummary("The person's top recommendations for their last `days` local days")
            .WithDescription("Six rule families (low step count, insufficient sleep, elevated resting heart rate, weight management from " +
                             "the weight filter's trend, poor nutrition, low water intake) with thresholds by age band and sex " +
                             "(recommendation-rules.json), evaluated on the daily aggregates of the insights topology. At most 5, by " +
                             "priority (1 = act now); each with a plain-language reason and the figures it used. Cached for an hour " +
                             "(near, in the gateway, and in Redis); the insights sink drops both when the person's aggregates change. Each generated answer is kept " +
                             "(GET /api/v1/health-insights/user/{userId}). 404 when no account has this id.")
            .Produces<RecommendationsAnswer>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.InsightsRead));

        app.MapGet("/api/v1/health-insights/user/{userId}", GetHistoryAsync)
            .WithTags("Insights").WithName("ListHealthInsights")
            .WithSummary("Recommendations generated for the person, newest first")
            .Produces<InsightHistory>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.InsightsRead));

        app.MapGet("/api/v1/cache", (PersonalCache cache) => TypedResults.Ok(cache.Stats()))
            .WithTags("Insights").WithName("CacheStats")
            .WithSummary("Hits (near hits, from this gateway's memory, among them), misses, errors, hit rate and error rate of each cache tier since this gateway started")
            .Produces<IReadOnlyList<CacheStats>>()
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .RequireAccess(Access.Service(Scopes.Admin));
    }

    internal static void AddRecommendations(IServiceCollection services)
    {
        services.AddSingleton<PersonalCache>();
        services.AddSingleton(sp => RecommendationRules.Bind(sp.GetRequiredService<IConfiguration>()));
        services.AddSingleton<ProfileFacts>();
        services.AddSingleton<RecommendationService>();
    }

    private static async Task<IResult> GetRecommendationsAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("window of local days ending today, 1-90; default 7")] string? days,
        RecommendationService recommendations, PersonalCache cache, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var window = ApiInput.ParseDays(days, DefaultDays, MaxDays, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        var json = await cache.GetOrLoadJsonAsync(CacheTier.Recommendations, userId, window.ToString(CultureInfo.InvariantCulture),
            token => recommendations.GenerateAsync(userId, window, token), ct);
        return json is null
            ? TypedResults.Problem(title: "No such user", statusCode: StatusCodes.Status404NotFound, detail: $"No account has user id '{userId}'.")
            : TypedResults.Bytes(json, "application/json");
    }

    private static async Task<IResult> GetHistoryAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("ISO-8601 date-time, inclusive; default `to` minus 30 days")] string? from,
        [Description("ISO-8601 date-time, exclusive; default now plus the allowed clock skew")] string? to,
        [Description("most insights, 1-500; default 50")] string? limit,
        StreamHealthOptions options, NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        // The range and limit rules of every per-person list (newest first here, so no cursor).
        var page = KeysetPaging.Parse(from, to, limit, cursor: null, TimeSpan.FromDays(30), DefaultLimit, MaxLimit, options.Input.TimeRule, errors);
        var (fromUtc, toUtc, count) = (page.FromUtc, page.ToUtc, page.Limit);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        await using var cmd = pg.CreateCommand("""
            SELECT insight_id, generated_at, window_days, rule, priority, title, reason, figures::text FROM insights.generated
            WHERE user_id = $1 AND generated_at >= $2 AND generated_at < $3
            ORDER BY generated_at DESC, priority, insight_id
            LIMIT $4
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = fromUtc });
        cmd.Parameters.Add(new NpgsqlParameter { Value = toUtc });
        cmd.Parameters.Add(new NpgsqlParameter { Value = count });
        var rows = new List<StoredInsight>();
        await using (var reader = await cmd.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
                rows.Add(new StoredInsight(reader.GetString(0), DateTime.SpecifyKind(reader.GetDateTime(1), DateTimeKind.Utc), reader.GetInt32(2),
                    reader.GetString(3), reader.GetInt32(4), reader.GetString(5), reader.GetString(6),
                    System.Text.Json.JsonDocument.Parse(reader.GetString(7)).RootElement.Clone()));
        }
        return TypedResults.Ok(new InsightHistory(userId, fromUtc, toUtc, rows));
    }
}
