using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Quantiles;

namespace StreamHealth.Forecast.Evaluation;

/// <summary>One person's windows: their id and their GlucoBench segments.</summary>
public sealed record EvaluationPerson(string Id, List<float[]> Segments);

/// <summary>The three methods' figures over one set of windows.</summary>
public sealed record EvaluationReport(string Scope, ForecastMetricsResult Model, ForecastMetricsResult LastValue, ForecastMetricsResult? LinearRegression);

/// <summary>Runs the shipped model (Monte Carlo samples through ONNX Runtime in chunks of the forecaster's batch, the
/// calibrated quantiles of the serving path at the 19 evaluation levels) and the metadata's baselines over every
/// window of the given people, in order: deterministic for a fixed seed.</summary>
public sealed class ForecastEvaluator
{
    private readonly OnnxGlucoseForecaster _forecaster;
    private readonly CalibratedQuantiles _quantiles;
    private readonly ForecastBaselines _baselines;
    private readonly int _batch;
    private readonly double[] _levelZs = [.. ForecastMetrics.Levels.Select(Gaussian.Quantile)];

    public ForecastEvaluator(OnnxGlucoseForecaster forecaster, ForecastBaselines baselines, int batchSize, double? minMgDl = null, double? maxMgDl = null)
    {
        _forecaster = forecaster;
        _quantiles = forecaster.Calibration.For(ForecastMetrics.Levels, minMgDl, maxMgDl);
        _baselines = baselines;
        _batch = batchSize;
    }

    public CalibratedQuantiles Quantiles => _quantiles;

    /// <summary>All windows together (scope "all"), and one report per person when <paramref name="perPerson"/>.</summary>
    public List<EvaluationReport> Evaluate(IReadOnlyList<EvaluationPerson> people, bool perPerson)
    {
        var all = new Methods(_baselines.HasLinearRegression);
        var each = perPerson ? people.Select(_ => new Methods(_baselines.HasLinearRegression)).ToArray() : null;
        var horizon = _forecaster.HorizonSteps;
        var inputs = _forecaster.InputSteps;
        var pending = new List<(float[] Segment, int Start, int Person)>(_batch);
        var median = new float[horizon];
        var bands = new float[ForecastMetrics.Levels.Length * horizon];
        var point = new float[horizon];
        var baseBands = new float[bands.Length];

        void Flush()
        {
            if (pending.Count == 0) return;
            for (var i = 0; i < pending.Count; i++) pending[i].Segment.AsSpan(pending[i].Start, inputs).CopyTo(_forecaster.Window(i));
            var samples = _forecaster.Run(pending.Count);
            for (var i = 0; i < pending.Count; i++)
            {
                var (segment, start, person) = pending[i];
                var x = segment.AsSpan(start, inputs);
                var y = segment.AsSpan(start + inputs, horizon);
                var last = x[^1];
                if (!_quantiles.Summarize(last, samples.MeansOf(i), samples.StdsOf(i), samples.Samples, median, bands))
                    throw new ForecastModelException($"model {_forecaster.ModelVersion} returned a non-finite forecast for a window of person {people[person].Id}");
                all.Model.Add(last, median, bands, y);
                each?[person].Model.Add(last, median, bands, y);

                for (var h = 0; h < horizon; h++) point[h] = last;
                Gaussians(point, _baselines.LastValueResidualSd, baseBands, out var lastValueBands);
                all.LastValue.Add(last, point, lastValueBands ? baseBands : default, y);
                each?[person].LastValue.Add(last, point, lastValueBands ? baseBands : default, y);

                if (_baselines.LinearWeights is { } w && _baselines.LinearBias is { } b)
                {
                    for (var h = 0; h < horizon; h++)
                    {
                        var sum = b[h];
                        for (var t = 0; t < inputs; t++) sum += x[t] * w[t * horizon + h];
                        point[h] = (float)sum;
                    }
                    Gaussians(point, _baselines.LinearResidualSd, baseBands, out var linearBands);
                    all.LinearRegression!.Add(last, point, linearBands ? baseBands : default, y);
                    each?[person].LinearRegression!.Add(last, point, linearBands ? baseBands : default, y);
                }
            }
            pending.Clear();
        }

        for (var p = 0; p < people.Count; p++)
            foreach (var (segment, start) in GlucoBenchWindows.Windows(people[p].Segments))
            {
                pending.Add((segment, start, p));
                if (pending.Count == _batch) Flush();
            }
        Flush();

        var reports = new List<EvaluationReport> { all.Report("all") };
        if (each is not null) reports.AddRange(people.Select((person, p) => each[p].Report(person.Id)));
        return reports;
    }

    /// <summary>A baseline's quantiles: point_h + sd_h · Φ⁻¹(α), clamped; the point itself clamped too (its median).</summary>
    private void Gaussians(Span<float> point, double[]? sd, Span<float> bands, out bool made)
    {
        var horizon = point.Length;
        made = sd is not null;
        for (var h = 0; h < horizon; h++)
        {
            if (made)
                for (var k = 0; k < _levelZs.Length; k++)
                    bands[k * horizon + h] = (float)Math.Clamp(point[h] + sd![h] * _levelZs[k], _quantiles.MinMgDl, _quantiles.MaxMgDl);
            point[h] = (float)Math.Clamp(point[h], _quantiles.MinMgDl, _quantiles.MaxMgDl);
        }
    }

    private sealed class Methods(bool linear)
    {
        public ForecastMetrics Model { get; } = new();
        public ForecastMetrics LastValue { get; } = new();
        public ForecastMetrics? LinearRegression { get; } = linear ? new() : null;

        public EvaluationReport Report(string scope) => new(scope, Model.Result(), LastValue.Result(), LinearRegression?.Result());
    }
}
