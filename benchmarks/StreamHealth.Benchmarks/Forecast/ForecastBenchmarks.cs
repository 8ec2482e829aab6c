using BenchmarkDotNet.Attributes;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Quantiles;

namespace StreamHealth.Benchmarks.Forecast;

/// <summary>The forecast's pure maths: the standard normal CDF, one mixture quantile, and one request's summary
/// (median + 4 bands × 12 steps from 10 Monte Carlo Gaussians = 60 root searches), the part of a batch that scales
/// with requests × steps × levels rather than with the model.</summary>
/// <remarks>Inputs look like MC dropout output: per step, 10 means within a few mg/dL of each other around a slow
/// rise, σ growing with the horizon (5 → 25 mg/dL), as the trained model's are.</remarks>
[MemoryDiagnoser]
public class MixtureQuantileBenchmarks
{
    private const int Samples = 10, Horizon = 12;
    private readonly double[] _levels = [0.05, 0.25, 0.75, 0.95];
    private double[] _levelZs = [];
    private readonly float[] _means = new float[Samples * Horizon];
    private readonly float[] _sds = new float[Samples * Horizon];
    private readonly double[] _stepMeans = new double[Samples];
    private readonly double[] _stepSds = new double[Samples];
    private readonly float[] _median = new float[Horizon];
    private readonly float[] _bands = new float[4 * Horizon];

    private CalibratedQuantiles _calibrated = null!;

    [GlobalSetup]
    public void Setup()
    {
        _levelZs = [.. _levels.Select(Gaussian.Quantile)];
        // A non-identity calibration of the metadata's shape (4 bands × 12 steps × 23 levels, τ pulled 20 % towards 0.5):
        // the served path's lookups, not the identity shortcut.
        double[] grid = [0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995];
        var row = "[" + string.Join(",", grid.Select(a => (0.5 + 0.8 * (a - 0.5)).ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";
        var steps = "[" + string.Join(",", Enumerable.Repeat(row, Horizon)) + "]";
        var json = $"{{\"calibration\": {{\"band_edges_mg_dl\": [70, 180, 250], \"levels\": [{string.Join(",", grid.Select(a => a.ToString(System.Globalization.CultureInfo.InvariantCulture)))}], " +
                   $"\"mapped_levels\": [{string.Join(",", Enumerable.Repeat(steps, 4))}]}}}}";
        using var document = System.Text.Json.JsonDocument.Parse(json);
        _calibrated = ForecastCalibration.Parse(document.RootElement, "benchmark", Horizon).For(_levels);
        var random = new Random(5);
        for (var s = 0; s < Samples; s++)
            for (var h = 0; h < Horizon; h++)
            {
                _means[s * Horizon + h] = 120 + 1.5f * h + (float)(random.NextDouble() * 6 - 3);
                _sds[s * Horizon + h] = 5 + 1.7f * h + (float)random.NextDouble();
            }
        for (var s = 0; s < Samples; s++)
        {
            _stepMeans[s] = _means[s * Horizon + 6];
            _stepSds[s] = _sds[s * Horizon + 6];
        }
    }

    [Benchmark(OperationsPerInvoke = 64)]
    public double NormalCdf()
    {
        var sum = 0.0;
        for (var i = 0; i < 64; i++) sum += Gaussian.Cdf(-4 + i / 8.0);
        return sum;
    }

    /// <summary>One level of one step: the unit of work 60 of which make a forecast.</summary>
    [Benchmark]
    public double OneQuantileOf10Samples() => MixtureQuantiles.Quantile(_stepMeans, _stepSds, 0.95, _levelZs[3]);

    /// <summary>What the consumer and the gateway do per request since issue 14: the same root searches at the band's
    /// calibrated levels (precomputed τ and Φ⁻¹(τ)), clamped to the bounds.</summary>
    [Benchmark]
    public bool SummarizeOneRequestCalibrated() => _calibrated.Summarize(130f, _means, _sds, Samples, _median, _bands);
}

/// <summary>One ONNX Runtime call of the forecaster: <see cref="Requests"/> windows × 10 MC samples (rows) through the
/// model, the cost that MaxBatchSize amortises. Model: FORECAST_MODEL if set, else the build's Model/glucose-forecaster.onnx.</summary>
[MemoryDiagnoser]
public class ForecastInferenceBenchmarks
{
    private OnnxGlucoseForecaster _forecaster = null!;

    [Params(1, 16, 64, 256, 1024)]
    public int Requests { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var options = new ForecastOptions
        {
            ModelPath = Environment.GetEnvironmentVariable("FORECAST_MODEL") ?? ForecastOptions.DefaultModelPath,
            Seed = 1, McSamples = 10, MaxBatchSize = Requests, IntraOpThreads = 1,
        };
        _forecaster = OnnxGlucoseForecaster.Open(options);
        for (var r = 0; r < Requests; r++)
        {
            var window = _forecaster.Window(r);
            for (var t = 0; t < window.Length; t++) window[t] = 110 + 30 * MathF.Sin((r + t) / 9f);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _forecaster.Dispose();

    [Benchmark]
    public float RunBatch() => _forecaster.Run(Requests).Means[0];
}
