using System.ComponentModel;
using System.Text.Json.Serialization;
using Npgsql;
using StreamHealth.Insights.Metrics;

namespace StreamHealth.Gateway.Insights;

/// <summary>One metric type on one of the person's local days, as the insights topology aggregated it (values in <c>unit</c>).</summary>
public sealed record DailyAggregate(
    [property: JsonPropertyName("local_date")] DateOnly LocalDate,
    [property: JsonPropertyName("metric")] string Metric,
    [property: JsonPropertyName("unit")] string Unit,
    [property: JsonPropertyName("day_start"), Description("UTC instant the local day began")] DateTime DayStart,
    [property: JsonPropertyName("utc_offset_minutes"), Description("minutes east of UTC the day was computed with")] int UtcOffsetMinutes,
    [property: JsonPropertyName("count")] int Count,
    [property: JsonPropertyName("total")] double Total,
    [property: JsonPropertyName("min")] double Min,
    [property: JsonPropertyName("max")] double Max,
    [property: JsonPropertyName("mean")] double Mean,
    [property: JsonPropertyName("last_value")] double LastValue,
    [property: JsonPropertyName("last_time")] DateTime LastTime);

/// <summary>A rolling summary of one metric type over the person's last 7 or 30 local days ending with <c>through_date</c>, the
/// latest day with data of the type; per-day figures are over the days with data.</summary>
public sealed record RollingMetricSummary(
    [property: JsonPropertyName("metric")] string Metric,
    [property: JsonPropertyName("unit")] string Unit,
    [property: JsonPropertyName("window_days")] int WindowDays,
    [property: JsonPropertyName("through_date")] DateOnly ThroughDate,
    [property: JsonPropertyName("days_with_data")] int DaysWithData,
    [property: JsonPropertyName("total")] double Total,
    [property: JsonPropertyName("per_day_mean"), Description("total / days_with_data (unit per day)")] double PerDayMean,
    [property: JsonPropertyName("value_mean"), Description("mean of every record (unit)")] double ValueMean,
    [property: JsonPropertyName("min")] double Min,
    [property: JsonPropertyName("max")] double Max);

/// <summary>GET /api/v1/health-metrics/user/{userId}/summary: the person's daily aggregates for the <c>days</c> local days ending with
/// <c>through_date</c>, and every type's 7- and 30-day summaries.</summary>
public sealed record InsightsSummary(
    [property: JsonPropertyName("user_id")] string UserId,
    [property: JsonPropertyName("days")] int Days,
    [property: JsonPropertyName("from_date")] DateOnly FromDate,
    [property: JsonPropertyName("through_date"), Description("the person's local today (profile time zone), or their latest local day with data when later")] DateOnly ThroughDate,
    [property: JsonPropertyName("time_zone"), Description("the profile time zone (IANA) today is taken in")] string TimeZone,
    [property: JsonPropertyName("daily"), Description("by local_date, then metric")] IReadOnlyList<DailyAggregate> Daily,
    [property: JsonPropertyName("summaries"), Description("by metric, then window_days")] IReadOnlyList<RollingMetricSummary> Summaries);

/// <summary>Reads of what the insights topology's sink stored (insights.daily_metrics, insights.metric_summaries), as plain loads a
/// cache can wrap.</summary>
public static class InsightsQueries
{
    /// <summary>The person's summary: two round trips (the profile zone and latest day, then the day rows and summaries in one batch),
    /// each over the person's index entries only. A person with no data gets empty lists.</summary>
    public static async Task<InsightsSummary> LoadSummaryAsync(NpgsqlDataSource db, string userId, int days, CancellationToken ct)
    {
        string zoneName = "UTC";
        DateOnly? latest = null;
        await using (var cmd = db.CreateCommand("""
            SELECT (SELECT time_zone FROM identity.users WHERE user_id = $1),
                   (SELECT max(through_date) FROM insights.metric_summaries WHERE user_id = $1)
            """))
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
            await using var reader = await cmd.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            if (!reader.IsDBNull(0)) zoneName = reader.GetString(0);
            if (!reader.IsDBNull(1)) latest = reader.GetFieldValue<DateOnly>(1);
        }
        UserTimeZones.TryFind(zoneName, out var zone);
        var today = DateOnly.FromDateTime(TimeZoneInfo.ConvertTime(DateTimeOffset.UtcNow, zone).DateTime);
        // A client's offset may be ahead of the profile's zone (travel, +14:00): its later days still belong in the answer.
        var through = latest is { } l && l > today ? l : today;
        var from = through.AddDays(1 - days);

        await using var batch = db.CreateBatch();
        var daysCommand = new NpgsqlBatchCommand("""
            SELECT local_date, metric, day_start, utc_offset_minutes, count, total, min, max, mean, last_value, last_time
            FROM insights.daily_metrics WHERE user_id = $1 AND local_date BETWEEN $2 AND $3
            ORDER BY local_date, metric
            """);
        daysCommand.Parameters.Add(new NpgsqlParameter { Value = userId });
        daysCommand.Parameters.Add(new NpgsqlParameter { Value = from });
        daysCommand.Parameters.Add(new NpgsqlParameter { Value = through });
        var summariesCommand = new NpgsqlBatchCommand("""
            SELECT metric, window_days, through_date, days_with_data, total, per_day_mean, value_mean, min, max
            FROM insights.metric_summaries WHERE user_id = $1
            ORDER BY metric, window_days
            """);
        summariesCommand.Parameters.Add(new NpgsqlParameter { Value = userId });
        batch.BatchCommands.Add(daysCommand);
        batch.BatchCommands.Add(summariesCommand);

        var daily = new List<DailyAggregate>();
        var summaries = new List<RollingMetricSummary>();
        await using (var reader = await batch.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var metric = reader.GetString(1);
                daily.Add(new DailyAggregate(reader.GetFieldValue<DateOnly>(0), metric, UnitOf(metric), Utc(reader.GetDateTime(2)), reader.GetInt32(3),
                    reader.GetInt32(4), reader.GetDouble(5), reader.GetDouble(6), reader.GetDouble(7), reader.GetDouble(8), reader.GetDouble(9),
                    Utc(reader.GetDateTime(10))));
            }
            await reader.NextResultAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var metric = reader.GetString(0);
                summaries.Add(new RollingMetricSummary(metric, UnitOf(metric), reader.GetInt32(1), reader.GetFieldValue<DateOnly>(2), reader.GetInt32(3),
                    reader.GetDouble(4), reader.GetDouble(5), reader.GetDouble(6), reader.GetDouble(7), reader.GetDouble(8)));
            }
        }
        return new InsightsSummary(userId, days, from, through, zone.Id, daily, summaries);
    }

    private static string UnitOf(string metric) => HealthMetricTypes.Find(metric)?.Unit ?? "";

    private static DateTime Utc(DateTime time) => DateTime.SpecifyKind(time, DateTimeKind.Utc);
}
