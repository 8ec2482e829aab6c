using StreamHealth.Forecast;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Forecast;

/// <summary>The forecaster tests' model: Fixtures/tiny-forecaster.onnx, a small random network with the production
/// model's interface (see Fixtures/make_fixture_model.py): its mean is the window's average plus at most 3 mg/dL.</summary>
internal static class ForecastFixtures
{
    public static string TinyModel { get; } = Path.Combine(Repo.Root, "tests", "StreamHealth.Tests", "Forecast", "Fixtures", "tiny-forecaster.onnx");

    /// <summary>The fixture's mean is the window average + 3·tanh(·): a flat window's forecast stays this close to its level.</summary>
    public const double TinyModelMaxOffsetMgDl = 3;

    public static ForecastOptions Options(long? seed = 42, int samples = 10, int maxBatchSize = 64) => new()
    {
        ModelPath = TinyModel,
        Seed = seed,
        McSamples = samples,
        MaxBatchSize = maxBatchSize,
    };

    /// <summary>An ordinary-looking 8-hour window: a slow wave around <paramref name="level"/> mg/dL.</summary>
    public static float[] Wave(double level, int steps = 96, double amplitude = 25, double phase = 0) =>
        [.. Enumerable.Range(0, steps).Select(i => (float)(level + amplitude * Math.Sin(phase + i / 9.0)))];

    public static float[] Flat(double level, int steps = 96) => [.. Enumerable.Repeat((float)level, steps)];
}
