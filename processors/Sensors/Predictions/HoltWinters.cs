using StreamHealth.Sensors.Metrics;

namespace StreamHealth.Sensors.Predictions;

/// <summary>Smoothing parameters of <see cref="HoltWinters"/>: level α, trend β, season γ, trend damping φ.</summary>
public readonly record struct HoltWintersParameters(double Alpha, double Beta, double Gamma, double Phi);

/// <summary>One forecast step: the point and its 80 % and 95 % prediction intervals (the series' unit).</summary>
public readonly record struct ForecastPoint(int Horizon, double Point, double Low80, double High80, double Low95, double High95);

/// <summary>
/// Additive Holt-Winters with a damped trend (Hyndman &amp; Athanasopoulos, "Forecasting: principles and practice", §8.3),
/// updated one observation at a time, so a node's model follows its data as it arrives. Season length in steps (24 for
/// hourly data with a daily cycle). Prediction intervals come from the model's own h-step errors on the data it has seen
/// (empirical, per horizon), not from a distributional formula. Written here: MathNet.Numerics has no exponential
/// smoothing, and the model is a few lines.
/// </summary>
public sealed class HoltWinters
{
    private readonly HoltWintersParameters _p;
    private readonly int _season;
    private readonly int _horizon;
    private readonly double[] _seasonal;
    private double _level, _trend;
    private int _seen;
    private readonly List<double> _warmup = [];
    // Forecasts made at earlier steps, waiting for their targets: ring by target step.
    private readonly double[][] _pending;
    private readonly List<double>[] _errors;

    public HoltWinters(HoltWintersParameters parameters, int seasonLength, int horizon)
    {
        if (seasonLength < 2) throw new ArgumentOutOfRangeException(nameof(seasonLength), seasonLength, "at least 2");
        if (horizon < 1) throw new ArgumentOutOfRangeException(nameof(horizon), horizon, "at least 1");
        foreach (var (name, v) in new[] { ("Alpha", parameters.Alpha), ("Beta", parameters.Beta), ("Gamma", parameters.Gamma), ("Phi", parameters.Phi) })
            if (!(v is >= 0 and <= 1)) throw new ArgumentOutOfRangeException(name, v, "in [0, 1]");
        _p = parameters;
        _season = seasonLength;
        _horizon = horizon;
        _seasonal = new double[seasonLength];
        _pending = new double[horizon][];
        for (var i = 0; i < horizon; i++) _pending[i] = new double[horizon + 1];
        _errors = new List<double>[horizon + 1];
        for (var h = 0; h <= horizon; h++) _errors[h] = [];
    }

    /// <summary>Whether two full seasons have been seen (the model starts from them).</summary>
    public bool Ready => _seen >= 2 * _season;

    /// <summary>Observations seen so far.</summary>
    public int Seen => _seen;

    /// <summary>Adds the next observation; returns the one-step-ahead error it made (NaN while warming up).</summary>
    public double Update(double value)
    {
        if (!double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), value, "an observation must be a finite number");
        var t = _seen++;
        if (t < 2 * _season)
        {
            _warmup.Add(value);
            if (t == 2 * _season - 1) Initialise();
            return double.NaN;
        }
        // Score the forecasts made for this step h steps ago.
        for (var h = 1; h <= _horizon; h++)
        {
            var made = _pending[(t - h) % _horizon];
            if (t - h >= 2 * _season - 1 && !double.IsNaN(made[h])) _errors[h].Add(value - made[h]);
        }
        var s = _seasonal[t % _season];
        var oneStep = _level + _p.Phi * _trend + s;
        var (previousLevel, previousTrend) = (_level, _trend);
        _level = _p.Alpha * (value - s) + (1 - _p.Alpha) * (previousLevel + _p.Phi * previousTrend);
        _trend = _p.Beta * (_level - previousLevel) + (1 - _p.Beta) * _p.Phi * previousTrend;
        _seasonal[t % _season] = _p.Gamma * (value - previousLevel - _p.Phi * previousTrend) + (1 - _p.Gamma) * s;
        Remember(t);
        return value - oneStep;
    }

    private void Initialise()
    {
        // Level: the second season's mean carried to its last step; trend: the change of the mean from the first season to the
        // second, per step; seasonal: the two seasons' deviations from their trend line, averaged.
        double first = 0, second = 0;
        for (var i = 0; i < _season; i++) { first += _warmup[i]; second += _warmup[_season + i]; }
        first /= _season;
        second /= _season;
        _trend = (second - first) / _season;
        // Each step's deviation from its season's mean moved along the trend to that step (the mean sits mid-season).
        for (var i = 0; i < _season; i++)
        {
            var alongTrend = _trend * (i - (_season - 1) / 2.0);
            _seasonal[i] = (_warmup[i] - first - alongTrend + _warmup[_season + i] - second - alongTrend) / 2;
        }
        _level = second + _trend * (_season - 1) / 2.0;
        Remember(2 * _season - 1);
        _warmup.Clear();
    }

    private void Remember(int t)
    {
        var slot = _pending[t % _horizon];
        slot[0] = double.NaN;
        for (var h = 1; h <= _horizon; h++) slot[h] = Point(t, h);
    }

    /// <summary>The point forecast h steps after step t (t = the last step seen).</summary>
    private double Point(int t, int h)
    {
        var damped = 0.0;
        var phi = 1.0;
        for (var i = 1; i <= h; i++) { phi *= _p.Phi; damped += phi; }
        return _level + damped * _trend + _seasonal[(t + h) % _season];
    }

    /// <summary>The point forecast <paramref name="h"/> steps after the last observation.</summary>
    public double PointForecast(int h) => Ready ? Point(_seen - 1, h) : throw new InvalidOperationException("the model is not ready");

    /// <summary>Mean squared error of the 1 … <paramref name="horizon"/>-step forecasts made over <paramref name="series"/> for
    /// targets at or after step <paramref name="scoreFrom"/>: the yardstick to fit the parameters and to choose the season length.</summary>
    public static double HorizonMse(IReadOnlyList<double> series, HoltWintersParameters p, int seasonLength, int horizon, int scoreFrom)
    {
        var model = new HoltWinters(p, seasonLength, 1);
        double sum = 0;
        var n = 0;
        for (var t = 0; t < series.Count; t++)
        {
            model.Update(series[t]);
            if (!model.Ready) continue;
            for (var h = 1; h <= horizon && t + h < series.Count; h++)
            {
                if (t + h < scoreFrom) continue;
                var e = series[t + h] - model.PointForecast(h);
                sum += e * e;
                n++;
            }
        }
        return n == 0 ? double.MaxValue : sum / n;
    }

    /// <summary>The next <c>horizon</c> steps with 80 % and 95 % intervals from this model's own h-step errors so far
    /// (their empirical 10/90 and 2.5/97.5 % quantiles); with fewer than 10 errors for a horizon the intervals are NaN.</summary>
    public ForecastPoint[] Forecast()
    {
        if (!Ready) throw new InvalidOperationException($"the model needs two seasons ({2 * _season} observations) first, has {_seen}");
        var result = new ForecastPoint[_horizon];
        var t = _seen - 1;
        for (var h = 1; h <= _horizon; h++)
        {
            var point = Point(t, h);
            var e = _errors[h];
            if (e.Count < 10)
            {
                result[h - 1] = new ForecastPoint(h, point, double.NaN, double.NaN, double.NaN, double.NaN);
                continue;
            }
            var sorted = e.ToArray();
            Array.Sort(sorted);
            result[h - 1] = new ForecastPoint(h, point, point + WindowStatistics.Percentile(sorted, 0.10), point + WindowStatistics.Percentile(sorted, 0.90),
                point + WindowStatistics.Percentile(sorted, 0.025), point + WindowStatistics.Percentile(sorted, 0.975));
        }
        return result;
    }

    /// <summary>Parameters with the lowest squared error over the forecast horizon (1 … <paramref name="horizon"/> steps ahead
    /// from every step of <paramref name="training"/>, since that is how the forecasts are used), from a small grid.</summary>
    public static HoltWintersParameters Fit(IReadOnlyList<double> training, int seasonLength, int horizon)
    {
        if (training.Count < 3 * seasonLength) throw new ArgumentException($"fitting needs three seasons ({3 * seasonLength} observations), got {training.Count}", nameof(training));
        var best = (Mse: double.MaxValue, P: new HoltWintersParameters(0.2, 0.01, 0.1, 0.98));
        foreach (var alpha in new[] { 0.02, 0.05, 0.1, 0.2, 0.3, 0.5 })
        foreach (var beta in new[] { 0.0, 0.01, 0.05 })
        foreach (var gamma in new[] { 0.01, 0.05, 0.1, 0.2, 0.3, 0.5 })
        foreach (var phi in new[] { 0.8, 0.9, 0.98 })
        {
            var p = new HoltWintersParameters(alpha, beta, gamma, phi);
            var mse = HorizonMse(training, p, seasonLength, horizon, scoreFrom: 0);
            if (mse < best.Mse) best = (mse, p);
        }
        return best.P;
    }
}
