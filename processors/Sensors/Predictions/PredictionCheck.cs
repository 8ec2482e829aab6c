using System.Globalization;

namespace StreamHealth.Sensors.Predictions;

/// <summary>How a forecaster did on one series: MASE of the model and of the seasonal-naive forecast (both scaled by the
/// training part's seasonal-naive MAE, Hyndman &amp; Koehler 2006), and how often the truth fell in the 80 % and 95 % intervals.</summary>
public sealed record PredictionScore(string Series, int Hours, int Forecasts, double ModelMase, double SeasonalNaiveMase, double Coverage80,
    double Coverage95, double DailyAutocorrelation, HoltWintersParameters Parameters, int SeasonHours)
{
    /// <summary>The model's MAE over the seasonal-naive forecast's on the same forecasts: below 1, the model is better.</summary>
    public double RelativeMae => ModelMase / SeasonalNaiveMase;
    public bool BeatsSeasonalNaive => ModelMase < SeasonalNaiveMase;
}

/// <summary>The errors of forecasts against the truth, beside the seasonal-naive forecast's on the same targets, and how often
/// the truth fell in the 80 % and 95 % intervals (of the points that have them): what every prediction check reports.</summary>
public sealed class ForecastTally
{
    private double _model, _naive;
    private int _in80, _in95, _withIntervals;

    public int Count { get; private set; }
    public double ModelMae => _model / Count;
    public double NaiveMae => _naive / Count;
    public double Coverage80 => _withIntervals == 0 ? double.NaN : (double)_in80 / _withIntervals;
    public double Coverage95 => _withIntervals == 0 ? double.NaN : (double)_in95 / _withIntervals;

    public void Add(double truth, double seasonalNaive, in ForecastPoint p)
    {
        _model += Math.Abs(truth - p.Point);
        _naive += Math.Abs(truth - seasonalNaive);
        Count++;
        if (double.IsNaN(p.Low80)) return;
        _withIntervals++;
        if (truth >= p.Low80 && truth <= p.High80) _in80++;
        if (truth >= p.Low95 && truth <= p.High95) _in95++;
    }
}

/// <summary>The issue-16 check of the flow predictions: hourly series, the first 70 % to fit the parameters, then from every
/// midnight of the rest (rolling origin) the next 24 hours forecast, against the seasonal-naive forecast (the same hour
/// the day before). The model keeps updating through the test part, as it does on the stream.</summary>
public static class PredictionCheck
{
    public const int Season = 24, Week = 168, Horizon = 24;
    public const double TrainingFraction = 0.7;

    public static PredictionScore Score(string name, IReadOnlyList<double> hourly)
    {
        if (hourly.Count < 5 * Season) throw new ArgumentException($"{name}: {hourly.Count} hours; the check needs at least {5 * Season}", nameof(hourly));
        var split = (int)(hourly.Count * TrainingFraction);
        var training = hourly.Take(split).ToList();
        // The season: a day, or a week when the training part holds three (workdays and weekends differ in most demand),
        // whichever forecasts the training part's later half better.
        var (season, parameters) = (Season, HoltWinters.Fit(training, Season, Horizon));
        if (split >= 3 * Week)
        {
            var weekly = HoltWinters.Fit(training, Week, Horizon);
            if (HoltWinters.HorizonMse(training, weekly, Week, Horizon, 2 * Week) < HoltWinters.HorizonMse(training, parameters, Season, Horizon, 2 * Week))
                (season, parameters) = (Week, weekly);
        }
        var scale = 0.0;
        for (var t = Season; t < split; t++) scale += Math.Abs(hourly[t] - hourly[t - Season]);
        scale /= split - Season;
        if (scale == 0) scale = 1e-9;
        var model = new HoltWinters(parameters, season, Horizon);
        var tally = new ForecastTally();
        var forecasts = 0;
        for (var t = 0; t < hourly.Count; t++)
        {
            model.Update(hourly[t]);
            // An origin at every 24th hour of the test part with 24 hours ahead still in the data.
            if (t < split || (t - split) % Season != Season - 1 || t + Horizon >= hourly.Count || !model.Ready) continue;
            forecasts++;
            foreach (var f in model.Forecast()) tally.Add(hourly[t + f.Horizon], hourly[t + f.Horizon - Season], f);
        }
        return new PredictionScore(name, hourly.Count, forecasts, tally.ModelMae / scale, tally.NaiveMae / scale, tally.Coverage80, tally.Coverage95,
            Autocorrelation(training, Season), parameters, season);
    }

    /// <summary>Sample autocorrelation at <paramref name="lag"/>.</summary>
    public static double Autocorrelation(IReadOnlyList<double> x, int lag)
    {
        var mean = x.Average();
        double num = 0, den = 0;
        for (var i = 0; i < x.Count; i++)
        {
            den += (x[i] - mean) * (x[i] - mean);
            if (i >= lag) num += (x[i] - mean) * (x[i - lag] - mean);
        }
        return den == 0 ? 0 : num / den;
    }

    /// <summary>Readings at times (ms) to hourly means over whole hours from the first to the last; an hour without readings
    /// is interpolated linearly between its neighbours (a gap in a logger is not a zero flow).</summary>
    public static double[] Hourly(IEnumerable<(long TimeUnixMs, double Value)> readings)
    {
        var sums = new SortedDictionary<long, (double Sum, int Count)>();
        foreach (var (time, value) in readings)
        {
            var hour = time / 3_600_000;
            sums[hour] = sums.TryGetValue(hour, out var s) ? (s.Sum + value, s.Count + 1) : (value, 1);
        }
        if (sums.Count == 0) return [];
        var first = sums.Keys.First();
        var hours = new double[sums.Keys.Last() - first + 1];
        Array.Fill(hours, double.NaN);
        foreach (var (hour, (sum, count)) in sums) hours[hour - first] = sum / count;
        for (var i = 0; i < hours.Length; i++)
        {
            if (!double.IsNaN(hours[i])) continue;
            var j = i;
            while (double.IsNaN(hours[j])) j++;
            for (var k = i; k < j; k++) hours[k] = hours[i - 1] + (hours[j] - hours[i - 1]) * (k - i + 1) / (j - i + 1);
            i = j;
        }
        return hours;
    }

    /// <summary>A NAB timestamp ("2014-07-01 00:00:00", UTC) in ms.</summary>
    public static long NabTime(string timestamp) =>
        new DateTimeOffset(DateTime.ParseExact(timestamp, "yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture), TimeSpan.Zero).ToUnixTimeMilliseconds();
}
