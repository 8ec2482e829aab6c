namespace StreamHealth.Sensors.Anomalies;

/// <summary>Settings of <see cref="ContextNoveltyDetector"/>. The defaults are the ones scored on NAB (RESULTS
/// "Sensor anomalies: NAB").</summary>
public sealed record ContextNoveltyOptions
{
    /// <summary>Readings used to learn the value range before anything is scored (NAB's probation: 15 % of a series,
    /// at most 750 readings). Scores are 0 until then.</summary>
    public int ProbationReadings { get; init; } = 750;

    /// <summary>Quantisation grids: the learned range cut into <c>Bins</c> equal bins, shifted by <c>Offset</c> of a
    /// bin. Several grids average away the arbitrariness of where one grid's bin edges fall.</summary>
    public IReadOnlyList<(int Bins, double Offset)> Grids { get; init; } = [(6, 0.0), (6, 0.5), (5, 0.0), (7, 0.0)];

    /// <summary>Contexts are the last 1 … MaxOrder quantised readings.</summary>
    public int MaxOrder { get; init; } = 6;

    /// <summary>For <c>RestReadings</c> readings after a score of at least <see cref="SuppressAbove"/>, scores are 0: one
    /// event is reported once, not at every reading while the series settles into new contexts.</summary>
    public int RestReadings { get; init; } = 120;

    public double SuppressAbove { get; init; } = 0.6;

    /// <summary>Smoothing of the recent novelty rate (an exponential average per reading). A series that keeps
    /// producing new contexts (noise, a new regime being learned) scores each new one lower.</summary>
    public double NoveltyRateAlpha { get; init; } = 0.01;

    public void Validate()
    {
        if (ProbationReadings < 2) throw new ArgumentOutOfRangeException(nameof(ProbationReadings), ProbationReadings, "at least 2 readings are needed to learn a range");
        if (Grids.Count == 0 || Grids.Any(g => g.Bins < 2 || g.Bins > 1000 || !(g.Offset >= 0 && g.Offset < 1)))
            throw new ArgumentOutOfRangeException(nameof(Grids), "each grid needs 2-1000 bins and an offset in [0, 1)");
        if (MaxOrder is < 1 or > 16) throw new ArgumentOutOfRangeException(nameof(MaxOrder), MaxOrder, "1-16");
        if (RestReadings < 0) throw new ArgumentOutOfRangeException(nameof(RestReadings), RestReadings, "not negative");
        if (!(SuppressAbove > 0 && SuppressAbove <= 1)) throw new ArgumentOutOfRangeException(nameof(SuppressAbove), SuppressAbove, "in (0, 1]");
        if (!(NoveltyRateAlpha >= 0 && NoveltyRateAlpha < 1)) throw new ArgumentOutOfRangeException(nameof(NoveltyRateAlpha), NoveltyRateAlpha, "in [0, 1)");
    }
}

/// <summary>
/// A streaming anomaly detector for one series, in the spirit of the contextual anomaly detectors that score well on
/// the Numenta Anomaly Benchmark (CAD OSE, HTM): an anomaly is a <em>sequence of values not seen before</em>, not a
/// value far from a mean. Each reading is quantised on a few grids over the range learned during probation; the
/// contexts "last k bins" (k = 1 … MaxOrder) are remembered, and the score is the fraction of them that are new,
/// averaged over the grids, discounted by the series' recent rate of novelty and suppressed for a rest period after a
/// report. Our own formulation (no code taken from those detectors); O(grids × orders) per reading.
/// The score is in [0, 1]; the threshold is chosen by whoever consumes it (NAB: per profile over the corpus).
/// </summary>
public sealed class ContextNoveltyDetector
{
    private readonly ContextNoveltyOptions _options;
    private readonly List<double> _probation = [];
    private readonly HashSet<ulong>[] _seen;        // per grid: hashes of (order, bins…) contexts seen so far
    private readonly int[][] _recentBins;          // per grid: ring of the last MaxOrder bins
    private int _count;                            // readings quantised so far (after probation: all of them)
    private double _low, _binWidthUnit;            // the learned range: low and (high - low)
    private bool _ranged;
    private double _noveltyRate;
    private int _sinceHigh = 1;                   // readings since the last score ≥ SuppressAbove (reported or not)

    public ContextNoveltyDetector(ContextNoveltyOptions? options = null)
    {
        _options = options ?? new ContextNoveltyOptions();
        _options.Validate();
        _seen = new HashSet<ulong>[_options.Grids.Count];
        _recentBins = new int[_options.Grids.Count][];
        for (var g = 0; g < _seen.Length; g++) { _seen[g] = []; _recentBins[g] = new int[_options.MaxOrder]; }
    }

    /// <summary>Scores the next reading of the series. Non-finite values are the caller's to reject (they are data
    /// errors, not anomalies): they throw here rather than poison the learned contexts.</summary>
    public double Update(double value)
    {
        if (!double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), value, "a reading must be a finite number");
        if (!_ranged)
        {
            _probation.Add(value);
            if (_probation.Count < _options.ProbationReadings) return 0;
            LearnRange();
            return 0;
        }
        return Score(value);
    }

    private void LearnRange()
    {
        var low = double.MaxValue;
        var high = double.MinValue;
        foreach (var v in _probation) { low = Math.Min(low, v); high = Math.Max(high, v); }
        _low = low;
        _binWidthUnit = high > low ? high - low : 1.0;
        _ranged = true;
        // The probation readings teach the contexts (their scores are not reported: NAB ignores them too).
        foreach (var v in _probation) Score(v);
        _probation.Clear();
        _probation.TrimExcess();
    }

    private double Score(double value)
    {
        var sum = 0.0;
        for (var g = 0; g < _seen.Length; g++)
        {
            var (bins, offset) = _options.Grids[g];
            var scaled = Math.Floor((value - _low) / (_binWidthUnit / bins) + offset);
            var bin = (int)Math.Clamp(scaled, -1_000_000, 1_000_000);   // absurd values become one far bin, not an overflow
            var ring = _recentBins[g];
            ring[_count % ring.Length] = bin;
            var known = Math.Min(_count + 1, ring.Length);
            var fresh = 0;
            var hash = 14695981039346656037UL;       // FNV-1a over (order, newest bin, next newest, …)
            for (var order = 1; order <= known; order++)
            {
                var b = ring[(_count - order + 1 + ring.Length * 2) % ring.Length];
                hash = (hash ^ (uint)b) * 1099511628211UL;
                if (_seen[g].Add(hash ^ ((ulong)order << 56))) fresh++;
            }
            sum += (double)fresh / known;
        }
        _count++;
        var novelty = sum / _seen.Length;
        var score = novelty * (1 - _noveltyRate);
        _noveltyRate += _options.NoveltyRateAlpha * (novelty - _noveltyRate);
        // Rest: any high score, even a suppressed one, restarts it: a new regime keeps producing new contexts for a
        // while and is one event.
        var suppressed = _sinceHigh <= _options.RestReadings;
        _sinceHigh = score >= _options.SuppressAbove ? 1 : _sinceHigh + 1;
        return suppressed ? 0 : score;
    }
}
