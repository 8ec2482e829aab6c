using System.Buffers.Binary;

namespace StreamHealth.Sensors.Predictions;

/// <summary>
/// One node's flow prediction as the pipeline keeps it: the hourly means of the last <see cref="HistoryHours"/> hours (NaN for an
/// hour that was missing, unusable by the data-quality rules, or inside a burst: a burst is an event to repair, not demand to
/// forecast), Holt-Winters parameters fitted on that history once a day, and from every new hour the next
/// <see cref="HoltWinters"/> 24 hours with 80 % and 95 % intervals. The model is run again over the history for each forecast (a
/// few thousand steps), so the state is the history and the parameters only: bounded, and the same forecast after a restore.
/// The forecast is the best of four forecasters on the node's own recent history (<see cref="Forecast"/>); the state's format
/// did not change when the fourth came (it holds no forecaster's state).
/// A NaN hour is filled with the model's own one-step forecast (before the model is ready, with the same hour of the day
/// before, or the last value): the season stays aligned and an excluded hour teaches the model nothing.
/// </summary>
public sealed class NodePredictor
{
    public const int Season = 24, Horizon = 24, HistoryHours = 21 * 24, RefitEveryHours = 24;
    /// <summary>Forecasts start once this many hours are held, and at most a third of the last three days are NaN.</summary>
    public const int MinHours = 3 * Season;
    private const long HourMs = 3_600_000;
    private const byte Format = 1;

    private readonly double[] _hours = new double[HistoryHours];     // ring; _hours[(i + _next) % HistoryHours] for i = 0 … _count - 1 oldest first
    private int _next, _count;
    private long _lastHourUnixMs = long.MinValue;
    private HoltWintersParameters? _parameters;
    private long _fittedAtHourUnixMs = long.MinValue;

    /// <summary>The newest hour held (its start), or long.MinValue.</summary>
    public long LastHourUnixMs => _lastHourUnixMs;

    /// <summary>Adds the hour starting at <paramref name="hourStartUnixMs"/> (NaN: excluded). Hours in between are missing (NaN).
    /// An hour at or before the newest is a replay and changes nothing; returns whether it was added.</summary>
    public bool Add(long hourStartUnixMs, double valueOrNaN)
    {
        if (hourStartUnixMs % HourMs != 0) throw new ArgumentException($"{hourStartUnixMs}: not the start of an hour", nameof(hourStartUnixMs));
        if (hourStartUnixMs <= _lastHourUnixMs) return false;
        if (_lastHourUnixMs != long.MinValue)
        {
            var gap = (hourStartUnixMs - _lastHourUnixMs) / HourMs - 1;
            if (gap >= HistoryHours) _count = 0;
            else for (var i = 0; i < gap; i++) Push(double.NaN);
        }
        Push(double.IsFinite(valueOrNaN) ? valueOrNaN : double.NaN);
        _lastHourUnixMs = hourStartUnixMs;
        return true;
    }

    private void Push(double v)
    {
        if (_count < HistoryHours) _hours[(_next + _count++) % HistoryHours] = v;
        else
        {
            _hours[_next] = v;
            _next = (_next + 1) % HistoryHours;
        }
    }

    private double At(int i) => _hours[(_next + i) % HistoryHours];

    /// <summary>The forecasters a node's prediction is chosen from, by their recent error on its own history. The numbers are
    /// stable: the district stage names them in its output (<c>DistrictTopology.MethodName</c>).</summary>
    public enum Method : byte { HoltWintersDaily = 0, SeasonalNaiveDaily = 1, SeasonalNaiveWeekly = 2, Combined = 3 }

    /// <summary>The method of the last forecast.</summary>
    public Method LastMethod { get; private set; }

    /// <summary>Days of the same hour whose median is the seasonal profile (of the combination's two profile forecasters).</summary>
    public const int ProfileDays = 7;
    /// <summary>Day-to-day changes of the daily mean whose median is the profile-and-trend forecaster's trend: a median of three,
    /// so one level shift is not extrapolated as a trend.</summary>
    public const int TrendDays = 3;
    /// <summary>Half-life of an error's weight in the choice, by the age of its target: hours. A flat mean over the week kept
    /// choosing last week's winner for days after a level shift (NAB rds_cpu_utilization_cc0c53) or the start of a growing
    /// leak (simulator seed 1, dma-02).</summary>
    public const double ChoiceHalfLifeHours = 48;
    /// <summary>The intervals come from the winner's errors over this many days of origins (as many as the history holds),
    /// on measured hours only, each horizon pooled with its neighbours within <see cref="IntervalPoolHours"/>, and widened by
    /// <see cref="IntervalWidening"/>. One week of the winner's errors, filled hours included (the model against its own fill),
    /// covered 46-76 % (80 %) and 64-93 % (95 %): the winner is the one whose recent errors were smallest, and the weeks after
    /// are often rougher. The widening is measured (seeds 1-3 and NAB: 1.3 brings the meters to 80 % / 93 %); not a formula.</summary>
    public const int IntervalDays = 14, IntervalPoolHours = 2;
    public const double IntervalWidening = 1.3;
    private const int Methods = 4;

    /// <summary>The next 24 hours from the end of the newest hour, or null while the history is too short or too sparse.
    /// Four forecasters compete: Holt-Winters with a daily season (fitted once a day), the same hour the day before, the same
    /// hour the week before (once nine days of history hold a day of forecasts with a week behind them), and the combination:
    /// the mean of Holt-Winters, the same hour the day before, the median of the same hour over the last
    /// <see cref="ProfileDays"/> days, and that profile on the newest day's mean carried forward by the recent trend. The
    /// combination hedges: each single forecaster fails somewhere (the profile after a level shift, the naive copy on noisy
    /// series, the smoothed model behind a growing leak), their mean rarely fails badly. The one with the lowest mean absolute
    /// error over the 1-24-hour forecasts from every hour of the last week (at least the last day), recent targets weighing
    /// more (<see cref="ChoiceHalfLifeHours"/>), wins. Intervals: <see cref="IntervalDays"/>. Only data before an origin makes
    /// its forecast.</summary>
    public ForecastPoint[]? Forecast()
    {
        if (_count < MinHours) return null;
        var recentNaN = 0;
        for (var i = _count - MinHours; i < _count; i++) if (double.IsNaN(At(i))) recentNaN++;
        if (recentNaN > MinHours / 3) return null;
        var series = Filled(_parameters ?? new HoltWintersParameters(0.2, 0.01, 0.1, 0.9), out var measured);
        if (series.Count < MinHours) return null;    // missing hours at the start of the history are left out
        if (_parameters is null || _lastHourUnixMs - _fittedAtHourUnixMs >= RefitEveryHours * HourMs)
        {
            _parameters = HoltWinters.Fit(series, Season, Horizon);
            _fittedAtHourUnixMs = _lastHourUnixMs;
            series = Filled(_parameters.Value, out measured);
        }
        var n = series.Count;
        // Forecast origins: every hour of the last week whose 24 hours ahead are in the history, from the model's first (two seasons
        // in). The weekly forecaster competes once a day of origins has a week behind it; then all compete on those origins only.
        var lastOrigin = n - Horizon - 1;
        var weekly = lastOrigin - (7 * Season - 1) + 1 >= Season;
        var firstOrigin = Math.Max(2 * Season - 1, n - Horizon - 7 * Season);
        if (weekly) firstOrigin = Math.Max(firstOrigin, 7 * Season - 1);
        var firstIntervalOrigin = Math.Max(2 * Season - 1, n - Horizon - IntervalDays * Season);
        var errors = new List<double>[Methods, Horizon];
        for (var m = 0; m < Methods; m++) for (var h = 0; h < Horizon; h++) errors[m, h] = [];
        Span<double> weightedError = stackalloc double[Methods];
        var chosenFrom = 0;
        var prefix = new double[n + 1];
        for (var i = 0; i < n; i++) prefix[i + 1] = prefix[i] + series[i];
        Span<double> f = stackalloc double[Methods];
        var model = new HoltWinters(_parameters.Value, Season, Horizon);
        for (var t = 0; t < n; t++)
        {
            model.Update(series[t]);
            if (t < Math.Min(firstOrigin, firstIntervalOrigin) || t > lastOrigin || !model.Ready) continue;
            for (var h = 1; h <= Horizon; h++)
            {
                var actual = series[t + h];
                Points(series, prefix, t, h, model, weekly, f);
                // An error against a filled hour is a forecaster against the model's own fill: not evidence of its spread.
                if (t >= firstIntervalOrigin && measured[t + h])
                    for (var m = 0; m < Methods; m++) if (double.IsFinite(f[m])) errors[m, h - 1].Add(actual - f[m]);
                if (t < firstOrigin) continue;
                chosenFrom++;
                var weight = Math.Pow(0.5, (n - 1 - (t + h)) / ChoiceHalfLifeHours);
                for (var m = 0; m < Methods; m++) weightedError[m] += weight * Math.Abs(actual - f[m]);
            }
        }
        if (chosenFrom == 0) return null;
        var best = Method.HoltWintersDaily;
        for (var m = 1; m < Methods; m++)
            if ((m != (int)Method.SeasonalNaiveWeekly || weekly) && weightedError[m] < weightedError[(int)best]) best = (Method)m;
        LastMethod = best;
        var points = new ForecastPoint[Horizon];
        var pooled = new List<double>();
        for (var h = 1; h <= Horizon; h++)
        {
            Points(series, prefix, n - 1, h, model, weekly, f);
            var point = f[(int)best];
            pooled.Clear();
            for (var k = Math.Max(1, h - IntervalPoolHours); k <= Math.Min(Horizon, h + IntervalPoolHours); k++) pooled.AddRange(errors[(int)best, k - 1]);
            if (pooled.Count < 10)
            {
                points[h - 1] = new ForecastPoint(h, point, double.NaN, double.NaN, double.NaN, double.NaN);
                continue;
            }
            var sorted = pooled.ToArray();
            Array.Sort(sorted);
            double Bound(double q) => point + IntervalWidening * Metrics.WindowStatistics.Percentile(sorted, q);
            points[h - 1] = new ForecastPoint(h, point, Bound(0.10), Bound(0.90), Bound(0.025), Bound(0.975));
        }
        return points;
    }

    /// <summary>Each method's forecast of step t + h from origin t: only steps at or before t are read (the model has seen step t,
    /// nothing later). <paramref name="prefix"/>[i] is the sum of the first i steps. The weekly one is NaN until a week is held.</summary>
    private static void Points(List<double> series, double[] prefix, int t, int h, HoltWinters model, bool weekly, Span<double> f)
    {
        f[(int)Method.HoltWintersDaily] = model.PointForecast(h);
        f[(int)Method.SeasonalNaiveDaily] = series[t + h - Season];
        f[(int)Method.SeasonalNaiveWeekly] = weekly && t + h >= 7 * Season ? series[t + h - 7 * Season] : double.NaN;

        // The mean of the 24 hours ending at origin − 24(k − 1): day block k (1 the newest).
        double Block(int k) => (prefix[t + 1 - Season * (k - 1)] - prefix[t + 1 - Season * k]) / Season;
        Span<double> same = stackalloc double[ProfileDays];
        Span<double> deviation = stackalloc double[ProfileDays];
        var days = 0;
        for (var d = 1; d <= ProfileDays && t + 1 - Season * d >= 0; d++)
        {
            same[days] = series[t + h - d * Season];
            deviation[days++] = series[t + h - d * Season] - Block(d);   // the hour against its own day, so a level shift cancels
        }
        var profile = Median(same[..days]);
        Span<double> changes = stackalloc double[TrendDays];
        var trendDays = 0;
        for (var d = 1; d <= TrendDays && t + 1 - Season * (d + 1) >= 0; d++) changes[trendDays++] = Block(d) - Block(d + 1);
        var perDay = trendDays == 0 ? 0 : Median(changes[..trendDays]);
        // The newest block's mean sits at its middle, (Season − 1) / 2 hours before the origin.
        var profileAndTrend = Block(1) + perDay * (h + (Season - 1) / 2.0) / Season + Median(deviation[..days]);
        f[(int)Method.Combined] = (f[(int)Method.HoltWintersDaily] + f[(int)Method.SeasonalNaiveDaily] + profile + profileAndTrend) / 4;
    }

    private static double Median(Span<double> values)
    {
        values.Sort();
        var k = values.Length;
        return k % 2 == 1 ? values[k / 2] : (values[k / 2 - 1] + values[k / 2]) / 2;
    }

    /// <summary>The history with each NaN filled as the class says, by a model with <paramref name="p"/>; <paramref name="measured"/>
    /// says which of its hours were measured (not filled).</summary>
    private List<double> Filled(HoltWintersParameters p, out List<bool> measured)
    {
        var model = new HoltWinters(p, Season, 1);
        var filled = new List<double>(_count);
        measured = new List<bool>(_count);
        var last = double.NaN;
        for (var i = 0; i < _count; i++)
        {
            var v = At(i);
            var isMeasured = !double.IsNaN(v);
            if (double.IsNaN(v))
                // The same hour the day before is a day back in the filled list (its hours are consecutive from its first), not
                // at i − Season: hours left out at the start would shift that, past the list's end.
                v = model.Ready ? model.PointForecast(1) : filled.Count >= Season && !double.IsNaN(filled[^Season]) ? filled[^Season] : last;
            if (double.IsNaN(v))
            {
                // Nothing to fill from yet (the history starts with missing hours): those hours are left out.
                continue;
            }
            model.Update(v);
            filled.Add(v);
            measured.Add(isMeasured);
            last = v;
        }
        return filled;
    }

    public byte[] Save()
    {
        var bytes = new byte[1 + 4 + 8 + 8 + 1 + 4 * 8 + _count * 8];
        var s = bytes.AsSpan();
        s[0] = Format;
        BinaryPrimitives.WriteInt32BigEndian(s[1..], _count);
        BinaryPrimitives.WriteInt64BigEndian(s[5..], _lastHourUnixMs);
        BinaryPrimitives.WriteInt64BigEndian(s[13..], _fittedAtHourUnixMs);
        s[21] = (byte)(_parameters is null ? 0 : 1);
        var p = _parameters ?? default;
        BinaryPrimitives.WriteDoubleBigEndian(s[22..], p.Alpha);
        BinaryPrimitives.WriteDoubleBigEndian(s[30..], p.Beta);
        BinaryPrimitives.WriteDoubleBigEndian(s[38..], p.Gamma);
        BinaryPrimitives.WriteDoubleBigEndian(s[46..], p.Phi);
        for (var i = 0; i < _count; i++) BinaryPrimitives.WriteDoubleBigEndian(s[(54 + 8 * i)..], At(i));
        return bytes;
    }

    public static NodePredictor Restore(ReadOnlySpan<byte> s)
    {
        if (s.Length < 54 || s[0] != Format) throw new FormatException($"node predictor state: format {(s.Length > 0 ? s[0] : -1)}, expected {Format}");
        var count = BinaryPrimitives.ReadInt32BigEndian(s[1..]);
        if (count is < 0 or > HistoryHours || s.Length != 54 + 8 * count) throw new FormatException($"node predictor state: {count} hours in {s.Length} bytes");
        var p = new NodePredictor
        {
            _lastHourUnixMs = BinaryPrimitives.ReadInt64BigEndian(s[5..]),
            _fittedAtHourUnixMs = BinaryPrimitives.ReadInt64BigEndian(s[13..]),
        };
        if (s[21] == 1)
            p._parameters = new HoltWintersParameters(BinaryPrimitives.ReadDoubleBigEndian(s[22..]), BinaryPrimitives.ReadDoubleBigEndian(s[30..]),
                BinaryPrimitives.ReadDoubleBigEndian(s[38..]), BinaryPrimitives.ReadDoubleBigEndian(s[46..]));
        for (var i = 0; i < count; i++) p.Push(BinaryPrimitives.ReadDoubleBigEndian(s[(54 + 8 * i)..]));
        return p;
    }
}
