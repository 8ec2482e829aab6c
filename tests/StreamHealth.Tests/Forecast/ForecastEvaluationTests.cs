using System.Text.Json;
using StreamHealth.Cgm.Formats;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Evaluation;
using StreamHealth.Forecast.Inference;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Forecast.ForecastFixtures;

namespace StreamHealth.Tests.Forecast;

/// <summary>`streamhealth forecast evaluate`'s maths, on cases small enough to compute by hand: the metrics
/// (<see cref="ForecastMetrics"/>), the GlucoBench windowing (against hand-built series and against Training/data.py's own
/// output on a shared file), and the evaluator's baselines on a ramp.</summary>
public sealed class ForecastEvaluationTests
{
    private const int H = 12;

    private static float[] Constant(float v) => [.. Enumerable.Repeat(v, H)];

    /// <summary>Quantiles at the 19 levels, level-major: y − 1 below α = 0.5 and y + 1 from it (<paramref name="allAbove"/>: y + 1 at every level).</summary>
    private static float[] Around(float y, bool allAbove)
    {
        var q = new float[ForecastMetrics.Levels.Length * H];
        for (var k = 0; k < ForecastMetrics.Levels.Length; k++)
            for (var h = 0; h < H; h++)
                q[k * H + h] = allAbove || k >= ForecastMetrics.Level50 ? y + 1 : y - 1;
        return q;
    }

    [Fact]
    public void The_metrics_equal_a_hand_computed_case()
    {
        var truth = Constant(100);
        var metrics = new ForecastMetrics();
        // A: e = +2 everywhere, last 60 (band < 70). B: e = −3, last 100 (70–180). C: e = +6 at steps 1-6, 0 after, last 200
        // (180–250). D: e = −1, last 300 (≥ 250), every quantile above y.
        float[] c = [.. Enumerable.Repeat(106f, 6), .. Enumerable.Repeat(100f, 6)];
        metrics.Add(60, Constant(102), Around(100, false), truth);
        metrics.Add(100, Constant(97), Around(100, false), truth);
        metrics.Add(200, c, Around(100, false), truth);
        metrics.Add(300, Constant(99), Around(100, true), truth);
        var r = metrics.Result();

        Assert.Equal(4, r.Windows);
        // Window MSEs 4, 9, 18 (36 · 6 / 12), 1 → median (4 + 9) / 2 = 6.5; MAEs 2, 3, 3, 1 → median 2.5.
        Assert.Equal(Math.Sqrt(6.5), r.SqrtMedianWindowMse, 12);
        Assert.Equal(2.5, r.MedianWindowMae, 12);
        // e at 30 min: 2, −3, 6, −1 → √(50 / 4); at 60 min: 2, −3, 0, −1 → √(14 / 4); mean signed at 60: −2 / 4.
        Assert.Equal(Math.Sqrt(12.5), r.Rmse30, 12);
        Assert.Equal(Math.Sqrt(3.5), r.Rmse60, 12);
        Assert.Equal(-0.5, r.MeanSignedError60, 12);
        Assert.Equal([2, -3, 0, -1], r.MeanSignedError60ByBand);
        Assert.Equal([1, 1, 1, 1], r.WindowsByBand);
        // y ≤ q_α: below 0.5 only in D (a quarter of the pairs), from 0.5 always. |0.25 − α| over α = 0.05..0.45 sums to
        // 1.0, |1 − α| over α = 0.5..0.95 to 2.75: (1.0 + 2.75) / 19.
        Assert.Equal(3.75 / 19, r.MeanCalibrationError, 12);
        // D's y is below its 25 % and 5 % quantiles: 3 of 4 windows covered.
        Assert.Equal(0.75, r.Coverage50, 12);
        Assert.Equal(0.75, r.Coverage90, 12);
    }

    [Fact]
    public void A_method_without_quantiles_has_no_calibration_figures_and_an_empty_band_no_bias()
    {
        var metrics = new ForecastMetrics();
        metrics.Add(100, Constant(101), default, Constant(100));
        var r = metrics.Result();
        Assert.True(double.IsNaN(r.MeanCalibrationError) && double.IsNaN(r.Coverage50) && double.IsNaN(r.Coverage90));
        Assert.Equal(1, r.MeanSignedError60);
        Assert.True(double.IsNaN(r.MeanSignedError60ByBand[0]));
        Assert.Equal([0, 1, 0, 0], r.WindowsByBand);
    }

    [Fact]
    public void Windowing_averages_duplicates_interpolates_gaps_up_to_15_minutes_and_splits_longer_ones()
    {
        const long m = 60_000;
        // Out of order; 10 min twice (100 and 110 → 105); 10 → 25 and 25 → 40 min are 15-minute gaps (interpolated); 40 → 56 min
        // is 16 (split); a lone reading at 56 min is no segment; 100 and 104 min make a segment whose 5-minute grid holds 100 min alone.
        long[] times = [5 * m, 0, 10 * m, 10 * m, 25 * m, 40 * m, 56 * m, 100 * m, 104 * m];
        double[] values = [90, 80, 100, 110, 120, 150, 10, 70, 74];
        var segments = GlucoBenchWindows.Segments(times, values);
        Assert.Equal(2, segments.Count);
        // Grid 0, 5, …, 40 min: 80, 90, 105, then 105 → 120 and 120 → 150 over 15 minutes each.
        Assert.Equal([80f, 90f, 105f, 110f, 115f, 120f, 130f, 140f, 150f], segments[0]);
        Assert.Equal([70f], segments[1]);
        Assert.Equal(0, GlucoBenchWindows.CountWindows(segments));
        Assert.Equal(3, GlucoBenchWindows.CountWindows([new float[110]]));
    }

    /// <summary>Training/data.py's windows of the D1NAMO people (python3 with numpy: segments(), windows(); sums of the
    /// float32 windows in float64, printed with repr): the C# windowing is the training script's.</summary>
    [Theory]
    [InlineData("001", 1306, 23364682.984760284, 2890948.938720703)]
    [InlineData("003", 76, 825799.1594543457, 111443.59869384766)]
    [InlineData("007", 774, 10737310.085922241, 1371779.3679962158)]
    [InlineData("009", 0, 0.0, 0.0)]
    public void The_windows_of_a_shared_file_are_those_of_Training_data_py(string person, int windows, double inputSum, double targetSum)
    {
        var times = new List<long>();
        var values = new List<double>();
        using (var reader = CgmFormats.Open(Path.Combine(Repo.SharedData, "cgm", "dubosson2018_t1d_9_subjects.csv")))
            while (reader.TryRead(out var row))
                if (reader.PersonId == person) { times.Add(row.TimeMs); values.Add(row.GlucoseMgDl); }
        var segments = GlucoBenchWindows.Segments([.. times], [.. values]);
        Assert.Equal(windows, GlucoBenchWindows.CountWindows(segments));
        double inputs = 0, targets = 0;
        foreach (var (segment, start) in GlucoBenchWindows.Windows(segments))
        {
            for (var t = 0; t < 96; t++) inputs += segment[start + t];
            for (var t = 96; t < 108; t++) targets += segment[start + t];
        }
        Assert.Equal(inputSum, inputs, 1e-4);
        Assert.Equal(targetSum, targets, 1e-4);
    }

    /// <summary>A ramp of 1 mg/dL per step (109 steps: 2 windows, last inputs 195 and 196): last value misses by
    /// h mg/dL at step h; a regression that extrapolates the last step (W[95][h] = h + 2, W[94][h] = −(h + 1)) is exact.</summary>
    [Fact]
    public void The_evaluator_scores_the_baselines_of_the_metadata_on_a_ramp_as_computed_by_hand()
    {
        var ramp = Enumerable.Range(0, 109).Select(t => 100f + t).ToArray();
        var weights = new double[96][];
        for (var t = 0; t < 96; t++) weights[t] = new double[H];
        for (var h = 0; h < H; h++) (weights[95][h], weights[94][h]) = (h + 2, -(h + 1));
        var metadata = JsonSerializer.Serialize(new
        {
            baselines = new
            {
                linear_regression = new { weights, bias = new double[H], residual_sd_mg_dl = Enumerable.Repeat(10.0, H) },
                last_value = new { residual_sd_mg_dl = Enumerable.Repeat(1e-3, H) },
            },
        });
        using var json = JsonDocument.Parse(metadata);
        var baselines = ForecastBaselines.Parse(json.RootElement, "test", 96, H);
        using var forecaster = OnnxGlucoseForecaster.Open(Options(maxBatchSize: 1));
        // Batch 1: the two windows go to ONNX Runtime in two calls, as a big file goes in chunks.
        var reports = new ForecastEvaluator(forecaster, baselines, batchSize: 1).Evaluate([new EvaluationPerson("ramp", [ramp])], perPerson: true);
        Assert.Equal(["all", "ramp"], reports.Select(r => r.Scope));

        var last = reports[0].LastValue;
        Assert.Equal(2, last.Windows);
        Assert.Equal(Math.Sqrt(650.0 / 12), last.SqrtMedianWindowMse, 4);   // mean of h² over h = 1..12
        Assert.Equal(6.5, last.MedianWindowMae, 4);
        Assert.Equal(6, last.Rmse30, 4);
        Assert.Equal(12, last.Rmse60, 4);
        Assert.Equal(-12, last.MeanSignedError60, 4);
        Assert.Equal([0, 0, 2, 0], last.WindowsByBand);
        // A σ of 0.001 mg/dL: every y is above every quantile. Fraction below is 0 at every α: mean α = 0.5; no pair covered.
        Assert.Equal(0.5, last.MeanCalibrationError, 6);
        Assert.Equal(0, last.Coverage90);

        var linear = reports[0].LinearRegression!;
        Assert.Equal(0, linear.SqrtMedianWindowMse, 3);
        Assert.Equal(0, linear.Rmse60, 3);
        // Exact point, σ 10: y is the median, so the fraction below is 1 from α = 0.5 (float ties: y ≤ q'_0.5 = y).
        Assert.Equal(1, linear.Coverage50);
        Assert.Equal(reports[0].Model.Windows, reports[1].Model.Windows);
        Assert.Equal(reports[0].Model.SqrtMedianWindowMse, reports[1].Model.SqrtMedianWindowMse);
    }
}
