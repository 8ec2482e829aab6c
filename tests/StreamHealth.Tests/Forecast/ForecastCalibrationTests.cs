using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Quantiles;
using StreamHealth.Gateway.Cgm;
using static StreamHealth.Tests.Forecast.ForecastFixtures;

namespace StreamHealth.Tests.Forecast;

/// <summary>Issue 14's calibration and bounds in the serving path: the metadata's <c>calibration</c> and
/// <c>bounds_mg_dl</c> blocks, as the forecast consumer and the gateway apply them (<see cref="CalibratedQuantiles"/>).
/// Fixture: Fixtures/calibrated-metadata.json (hand-written τ: band 0 identity, band 1 wider, band 2 shifted up,
/// band 3 shifted down with its own last step; bounds 40–400) beside a copy of the tiny model.</summary>
public sealed class ForecastCalibrationTests : IDisposable
{
    private static readonly string FixtureMetadata = Path.Combine(Path.GetDirectoryName(TinyModel)!, "calibrated-metadata.json");
    private readonly string _dir = Directory.CreateTempSubdirectory("streamhealth-calibration-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The tiny model copied beside <paramref name="metadata"/> (the fixture's, or a changed one) as model.json.</summary>
    private string ModelWith(string? metadata = null)
    {
        var model = Path.Combine(_dir, "model.onnx");
        File.Copy(TinyModel, model, overwrite: true);
        File.WriteAllText(Path.ChangeExtension(model, ".json"), metadata ?? File.ReadAllText(FixtureMetadata));
        return model;
    }

    private static float[] OneGaussian(float mean, float sd, int horizon = 12) => [.. Enumerable.Repeat(mean, horizon)];

    [Fact]
    public void A_model_without_a_calibration_block_serves_the_raw_mixture_quantiles_clamped_to_39_and_401()
    {
        using var forecaster = OnnxGlucoseForecaster.Open(Options());
        Assert.True(forecaster.Calibration.IsIdentity);
        Assert.Equal((39, 401), (forecaster.Quantiles.MinMgDl, forecaster.Quantiles.MaxMgDl));
        Wave(140).CopyTo(forecaster.Window(0));
        var samples = forecaster.Run(1);
        double[] levels = [0.05, 0.25, 0.75, 0.95];
        float[] median = new float[12], bands = new float[48], rawMedian = new float[12], rawBands = new float[48];
        Assert.True(forecaster.Quantiles.Summarize(Wave(140)[^1], samples.MeansOf(0), samples.StdsOf(0), 10, median, bands));
        // The raw mixture, step by step (samples are sample-major: sample i's step h at i × 12 + h).
        var means = samples.MeansOf(0).ToArray();
        var sds = samples.StdsOf(0).ToArray();
        for (var h = 0; h < 12; h++)
        {
            var m = Enumerable.Range(0, 10).Select(i => (double)means[i * 12 + h]).ToArray();
            var s = Enumerable.Range(0, 10).Select(i => (double)sds[i * 12 + h]).ToArray();
            rawMedian[h] = (float)MixtureQuantiles.Quantile(m, s, 0.5, 0);
            for (var k = 0; k < levels.Length; k++) rawBands[k * 12 + h] = (float)MixtureQuantiles.Quantile(m, s, levels[k], Gaussian.Quantile(levels[k]));
        }
        Assert.Equal(rawMedian, median);
        Assert.Equal(rawBands, bands);
    }

    [Fact]
    public void Known_levels_map_to_known_quantiles_by_band_of_the_last_value_and_by_step()
    {
        var calibration = ForecastCalibration.Load(ModelWith(), 12);
        Assert.False(calibration.IsIdentity);
        var q = calibration.For([0.05, 0.25, 0.75, 0.9, 0.95]);
        Assert.Equal((40, 400), (q.MinMgDl, q.MaxMgDl));
        // One sample N(100, 10²) at every step: the τ-quantile is 100 + 10 Φ⁻¹(τ), Φ⁻¹ from Python's statistics.NormalDist.
        var means = OneGaussian(100, 10);
        var sds = OneGaussian(10, 10);
        var median = new float[12];
        var bands = new float[5 * 12];

        // Band 2 (180 ≤ 200 < 250): τ(0.5) = 0.6, τ(0.05) = 0.1, τ(0.25) = 0.35, τ(0.75) = 0.85, τ(0.9) = 0.85 + ¾·(0.97 − 0.85) = 0.94, τ(0.95) = 0.97.
        Assert.True(q.Summarize(200f, means, sds, 1, median, bands));
        Assert.Equal(100 + 10 * 0.2533471031357998, median[0], 1e-4);
        Assert.Equal(100 + 10 * -1.2815515655446008, bands[0 * 12], 1e-4);
        Assert.Equal(100 + 10 * -0.3853204664075676, bands[1 * 12], 1e-4);
        Assert.Equal(100 + 10 * 1.0364333894937894, bands[2 * 12], 1e-4);
        Assert.Equal(100 + 10 * 1.5547735945968528, bands[3 * 12 + 7], 1e-4);
        Assert.Equal(100 + 10 * 1.8807936081512504, bands[4 * 12 + 11], 1e-4);
        Assert.Equal(0.94, q.MappedLevel(2, 5, 3), 12);

        // Band 3 (≥ 250): its median τ is 0.3 at steps 0-10 and 0.4 at the last step.
        Assert.True(q.Summarize(250f, means, sds, 1, median, bands));
        Assert.Equal(100 + 10 * -0.5244005127080407, median[0], 1e-4);
        Assert.Equal(100 + 10 * -0.2533471031357998, median[11], 1e-4);

        // 70 is band 1 (lower-inclusive): τ(0.95) = 0.98; 69.9 is band 0, the identity.
        Assert.True(q.Summarize(70f, means, sds, 1, median, bands));
        Assert.Equal(100 + 10 * 2.053748910631822, bands[4 * 12], 1e-4);
        Assert.Equal(100, median[3], 1e-4);
        Assert.True(q.Summarize(69.9f, means, sds, 1, median, bands));
        Assert.Equal(100 + 10 * 1.6448536269514729, bands[4 * 12], 1e-4);

        // The fixture's bounds clamp: N(395, 10²)'s 95 % quantile is above 400.
        Assert.True(q.Summarize(100f, OneGaussian(395, 10), sds, 1, median, bands));
        Assert.Equal(400f, bands[4 * 12]);
    }

    [Fact]
    public async Task The_forecaster_the_consumer_and_the_gateway_share_applies_its_metadata_calibration_and_bounds()
    {
        var model = ModelWith();
        var options = Options();
        options.ModelPath = model;
        using var forecaster = OnnxGlucoseForecaster.Open(options);
        Assert.Equal("tiny-forecaster-calibrated-fixture", forecaster.ModelVersion);
        var window = Flat(200);   // band 2: the median is served at τ = 0.6
        window.CopyTo(forecaster.Window(0));
        var samples = forecaster.Run(1);
        var median = new float[12];
        var bands = new float[4 * 12];
        Assert.True(forecaster.Quantiles.Summarize(window[^1], samples.MeansOf(0), samples.StdsOf(0), 10, median, bands));
        var m = new double[10];
        var s = new double[10];
        for (var h = 0; h < 12; h++)
        {
            for (var i = 0; i < 10; i++) (m[i], s[i]) = (samples.MeansOf(0)[i * 12 + h], samples.StdsOf(0)[i * 12 + h]);
            var atSixty = MixtureQuantiles.Quantile(m, s, 0.6, Gaussian.Quantile(0.6));
            var raw = MixtureQuantiles.Quantile(m, s, 0.5, 0);
            Assert.Equal(atSixty, median[h], 1e-3);
            Assert.True(median[h] - raw > 0.01, $"step {h}: the calibrated median {median[h]} should be above the raw one {raw}");
            Assert.Equal(MixtureQuantiles.Quantile(m, s, 0.97, Gaussian.Quantile(0.97)), bands[3 * 12 + h], 1e-3);
        }

        // The gateway's engine (same options, same seed, same first batch) publishes exactly that.
        using var engine = new ForecastEngine(options, NullLogger<ForecastEngine>.Instance);
        var fromGateway = await engine.ForecastAsync(window);
        Assert.Equal(median, fromGateway.MedianMgDl);
        Assert.Equal(bands.AsSpan(3 * 12, 12).ToArray(), fromGateway.Bands[3].GlucoseMgDl);

        // Configured bounds override the metadata's.
        options.MinGlucoseMgDl = 150;
        options.MaxGlucoseMgDl = 199;
        using var bounded = OnnxGlucoseForecaster.Open(options);
        Assert.Equal((150, 199), (bounded.Quantiles.MinMgDl, bounded.Quantiles.MaxMgDl));
        window.CopyTo(bounded.Window(0));
        samples = bounded.Run(1);
        Assert.True(bounded.Quantiles.Summarize(window[^1], samples.MeansOf(0), samples.StdsOf(0), 10, median, bands));
        Assert.All(median, v => Assert.Equal(199f, v));
    }

    [Fact]
    public void Configured_levels_outside_the_calibration_grid_are_refused_at_load_naming_the_setting_and_the_file()
    {
        var options = Options();
        options.ModelPath = ModelWith();
        options.Quantiles = [0.005, 0.5];
        var e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
        Assert.Equal($"Forecast:Quantiles:0 = 0.005: outside the calibration grid [0.01, 0.99] of {Path.ChangeExtension(options.ModelPath, ".json")} (calibration.levels)", e.Message);
    }

    [Theory]
    [InlineData("levels not increasing", "calibration.levels[3] 0.2 does not increase (previous 0.25)")]
    [InlineData("level at 0", "calibration.levels[0] 0 is not strictly between 0 and 1")]
    [InlineData("tau at 1", "calibration.mapped_levels[1][4][6] 1 is outside [1e-6, 1 − 1e-6]")]
    [InlineData("tau not increasing", "calibration.mapped_levels[3][11][2] 0.01 does not increase (previous 0.02)")]
    [InlineData("3 bands", "calibration.mapped_levels has 3 bands; expected shape [4 bands][12 steps][7 levels]")]
    [InlineData("11 steps", "calibration.mapped_levels[2] has 11 steps; expected shape [4 bands][12 steps][7 levels]")]
    [InlineData("6 levels", "calibration.mapped_levels[0][0] has 6 levels; expected shape [4 bands][12 steps][7 levels]")]
    [InlineData("levels missing", "calibration.levels is missing")]
    [InlineData("bounds crossed", "bounds_mg_dl min 300, max 200: must satisfy 0 ≤ min < max ≤ 1000 mg/dL")]
    [InlineData("tau a string", "calibration.mapped_levels[0][0][0] is not a number")]
    public void A_malformed_calibration_is_refused_at_load_naming_the_file_and_the_field(string change, string problem)
    {
        var json = JsonNode.Parse(File.ReadAllText(FixtureMetadata))!;
        var c = json["calibration"]!;
        var mapped = c["mapped_levels"]!.AsArray();
        switch (change)
        {
            case "levels not increasing": c["levels"]![3] = 0.2; break;
            case "level at 0": c["levels"]![0] = 0.0; break;
            case "tau at 1": mapped[1]![4]![6] = 1.0; break;
            case "tau not increasing": mapped[3]![11]![2] = 0.01; break;
            case "3 bands": mapped.RemoveAt(3); break;
            case "11 steps": mapped[2]!.AsArray().RemoveAt(0); break;
            case "6 levels": mapped[0]![0]!.AsArray().RemoveAt(6); break;
            case "levels missing": c.AsObject().Remove("levels"); break;
            case "bounds crossed": json["bounds_mg_dl"] = new JsonObject { ["min"] = 300, ["max"] = 200 }; break;
            case "tau a string": mapped[0]![0]![0] = "0.01"; break;
        }
        var options = Options();
        options.ModelPath = ModelWith(json.ToJsonString());
        var e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
        Assert.Equal($"model metadata {Path.ChangeExtension(options.ModelPath, ".json")}: {problem}", e.Message);
    }

    [Theory]
    [InlineData(0.0, null, "Forecast:MinGlucoseMgDl = 0: must be above 0 and below 1000 mg/dL")]
    [InlineData(null, 1001.0, "Forecast:MaxGlucoseMgDl = 1001: must be above 0 and at most 1000 mg/dL")]
    [InlineData(200.0, 100.0, "Forecast:MaxGlucoseMgDl = 100: must be above MinGlucoseMgDl (200)")]
    public void Configured_bounds_are_validated(double? min, double? max, string error)
    {
        var options = Options();
        options.MinGlucoseMgDl = min;
        options.MaxGlucoseMgDl = max;
        Assert.Equal([error], options.Validate());
    }

    /// <summary>Extreme windows through the shipped model (Model/glucose-forecaster.onnx): the fast drop of issue 14
    /// (…186, 171, 150, 115, 87) on to 40, a plateau at 401, flat at 39, jumps between the edges, a rise into 401.</summary>
    public static TheoryData<string> ExtremeWindows() => ["drop to 40", "plateau 401", "flat 39", "39 then 401", "401 then 39", "rise to 401"];

    private static float[] Extreme(string name) => name switch
    {
        "drop to 40" => [.. Enumerable.Repeat(190f, 88), 186, 171, 150, 115, 87, 64, 48, 40],
        "plateau 401" => Flat(401),
        "flat 39" => Flat(39),
        "39 then 401" => [.. Enumerable.Repeat(39f, 48), .. Enumerable.Repeat(401f, 48)],
        "401 then 39" => [.. Enumerable.Repeat(401f, 48), .. Enumerable.Repeat(39f, 48)],
        "rise to 401" => [.. Enumerable.Repeat(250f, 88), 280, 310, 340, 370, 390, 400, 401, 401],
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(ExtremeWindows))]
    public void Every_quantile_of_the_shipped_model_stays_within_the_bounds_for_extreme_inputs(string name)
    {
        var window = Extreme(name);
        foreach (var (min, max) in new (double?, double?)[] { (null, null), (60, 300) })
        {
            var options = new ForecastOptions { Seed = 7, MaxBatchSize = 4, MinGlucoseMgDl = min, MaxGlucoseMgDl = max };
            using var forecaster = OnnxGlucoseForecaster.Open(options);
            var (low, high) = (min ?? 39, max ?? 401);
            window.CopyTo(forecaster.Window(0));
            var samples = forecaster.Run(1);
            var median = new float[12];
            var bands = new float[4 * 12];
            Assert.True(forecaster.Quantiles.Summarize(window[^1], samples.MeansOf(0), samples.StdsOf(0), samples.Samples, median, bands));
            Assert.All(median.Concat(bands), v => Assert.InRange(v, low, high));
            if (min is not null && window[^1] >= 400) Assert.Contains(300f, median);   // the clamp engaged, not merely a tame model
            if (min is not null && window[^1] <= 40) Assert.Contains(60f, median);
        }
    }
}
