using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using StreamHealth.Insights.Goals;
using StreamHealth.Tests.Gateway.Contract;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Gateway.PeopleOnTheStack;

namespace StreamHealth.Tests.Gateway;

/// <summary>/api/v1/health-goals over the real stack: goals stored in insights.goals, progress read from
/// insights.daily_metrics. In production the insights topology writes that table; these tests insert its rows directly
/// to set up each period's data (the topology's own tests cover how it computes them).</summary>
public sealed class HealthGoalsApiTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    private const string Path = "/api/v1/health-goals/";

    public static Dictionary<string, object?> StepsGoal(string user, string? id = null) => new()
    {
        ["user_id"] = user, ["goal_id"] = id, ["metric"] = "steps", ["target"] = 10_000, ["unit"] = "steps", ["period"] = "day",
        ["direction"] = "at_least",
    };

    [Fact]
    public async Task Goals_are_stored_and_read_back_with_progress_in_the_persons_local_period()
    {
        var (user, token) = await SignUpAsync(f, "goal-a");
        // UTC+14 all year: the person's today is tomorrow in UTC for ten hours a day, which the periods must follow.
        await ExecuteAsync("UPDATE identity.users SET time_zone = 'Pacific/Kiritimati' WHERE user_id = $1", user);
        var today = DateOnly.FromDateTime(DateTime.UtcNow.AddHours(14));
        var client = Bearer(f, token);

        var steps = await JsonAsync(await client.PostAsJsonAsync(Path, StepsGoal(user, "steps-" + user)), HttpStatusCode.Created);
        Assert.Equal(today.ToString("yyyy-MM-dd"), steps.GetProperty("starts_on").GetString());
        // Litres are stored in the type's millilitres; a weekly water goal.
        var water = await JsonAsync(await client.PostAsJsonAsync(Path, new Dictionary<string, object?>
        {
            ["user_id"] = user, ["metric"] = "water_ml", ["target"] = 14, ["unit"] = "l", ["period"] = "week", ["direction"] = "at_least",
            ["starts_on"] = today.AddDays(-40).ToString("yyyy-MM-dd"),
        }), HttpStatusCode.Created);
        Assert.Equal(14_000, water.GetProperty("target").GetDouble());
        Assert.Equal("ml", water.GetProperty("unit").GetString());
        var weight = await JsonAsync(await client.PostAsJsonAsync(Path, new Dictionary<string, object?>
        {
            ["user_id"] = user, ["metric"] = "weight", ["target"] = 176.37, ["unit"] = "lb", ["period"] = "month", ["direction"] = "at_most",
            ["starts_on"] = today.AddDays(-40).ToString("yyyy-MM-dd"),
        }), HttpStatusCode.Created);
        Assert.Equal(80.0, weight.GetProperty("target").GetDouble(), 2);
        // Ended before today: listed, without progress.
        await JsonAsync(await client.PostAsJsonAsync(Path, With(With(StepsGoal(user, "old-" + user), "starts_on", "2025-01-01"), "ends_on", "2025-01-31")),
            HttpStatusCode.Created);

        var (weekStart, _) = GoalRules.Containing(GoalPeriod.Week, today);
        await InsertDayAsync(user, "steps", today, 3, 6_500, 6_500);
        await InsertDayAsync(user, "steps", today.AddDays(-1), 5, 12_000, 2_400);   // yesterday: not today's goal
        await InsertDayAsync(user, "water_ml", weekStart, 4, 2_000, 500);
        await InsertDayAsync(user, "water_ml", today, 2, 1_000, 500);
        await InsertDayAsync(user, "water_ml", weekStart.AddDays(-1), 9, 9_000, 1_000);   // last week's Sunday: not this week
        await InsertDayAsync(user, "weight", today, 2, 158, 79);

        var list = await JsonAsync(await client.GetAsync($"{Path}user/{user}"), HttpStatusCode.OK);
        Assert.Equal("Pacific/Kiritimati", list.GetProperty("time_zone").GetString());
        Assert.Equal(today.ToString("yyyy-MM-dd"), list.GetProperty("today").GetString());
        var goals = list.GetProperty("goals").EnumerateArray().ToDictionary(g => g.GetProperty("metric").GetString() + ":" + g.GetProperty("goal_id").GetString());
        Assert.Equal(4, goals.Count);

        var stepsProgress = goals[$"steps:steps-{user}"].GetProperty("progress");
        Assert.Equal(6_500, stepsProgress.GetProperty("value").GetDouble());
        Assert.Equal(65, stepsProgress.GetProperty("percent").GetDouble());
        Assert.False(stepsProgress.GetProperty("achieved").GetBoolean());
        Assert.Equal(today.ToString("yyyy-MM-dd"), stepsProgress.GetProperty("period_start").GetString());

        var waterProgress = goals.Single(g => g.Key.StartsWith("water_ml:", StringComparison.Ordinal)).Value.GetProperty("progress");
        Assert.Equal(weekStart.ToString("yyyy-MM-dd"), waterProgress.GetProperty("period_start").GetString());
        Assert.Equal(weekStart.AddDays(6).ToString("yyyy-MM-dd"), waterProgress.GetProperty("period_end").GetString());
        Assert.Equal(3_000, waterProgress.GetProperty("value").GetDouble());
        Assert.Equal(weekStart == today ? 1 : 2, waterProgress.GetProperty("days_with_data").GetInt32());

        var weightProgress = goals.Single(g => g.Key.StartsWith("weight:", StringComparison.Ordinal)).Value.GetProperty("progress");
        Assert.Equal(79, weightProgress.GetProperty("value").GetDouble());
        Assert.True(weightProgress.GetProperty("achieved").GetBoolean());
        Assert.Equal(JsonValueKind.Null, goals[$"steps:old-{user}"].GetProperty("progress").ValueKind);

        // Reaching the target today is achieved; a service key with goals:read (the dev key) reads any person's.
        await InsertDayAsync(user, "steps", today, 1, 4_000, 4_000, dayStartShiftMinutes: -60);
        var again = await JsonAsync(await f.Client().GetAsync($"{Path}user/{user}"), HttpStatusCode.OK);
        var reached = again.GetProperty("goals").EnumerateArray().Single(g => g.GetProperty("goal_id").GetString() == "steps-" + user).GetProperty("progress");
        Assert.Equal(10_500, reached.GetProperty("value").GetDouble());
        Assert.True(reached.GetProperty("achieved").GetBoolean());
    }

    [Fact]
    public async Task A_retry_is_answered_with_the_stored_goal_and_other_content_under_the_id_is_a_conflict()
    {
        var (user, token) = await SignUpAsync(f, "goal-retry");
        var client = Bearer(f, token);
        var id = "retry-" + Guid.NewGuid().ToString("N");
        var created = await JsonAsync(await client.PostAsJsonAsync(Path, StepsGoal(user, id)), HttpStatusCode.Created);
        var retried = await JsonAsync(await client.PostAsJsonAsync(Path, StepsGoal(user, id)), HttpStatusCode.OK);
        Assert.Equal(created.GetProperty("created_at").GetString(), retried.GetProperty("created_at").GetString());
        // 10 km of steps is not a unit steps take; 10,000 "count" is the same target.
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsJsonAsync(Path, With(StepsGoal(user, id), "unit", "count"))).StatusCode);
        foreach (var (field, value) in new (string, object)[] { ("target", 12_000), ("period", "week"), ("direction", "at_most"), ("ends_on", "2199-01-01") })
        {
            var conflict = await ProblemAsync(await client.PostAsJsonAsync(Path, With(StepsGoal(user, id), field, value)), HttpStatusCode.Conflict);
            Assert.Contains("goal_id", conflict.GetProperty("detail").GetString());
        }
        var (other, otherToken) = await SignUpAsync(f, "goal-retry-b");
        var theirs = await ProblemAsync(await Bearer(f, otherToken).PostAsJsonAsync(Path, StepsGoal(other, id)), HttpStatusCode.Conflict);
        Assert.DoesNotContain(user, theirs.GetRawText());
        Assert.Equal(1, await CountAsync("SELECT count(*) FROM insights.goals WHERE goal_id = $1", id));
        Assert.Equal(0, await CountAsync("SELECT count(*) FROM insights.goals WHERE user_id = $1", other));
    }

    [Theory]
    [InlineData("user_id", null)]
    [InlineData("user_id", "a b")]
    [InlineData("goal_id", "a/b")]
    [InlineData("metric", "mood")]
    [InlineData("metric", null)]
    [InlineData("target", null)]
    [InlineData("target", "10000")]
    [InlineData("target", 0.0)]
    [InlineData("target", -5.0)]
    [InlineData("target", 100_001.0)]
    [InlineData("unit", "km")]
    [InlineData("unit", null)]
    [InlineData("period", "year")]
    [InlineData("period", null)]
    [InlineData("direction", "up")]
    [InlineData("starts_on", "01/02/2026")]
    [InlineData("starts_on", "1980-01-01")]
    [InlineData("starts_on", 20260101.0)]
    [InlineData("ends_on", "2026-02-30")]
    public async Task Bad_input_is_a_400_naming_the_field(string field, object? value)
    {
        var goal = With(StepsGoal(GatewayStackFixture.NewUser("bad")), field, value);
        Assert.Contains(field, ErrorFields(await ProblemAsync(await f.Client().PostAsJsonAsync(Path, goal), HttpStatusCode.BadRequest)));
    }

    [Fact]
    public async Task Dates_out_of_order_implausible_levels_and_bodies_that_are_not_json_objects_are_400s()
    {
        var user = GatewayStackFixture.NewUser("bad");
        var client = f.Client();
        var reversed = With(With(StepsGoal(user), "starts_on", "2026-03-01"), "ends_on", "2026-02-28");
        Assert.Equal(["ends_on"], ErrorFields(await ProblemAsync(await client.PostAsJsonAsync(Path, reversed), HttpStatusCode.BadRequest)));
        // Without starts_on, today is the start: an end in the past is before it.
        Assert.Equal(["ends_on"], ErrorFields(await ProblemAsync(await client.PostAsJsonAsync(Path, With(StepsGoal(user), "ends_on", "2020-01-01")),
            HttpStatusCode.BadRequest)));
        var heart = new Dictionary<string, object?> { ["user_id"] = user, ["metric"] = "heart_rate", ["target"] = 300, ["unit"] = "bpm", ["period"] = "week", ["direction"] = "at_most" };
        var message = (await ProblemAsync(await client.PostAsJsonAsync(Path, heart), HttpStatusCode.BadRequest)).GetProperty("errors").GetProperty("target")[0].GetString();
        Assert.Contains("heart_rate", message);
        foreach (var body in new[] { "[1,2]", "{\"user_id\":", "\"goal\"" })
            Assert.Contains("body", ErrorFields(await ProblemAsync(await client.PostAsync(Path, new StringContent(body, Encoding.UTF8, "application/json")),
                HttpStatusCode.BadRequest)));
        Assert.Contains("userId", ErrorFields(await ProblemAsync(await client.GetAsync($"{Path}user/bad%20id"), HttpStatusCode.BadRequest)));
        Assert.Equal(0, await CountAsync("SELECT count(*) FROM insights.goals WHERE user_id = $1", user));
    }

    [Fact]
    public async Task A_person_without_an_account_or_goals_gets_an_empty_list_in_utc_and_a_service_may_set_their_goals()
    {
        var stranger = GatewayStackFixture.NewUser("no-account");
        var empty = await JsonAsync(await f.Client().GetAsync($"{Path}user/{stranger}"), HttpStatusCode.OK);
        Assert.Empty(empty.GetProperty("goals").EnumerateArray());
        Assert.Equal("UTC", empty.GetProperty("time_zone").GetString());
        // Metrics of people known only to an integration arrive by service key; their goals run on UTC days.
        var goal = await JsonAsync(await f.Client().PostAsJsonAsync(Path, StepsGoal(stranger)), HttpStatusCode.Created);
        var utcToday = DateOnly.FromDateTime(DateTime.UtcNow);
        Assert.Contains(goal.GetProperty("starts_on").GetString(), new[] { utcToday.ToString("yyyy-MM-dd"), utcToday.AddDays(-1).ToString("yyyy-MM-dd") });
    }

    [Fact]
    public async Task Another_persons_token_is_refused_and_no_credential_is_401()
    {
        var (a, tokenA) = await SignUpAsync(f, "goal-own-a");
        var (b, tokenB) = await SignUpAsync(f, "goal-own-b");
        await JsonAsync(await Bearer(f, tokenB).PostAsJsonAsync(Path, StepsGoal(b)), HttpStatusCode.Created);
        var asA = Bearer(f, tokenA);
        await ProblemAsync(await asA.PostAsJsonAsync(Path, StepsGoal(b)), HttpStatusCode.Forbidden);
        var forbidden = await ProblemAsync(await asA.GetAsync($"{Path}user/{b}"), HttpStatusCode.Forbidden);
        Assert.DoesNotContain(b, forbidden.GetRawText());
        Assert.Equal(HttpStatusCode.Unauthorized, (await f.Client(apiKey: null).GetAsync($"{Path}user/{b}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await f.Client(apiKey: null).PostAsJsonAsync(Path, StepsGoal(b))).StatusCode);
        Assert.Equal(1, await CountAsync("SELECT count(*) FROM insights.goals WHERE user_id = $1", b));
        Assert.Equal(0, await CountAsync("SELECT count(*) FROM insights.goals WHERE user_id = $1", a));
    }

    [Fact]
    public async Task The_active_goal_limit_is_a_422_naming_it_and_ended_goals_do_not_count()
    {
        var user = GatewayStackFixture.NewUser("goal-limit");
        var client = f.Client();
        for (var i = 0; i < GoalRules.MaxActiveGoalsPerPerson; i++)
            await JsonAsync(await client.PostAsJsonAsync(Path, StepsGoal(user, $"{user}-{i}")), HttpStatusCode.Created);
        var limit = await ProblemAsync(await client.PostAsJsonAsync(Path, StepsGoal(user)), HttpStatusCode.UnprocessableEntity);
        Assert.Contains($"{GoalRules.MaxActiveGoalsPerPerson} active goals", limit.GetProperty("detail").GetString());
        // A retry of a stored goal is still answered, and a goal that has already ended is not active.
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsJsonAsync(Path, StepsGoal(user, $"{user}-0"))).StatusCode);
        await JsonAsync(await client.PostAsJsonAsync(Path, With(With(StepsGoal(user), "starts_on", "2024-01-01"), "ends_on", "2024-12-31")), HttpStatusCode.Created);
        Assert.Equal(GoalRules.MaxActiveGoalsPerPerson + 1, await CountAsync("SELECT count(*) FROM insights.goals WHERE user_id = $1", user));
    }

    [Fact]
    public async Task Without_postgresql_both_operations_are_503s()
    {
        var settings = LocalServices.Overrides(LocalServices.NewDatabaseName("gateway_goals_down"), f.Stack.BootstrapServers);
        settings["Postgres:Port"] = "1";   // nothing listens there
        await using var app = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
        using var client = app.CreateClient();
        client.DefaultRequestHeaders.Add("X-Api-Key", GatewayStackFixture.ApiKey);
        var user = GatewayStackFixture.NewUser("down");
        Assert.Equal("PostgreSQL", (await ProblemAsync(await client.PostAsJsonAsync(Path, StepsGoal(user)), HttpStatusCode.ServiceUnavailable)).GetProperty("title").GetString());
        Assert.Equal("PostgreSQL", (await ProblemAsync(await client.GetAsync($"{Path}user/{user}"), HttpStatusCode.ServiceUnavailable)).GetProperty("title").GetString());
    }

    /// <summary>A row as the insights topology's sink writes it: the local day's aggregates and the UTC instant it began.</summary>
    private async Task InsertDayAsync(string user, string metric, DateOnly day, int count, double total, double mean, int dayStartShiftMinutes = 0)
    {
        var dayStart = day.ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc).AddHours(-14).AddMinutes(dayStartShiftMinutes);
        await using var cmd = f.Postgres.CreateCommand("""
            INSERT INTO insights.daily_metrics (user_id, metric, local_date, day_start, utc_offset_minutes, count, total, min, max, mean, last_value, last_time)
            VALUES ($1, $2, $3, $4, 840, $5, $6, $7, $7, $7, $7, $4)
            """);
        foreach (var value in new object[] { user, metric, day, dayStart, count, total, mean })
            cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = value });
        await cmd.ExecuteNonQueryAsync();
    }

    private async Task ExecuteAsync(string sql, string user)
    {
        await using var cmd = f.Postgres.CreateCommand(sql);
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = user });
        await cmd.ExecuteNonQueryAsync();
    }

    private async Task<long> CountAsync(string sql, string value)
    {
        await using var cmd = f.Postgres.CreateCommand(sql);
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = value });
        return (long)(await cmd.ExecuteScalarAsync())!;
    }
}
