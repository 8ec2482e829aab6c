using System.ComponentModel;
using System.Text.Json.Serialization;
using Npgsql;
using NpgsqlTypes;
using StreamHealth.Gateway.Identity;
using StreamHealth.Insights.Goals;
using StreamHealth.Insights.Metrics;
using StreamHealth.Runtime.Validation;
using static StreamHealth.Gateway.Apis.JsonBodyInput;

namespace StreamHealth.Gateway.Apis;

/// <summary>/api/v1/health-goals: a person's goals (a target for one metric type over a local day, week or month) stored in
/// insights.goals, and read back with their progress in the current period computed from insights.daily_metrics (which the
/// insights topology fills). Periods are the person's local days (identity.users.time_zone; UTC for a person without an
/// account here, whose metrics a service may still send).</summary>
public static class HealthGoalsApi
{
    public const int MaxBodyBytes = 16 * 1024;

    /// <summary>The request body of POST (for the API description; the handler reads the JSON field by field).</summary>
    public sealed record GoalRequest(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("goal_id"), Description("optional idempotency id, " + InputRules.IdRuleText)] string? GoalId,
        [property: JsonPropertyName("metric"), Description("steps, heart_rate, sleep_hours, weight, water_ml or calories")] string Metric,
        [property: JsonPropertyName("target"), Description("above 0; summed types (steps, sleep_hours, water_ml, calories) over the period, at most a plausible day's total times its days; heart_rate and weight a level within the type's record range")] double Target,
        [property: JsonPropertyName("unit"), Description("a unit the metric accepts (as POST /api/v1/health-metrics); stored in the type's own unit")] string Unit,
        [property: JsonPropertyName("period"), Description("day, week (Monday to Sunday) or month, in the person's time zone")] string Period,
        [property: JsonPropertyName("direction"), Description("at_least or at_most")] string Direction,
        [property: JsonPropertyName("starts_on"), Description("optional ISO-8601 date; default: today in the person's time zone")] string? StartsOn,
        [property: JsonPropertyName("ends_on"), Description("optional ISO-8601 date, on or after starts_on; none: open-ended")] string? EndsOn);

    public sealed record Progress(
        [property: JsonPropertyName("period_start"), Description("first local day of the current period counted (not before starts_on)")] DateOnly PeriodStart,
        [property: JsonPropertyName("period_end"), Description("last local day of the current period (not after ends_on)")] DateOnly PeriodEnd,
        [property: JsonPropertyName("value"), Description("so far, in the goal's unit: the days' totals summed (steps, sleep_hours, water_ml, calories) or the mean of the days' means (heart_rate, weight; null without data)")] double? Value,
        [property: JsonPropertyName("percent"), Description("value as a percentage of the target, one decimal")] double? Percent,
        [property: JsonPropertyName("achieved"), Description("at_least: value has reached the target; at_most: there is data and value is at or under it")] bool Achieved,
        [property: JsonPropertyName("days_with_data")] int DaysWithData);

    public sealed record Goal(
        [property: JsonPropertyName("goal_id")] string GoalId,
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("metric")] string Metric,
        [property: JsonPropertyName("target")] double Target,
        [property: JsonPropertyName("unit")] string Unit,
        [property: JsonPropertyName("period")] string Period,
        [property: JsonPropertyName("direction")] string Direction,
        [property: JsonPropertyName("starts_on")] DateOnly StartsOn,
        [property: JsonPropertyName("ends_on")] DateOnly? EndsOn,
        [property: JsonPropertyName("created_at")] DateTime CreatedAt,
        [property: JsonPropertyName("progress"), Description("the current period's; null when the goal has not started or has ended")] Progress? Progress);

    public sealed record GoalList(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("time_zone")] string TimeZone,
        [property: JsonPropertyName("today"), Description("the person's local date the periods are computed for")] DateOnly Today,
        [property: JsonPropertyName("goals")] IReadOnlyList<Goal> Goals);

    public static RouteGroupBuilder MapHealthGoalsApi(this IEndpointRouteBuilder app)
    {
        var goals = app.MapGroup("/api/v1/health-goals")
            .WithTags("Health goals")
            .ProducesProblem(StatusCodes.Status429TooManyRequests);

        goals.MapPost("/", PostAsync).WithName("PostHealthGoal")
            .WithSummary("Set one goal")
            .WithDescription("Every field but `goal_id`, `starts_on` and `ends_on` is required. 201 with the stored goal (target in the " +
                             "metric's own unit). `goal_id` (generated when absent) names one goal: re-sending the same goal is a 200 " +
                             "with the stored goal, the same id with other content a 409. A person holds at most " +
                             $"{GoalRules.MaxActiveGoalsPerPerson} active goals (not ended before today): one more is a 422.")
            .Accepts<GoalRequest>("application/json")
            .Produces<Goal>(StatusCodes.Status201Created)
            .Produces<Goal>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxBodyBytes))
            .RequireAccess(Access.OwnDataInBody("user_id", Scopes.GoalsWrite));

        goals.MapGet("/user/{userId}", ListAsync).WithName("ListHealthGoals")
            .WithSummary("A person's goals, each with its progress in the current period")
            .WithDescription("Newest first. Progress is computed from the daily aggregates of the person's metrics (insights.daily_metrics, " +
                             "kept by the insights topology) for the period containing today in the person's time zone. A person " +
                             "without goals gets an empty list, not 404.")
            .Produces<GoalList>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.GoalsRead));
        return goals;
    }

    private static async Task<IResult> PostAsync(HttpRequest http, NpgsqlDataSource pg, CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, MaxBodyBytes, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var userId = RequiredId(body, "user_id", errors);
        var goalId = OptionalId(body, "goal_id", errors);
        var metricText = String(body, "metric", required: true, errors);
        var type = HealthMetricTypes.Find(metricText);
        if (metricText is not null && type is null)
            errors["metric"] = [$"metric = {InputRules.Quote(metricText)}: must be one of {HealthMetricTypes.NamesText}"];
        var unit = String(body, "unit", required: true, errors);
        var target = Number(body, "target", required: true, errors);
        var period = Parse(String(body, "period", required: true, errors), "period", GoalRules.ParsePeriod, GoalRules.PeriodsText, errors);
        var direction = Parse(String(body, "direction", required: true, errors), "direction", GoalRules.ParseDirection, GoalRules.DirectionsText, errors);
        var startsOn = Date(body, "starts_on", errors);
        var endsOn = Date(body, "ends_on", errors);
        double storedTarget = 0;
        if (type is not null && unit is not null)
        {
            var (stored, _, unitProblem) = HealthMetricTypes.ToStoredUnit(type, target ?? 0, unit);
            if (unitProblem is not null) errors["unit"] = [unitProblem];
            else if (target is { } shown && period is { } p && GoalRules.CheckTarget(type, stored, p, shown, unit) is { } targetProblem)
                errors["target"] = [targetProblem];
            storedTarget = stored;
        }
        if (startsOn is { } s && endsOn is { } e && e < s) errors["ends_on"] = [$"ends_on = {e:yyyy-MM-dd}: before starts_on {s:yyyy-MM-dd}"];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await http.HttpContext.AuthorizeSubjectAsync(userId!) is { } forbidden) return forbidden;

        var (_, today) = await LocalTodayAsync(pg, userId!, ct);
        var start = startsOn ?? today;
        if (endsOn is { } end && end < start)
            return Invalid("ends_on", $"ends_on = {end:yyyy-MM-dd}: before starts_on, which defaults to today ({start:yyyy-MM-dd}) in the person's time zone");
        var goal = new Goal(goalId ?? Guid.NewGuid().ToString("N"), userId!, type!.Name, storedTarget, type.Unit, GoalRules.Name(period!.Value),
            GoalRules.Name(direction!.Value), start, endsOn, default, null);
        var fingerprint = GoalRules.Fingerprint(goal.Metric, goal.Target, goal.Unit, period.Value, direction.Value, goal.StartsOn, goal.EndsOn);

        await using var connection = await pg.OpenConnectionAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(ct);
        // One writer per person at a time: the active-goal count and the insert must not interleave with another request's.
        await using (var lockUser = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended('insights.goals:' || $1, 0))", connection, transaction))
        {
            lockUser.Parameters.Add(new NpgsqlParameter { Value = goal.UserId });
            await lockUser.ExecuteNonQueryAsync(ct);
        }
        await using (var existing = new NpgsqlCommand($"SELECT {Columns}, fingerprint FROM insights.goals WHERE goal_id = $1", connection, transaction))
        {
            existing.Parameters.Add(new NpgsqlParameter { Value = goal.GoalId });
            await using var reader = await existing.ExecuteReaderAsync(ct);
            if (await reader.ReadAsync(ct))
            {
                // The same goal again (same person, same content) is answered with what was stored; anything else under this id
                // is a conflict that does not say whose the id is.
                return reader.GetString(1) == goal.UserId && reader.GetString(ColumnCount) == fingerprint
                    ? TypedResults.Ok(Read(reader))
                    : TypedResults.Problem($"goal_id {InputRules.Quote(goal.GoalId)} is already used for a different goal; a retry must repeat the goal " +
                                           "exactly (user, metric, target, unit, period, direction, starts_on and ends_on), a new goal needs a new goal_id",
                        statusCode: StatusCodes.Status409Conflict, title: "goal_id already used");
            }
        }
        // Only a goal that is itself active counts against the limit (recording a past goal adds no active one).
        if (goal.EndsOn is not { } goalEnd || goalEnd >= today)
        await using (var active = new NpgsqlCommand("SELECT count(*) FROM insights.goals WHERE user_id = $1 AND (ends_on IS NULL OR ends_on >= $2)",
                         connection, transaction))
        {
            active.Parameters.Add(new NpgsqlParameter { Value = goal.UserId });
            active.Parameters.Add(new NpgsqlParameter { Value = today });
            if ((long)(await active.ExecuteScalarAsync(ct))! >= GoalRules.MaxActiveGoalsPerPerson)
                return TypedResults.Problem($"this person already has {GoalRules.MaxActiveGoalsPerPerson} active goals, the most allowed; " +
                                            "end one (a goal whose ends_on has passed no longer counts) before setting another",
                    statusCode: StatusCodes.Status422UnprocessableEntity, title: "Too many active goals");
        }
        await using (var insert = new NpgsqlCommand($"""
            INSERT INTO insights.goals (goal_id, user_id, metric, target, unit, period, direction, starts_on, ends_on, fingerprint)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            RETURNING {Columns}
            """, connection, transaction))
        {
            foreach (var value in new object[] { goal.GoalId, goal.UserId, goal.Metric, goal.Target, goal.Unit, goal.Period, goal.Direction, goal.StartsOn })
                insert.Parameters.Add(new NpgsqlParameter { Value = value });
            insert.Parameters.Add(new NpgsqlParameter { Value = goal.EndsOn is { } e2 ? e2 : DBNull.Value, NpgsqlDbType = NpgsqlDbType.Date });
            insert.Parameters.Add(new NpgsqlParameter { Value = fingerprint });
            await using var reader = await insert.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            goal = Read(reader);
        }
        await transaction.CommitAsync(ct);
        return TypedResults.Created((string?)null, goal);
    }

    private static async Task<IResult> ListAsync([Description(InputRules.IdRuleText)] string userId, NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        var (zone, today) = await LocalTodayAsync(pg, userId, ct);

        var goals = new List<Goal>();
        await using (var cmd = pg.CreateCommand($"SELECT {Columns} FROM insights.goals WHERE user_id = $1 ORDER BY created_at DESC, goal_id"))
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
            await using var reader = await cmd.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct)) goals.Add(Read(reader));
        }
        if (goals.Count == 0) return TypedResults.Ok(new GoalList(userId, zone, today, goals));

        // One read of the daily aggregates covers every goal's current period: none is longer than the month around today.
        var (monthStart, monthEnd) = GoalRules.Containing(GoalPeriod.Month, today);
        var (weekStart, weekEnd) = GoalRules.Containing(GoalPeriod.Week, today);
        var first = weekStart < monthStart ? weekStart : monthStart;
        var last = weekEnd > monthEnd ? weekEnd : monthEnd;
        var days = new Dictionary<string, List<DailyAggregate>>(StringComparer.Ordinal);
        await using (var cmd = pg.CreateCommand("""
            SELECT metric, local_date, count, total, mean FROM insights.daily_metrics
            WHERE user_id = $1 AND local_date BETWEEN $2 AND $3 AND metric = ANY($4)
            """))
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
            cmd.Parameters.Add(new NpgsqlParameter { Value = first });
            cmd.Parameters.Add(new NpgsqlParameter { Value = last });
            cmd.Parameters.Add(new NpgsqlParameter { Value = goals.Select(g => g.Metric).Distinct().ToArray() });
            await using var reader = await cmd.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var metric = reader.GetString(0);
                if (!days.TryGetValue(metric, out var list)) days[metric] = list = [];
                list.Add(new DailyAggregate(reader.GetFieldValue<DateOnly>(1), reader.GetInt32(2), reader.GetDouble(3), reader.GetDouble(4)));
            }
        }
        for (var i = 0; i < goals.Count; i++)
        {
            var g = goals[i];
            // Stored rows passed the same rules on the way in; a type unknown to this build (a newer writer) has no progress.
            if (HealthMetricTypes.Find(g.Metric) is not { } type || GoalRules.ParsePeriod(g.Period) is not { } period
                || GoalRules.ParseDirection(g.Direction) is not { } direction) continue;
            var progress = GoalProgressCalculator.Current(type.Aggregation, g.Target, period, direction, g.StartsOn, g.EndsOn, today,
                days.GetValueOrDefault(g.Metric) ?? []);
            goals[i] = g with { Progress = progress is null ? null : new Progress(progress.PeriodStart, progress.PeriodEnd, progress.Value,
                progress.Percent, progress.Achieved, progress.DaysWithData) };
        }
        return TypedResults.Ok(new GoalList(userId, zone, today, goals));
    }

    private const string Columns = "goal_id, user_id, metric, target, unit, period, direction, starts_on, ends_on, created_at";
    private const int ColumnCount = 10;

    private static Goal Read(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetDouble(3), r.GetString(4),
        r.GetString(5), r.GetString(6), r.GetFieldValue<DateOnly>(7), r.IsDBNull(8) ? null : r.GetFieldValue<DateOnly>(8),
        DateTime.SpecifyKind(r.GetDateTime(9), DateTimeKind.Utc), null);

    /// <summary>The person's time zone (identity.users.time_zone; UTC without an account, or for a name this host's time
    /// zone database does not know) and today's date there.</summary>
    private static async Task<(string Zone, DateOnly Today)> LocalTodayAsync(NpgsqlDataSource pg, string userId, CancellationToken ct)
    {
        await using var cmd = pg.CreateCommand("SELECT time_zone FROM identity.users WHERE user_id = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        var name = await cmd.ExecuteScalarAsync(ct) as string ?? "UTC";
        TimeZoneInfo zone;
        try { zone = TimeZoneInfo.FindSystemTimeZoneById(name); }
        catch (Exception e) when (e is TimeZoneNotFoundException or InvalidTimeZoneException)
        {
            (name, zone) = ("UTC", TimeZoneInfo.Utc);
        }
        return (name, DateOnly.FromDateTime(TimeZoneInfo.ConvertTime(DateTimeOffset.UtcNow, zone).DateTime));
    }

    private static T? Parse<T>(string? text, string field, Func<string, T?> parse, string allowed, Dictionary<string, string[]> errors) where T : struct
    {
        if (text is null) return null;
        if (parse(text) is { } value) return value;
        errors[field] = [$"{field} = {InputRules.Quote(text)}: must be {allowed}"];
        return null;
    }

    private static DateOnly? Date(System.Text.Json.JsonElement body, string field, Dictionary<string, string[]> errors)
    {
        if (String(body, field, required: false, errors) is not { } text) return null;
        var (date, problem) = GoalRules.ParseDate(field, text);
        if (problem is not null) errors[field] = [problem];
        return date;
    }
}
