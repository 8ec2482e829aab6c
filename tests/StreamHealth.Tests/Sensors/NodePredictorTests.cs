using StreamHealth.Sensors.Districts;
using StreamHealth.Sensors.Predictions;

namespace StreamHealth.Tests.Sensors;

/// <summary>The pipeline's flow predictor (<see cref="NodePredictor"/>) and the district stage's byte formats.</summary>
public sealed class NodePredictorTests
{
    private const long Hour = 3_600_000, T0 = 1_780_272_000_000;   // a Monday, 00:00 UTC

    // A weekly pattern: weekdays one daily shape, weekends a higher, later one.
    private static double Demand(int hour)
    {
        var weekend = hour / 24 % 7 >= 5;
        var h = hour % 24;
        return (weekend ? 3 : 2) + Math.Sin((h - (weekend ? 9 : 7)) / 24.0 * 2 * Math.PI);
    }

    [Fact]
    public void Nothing_is_forecast_before_three_days_then_24_consecutive_hours_follow_the_daily_shape()
    {
        var p = new NodePredictor();
        for (var h = 0; h < 71; h++) p.Add(T0 + h * Hour, Demand(h));
        Assert.Null(p.Forecast());
        p.Add(T0 + 71 * Hour, Demand(71));
        var points = p.Forecast();
        Assert.NotNull(points);
        Assert.Equal(Enumerable.Range(1, 24), points.Select(x => x.Horizon));
        // Weekdays only so far: the next day is a weekday shaped as the three before it.
        for (var h = 1; h <= 24; h++) Assert.Equal(Demand(71 + h), points[h - 1].Point, 1);
    }

    [Fact]
    public void With_a_week_and_a_day_of_history_the_weekly_forecaster_wins_on_weekly_demand_and_gets_the_weekend_right()
    {
        var p = new NodePredictor();
        // Through Friday of the second week (11 days and 23 hours): the next 24 hours are Saturday.
        var last = 11 * 24 + 23;
        for (var h = 0; h <= last; h++) p.Add(T0 + h * Hour, Demand(h));
        var points = p.Forecast()!;
        Assert.Equal(NodePredictor.Method.SeasonalNaiveWeekly, p.LastMethod);
        for (var h = 1; h <= 24; h++) Assert.Equal(Demand(last + h), points[h - 1].Point, 6);
        // The intervals come from the winner's own errors over the last week: none here, so they hug the point.
        Assert.All(points, x => Assert.True(x.Low95 <= x.Low80 && x.Low80 <= x.Point + 1e-9 && x.Point <= x.High80 + 1e-9 && x.High80 <= x.High95));
    }

    /// <summary>A daily shape with independent noise (SD <paramref name="sd"/>), reproducible.</summary>
    private static double[] Noisy(int hours, double sd, int seed, Func<int, double>? level = null)
    {
        var rng = new Random(seed);
        var x = new double[hours];
        for (var h = 0; h < hours; h++)
        {
            var noise = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            x[h] = 10 + 3 * Math.Sin(h % 24 / 24.0 * 2 * Math.PI) + (level?.Invoke(h) ?? 0) + sd * noise;
        }
        return x;
    }

    [Fact]
    public void On_a_noisy_daily_series_the_forecast_beats_the_same_hour_yesterday_and_its_intervals_cover_about_their_share()
    {
        // Yesterday's hour carries yesterday's noise on top of today's: its error SD is √2 that of the noise. The combination
        // (or the smoothed model) averages the noise out.
        var x = Noisy(20 * 24, sd: 1, seed: 7);
        var p = new NodePredictor();
        double model = 0, naive = 0;
        int points = 0, in80 = 0, in95 = 0;
        for (var h = 0; h < x.Length - 24; h++)
        {
            p.Add(T0 + h * Hour, x[h]);
            if (h < 10 * 24 || (h + 1) % 24 != 0) continue;
            var forecast = p.Forecast()!;
            Assert.NotEqual(NodePredictor.Method.SeasonalNaiveDaily, p.LastMethod);
            foreach (var f in forecast)
            {
                var truth = x[h + f.Horizon];
                model += Math.Abs(truth - f.Point);
                naive += Math.Abs(truth - x[h + f.Horizon - 24]);
                points++;
                if (truth >= f.Low80 && truth <= f.High80) in80++;
                if (truth >= f.Low95 && truth <= f.High95) in95++;
            }
        }
        Assert.Equal(9 * 24, points);
        Assert.True(model < 0.85 * naive, $"model MAE {model / points:0.000}, seasonal naive {naive / points:0.000}");
        // On stationary noise the widening (IntervalWidening, measured on rougher data) over-covers a little: bounded both ways.
        Assert.InRange(in80 / (double)points, 0.75, 0.97);
        Assert.InRange(in95 / (double)points, 0.90, 1.0);
    }

    [Fact]
    public void Under_a_growing_leak_the_forecast_keeps_up_where_yesterdays_hour_lags_a_day_of_growth()
    {
        // From day 8 the flow grows 0.5 a day (a background leak): yesterday's hour is half a unit low all day, last week's 3.5.
        var x = Noisy(20 * 24, sd: 0.05, seed: 3, level: h => h < 8 * 24 ? 0 : 0.5 * (h - 8 * 24) / 24.0);
        var p = new NodePredictor();
        double model = 0, naive = 0;
        for (var h = 0; h < x.Length - 24; h++)
        {
            p.Add(T0 + h * Hour, x[h]);
            if (h < 14 * 24 || (h + 1) % 24 != 0) continue;
            var forecast = p.Forecast()!;
            Assert.NotEqual(NodePredictor.Method.SeasonalNaiveWeekly, p.LastMethod);
            foreach (var f in forecast)
            {
                model += Math.Abs(x[h + f.Horizon] - f.Point);
                naive += Math.Abs(x[h + f.Horizon] - x[h + f.Horizon - 24]);
            }
        }
        Assert.True(model < 0.8 * naive, $"model {model:0.00}, seasonal naive {naive:0.00}");
    }

    [Fact]
    public void Excluded_and_missing_hours_are_filled_a_replayed_hour_changes_nothing_and_the_state_round_trips()
    {
        var p = new NodePredictor();
        for (var h = 0; h < 100; h++)
        {
            if (h is >= 80 and < 84) continue;                                // four hours missing
            p.Add(T0 + h * Hour, h is >= 90 and < 93 ? double.NaN : Demand(h)); // three excluded (a burst)
        }
        Assert.False(p.Add(T0 + 99 * Hour, 1000));                          // a replay of the newest hour
        Assert.False(p.Add(T0 + 50 * Hour, 1000));
        var forecast = p.Forecast()!;
        var restored = NodePredictor.Restore(p.Save());
        Assert.Equal(p.LastHourUnixMs, restored.LastHourUnixMs);
        Assert.Equal(forecast, restored.Forecast());
        // A burst-sized value in the excluded hours would have pulled the level up; filled, the forecast stays on the shape.
        Assert.All(forecast, x => Assert.InRange(x.Point, 0.5, 3.5));
        Assert.Throws<ArgumentException>(() => p.Add(T0 + 100 * Hour + 1, 1));
        Assert.Throws<FormatException>(() => NodePredictor.Restore([9, 0, 0]));
        var truncated = p.Save()[..^8];
        Assert.Throws<FormatException>(() => NodePredictor.Restore(truncated));
    }

    [Fact]
    public void A_gap_longer_than_the_history_starts_the_history_again()
    {
        var p = new NodePredictor();
        for (var h = 0; h < 80; h++) p.Add(T0 + h * Hour, Demand(h));
        Assert.NotNull(p.Forecast());
        p.Add(T0 + (80 + NodePredictor.HistoryHours) * Hour, 2);
        Assert.Null(p.Forecast());
    }

    [Fact]
    public void The_district_stage_formats_round_trip()
    {
        var w = new NodeWindow("dma-01-meter-02", NodeKind.Meter, "flow", T0, 15, 15, 1, 2, 0.5, 2.5, 1.25, 0.4, 1.2, 2.4);
        Assert.Equal(w, NodeWindowCodec.Decode(NodeWindowCodec.Encode(w)));
        var empty = w with { ReadingCount = 0, Min = double.NaN, Max = double.NaN, Mean = double.NaN, StdDev = double.NaN, P50 = double.NaN, P95 = double.NaN };
        Assert.True(double.IsNaN(NodeWindowCodec.Decode(NodeWindowCodec.Encode(empty)).Mean));
        List<(string, byte[], byte[], long, string)> emissions =
        [
            ("sensors.anomalies", [1, 2], [3, 4, 5], T0, "sensors-anomaly:a:open"),
            ("sensors.quality", [], [6], T0 + 1, "sensors-quality:n:flow:15:1"),
        ];
        var decoded = DistrictTopology.DecodeOutbox(DistrictTopology.EncodeOutbox(emissions));
        Assert.Equal(emissions.Count, decoded.Count);
        for (var i = 0; i < emissions.Count; i++)
        {
            Assert.Equal(emissions[i].Item1, decoded[i].Topic);
            Assert.Equal(emissions[i].Item2, decoded[i].Key);
            Assert.Equal(emissions[i].Item3, decoded[i].Value);
            Assert.Equal(emissions[i].Item4, decoded[i].TimeUnixMs);
            Assert.Equal(emissions[i].Item5, decoded[i].OutputId);
        }
        // Keys order a district's windows by end, then a minute before the quarter hour ending with it.
        Assert.True(string.CompareOrdinal(DistrictTopology.PendingKey("d", w with { WindowMinutes = 1, WindowStartUnixMs = T0 + 14 * 60_000 }),
            DistrictTopology.PendingKey("d", w)) < 0);
        Assert.True(string.CompareOrdinal(DistrictTopology.PendingKey("d", w), DistrictTopology.PendingKey("d", w with { WindowStartUnixMs = T0 + 60_000 })) < 0);
    }
}
