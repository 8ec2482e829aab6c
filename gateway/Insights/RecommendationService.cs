using System.Text.Json;
using System.Text.Json.Serialization;
using Npgsql;
using NpgsqlTypes;
using StreamHealth.Insights.Recommendations;

namespace StreamHealth.Gateway.Insights;

/// <summary>GET /api/v1/recommendations' answer: the top recommendations for the person's last <see cref="Days"/> local
/// days, as generated at <see cref="GeneratedAt"/> (cached up to an hour; a change to the person's data drops it).</summary>
public sealed record RecommendationsAnswer(
    [property: JsonPropertyName("user_id")] string UserId,
    [property: JsonPropertyName("days")] int Days,
    [property: JsonPropertyName("from_date")] DateOnly FromDate,
    [property: JsonPropertyName("to_date")] DateOnly ToDate,
    [property: JsonPropertyName("time_zone")] string TimeZone,
    [property: JsonPropertyName("age_band")] string AgeBand,
    [property: JsonPropertyName("generated_at")] DateTime GeneratedAt,
    [property: JsonPropertyName("recommendations")] IReadOnlyList<RecommendationItem> Recommendations);

public sealed record RecommendationItem(
    [property: JsonPropertyName("insight_id")] string InsightId,
    [property: JsonPropertyName("rule")] string Rule,
    [property: JsonPropertyName("priority"), System.ComponentModel.Description("1 (act now) to 3 (worth a look)")] int Priority,
    [property: JsonPropertyName("title")] string Title,
    [property: JsonPropertyName("reason")] string Reason,
    [property: JsonPropertyName("figures"), System.ComponentModel.Description("the numbers the reason quotes; units in the names")]
    IReadOnlyDictionary<string, object> Figures);

/// <summary>Computes recommendations from what the pipeline materialised (daily aggregates, nutrition logs, the weight
/// filter's latest trend) and the profile, in one PostgreSQL round trip, evaluates the rules and stores what it
/// answered in insights.generated (one more round trip).</summary>
public sealed class RecommendationService(NpgsqlDataSource pg, RecommendationRules rules, ProfileFacts profiles)
{
    public RecommendationRules Rules => rules;

    /// <summary>Null when the person has no account.</summary>
    public async Task<RecommendationsAnswer?> GenerateAsync(string userId, int days, CancellationToken ct)
    {
        if (await profiles.FindAsync(userId, ct) is not { } profile) return null;
        var now = DateTime.UtcNow;
        var zone = profile.TimeZone;
        var today = DateOnly.FromDateTime(TimeZoneInfo.ConvertTimeFromUtc(now, zone));
        var from = today.AddDays(1 - days);
        // The local days' UTC span (±14 h of offsets) bounds the partitioned tables' scans.
        var fromUtc = from.ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc).AddHours(-14);
        var toUtc = today.ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc).AddHours(24 + 14);

        await using var batch = pg.CreateBatch();
        // Per metric over the days with data: the mean of the days' totals, and of the days' minimum (the resting
        // heart-rate estimate).
        batch.BatchCommands.Add(Command("""
            SELECT metric, count(*)::int, avg(total), avg(min) FROM insights.daily_metrics
            WHERE user_id = $1 AND local_date BETWEEN $2 AND $3 AND day_start >= $4 AND day_start < $5
              AND metric IN ('steps', 'sleep_hours', 'heart_rate', 'water_ml')
            GROUP BY metric
            """, userId, from, today, fromUtc, toUtc));
        batch.BatchCommands.Add(Command("""
            SELECT count(*)::int, avg(kcal), avg(protein), avg(fiber), avg(sugar), avg(sodium) FROM (
              SELECT sum(calories_kcal) AS kcal, sum(protein_g) AS protein, sum(fiber_g) AS fiber, sum(sugar_g) AS sugar,
                     sum(sodium_mg) AS sodium
              FROM insights.nutrition_logs
              WHERE user_id = $1 AND eaten_at >= $4 AND eaten_at < $5
                AND (eaten_at AT TIME ZONE $6)::date BETWEEN $2 AND $3
              GROUP BY (eaten_at AT TIME ZONE $6)::date) AS days
            """, userId, from, today, fromUtc, toUtc, profile.TimeZoneId));
        batch.BatchCommands.Add(Command("""
            SELECT filtered_weight_kg, trend_kg_per_week, measured_at FROM weights.measurements
            WHERE user_id = $1 AND accepted AND NOT needs_initialization AND filtered_weight_kg > 0 AND measured_at >= $2
            ORDER BY measured_at DESC LIMIT 1
            """, userId, now.AddDays(-rules.WeightTrendMaxAgeDays)));

        DailyFigures? steps = null, sleep = null, heart = null, water = null;
        NutritionFigures? nutrition = null;
        WeightTrend? weight = null;
        await using (var reader = await batch.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var figures = new DailyFigures(reader.GetInt32(1), reader.GetDouble(2));
                switch (reader.GetString(0))
                {
                    case "steps": steps = figures; break;
                    case "sleep_hours": sleep = figures; break;
                    case "water_ml": water = figures; break;
                    case "heart_rate": heart = new DailyFigures(figures.DaysWithData, reader.GetDouble(3)); break;
                }
            }
            await reader.NextResultAsync(ct);
            if (await reader.ReadAsync(ct) && reader.GetInt32(0) > 0)
                nutrition = new NutritionFigures(reader.GetInt32(0), reader.GetDouble(1), reader.GetDouble(2), Nullable(reader, 3), Nullable(reader, 4),
                    Nullable(reader, 5));
            await reader.NextResultAsync(ct);
            if (await reader.ReadAsync(ct))
                weight = new WeightTrend(reader.GetDouble(0), reader.GetDouble(1), (now - reader.GetDateTime(2)).TotalDays);
        }

        var age = profile.AgeYears(today);
        var inputs = new RecommendationInputs(days, age, profile.Sex, steps, sleep, heart, water, nutrition, weight);
        var found = RecommendationEngine.Evaluate(rules, inputs);
        var band = rules.BandFor(age ?? rules.DefaultAgeYears)!;
        var items = new List<RecommendationItem>(found.Count);
        foreach (var r in found)
            items.Add(new RecommendationItem(NewInsightId(), r.Rule, r.Priority, r.Title, r.Reason, r.Figures));
        var answer = new RecommendationsAnswer(userId, days, from, today, profile.TimeZoneId, band.Name, TruncateToMicroseconds(now), items);
        await StoreAsync(answer, ct);
        return answer;
    }

    private async Task StoreAsync(RecommendationsAnswer answer, CancellationToken ct)
    {
        if (answer.Recommendations.Count == 0) return;
        await using var cmd = pg.CreateCommand("""
            INSERT INTO insights.generated (user_id, insight_id, generated_at, window_days, rule, priority, title, reason, figures)
            SELECT $1, id, $2, $3, r, p, t, re, f::jsonb FROM unnest($4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::text[])
              AS x(id, r, p, t, re, f)
            ON CONFLICT DO NOTHING
            """);
        var list = answer.Recommendations;
        cmd.Parameters.Add(new NpgsqlParameter { Value = answer.UserId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = answer.GeneratedAt });
        cmd.Parameters.Add(new NpgsqlParameter { Value = answer.Days });
        cmd.Parameters.Add(new NpgsqlParameter { Value = list.Select(r => r.InsightId).ToArray() });
        cmd.Parameters.Add(new NpgsqlParameter { Value = list.Select(r => r.Rule).ToArray() });
        cmd.Parameters.Add(new NpgsqlParameter { Value = list.Select(r => r.Priority).ToArray() });
        cmd.Parameters.Add(new NpgsqlParameter { Value = list.Select(r => r.Title).ToArray() });
        cmd.Parameters.Add(new NpgsqlParameter { Value = list.Select(r => r.Reason).ToArray() });
        cmd.Parameters.Add(new NpgsqlParameter { Value = list.Select(r => JsonSerializer.Serialize(r.Figures)).ToArray() });
        await cmd.ExecuteNonQueryAsync(ct);
    }

    private static NpgsqlBatchCommand Command(string sql, params object[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values)
            command.Parameters.Add(value is DateOnly date
                ? new NpgsqlParameter { Value = date, NpgsqlDbType = NpgsqlDbType.Date }
                : new NpgsqlParameter { Value = value });
        return command;
    }

    private static double? Nullable(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetDouble(ordinal);

    // PostgreSQL keeps microseconds: the answer states the time that the history will show.
    private static DateTime TruncateToMicroseconds(DateTime t) => new(t.Ticks - t.Ticks % 10, DateTimeKind.Utc);

    // Sortable and unique: the generation time in hex, then 64 random bits.
    private static string NewInsightId() =>
        $"rec-{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds():x}-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8))}";
}
