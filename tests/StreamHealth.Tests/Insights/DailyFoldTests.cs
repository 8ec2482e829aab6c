using StreamHealth.Insights.Aggregates;

namespace StreamHealth.Tests.Insights;

/// <summary>The insights topology's maths on its own (<see cref="DailyFold"/>): local days, the day aggregate, the rolling 7/30-day
/// windows, late records, and the state's codec.</summary>
public sealed class DailyFoldTests
{
    private static int Date(int year, int month, int day) => DailyFold.FromDateOnly(new DateOnly(year, month, day));

    private static long Ms(string isoWithOffset) => DateTimeOffset.Parse(isoWithOffset, System.Globalization.CultureInfo.InvariantCulture).ToUnixTimeMilliseconds();

    [Theory]
    [InlineData("2026-12-03T00:30:00+14:00", 840, 2026, 12, 3)]    // UTC 2026-12-02 10:30
    [InlineData("2026-12-03T23:30:00-11:00", -660, 2026, 12, 3)]   // UTC 2026-12-04 10:30
    [InlineData("2026-12-03T00:00:00+00:00", 0, 2026, 12, 3)]
    [InlineData("2026-12-02T23:59:59.999+00:00", 0, 2026, 12, 2)]
    [InlineData("1969-12-31T23:00:00+00:00", 0, 1969, 12, 31)]     // before the epoch: floor, not truncation
    [InlineData("1970-01-01T00:30:00+01:00", 60, 1970, 1, 1)]
    public void The_local_date_is_the_date_of_the_time_at_the_records_offset(string recordedAt, int offsetMinutes, int year, int month, int day)
    {
        Assert.Equal(Date(year, month, day), DailyFold.LocalDate(Ms(recordedAt), offsetMinutes));
        // The day starts at local midnight: in UTC, midnight minus the offset.
        Assert.Equal(new DateTimeOffset(year, month, day, 0, 0, 0, TimeSpan.FromMinutes(offsetMinutes)).ToUnixTimeMilliseconds(),
            DailyFold.DayStartUnixMs(Date(year, month, day), offsetMinutes));
    }

    [Fact]
    public void A_day_counts_min_max_mean_total_and_keeps_the_latest_value_even_when_an_older_record_arrives_late()
    {
        var days = new MetricDays();
        var d = Date(2026, 12, 3);
        DailyFold.Add(days, d, 60, 72, Ms("2026-12-03T08:00:00+01:00"));
        DailyFold.Add(days, d, 60, 90, Ms("2026-12-03T18:00:00+01:00"));
        var i = DailyFold.Add(days, d, 60, 60, Ms("2026-12-03T07:00:00+01:00"));   // late, older
        var day = days[i];
        Assert.Equal(3, day.Count);
        Assert.Equal(222, day.Total);
        Assert.Equal(74, day.Mean);
        Assert.Equal(60, day.Min);
        Assert.Equal(90, day.Max);
        Assert.Equal(90, day.LastValue);
        Assert.Equal(Ms("2026-12-03T18:00:00+01:00"), day.LastTimeUnixMs);
        Assert.Equal(Ms("2026-12-03T00:00:00+01:00"), day.DayStartUnixMs);
    }

    [Fact]
    public void Rolling_windows_span_month_boundaries_and_count_only_days_with_data()
    {
        var days = new MetricDays();
        // Steps on Jan 20, Jan 27, Jan 30, Jan 31, Feb 1 (two records), Feb 2; nothing on Jan 28-29.
        (int Date, double Steps)[] records =
        [
            (Date(2026, 1, 20), 4000), (Date(2026, 1, 27), 8000), (Date(2026, 1, 30), 6000), (Date(2026, 1, 31), 7000),
            (Date(2026, 2, 1), 3000), (Date(2026, 2, 1), 2500), (Date(2026, 2, 2), 9000),
        ];
        foreach (var (date, steps) in records) DailyFold.Add(days, date, 0, steps, DailyFold.DayStartUnixMs(date, 0) + 3_600_000);

        var week = DailyFold.Summarize(days, DailyFold.WeekDays);   // Jan 27 .. Feb 2
        Assert.Equal(Date(2026, 2, 2), week.ThroughDate);
        Assert.Equal(5, week.DaysWithData);
        Assert.Equal(8000 + 6000 + 7000 + 5500 + 9000, week.Total);
        Assert.Equal(35500 / 5.0, week.PerDayMean);
        Assert.Equal(35500 / 6.0, week.ValueMean);   // six records
        Assert.Equal(2500, week.Min);
        Assert.Equal(9000, week.Max);

        var month = DailyFold.Summarize(days, DailyFold.MonthDays);   // Jan 4 .. Feb 2
        Assert.Equal(6, month.DaysWithData);
        Assert.Equal(39500, month.Total);
        Assert.Equal(7, month.Count);

        // Leap-year February into March: Feb 28 and Mar 1 2028 are one day apart, Feb 29 between them.
        var leap = new MetricDays();
        DailyFold.Add(leap, Date(2028, 2, 22), 0, 1, 0);
        DailyFold.Add(leap, Date(2028, 2, 23), 0, 2, 0);
        DailyFold.Add(leap, Date(2028, 2, 29), 0, 3, 0);
        DailyFold.Add(leap, Date(2028, 3, 1), 0, 4, 0);
        var leapWeek = DailyFold.Summarize(leap, DailyFold.WeekDays);   // Feb 24 .. Mar 1
        Assert.Equal(2, leapWeek.DaysWithData);
        Assert.Equal(7, leapWeek.Total);
    }

    [Fact]
    public void Days_that_leave_the_30_day_window_are_dropped_and_the_window_moves_with_the_latest_day()
    {
        var days = new MetricDays();
        var first = Date(2026, 10, 1);
        for (var i = 0; i < 45; i++) DailyFold.Add(days, first + i, 0, i, 0);
        Assert.Equal(DailyFold.MonthDays, days.Count);
        Assert.Equal(first + 15, days[0].LocalDate);
        var month = DailyFold.Summarize(days, DailyFold.MonthDays);
        Assert.Equal(30, month.DaysWithData);
        Assert.Equal(Enumerable.Range(15, 30).Sum(), month.Total);
        Assert.Equal(15, month.Min);
        // A gap: the next day with data is 40 days later; the window holds only it.
        var index = DailyFold.Add(days, first + 84, 0, 100, 0);
        Assert.Equal(0, index);
        Assert.Equal(1, DailyFold.Summarize(days, DailyFold.MonthDays).DaysWithData);
    }

    [Fact]
    public void A_daylight_saving_day_of_23_or_25_hours_is_one_local_day_and_keeps_its_first_offset()
    {
        var newYork = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");
        int Offset(long ms) => (int)newYork.GetUtcOffset(DateTimeOffset.FromUnixTimeMilliseconds(ms)).TotalMinutes;

        // 2026-03-08: clocks go 02:00 EST → 03:00 EDT; the local day is 23 hours long.
        var spring = new MetricDays();
        long[] springTimes = [Ms("2026-03-08T00:30:00-05:00"), Ms("2026-03-08T01:59:00-05:00"), Ms("2026-03-08T03:01:00-04:00"), Ms("2026-03-08T23:59:00-04:00")];
        foreach (var t in springTimes)
        {
            Assert.Equal(Date(2026, 3, 8), DailyFold.LocalDate(t, Offset(t)));
            DailyFold.Add(spring, DailyFold.LocalDate(t, Offset(t)), Offset(t), 1, t);
        }
        var nextMorning = Ms("2026-03-09T00:00:00-04:00");
        Assert.Equal(Date(2026, 3, 9), DailyFold.LocalDate(nextMorning, Offset(nextMorning)));
        Assert.Equal(1, spring.Count);
        Assert.Equal(4, spring[0].Count);
        Assert.Equal(-300, spring[0].UtcOffsetMinutes);
        Assert.Equal(Ms("2026-03-08T00:00:00-05:00"), spring[0].DayStartUnixMs);
        Assert.Equal(23 * 3_600_000L, nextMorning - spring[0].DayStartUnixMs);

        // 2026-11-01: 02:00 EDT → 01:00 EST; 25 hours, the hour 01:00-02:00 twice.
        var autumn = new MetricDays();
        long[] autumnTimes = [Ms("2026-11-01T01:30:00-04:00"), Ms("2026-11-01T01:30:00-05:00"), Ms("2026-11-01T23:30:00-05:00")];
        foreach (var t in autumnTimes) DailyFold.Add(autumn, DailyFold.LocalDate(t, Offset(t)), Offset(t), 10, t);
        Assert.Equal(1, autumn.Count);
        Assert.Equal(Date(2026, 11, 1), autumn[0].LocalDate);
        Assert.Equal(3, autumn[0].Count);
        Assert.Equal(-240, autumn[0].UtcOffsetMinutes);
        Assert.Equal(25 * 3_600_000L, Ms("2026-11-02T00:00:00-05:00") - autumn[0].DayStartUnixMs);
    }

    [Fact]
    public void A_record_is_late_beyond_the_grace_after_its_day_ended_or_outside_the_30_day_window()
    {
        const long graceMs = 48 * 3_600_000L;
        var days = new MetricDays();
        var dec3 = Date(2026, 12, 3);
        DailyFold.Add(days, dec3, 0, 1, Ms("2026-12-03T12:00:00Z"));
        // Dec 1 ended at Dec 2 00:00Z: exactly 48 h before Dec 4 00:00Z is still inside, a millisecond later is not.
        Assert.Null(DailyFold.CheckLate(days, "steps", Date(2026, 12, 1), 0, Ms("2026-12-04T00:00:00Z"), graceMs));
        var late = DailyFold.CheckLate(days, "steps", Date(2026, 12, 1), 0, Ms("2026-12-04T00:00:00.001Z"), graceMs);
        Assert.NotNull(late);
        Assert.Contains("2026-12-01", late);
        Assert.Contains("48 h", late);
        Assert.Contains("Insights:GraceHours", late);
        // The offset moves the day's end: at +14:00 Dec 1 ended at Dec 1 10:00Z, so 48 h later is Dec 3 10:00Z.
        Assert.Null(DailyFold.CheckLate(days, "steps", Date(2026, 12, 1), 840, Ms("2026-12-03T10:00:00Z"), graceMs));
        Assert.NotNull(DailyFold.CheckLate(days, "steps", Date(2026, 12, 1), 840, Ms("2026-12-03T10:00:00.001Z"), graceMs));
        // Before any record there is no stream time: nothing is late.
        Assert.Null(DailyFold.CheckLate(null, "steps", Date(2000, 1, 1), 0, long.MinValue, graceMs));
        // A grace longer than the window: the window decides.
        var outside = DailyFold.CheckLate(days, "steps", dec3 - 30, 0, Ms("2026-12-03T12:00:00Z"), 40 * 24 * 3_600_000L);
        Assert.Contains("30-day window", outside);
        Assert.Null(DailyFold.CheckLate(days, "steps", dec3 - 29, 0, Ms("2026-12-03T12:00:00Z"), 40 * 24 * 3_600_000L));
    }

    [Fact]
    public void The_topology_connects_both_stores_and_provisions_their_changelogs() =>
        Assert.Equal(["insights-insights-days-changelog", "insights-insights-seen-changelog"], InsightsTopology.Create().ChangelogTopics().Order());

    [Theory]
    [InlineData(841)]
    [InlineData(-841)]
    [InlineData(int.MinValue)]
    public void An_offset_beyond_14_hours_is_refused_naming_the_field(int offset) =>
        Assert.Contains("utc_offset_minutes", DailyFold.CheckOffset(offset));

    [Fact]
    public void The_state_codec_round_trips()
    {
        var state = new InsightsUserState { StreamTimeUnixMs = Ms("2026-12-03T12:00:00Z") };
        foreach (var (metric, n) in new[] { ("steps", 3), ("heart_rate", 30) })
            for (var i = 0; i < n; i++) DailyFold.Add(state.For(metric), Date(2026, 11, 1) + i, -300, 60 + i, Ms("2026-11-01T12:00:00Z") + i * DailyFold.MsPerDay);
        var decoded = InsightsUserStateSerDes.Instance.Decode(InsightsUserStateSerDes.Instance.Encode(state));
        Assert.Equal(state.StreamTimeUnixMs, decoded.StreamTimeUnixMs);
        foreach (var (metric, days) in state.Metrics)
            Assert.Equal(days.Days.ToArray(), decoded.Find(metric)!.Days.ToArray());
        var seen = new SeenMetric("steps", Date(2026, 12, 3), 2, 12345, "steps|1|2|steps");
        Assert.Equal(seen, SeenMetricSerDes.Instance.Decode(SeenMetricSerDes.Instance.Encode(seen)));
        Assert.Throws<FormatException>(() => InsightsUserStateSerDes.Instance.Decode([9, 0, 0]));
    }
}
