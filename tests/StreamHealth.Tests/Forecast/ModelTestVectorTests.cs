using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Quantiles;

namespace StreamHealth.Tests.Forecast;

/// <summary>The committed model against the test vectors its training run published
/// (processors/Forecast/Model/glucose-forecaster.testvectors.json, written by Training/train.py): the ONNX Runtime the
/// build ships computes what torch and the training-time ONNX Runtime computed. Run after every ONNX Runtime upgrade.</summary>
public sealed class ModelTestVectorTests
{
    private static readonly string ModelPath = new ForecastOptions().ResolvedModelPath;
    private static readonly JsonElement Vectors =
        JsonDocument.Parse(File.ReadAllBytes(Path.ChangeExtension(ModelPath, ".testvectors.json"))).RootElement;

    private static float[][] Windows() =>
        [.. Vectors.GetProperty("windows").EnumerateArray().Select(w => w.GetProperty("glucose_mg_dl").EnumerateArray().Select(v => v.GetSingle()).ToArray())];

    /// <summary>[a][b] or [a][b][c] of a JSON array, flattened in order.</summary>
    private static double[] Flat(JsonElement array) => array.ValueKind == JsonValueKind.Array
        ? [.. array.EnumerateArray().SelectMany(Flat)]
        : [array.GetDouble()];

    /// <summary>A session on the model file as committed (its own Dropout seeds 7001 and 7002, not the forecaster's
    /// rewritten ones), one intra-op thread, one Run over every window repeated <paramref name="repeats"/> times.</summary>
    private static (float[] Means, float[] Stds) RunCommittedModel(bool disableEliminateDropout, int repeats)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1 };
        if (disableEliminateDropout) options.AddSessionConfigEntry("optimization.disable_specified_optimizers", OnnxGlucoseForecaster.EliminateDropout);
        using var session = new InferenceSession(ModelPath, options);
        var windows = Windows();
        var input = windows.SelectMany(w => Enumerable.Repeat(w, repeats).SelectMany(x => x)).ToArray();
        using var value = OrtValue.CreateTensorValueFromMemory(input, [windows.Length * repeats, 96]);
        using var run = new RunOptions();
        using var outputs = session.Run(run, [OnnxGlucoseForecaster.InputName], [value],
            [OnnxGlucoseForecaster.MeanOutputName, OnnxGlucoseForecaster.StdOutputName]);
        return (outputs[0].GetTensorDataAsSpan<float>().ToArray(), outputs[1].GetTensorDataAsSpan<float>().ToArray());
    }

    private static void AssertClose(double[] expected, float[] actual, double toleranceMgDl, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var worst = Enumerable.Range(0, expected.Length).MaxBy(i => Math.Abs(expected[i] - actual[i]));
        Assert.True(Math.Abs(expected[worst] - actual[worst]) <= toleranceMgDl,
            $"{what}[{worst}]: published {expected[worst]}, ONNX Runtime {actual[worst]} mg/dL (tolerance {toleranceMgDl})");
    }

    [Fact]
    public void With_dropout_optimized_away_the_model_gives_the_published_deterministic_forecast()
    {
        var deterministic = Vectors.GetProperty("deterministic");
        var tolerance = deterministic.GetProperty("tolerance_mg_dl").GetDouble();
        var (means, stds) = RunCommittedModel(disableEliminateDropout: false, repeats: 1);
        AssertClose(Flat(deterministic.GetProperty("mean_mg_dl")), means, tolerance, "mean_mg_dl");
        AssertClose(Flat(deterministic.GetProperty("std_mg_dl")), stds, tolerance, "std_mg_dl");
    }

    /// <summary>Bit-level agreement of the dropout masks: the same seeds give the same Bernoulli stream in this ONNX Runtime
    /// as in the one that wrote the vectors (1.29.0). The published values are rounded to 4 decimals.</summary>
    [Fact]
    public void A_fresh_session_draws_the_published_monte_carlo_samples_from_the_models_own_seeds()
    {
        var example = Vectors.GetProperty("mixture_example");
        Assert.True(example.GetProperty("exact_ort_reproduction").GetBoolean());
        var (means, stds) = RunCommittedModel(disableEliminateDropout: true, repeats: 10);
        AssertClose(Flat(example.GetProperty("samples_mean_mg_dl")), means, 1e-4, "samples_mean_mg_dl");
        AssertClose(Flat(example.GetProperty("samples_std_mg_dl")), stds, 1e-4, "samples_std_mg_dl");
    }

    [Fact]
    public void The_mixture_quantiles_of_the_published_samples_are_the_published_quantiles()
    {
        var example = Vectors.GetProperty("mixture_example");
        var tolerance = example.GetProperty("quantile_tolerance_mg_dl").GetDouble();
        var levels = Flat(example.GetProperty("quantile_levels"));
        var means = Flat(example.GetProperty("samples_mean_mg_dl"));
        var stds = Flat(example.GetProperty("samples_std_mg_dl"));
        var expected = Flat(example.GetProperty("quantiles_mg_dl"));   // [window][step][level]
        const int samples = 10, horizon = 12;
        var windows = means.Length / (samples * horizon);
        var actual = new float[expected.Length];
        var m = new double[samples];
        var s = new double[samples];
        for (var w = 0; w < windows; w++)
            for (var h = 0; h < horizon; h++)
            {
                for (var i = 0; i < samples; i++)
                {
                    m[i] = means[(w * samples + i) * horizon + h];
                    s[i] = stds[(w * samples + i) * horizon + h];
                }
                for (var k = 0; k < levels.Length; k++)
                    actual[(w * horizon + h) * levels.Length + k] = (float)MixtureQuantiles.Quantile(m, s, levels[k], Gaussian.Quantile(levels[k]));
            }
        AssertClose(expected, actual, tolerance, "quantiles_mg_dl");
    }

    /// <summary>The forecaster's own sessions (seeds rewritten from Forecast:Seed) sample the distribution torch's MC
    /// dropout sampled: over 1000 samples per window the average mean lies within 5 standard errors of torch's, and the
    /// spread of the means and the average std within 15 % (the published rule).</summary>
    [Fact]
    public void A_thousand_forecaster_samples_agree_with_the_published_monte_carlo_statistics()
    {
        var summary = Vectors.GetProperty("mc_summary");
        var expectedMean = Flat(summary.GetProperty("mean_of_mean_mg_dl"));
        var expectedSpread = Flat(summary.GetProperty("std_of_mean_mg_dl"));
        var expectedStd = Flat(summary.GetProperty("mean_of_std_mg_dl"));
        const int samples = 1000, horizon = 12;
        var windows = Windows();
        using var forecaster = OnnxGlucoseForecaster.Open(new ForecastOptions { Seed = 20261202, McSamples = samples, MaxBatchSize = windows.Length });
        for (var w = 0; w < windows.Length; w++) windows[w].CopyTo(forecaster.Window(w));
        var result = forecaster.Run(windows.Length);
        for (var w = 0; w < windows.Length; w++)
            for (var h = 0; h < horizon; h++)
            {
                double sum = 0, sumSquares = 0, stdSum = 0;
                for (var i = 0; i < samples; i++)
                {
                    var mean = (double)result.Means[(w * samples + i) * horizon + h];
                    sum += mean;
                    sumSquares += mean * mean;
                    stdSum += result.Stds[(w * samples + i) * horizon + h];
                }
                var j = w * horizon + h;
                var average = sum / samples;
                var spread = Math.Sqrt(Math.Max(sumSquares / samples - average * average, 0));
                var standardError = expectedSpread[j] / Math.Sqrt(samples);
                Assert.True(Math.Abs(average - expectedMean[j]) <= 5 * standardError,
                    $"window {w} step {h}: average mean {average:F4}, torch {expectedMean[j]} ± {standardError:F4} mg/dL");
                Assert.InRange(spread / expectedSpread[j], 0.85, 1.15);
                Assert.InRange(stdSum / samples / expectedStd[j], 0.85, 1.15);
            }
    }
}
