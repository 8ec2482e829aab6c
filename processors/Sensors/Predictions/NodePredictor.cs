using System.Buffers.Binary;

namespace StreamHealth.Sensors.Predictions;

/// <summary>
/// One node's flow prediction as the pipeline keeps it: the hourly means of the last <see cref="HistoryHours"/> hours (NaN for an
/// hour that was missing, unusable by the data-quality rules, or inside a burst: a burst is an event to repair, not demand to
/// forecast), Holt-Winters parameters fitted on that history once a day, and from every new hour the next
/// <see cref="HoltWinters"/> 24 hours with 80 % and 95 % intervals. The model is run again over the history for each forecast (a
/// few thousand steps), so the state is the history and the parameters only: bounded, and the same forecast after a restore.
/// The forecast is the best of three forecasters on the node's own recent history (<see cref="Forecast"/>).
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

    /// <summary>The forecasters a node's prediction is chosen from, by their error over the last week of its own history.</summary>
    public enum Method : byte { HoltWintersDaily, SeasonalNaiveDaily, SeasonalNaiveWeekly }

    /// <summary>The method of the last forecast.</summary>
    public Method LastMethod { get; private set; }

    /// <summary>The next 24 hours from the end of the newest hour, or null while the history is too short or too sparse.
    /// Three forecasters compete on the node's own history: Holt-Winters with a daily season (fitted once a day), the same hour
    /// the day before, and the same hour the week before (once nine days of history hold a day of forecasts with a week behind them): the one with the lowest mean absolute
    /// error over the 1-24-hour forecasts from every hour of the last week (at least the last day) wins, and its own errors
    /// there give the 80 % and 95 % intervals (their empirical quantiles per horizon). Demand with a weekly pattern (weekends)
    /// is better served by last week than by a daily season; a steady series by the smoothed model.</summary>
    public ForecastPoint[]? Forecast()
    {
        if (_count < MinHours) return null;
        var recentNaN = 0;
        for (var i = _count - MinHours; i < _count; i++) if (double.IsNaN(At(i))) recentNaN++;
        if (recentNaN > MinHours / 3) return null;
        var series = Filled(_parameters ?? new HoltWintersParameters(0.2, 0.01, 0.1, 0.9));
        if (series.Count < MinHours) return null;    // missing hours at the start of the history are left out
        if (_parameters is null || _lastHourUnixMs - _fittedAtHourUnixMs >= RefitEveryHours * HourMs)
        {
            _parameters = HoltWinters.Fit(series, Season, Horizon);
            _fittedAtHourUnixMs = _lastHourUnixMs;
            series = Filled(_parameters.Value);
        }
        var n = series.Count;
        // Forecast origins: every hour of the last week whose 24 hours ahead are in the history, from the model's first (two seasons
        // in). The weekly forecaster competes once a day of origins has a week behind it; then all compete on those origins only.
        var lastOrigin = n - Horizon - 1;
        var weekly = lastOrigin - (7 * Season - 1) + 1 >= Season;
        var firstOrigin = Math.Max(2 * Season - 1, n - Horizon - 7 * Season);
        if (weekly) firstOrigin = Math.Max(firstOrigin, 7 * Season - 1);
        var errors = new List<double>[3, Horizon];
        for (var m = 0; m < 3; m++) for (var h = 0; h < Horizon; h++) errors[m, h] = [];
        var model = new HoltWinters(_parameters.Value, Season, Horizon);
        for (var t = 0; t < n; t++)
        {
            model.Update(series[t]);
            if (t < firstOrigin || t > lastOrigin || !model.Ready) continue;
            for (var h = 1; h <= Horizon; h++)
            {
                var actual = series[t + h];
                errors[0, h - 1].Add(actual - model.PointForecast(h));
                errors[1, h - 1].Add(actual - series[t + h - Season]);
                if (weekly) errors[2, h - 1].Add(actual - series[t + h - 7 * Season]);
            }
        }
        if (errors[0, 0].Count == 0) return null;
        var best = Method.HoltWintersDaily;
        var bestError = double.MaxValue;
        for (var m = 0; m < 3; m++)
        {
            if (m == 2 && !weekly) continue;
            double sum = 0;
            var count = 0;
            for (var h = 0; h < Horizon; h++) foreach (var e in errors[m, h]) { sum += Math.Abs(e); count++; }
            if (count > 0 && sum / count < bestError) (best, bestError) = ((Method)m, sum / count);
        }
        LastMethod = best;
        var points = new ForecastPoint[Horizon];
        for (var h = 1; h <= Horizon; h++)
        {
            var point = best switch
            {
                Method.HoltWintersDaily => model.PointForecast(h),
                Method.SeasonalNaiveDaily => series[n - 1 + h - Season],
                _ => series[n - 1 + h - 7 * Season],
            };
            var e = errors[(int)best, h - 1];
            if (e.Count < 10)
            {
                points[h - 1] = new ForecastPoint(h, point, double.NaN, double.NaN, double.NaN, double.NaN);
                continue;
            }
            var sorted = e.ToArray();
            Array.Sort(sorted);
            points[h - 1] = new ForecastPoint(h, point, point + Metrics.WindowStatistics.Percentile(sorted, 0.10), point + Metrics.WindowStatistics.Percentile(sorted, 0.90),
                point + Metrics.WindowStatistics.Percentile(sorted, 0.025), point + Metrics.WindowStatistics.Percentile(sorted, 0.975));
        }
        return points;
    }

    /// <summary>The history with each NaN filled as the class says, by a model with <paramref name="p"/>.</summary>
    private List<double> Filled(HoltWintersParameters p)
    {
        var model = new HoltWinters(p, Season, 1);
        var filled = new List<double>(_count);
        var last = double.NaN;
        for (var i = 0; i < _count; i++)
        {
            var v = At(i);
            if (double.IsNaN(v))
                v = model.Ready ? model.PointForecast(1) : i >= Season && !double.IsNaN(filled[i - Season]) ? filled[i - Season] : last;
            if (double.IsNaN(v))
            {
                // Nothing to fill from yet (the history starts with missing hours): those hours are left out.
                continue;
            }
            model.Update(v);
            filled.Add(v);
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
