using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Insights.Aggregates;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Gateway.Contract;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway;

/// <summary>The insights aggregates over the whole stack: metrics posted through the gateway (embedded Kafka, Avro through the
/// registry) → the insights topology (RocksDB) → insights.daily → insights.daily_metrics / metric_summaries in PostgreSQL, the
/// cached answers in Redis deleted after each write, and the summary endpoint reading what the sink stored.</summary>
public sealed class InsightsAggregatesTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    private const string Path = "/api/v1/health-metrics/";

    private async Task PostAsync(string user, string type, double value, string unit, string recordedAt, string metricId)
    {
        var response = await f.Client().PostAsJsonAsync(Path, new { user_id = user, type, value, unit, recorded_at = recordedAt, metric_id = metricId });
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
    }

    private static string Iso(DateTimeOffset t) => t.ToString("yyyy-MM-dd'T'HH:mm:ss.fffzzz", CultureInfo.InvariantCulture);
    private static string IsoZ(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private sealed record DayRow(DateOnly LocalDate, int Count, double Total, double Min, double Max, double Mean, int OffsetMinutes, DateTime DayStart);

    private List<DayRow> Days(string user, string metric)
    {
        using var cmd = f.Postgres.CreateCommand("""
            SELECT local_date, count, total, min, max, mean, utc_offset_minutes, day_start FROM insights.daily_metrics
            WHERE user_id = $1 AND metric = $2 ORDER BY local_date
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = user });
        cmd.Parameters.Add(new NpgsqlParameter { Value = metric });
        using var r = cmd.ExecuteReader();
        var rows = new List<DayRow>();
        while (r.Read())
            rows.Add(new DayRow(r.GetFieldValue<DateOnly>(0), r.GetInt32(1), r.GetDouble(2), r.GetDouble(3), r.GetDouble(4), r.GetDouble(5), r.GetInt32(6),
                DateTime.SpecifyKind(r.GetDateTime(7), DateTimeKind.Utc)));
        return rows;
    }

    private (DateOnly Through, int DaysWithData, double Total)? Summary(string user, string metric, int windowDays)
    {
        using var cmd = f.Postgres.CreateCommand("""
            SELECT through_date, days_with_data, total FROM insights.metric_summaries WHERE user_id = $1 AND metric = $2 AND window_days = $3
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = user });
        cmd.Parameters.Add(new NpgsqlParameter { Value = metric });
        cmd.Parameters.Add(new NpgsqlParameter { Value = windowDays });
        using var r = cmd.ExecuteReader();
        return r.Read() ? (r.GetFieldValue<DateOnly>(0), r.GetInt32(1), r.GetDouble(2)) : null;
    }

    private static string Describe(IEnumerable<DayRow> rows) => string.Join("; ", rows);

    [Fact]
    public async Task Local_days_follow_the_recorded_offset_and_else_the_profile_time_zone()
    {
        // Three days ago, so every instant below is in the past whatever the hour now.
        var d = DateOnly.FromDateTime(DateTime.UtcNow).AddDays(-3);
        var user = GatewayStackFixture.NewUser("tz-offset");
        // 00:30 at +14:00 is 10:30 UTC the day before; 23:30 at -11:00 is 10:30 UTC the day after: both are the person's day d.
        await PostAsync(user, "steps", 1000, "steps", $"{d:yyyy-MM-dd}T00:30:00+14:00", user + "-kiribati");
        await PostAsync(user, "steps", 2500, "steps", $"{d:yyyy-MM-dd}T23:30:00-11:00", user + "-niue");
        WaitFor(() => Days(user, "steps") is [{ Count: 2 }], TimeSpan.FromSeconds(60), () => Describe(Days(user, "steps")));
        var day = Days(user, "steps").Single();
        Assert.Equal(d, day.LocalDate);
        Assert.Equal(3500, day.Total);
        Assert.Equal(840, day.OffsetMinutes);   // the first record's
        Assert.Equal(d.ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc).AddHours(-14), day.DayStart);

        // A person whose profile says America/New_York, posting UTC instants ("Z"): their local day, their offset (EST in winter,
        // EDT in summer, whichever applies on d).
        var (nyUser, _) = await SignUpAsync("tz-ny");
        await using (var cmd = f.Postgres.CreateCommand("UPDATE identity.users SET time_zone = 'America/New_York' WHERE user_id = $1"))
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = nyUser });
            Assert.Equal(1, await cmd.ExecuteNonQueryAsync());
        }
        var newYork = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");
        var early = d.ToDateTime(new TimeOnly(3, 30), DateTimeKind.Utc);   // the evening before in New York
        var later = d.ToDateTime(new TimeOnly(12, 0), DateTimeKind.Utc);
        await PostAsync(nyUser, "water_ml", 300, "ml", IsoZ(early), nyUser + "-early");
        await PostAsync(nyUser, "water_ml", 500, "ml", IsoZ(later), nyUser + "-later");
        WaitFor(() => Days(nyUser, "water_ml").Sum(r => r.Count) == 2, TimeSpan.FromSeconds(60), () => Describe(Days(nyUser, "water_ml")));
        var nyDays = Days(nyUser, "water_ml");
        Assert.Equal([d.AddDays(-1), d], nyDays.Select(r => r.LocalDate));
        Assert.Equal([300.0, 500.0], nyDays.Select(r => r.Total));
        Assert.Equal((int)newYork.GetUtcOffset(early).TotalMinutes, nyDays[0].OffsetMinutes);
        Assert.InRange(nyDays[0].OffsetMinutes, -300, -240);

        // The summary endpoint reads the same rows: the person's own token, their latest day and both windows.
        var summary = await f.Client().GetFromJsonAsync<JsonElement>($"{Path}user/{nyUser}/summary?days=30");
        Assert.Equal("America/New_York", summary.GetProperty("time_zone").GetString());
        var daily = summary.GetProperty("daily").EnumerateArray().ToList();
        Assert.Equal([d.AddDays(-1).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), d.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)],
            daily.Select(e => e.GetProperty("local_date").GetString()));
        Assert.All(daily, e => Assert.Equal("ml", e.GetProperty("unit").GetString()));
        var windows = summary.GetProperty("summaries").EnumerateArray().ToList();
        Assert.Equal([7, 30], windows.Select(w => w.GetProperty("window_days").GetInt32()));
        Assert.All(windows, w => Assert.Equal(2, w.GetProperty("days_with_data").GetInt32()));
        Assert.All(windows, w => Assert.Equal(400, w.GetProperty("per_day_mean").GetDouble()));
        // The days from d to the person's today: d's row, not the day before it.
        var todayInNewYork = DateOnly.FromDateTime(TimeZoneInfo.ConvertTime(DateTimeOffset.UtcNow, newYork).DateTime);
        var fromD = await f.Client().GetFromJsonAsync<JsonElement>($"{Path}user/{nyUser}/summary?days={todayInNewYork.DayNumber - d.DayNumber + 1}");
        Assert.Equal(d.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), fromD.GetProperty("from_date").GetString());
        Assert.Single(fromD.GetProperty("daily").EnumerateArray());

        foreach (var (query, field) in new[] { ($"{nyUser}/summary?days=0", "days"), ($"{nyUser}/summary?days=91", "days"),
                     ($"{nyUser}/summary?days=seven", "days"), ("bad%20id/summary", "userId") })
        {
            var response = await f.Client().GetAsync($"{Path}user/{query}");
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{query}: {(int)response.StatusCode} {text}");
            Assert.Contains(field, JsonDocument.Parse(text).RootElement.GetProperty("errors").EnumerateObject().Select(p => p.Name));
        }
    }

    [Fact]
    public async Task A_retry_counts_once_a_late_record_within_grace_updates_its_day_and_one_beyond_grace_is_dead_lettered()
    {
        var user = GatewayStackFixture.NewUser("grace");
        // Every day below is counted from the stream time's, not the clock's: from 00:00 to 00:30 UTC they differ (the test once
        // took the clock's yesterday for the stream time's today there). The stream time and the sentinel a minute later share a day.
        var streamTime = DateTime.UtcNow.AddMinutes(-30);
        if (streamTime.AddMinutes(1).Date != streamTime.Date) streamTime = streamTime.AddMinutes(-1);
        var yesterdayNoon = DateOnly.FromDateTime(streamTime).AddDays(-1).ToDateTime(new TimeOnly(12, 0), DateTimeKind.Utc);
        await PostAsync(user, "water_ml", 250, "ml", IsoZ(yesterdayNoon), user + "-w1");
        await PostAsync(user, "water_ml", 250, "ml", IsoZ(yesterdayNoon), user + "-w1");   // the client's retry: same id, same metric
        await PostAsync(user, "water_ml", 300, "ml", IsoZ(yesterdayNoon.AddHours(1)), user + "-w2");
        await PostAsync(user, "water_ml", 100, "ml", IsoZ(streamTime), user + "-now");
        // Noon of the day before yesterday: its day ended 24-48 h before the stream time, inside the 48 h grace, and it is never
        // yesterday's (40 h before the stream time was, from 16:00 UTC on, and counted a third record there).
        var withinGrace = DateOnly.FromDateTime(streamTime).AddDays(-2).ToDateTime(new TimeOnly(12, 0), DateTimeKind.Utc);
        await PostAsync(user, "water_ml", 700, "ml", IsoZ(withinGrace), user + "-late-ok");
        // Its day ended at least 72 h before: beyond the grace.
        var beyondGrace = streamTime.AddDays(-4);
        await PostAsync(user, "water_ml", 900, "ml", IsoZ(beyondGrace), user + "-too-late");
        await PostAsync(user, "water_ml", 50, "ml", IsoZ(streamTime.AddMinutes(1)), user + "-sentinel");

        var today = DateOnly.FromDateTime(streamTime);
        WaitFor(() => Days(user, "water_ml").FirstOrDefault(r => r.LocalDate == today)?.Count == 2, TimeSpan.FromSeconds(60),
            () => Describe(Days(user, "water_ml")));
        var days = Days(user, "water_ml").ToDictionary(r => r.LocalDate);
        var yesterday = DateOnly.FromDateTime(yesterdayNoon);
        Assert.Equal(2, days[yesterday].Count);   // w1 once, w2
        Assert.Equal(550, days[yesterday].Total);
        Assert.Equal(700, days[DateOnly.FromDateTime(withinGrace)].Total);
        Assert.False(days.ContainsKey(DateOnly.FromDateTime(beyondGrace)), Describe(days.Values));

        // One letter, or more if another test replayed the topic since: each for the record beyond the grace, naming its day.
        var letters = DeadLetters(user);
        Assert.True(letters.Count > 0, "no dead letter for the record beyond the grace\n" + f.Logs.Tail());
        Assert.All(letters, letter =>
        {
            Assert.Contains(DateOnly.FromDateTime(beyondGrace).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), letter);
            Assert.Contains("48 h (Insights:GraceHours)", letter);
        });

        var week = Summary(user, "water_ml", 7);
        Assert.NotNull(week);
        Assert.Equal(today, week.Value.Through);
        Assert.Equal(days.Values.Sum(r => r.Total), week.Value.Total);
        Assert.Equal(days.Count, week.Value.DaysWithData);
    }

    [Fact]
    public async Task Records_produced_past_the_gateway_that_break_the_rules_or_reuse_an_id_are_dead_lettered_with_the_reason()
    {
        var user = GatewayStackFixture.NewUser("topology-dlq");
        var keys = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var values = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Insights.HealthMetric>();
        var at = DateTime.UtcNow.AddMinutes(-20);
        byte[] Value(string id, string owner, string type, double value, string unit, int offsetMinutes = 0) => values.Serialize(new StreamHealth.Schemas.Avro.Insights.HealthMetric
        {
            event_time_unix_ms = at, metric_id = id, user_id = owner, metric = type, value = value, unit = unit, utc_offset_minutes = offsetMinutes,
        }, new SerializationContext(MessageComponentType.Value, Topics.InsightsMetrics));
        var key = keys.Serialize(new StreamHealth.Schemas.Avro.Common.UserKey { user_id = user }, new SerializationContext(MessageComponentType.Key, Topics.InsightsMetrics));
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Stack.BootstrapServers }).Build())
        {
            foreach (var value in new[]
                     {
                         Value($"{user}-ok", user, "steps", 300, "steps"),
                         Value($"{user}-ok", user, "steps", 301, "steps"),                  // the id again, other content
                         Value($"{user}-offset", user, "steps", 10, "steps", 15 * 60),      // beyond +14:00
                         Value($"{user}-mood", user, "mood", 3, "points"),                   // no such type
                         Value($"{user}-lb", user, "weight", 176, "lb"),                     // not the stored unit
                         Value($"{user}-theirs", "someone-else", "steps", 10, "steps"),      // body and key disagree
                         Value($"{user}-last", user, "steps", 200, "steps"),
                     })
                await producer.ProduceAsync(Topics.InsightsMetrics, new Message<byte[], byte[]> { Key = key, Value = value });
        }
        WaitFor(() => Days(user, "steps") is [{ Count: 2 }], TimeSpan.FromSeconds(60), () => Describe(Days(user, "steps")));
        Assert.Equal(500, Days(user, "steps").Single().Total);
        var letters = DeadLetters(user, atLeast: 5);
        foreach (var reason in new[] { "was already counted for this person for another metric", "utc_offset_minutes = 900", "metric = 'mood'",
                     "unit = 'lb'", "does not match the record key" })
            Assert.True(letters.Any(l => l.Contains(reason, StringComparison.Ordinal)), $"no dead letter saying '{reason}': {string.Join(" | ", letters)}");
    }

    /// <summary>The dead letters of <paramref name="user"/>'s records on insights.metrics.dlq (the topology's reasons).</summary>
    private List<string> DeadLetters(string user, int atLeast = 1)
    {
        var key = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>()
            .Serialize(new StreamHealth.Schemas.Avro.Common.UserKey { user_id = user }, new SerializationContext(MessageComponentType.Key, Topics.InsightsMetrics));
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = f.Stack.BootstrapServers, GroupId = "insights-dlq-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
            EnablePartitionEof = true,
        }).Build();
        consumer.Subscribe(Topics.DeadLetterOf(Topics.InsightsMetrics));
        var letters = new List<string>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        var ends = 0;
        while (DateTime.UtcNow < deadline && (ends < Topics.DefaultPartitions || letters.Count < atLeast))
        {
            if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is not { } r) continue;
            if (r.IsPartitionEOF)
            {
                ends++;
                continue;
            }
            if (!r.Message.Key.AsSpan().SequenceEqual(key)) continue;
            var processor = Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes(StreamHeaders.Processor));
            if (processor == "insights-daily") letters.Add(Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes(StreamHeaders.Error)));
        }
        return letters;
    }

    [Fact]
    public async Task A_replay_of_every_record_after_a_restart_counts_nothing_twice()
    {
        var user = GatewayStackFixture.NewUser("replay");
        // Two hours ago, but the four readings (over 10 minutes) on one UTC day: a run at 01:55 put the last one past midnight.
        var at = DateTime.UtcNow.AddHours(-2);
        if (at.AddMinutes(10).Date != at.Date) at = at.Date.AddHours(23);
        for (var i = 0; i < 3; i++) await PostAsync(user, "heart_rate", 60 + i, "bpm", IsoZ(at.AddMinutes(i)), $"{user}-hr{i}");
        WaitFor(() => Days(user, "heart_rate").Sum(r => r.Count) == 3, TimeSpan.FromSeconds(60), () => Describe(Days(user, "heart_rate")));

        // As after a crash between applying records and committing their offsets: the topology reads insights.metrics again from the
        // start, with its state (RocksDB, kept) already holding every record.
        f.RestartInsights(whileStopped: () =>
        {
            // The broker takes a group's commit from a member only: join the (now empty) group, then commit offset 0 everywhere.
            using var rewind = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
            {
                BootstrapServers = f.Stack.BootstrapServers, GroupId = InsightsTopology.ApplicationId, EnableAutoCommit = false,
                AutoOffsetReset = AutoOffsetReset.Earliest, SessionTimeoutMs = 6_000,
            }).Build();
            rewind.Subscribe(Topics.InsightsMetrics);
            WaitFor(() =>
            {
                rewind.Consume(TimeSpan.FromMilliseconds(100));
                return rewind.Assignment.Count == Topics.DefaultPartitions;
            }, TimeSpan.FromSeconds(30), () => $"the rewinding consumer got {rewind.Assignment.Count} partitions");
            rewind.Commit(Enumerable.Range(0, Topics.DefaultPartitions)
                .Select(p => new TopicPartitionOffset(Topics.InsightsMetrics, p, 0)));
            rewind.Close();
        });
        await PostAsync(user, "heart_rate", 80, "bpm", IsoZ(at.AddMinutes(10)), $"{user}-after");
        WaitFor(() => Days(user, "heart_rate").Sum(r => r.Count) == 4, TimeSpan.FromSeconds(60), () => Describe(Days(user, "heart_rate")));
        WaitFor(() => f.Insights.Host.Metrics.SkippedAlreadyApplied >= 3, TimeSpan.FromSeconds(30),
            () => $"skipped {f.Insights.Host.Metrics.SkippedAlreadyApplied}: the replay did not happen");
        await Task.Delay(1000);
        var day = Days(user, "heart_rate").Single();
        Assert.Equal(4, day.Count);
        Assert.Equal(60 + 61 + 62 + 80, day.Total);
        Assert.Equal(60, day.Min);
        Assert.Equal(80, day.Max);
    }

    [Fact]
    public async Task Writing_a_persons_aggregates_deletes_their_cached_summary_and_recommendations_only()
    {
        var user = GatewayStackFixture.NewUser("cache");
        var other = GatewayStackFixture.NewUser("cache-other");
        var db = f.Redis.GetDatabase();
        foreach (var key in new[] { InsightsCacheInvalidation.SummaryKey(user), InsightsCacheInvalidation.RecommendationsKey(user), InsightsCacheInvalidation.SummaryKey(other) })
            Assert.True(await db.StringSetAsync(key, "{}", TimeSpan.FromMinutes(5)));
        Assert.Equal("insights:summary:" + user, InsightsCacheInvalidation.SummaryKey(user));
        Assert.Equal("insights:recs:" + user, InsightsCacheInvalidation.RecommendationsKey(user));

        await PostAsync(user, "calories", 1800, "kcal", IsoZ(DateTime.UtcNow.AddHours(-1)), user + "-kcal");
        WaitFor(() => Days(user, "calories").Count == 1, TimeSpan.FromSeconds(60), () => "no aggregate row\n" + f.Logs.Dump("insights"));
        WaitFor(() => !db.KeyExists(InsightsCacheInvalidation.SummaryKey(user)) && !db.KeyExists(InsightsCacheInvalidation.RecommendationsKey(user)),
            TimeSpan.FromSeconds(10), () => "the person's cached entries are still there");
        Assert.True(db.KeyExists(InsightsCacheInvalidation.SummaryKey(other)));
        await db.KeyDeleteAsync(InsightsCacheInvalidation.SummaryKey(other));
    }

    [Fact]
    public async Task With_Redis_down_the_sink_still_stores_the_rows_and_counts_the_failed_invalidation()
    {
        // A port nothing listens on: a real client meeting a real refused connection.
        using var deadRedis = await ConnectionMultiplexer.ConnectAsync("127.0.0.1:1,abortConnect=false,connectTimeout=200,asyncTimeout=500,syncTimeout=500");
        var cache = new InsightsCacheInvalidation(deadRedis);
        var writer = InsightsAggregatePostgresWriter.Create(f.Postgres, f.Registry.Connection, cache);
        var user = GatewayStackFixture.NewUser("redis-down");
        var date = new DateTime(2026, 11, 30, 0, 0, 0, DateTimeKind.Utc);
        StreamHealth.Schemas.Avro.Insights.MetricSummary Window(int days) => new()
        {
            window_days = days, through_date = date, days_with_data = 1, total = 7, per_day_mean = 7, value_mean = 7, min = 7, max = 7,
        };
        var value = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Insights.DailyMetricAggregate>().Serialize(new()
        {
            event_time_unix_ms = date.AddHours(7), user_id = user, metric = "sleep_hours", unit = "h", local_date = date, day_start_unix_ms = date, utc_offset_minutes = 0,
            count = 1, total = 7, min = 7, max = 7, mean = 7, last_value = 7, last_time_unix_ms = date.AddHours(7), week = Window(7), month = Window(30),
        }, new SerializationContext(MessageComponentType.Value, Topics.InsightsDaily));
        var started = System.Diagnostics.Stopwatch.StartNew();
        writer.Write([new SinkRecord(Topics.InsightsDaily, 0, 1, null, value, 0, "redis-down-" + user)]);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(2), $"the write waited {started.Elapsed} on Redis");
        Assert.Equal(7, Days(user, "sleep_hours").Single().Total);
        Assert.Equal(7, Summary(user, "sleep_hours", 30)!.Value.Total);
        WaitFor(() => cache.Failures == 1, TimeSpan.FromSeconds(15), () => $"failures {cache.Failures}");
    }

    private async Task<(string UserId, string Token)> SignUpAsync(string prefix)
    {
        using var anonymous = f.Client(apiKey: null);
        var email = $"{prefix}-{Guid.NewGuid():N}@example.org";
        const string password = "Insights-walk-1";
        Assert.Equal(HttpStatusCode.Created, (await anonymous.PostAsJsonAsync("/api/v1/users/register", new { email, password })).StatusCode);
        var token = JsonDocument.Parse(await (await anonymous.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password })).Content.ReadAsStringAsync()).RootElement;
        return (token.GetProperty("user_id").GetString()!, token.GetProperty("access_token").GetString()!);
    }
}
