using StreamHealth.Sensors.Predictions;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Sensors;

/// <summary>The flow predictions (issue 16): the Holt-Winters model, the hourly series and the check against seasonal naive.</summary>
public sealed class PredictionTests
{
    private static double Daily(int t) => 10 + 4 * Math.Sin(2 * Math.PI * (t % 24) / 24.0);

    [Fact]
    public void A_clean_seasonal_series_with_a_trend_is_forecast_exactly_once_learned()
    {
        var model = new HoltWinters(new HoltWintersParameters(0.3, 0.1, 0.1, 1.0), seasonLength: 24, horizon: 24);
        for (var t = 0; t < 24 * 20; t++) model.Update(Daily(t) + 0.05 * t);
        Assert.True(model.Ready);
        var forecast = model.Forecast();
        for (var h = 1; h <= 24; h++)
        {
            var t = 24 * 20 - 1 + h;
            Assert.Equal(Daily(t) + 0.05 * t, forecast[h - 1].Point, 6);
            Assert.True(forecast[h - 1].High95 - forecast[h - 1].Low95 < 1e-6, "no error seen, no width");
        }
    }

    [Fact]
    public void Intervals_come_from_the_models_own_errors_and_widen_with_noise()
    {
        var rng = new Random(4);
        var quiet = new HoltWinters(new HoltWintersParameters(0.2, 0.0, 0.1, 0.98), 24, 24);
        var noisy = new HoltWinters(new HoltWintersParameters(0.2, 0.0, 0.1, 0.98), 24, 24);
        for (var t = 0; t < 24 * 30; t++)
        {
            var e = rng.NextDouble() - 0.5;
            quiet.Update(Daily(t) + 0.1 * e);
            noisy.Update(Daily(t) + 2 * e);
        }
        var q = quiet.Forecast()[11];
        var n = noisy.Forecast()[11];
        Assert.True(q.Low95 <= q.Low80 && q.Low80 <= q.Point && q.Point <= q.High80 && q.High80 <= q.High95);
        Assert.True(n.High80 - n.Low80 > 5 * (q.High80 - q.Low80));
        Assert.Throws<InvalidOperationException>(() => new HoltWinters(new HoltWintersParameters(0.2, 0, 0.1, 1), 24, 24).Forecast());
        Assert.Throws<ArgumentOutOfRangeException>(() => quiet.Update(double.NaN));
        Assert.Equal("Alpha", Assert.Throws<ArgumentOutOfRangeException>(() => new HoltWinters(new HoltWintersParameters(1.5, 0, 0, 1), 24, 24)).ParamName);
    }

    [Fact]
    public void A_weekly_pattern_chooses_a_weekly_season_and_beats_yesterdays_values()
    {
        var rng = new Random(9);
        // Weekdays peak at 10 units, weekends at 4: "the same hour yesterday" is wrong every Saturday and Monday.
        var hourly = Enumerable.Range(0, 24 * 7 * 8).Select(t => ((t / 24) % 7 >= 5 ? 4 : 10) * (1 + Math.Sin(2 * Math.PI * (t % 24) / 24.0)) + rng.NextDouble()).ToArray();
        var score = PredictionCheck.Score("weekly", hourly);
        Assert.Equal(PredictionCheck.Week, score.SeasonHours);
        Assert.True(score.BeatsSeasonalNaive);
        Assert.True(score.ModelMase < 1 && score.RelativeMae < 0.5, $"MASE {score.ModelMase}, relative MAE {score.RelativeMae}");
        Assert.InRange(score.Coverage95, 0.85, 1.0);
        Assert.Throws<ArgumentException>(() => PredictionCheck.Score("short", new double[100]));
    }

    [Fact]
    public void Readings_become_hourly_means_with_gaps_interpolated()
    {
        const long H = 3_600_000;
        var hourly = PredictionCheck.Hourly([(0, 1.0), (H / 2, 3.0), (3 * H + 5, 8.0), (H + 10, 2.0)]);
        Assert.Equal([2.0, 2.0, 5.0, 8.0], hourly);     // hour 2 had no reading: halfway between 2 and 8
        Assert.Empty(PredictionCheck.Hourly([]));
        Assert.Equal(1_404_172_800_000, PredictionCheck.NabTime("2014-07-01 00:00:00"));
        Assert.Equal(1.0, PredictionCheck.Autocorrelation(Enumerable.Range(0, 480).Select(t => Daily(t)).ToArray(), 24), 1);
    }

    [Fact]
    public void The_command_reports_each_series_against_seasonal_naive()
    {
        var (code, stdout, stderr) = Repo.Run("dotnet", [ChildHost.HostDll, "sensors", "predict-check", "--days", "28",
            "--nab", Path.Combine(Repo.SharedData, "sensors", "nab")], timeoutMs: 120_000);
        Assert.True(code == 0, stderr);
        Assert.Contains("| simulator | dma-01-inflow flow (L/s) | 672 |", stdout);
        Assert.Contains("| NAB | realKnownCause/nyc_taxi.csv | 5160 |", stdout);
        Assert.Matches(@"NAB real series with a daily cycle \(ACF at 24 h ≥ 0.3\): \d+/\d+", stdout);
        var tooShort = Repo.Run("dotnet", [ChildHost.HostDll, "sensors", "predict-check", "--days", "3"]);
        Assert.Equal(2, tooShort.ExitCode);
        Assert.Contains("--days = 3: predict-check needs at least 5 days", tooShort.StdErr);
    }
}
