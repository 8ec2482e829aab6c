namespace StreamHealth.Forecast.Evaluation;

/// <summary>The figures of <c>streamhealth forecast evaluate</c> for one method on one set of windows (definitions:
/// README, "Glucose forecasting: evaluating the model on your population"; <c>Training/evaluate.py</c> mirrors them). Errors e_h = point_h − y_h in mg/dL.
/// Calibration figures are NaN for a method without quantiles.</summary>
public sealed record ForecastMetricsResult(
    int Windows,
    double SqrtMedianWindowMse,
    double MedianWindowMae,
    double Rmse30,
    double Rmse60,
    double MeanCalibrationError,
    double Coverage50,
    double Coverage90,
    double MeanSignedError60,
    double[] MeanSignedError60ByBand,
    int[] WindowsByBand);

/// <summary>Accumulates windows of one method. The quantiles it is given are those at <see cref="Levels"/> (0.05,
/// 0.10, …, 0.95), level-major: <c>quantiles[k × horizon + h]</c>.</summary>
public sealed class ForecastMetrics(int horizon = GlucoBenchWindows.HorizonSteps)
{
    /// <summary>α of the mean calibration error: 0.05, 0.10, …, 0.95.</summary>
    public static readonly double[] Levels = [.. Enumerable.Range(1, 19).Select(i => Math.Round(i * 0.05, 2))];
    /// <summary>Bands of the window's last input (lower-inclusive): &lt; 70, 70–180, 180–250, ≥ 250 mg/dL.</summary>
    public static readonly double[] BandEdgesMgDl = [70, 180, 250];
    public const int Level05 = 0, Level25 = 4, Level50 = 9, Level75 = 14, Level95 = 18;

    private readonly List<double> _windowMse = [];
    private readonly List<double> _windowMae = [];
    private double _squares30, _squares60, _signed60;
    private readonly long[] _below = new long[Levels.Length];
    private long _pairs, _in50, _in90;
    private readonly double[] _signedByBand = new double[BandEdgesMgDl.Length + 1];
    private readonly int[] _windowsByBand = new int[BandEdgesMgDl.Length + 1];

    public int Windows => _windowMse.Count;

    public static int Band(double lastMgDl)
    {
        for (var b = 0; b < BandEdgesMgDl.Length; b++)
            if (lastMgDl < BandEdgesMgDl[b]) return b;
        return BandEdgesMgDl.Length;
    }

    /// <param name="lastInputMgDl">The window's last input value (its band).</param>
    /// <param name="point">The point forecast per step (the calibrated median for the model).</param>
    /// <param name="quantiles">Empty, or the quantiles at <see cref="Levels"/>, level-major.</param>
    /// <param name="truth">The 12 targets.</param>
    public void Add(double lastInputMgDl, ReadOnlySpan<float> point, ReadOnlySpan<float> quantiles, ReadOnlySpan<float> truth)
    {
        double squares = 0, absolute = 0;
        for (var h = 0; h < horizon; h++)
        {
            var e = (double)point[h] - truth[h];
            squares += e * e;
            absolute += Math.Abs(e);
        }
        _windowMse.Add(squares / horizon);
        _windowMae.Add(absolute / horizon);
        var e30 = (double)point[5] - truth[5];
        var e60 = (double)point[horizon - 1] - truth[horizon - 1];
        _squares30 += e30 * e30;
        _squares60 += e60 * e60;
        _signed60 += e60;
        var band = Band(lastInputMgDl);
        _signedByBand[band] += e60;
        _windowsByBand[band]++;
        if (quantiles.IsEmpty) return;
        for (var h = 0; h < horizon; h++)
        {
            var y = truth[h];
            for (var k = 0; k < Levels.Length; k++)
                if (y <= quantiles[k * horizon + h]) _below[k]++;
            if (quantiles[Level25 * horizon + h] <= y && y <= quantiles[Level75 * horizon + h]) _in50++;
            if (quantiles[Level05 * horizon + h] <= y && y <= quantiles[Level95 * horizon + h]) _in90++;
            _pairs++;
        }
    }

    public ForecastMetricsResult Result()
    {
        var n = Windows;
        double calibration = double.NaN;
        if (_pairs > 0)
        {
            calibration = 0;
            for (var k = 0; k < Levels.Length; k++) calibration += Math.Abs((double)_below[k] / _pairs - Levels[k]);
            calibration /= Levels.Length;
        }
        return new ForecastMetricsResult(n,
            Math.Sqrt(Median(_windowMse)),
            Median(_windowMae),
            Math.Sqrt(_squares30 / n),
            Math.Sqrt(_squares60 / n),
            calibration,
            _pairs > 0 ? (double)_in50 / _pairs : double.NaN,
            _pairs > 0 ? (double)_in90 / _pairs : double.NaN,
            _signed60 / n,
            [.. _signedByBand.Select((s, b) => _windowsByBand[b] > 0 ? s / _windowsByBand[b] : double.NaN)],
            [.. _windowsByBand]);
    }

    /// <summary>The median; of an even count, the mean of the two middle values (numpy's).</summary>
    public static double Median(List<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.ToArray();
        Array.Sort(sorted);
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
    }
}
