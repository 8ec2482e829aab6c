using System.Globalization;
using StreamHealth.Sensors.Readings;

namespace StreamHealth.Sensors.Districts;

/// <summary>
/// Data quality, leak detection and water efficiency of one district (a district metered area), from its nodes' closed
/// windows (<see cref="NodeWindow"/>) in the order they close. Pure: no I/O; its whole state is bytes
/// (<see cref="Save"/>, <see cref="Restore"/>), so a Streamiz processor keyed by district keeps one per key in a store.
/// <list type="bullet">
/// <item><b>Quality</b>, per node window: completeness (readings against the node's cadence), out of range (beyond what
/// the quantity can be, or a spike: a minute far beyond the minute-to-minute noise from the median of the previous minutes),
/// flatline (unchanged while the series normally moves), drift against correlated neighbours (a meter against the district
/// demand its fellow meters imply; the inflow flow, the inflow pressure and the critical-point pressure against the head
/// loss relation h = a + b·Q², the physics of a pipe network; a chlorine probe against its own seasonal baseline), late
/// and duplicate readings. Each with a score (1 clean, 0.5 at the threshold, 0 worst) and a reason.</item>
/// <item><b>Water balance</b>, per minute, once every balance node's 1-minute window is in (or
/// <see cref="DistrictAnalyzerOptions.BalanceWaitMinutes"/> after): net flow = Σ inflow − Σ meters. A meter window that is
/// missing or not usable is estimated from the other meters (its learned share of the demand they imply); without a
/// usable inflow the minute has no balance. So a meter dropout, spike, stuck value or drift changes the estimate, not the
/// balance, and produces no leak.</item>
/// <item><b>Burst</b>: the net flow above its reference (the median of the hour ending 15 minutes before; frozen while a
/// burst is open) by more than max(a floor, k × its robust minute noise) for
/// <see cref="DistrictAnalyzerOptions.BurstMinutes"/> usable minutes in a row. The 1-minute windows close about 6 minutes
/// after they start, so a burst is reported ~11 minutes after it starts. A spike lasts a few minutes, a burst persists.</item>
/// <item><b>Background leak</b>: the minimum night flow (the lowest 15-minute net flow in the night window, when legitimate
/// use is lowest and a leak is the largest share of the flow: the classic indicator) against the median of the previous
/// normal nights; two consecutive nights above it open a leak. One night is not enough: a sensor fault of a day or less
/// can raise one night's minimum, not two. The exception is the first usable night after nights without a balance, when
/// raised by twice the threshold and nearly all balanced (<see cref="DistrictAnalyzerOptions.NightAfterGapFactor"/>):
/// the fault that took the night before cannot also raise it. Nights with a burst open are skipped; the trend (Theil-Sen
/// slope of the recent nights, L/s per night) is reported.</item>
/// <item><b>Residual</b>: each usable 15-minute mean against its robust seasonal baseline (median and MAD per
/// time-of-week slot).</item>
/// <item><b>Efficiency</b>: per UTC day, inflow and metered volumes (mean L/s × 60 s per minute, estimated minutes
/// included, completeness says how many were measured), non-revenue water = inflow − metered, in m³ and % of inflow, and
/// the same over the 7 days ending with it. Emitted when the first minute of the next day is balanced.</item>
/// </list>
/// Idempotent: a series' windows of one size arrive in order, so a window at or before the newest applied one is a replay
/// and changes nothing (a restored state fed the windows since its save again counts each once).
/// </summary>
public sealed class DistrictAnalyzer
{
    private const byte Format = 1;
    private const long MinuteMs = 60_000, QuarterMs = 15 * MinuteMs, DayMs = 86_400_000;
    private const int BalanceRing = 75, ReferenceLagMinutes = 15, HeadLossRing = 192, NightRing = 28;
    private const string Ok = "ok";

    private DistrictAnalyzerOptions _options;
    private readonly DistrictOutputs _outputs = new();
    private readonly List<SeriesState> _series = [];

    public string DistrictId { get; }

    // The balance's minutes: the next minute to compute and the newest minute end any required series has reached.
    private long _nextMinute = long.MinValue, _firstMinute = long.MinValue;
    private long _watermarkMinute = long.MinValue;

    // Burst detection: the recent net flows (NaN where a minute had no balance) by minute.
    private readonly double[] _balance = new double[BalanceRing];
    private readonly long[] _balanceMinute = new long[BalanceRing];
    private double _inflowMeanLps = double.NaN;
    private int _burstRun;
    private long _burstRunStartMinute;
    // Open bursts, oldest first: a second burst on top of an open one is a burst of its own (at most MaxOpenBursts).
    private const int MaxOpenBursts = 4;
    private readonly List<OpenBurst> _bursts = [];
    /// <summary>Whether a burst is open in the district now (at the analyser's balance time).</summary>
    public bool BurstOpen => _bursts.Count > 0;

    /// <summary>One open burst: where it started, the net flow before it (its reference) and its threshold, the peak
    /// excess, and the run of calm minutes that will resolve it.</summary>
    private sealed class OpenBurst
    {
        public long StartMinute;
        public double Reference, Threshold, PeakExcess;
        public int Calm;
        public long CalmStartMinute;
        /// <summary>The burst's flow: the mean excess over its first <see cref="StepMinutes"/> usable minutes.</summary>
        public double StepSum;
        public int StepCount;
        public double Step => StepCount > 0 ? StepSum / StepCount : PeakExcess;
    }

    private const int StepMinutes = 30;

    // Night flow: the current quarter-hour's net flow, the current night's minimum and the history of nights.
    private long _quarterStartMinute = long.MinValue;
    private double _quarterBalanceSum;
    private int _quarterBalanceCount;
    private long _nightDay = long.MinValue;
    private double _nightMin = double.NaN;
    private int _nightQuarters;
    private bool _nightSpoiled;
    private readonly double[] _normalNights = new double[NightRing];     // minimum night flows of normal nights, newest last
    private int _normalNightCount;
    private readonly double[] _recentNights = new double[8];           // every valid night, for the trend
    private int _recentNightCount;
    private bool _previousNightRaised;
    private long _previousNightDay = long.MinValue;
    private double _previousNightExcess;
    private bool _leakOpen;
    private long _leakStartUnixMs;
    private int _leakLowNights;

    // Head loss: per quarter-hour the mean of Q² (inflow) and of h (inflow pressure − critical pressure); the learned fit.
    private double _quarterQ2Sum, _quarterHeadSum;
    private int _quarterHeadCount, _quarterSharesCount;
    private readonly float[] _headQ2 = new float[HeadLossRing], _head = new float[HeadLossRing];
    private int _headCount, _headNext;
    private DriftCusum _headCusum;
    private int _headBlamed = -1;

    // Efficiency: the current UTC day and the previous days.
    private long _day = long.MinValue;
    private double _dayInflowM3, _dayMeteredM3;
    private long _dayNodeMinutes, _dayMeasuredNodeMinutes, _dayMinutes;
    private readonly long[] _pastDay = new long[7];
    private readonly double[] _pastInflowM3 = new double[7], _pastMeteredM3 = new double[7], _pastCompleteness = new double[7];
    private int _pastCount, _pastNext;

    public DistrictAnalyzer(string districtId, DistrictAnalyzerOptions? options = null)
    {
        _options = options ?? new DistrictAnalyzerOptions();
        _options.Validate();
        DistrictId = districtId;
        Array.Fill(_balance, double.NaN);
        Array.Fill(_balanceMinute, long.MinValue);
    }

    /// <summary>Whether the analyser follows this node's metric already.</summary>
    public bool HasSeries(string nodeId, string metric)
    {
        foreach (var s in _series) if (s.NodeId == nodeId && s.Metric == metric) return true;
        return false;
    }

    /// <summary>How many series (node and metric) the analyser follows; at most <see cref="DistrictAnalyzerOptions.MaxSeries"/>.</summary>
    public int SeriesCount => _series.Count;

    /// <summary>The most series a district's analyser follows.</summary>
    public int MaxSeries => _options.MaxSeries;

    /// <summary>Replaces the settings while the analyser lives (the node registry's cadences change); validated first.</summary>
    public void UseOptions(DistrictAnalyzerOptions options)
    {
        // Called for every window with the processor's current settings: validated once per instance, not per window (the
        // validation walks every node's cadence).
        if (ReferenceEquals(options, _options)) return;
        options.Validate();
        _options = options;
    }

    /// <summary>Applies one closed window; returns what it produced. The returned object is reused by the next call.</summary>
    public DistrictOutputs Add(in NodeWindow window)
    {
        _outputs.Clear();
        var size = SeriesState.SizeIndex(window.WindowMinutes);
        if (size < 0) throw new ArgumentOutOfRangeException(nameof(window), window.WindowMinutes, "window minutes must be 1, 15 or 60");
        var series = SeriesOf(window);
        if (window.WindowStartUnixMs <= series.LastStartUnixMs[size]) return _outputs;    // a replay: applied already
        series.LastStartUnixMs[size] = window.WindowStartUnixMs;
        if (window.WindowMinutes == 1) AddMinute(series, window);
        else
        {
            var verdict = Judge(series, window);
            _outputs.Quality.Add(verdict);
            if (window.WindowMinutes == 15) AddQuarter(series, window, verdict);
        }
        return _outputs;
    }

    private SeriesState SeriesOf(in NodeWindow window)
    {
        foreach (var s in _series)
            if (s.NodeId == window.NodeId && s.Metric == window.Metric)
            {
                s.Kind = window.Kind;
                return s;
            }
        if (_series.Count >= _options.MaxSeries)
            throw new InvalidOperationException($"district {DistrictId}: node {window.NodeId} {window.Metric} would be series {_series.Count + 1}, " +
                                                $"more than MaxSeries = {_options.MaxSeries}");
        if (SensorQuantities.Find(window.Metric) is null)
            throw new ArgumentException($"metric = '{window.Metric}': not one of {string.Join(", ", SensorQuantities.All.Select(q => q.Metric))}", nameof(window));
        var series = new SeriesState { NodeId = window.NodeId, Kind = window.Kind, Metric = window.Metric };
        _series.Add(series);
        return series;
    }

    // ───────────────────────────── quality ─────────────────────────────

    /// <summary>A 1-minute window: its quality (updating the spike and flatline state), then into the balance.</summary>
    private void AddMinute(SeriesState s, in NodeWindow w)
    {
        var minute = Math.DivRem(w.WindowStartUnixMs, MinuteMs, out var rem) - (rem < 0 ? 1 : 0);
        var hasValue = w.ReadingCount > 0 && double.IsFinite(w.Mean);
        var outOfRange = false;
        var spikeSigmas = 0.0;
        var physical = hasValue && IsImpossible(s, w);
        if (hasValue)
        {
            // Spike: against the median of the previous minutes, in units of the minute-to-minute noise.
            if (s.RecentCount >= 3 && double.IsFinite(s.MeanAbsStep))
            {
                Span<double> recent = stackalloc double[SeriesState.RecentMinutes];
                s.Recent.AsSpan(0, s.RecentCount).CopyTo(recent);
                var reference = Robust.Median(recent[..s.RecentCount]);
                var sigma = Math.Max(s.MeanAbsStep / 1.128, 1e-3 * (Math.Abs(reference) + 1e-3));
                spikeSigmas = Math.Max(Math.Abs(w.Max - reference), Math.Abs(w.Min - reference)) / sigma;
            }
            outOfRange = physical || spikeSigmas > _options.SpikeSigmas;
            if (double.IsFinite(s.LastMinuteValue))
            {
                // The noise learns from ordinary steps only: a step beyond 10× the noise (a spike, a burst) moves it at most that.
                var step = Math.Abs(w.Mean - s.LastMinuteValue);
                if (double.IsFinite(s.MeanAbsStep)) step = Math.Min(step, 10 * Math.Max(s.MeanAbsStep, 1e-9));
                s.MeanAbsStep = double.IsFinite(s.MeanAbsStep) ? s.MeanAbsStep + (step - s.MeanAbsStep) / 240 : step;
            }
            s.LastMinuteValue = w.Mean;
            s.Recent[s.RecentNext] = w.Mean;
            s.RecentNext = (s.RecentNext + 1) % SeriesState.RecentMinutes;
            if (s.RecentCount < SeriesState.RecentMinutes) s.RecentCount++;

            // Flatline: the run of minutes with exactly the same value (a stuck sensor repeats its last value).
            var unchanged = Math.Abs(w.Mean - s.RunValue) <= 1e-9 * Math.Max(1, Math.Abs(w.Mean)) && (w.ReadingCount < 2 || w.StdDev == 0);
            if (!unchanged || s.RunStartUnixMs == long.MinValue)
            {
                s.RunValue = w.Mean;
                s.RunStartUnixMs = w.WindowStartUnixMs;
            }
            s.Stuck = IsStuck(s, w.WindowEndUnixMs);
        }
        s.MarkMinute(minute, outOfRange, s.Stuck && hasValue, s.Drifting);
        var verdict = Judge(s, w, physical, spikeSigmas);
        _outputs.Quality.Add(verdict);
        if (verdict.Usable) s.LastUsableValue = w.Mean;
        StoreMinute(s, minute, w.Mean, verdict.Usable ? SeriesState.Usable
            : hasValue && !outOfRange && !s.Stuck ? SeriesState.Valued
            : hasValue && !physical && !s.Stuck ? SeriesState.Spiked : SeriesState.Unusable);
    }

    private bool IsStuck(SeriesState s, long nowUnixMs)
    {
        var runMinutes = (nowUnixMs - s.RunStartUnixMs) / (double)MinuteMs;
        // A series that never moves (MeanAbsStep 0) has nothing to be stuck against; exact zero flow is a real state.
        return runMinutes >= _options.FlatlineMinutes && s.MeanAbsStep > 0 && !(s.IsFlow && s.RunValue == 0);
    }

    private static bool IsImpossible(SeriesState s, in NodeWindow w) =>
        SensorQuantities.Find(s.Metric) is { } q && (w.Min < q.Min || w.Max > q.Max);

    private QualityVerdict Judge(SeriesState s, in NodeWindow w, bool physical = false, double spikeSigmas = 0)
    {
        var checks = new QualityCheck[6];
        var minutes = w.WindowMinutes;
        var expected = _options.ReadingsPerMinute(s.NodeId) * minutes;

        // Completeness against the node's cadence; a window expected to hold less than one reading is not judged.
        if (expected < 1) checks[0] = new(QualityRule.Completeness, 1, false, "fewer than one reading expected");
        else
        {
            var ratio = Math.Min(1, w.ReadingCount / expected);
            checks[0] = ratio >= _options.MinCompleteness
                ? new(QualityRule.Completeness, ratio, false, ratio >= 1 ? Ok : Text($"{w.ReadingCount} of {expected:0.#} expected readings"))
                : new(QualityRule.Completeness, ratio, true, Text($"{w.ReadingCount} of {expected:0.#} expected readings"));
        }

        var firstMinute = w.WindowStartUnixMs / MinuteMs;
        var hasValue = w.ReadingCount > 0;
        if (!hasValue) checks[1] = new(QualityRule.OutOfRange, 1, false, "no readings");
        else if (minutes == 1 || physical || IsImpossible(s, w))
        {
            physical = physical || IsImpossible(s, w);
            var q = SensorQuantities.Find(s.Metric)!;
            checks[1] = physical
                ? new(QualityRule.OutOfRange, 0, true, Text($"{w.Min:G5}-{w.Max:G5} {q.CanonicalUnit}: beyond what a {q.Metric} sensor can report ({q.Min:G5}-{q.Max:G5})"))
                : spikeSigmas > _options.SpikeSigmas
                    ? new(QualityRule.OutOfRange, Score(spikeSigmas, _options.SpikeSigmas), true,
                        Text($"spike: {spikeSigmas:0} SDs of its minute-to-minute noise from its previous minutes"))
                    : new(QualityRule.OutOfRange, Score(spikeSigmas, _options.SpikeSigmas), false, Ok);
        }
        else
        {
            var bad = s.CountMinutes(s.OutOfRangeMask, firstMinute, minutes);
            checks[1] = new(QualityRule.OutOfRange, 1 - bad / (double)minutes, bad > 0, bad > 0 ? Text($"out of range or a spike in {bad} of {minutes} minutes") : Ok);
        }

        var runMinutes = s.RunStartUnixMs == long.MinValue ? 0 : (w.WindowEndUnixMs - s.RunStartUnixMs) / (double)MinuteMs;
        var stuckMinutes = minutes == 1 ? (s.Stuck && hasValue ? 1 : 0) : s.CountMinutes(s.FlatlineMask, firstMinute, minutes);
        var flatScore = s.Stuck ? Score(runMinutes, _options.FlatlineMinutes) : 1;
        checks[2] = stuckMinutes > 0
            ? new(QualityRule.Flatline, Math.Min(flatScore, 1 - stuckMinutes / (double)minutes), true,
                Text($"unchanged at {s.RunValue:G6} for {runMinutes:0} minutes while it normally moves"))
            : new(QualityRule.Flatline, 1, false, Ok);

        var driftScore = Score(Math.Max(s.Cusum.High, s.Cusum.Low), _options.DriftDecision);
        var driftMinutes = minutes == 1 ? (s.Drifting ? 1 : 0) : s.CountMinutes(s.DriftMask, firstMinute, minutes);
        checks[3] = s.Drifting || driftMinutes > 0
            ? new(QualityRule.Drift, Math.Min(driftScore, 0.5), true, DriftReason(s))
            : new(QualityRule.Drift, s.DriftSource == DriftSource.None ? 1 : Math.Max(driftScore, 0.5), false, Ok);

        checks[4] = w.LateCount > 0
            ? new(QualityRule.Late, hasValue ? 1 - w.LateCount / (double)w.ReadingCount : 0, true, Text($"{w.LateCount} of {w.ReadingCount} readings late (within the grace)"))
            : new(QualityRule.Late, 1, false, Ok);
        checks[5] = w.DuplicateCount > 0
            ? new(QualityRule.Duplicates, 1 - w.DuplicateCount / (double)(w.ReadingCount + w.DuplicateCount), true,
                Text($"{w.DuplicateCount} repeated event times (counted once)"))
            : new(QualityRule.Duplicates, 1, false, Ok);

        var usable = hasValue && !checks[0].Problem && !checks[1].Problem && !checks[2].Problem && !checks[3].Problem;
        return new QualityVerdict(DistrictId, s.NodeId, s.Metric, w.WindowStartUnixMs, minutes, usable, checks);
    }

    /// <summary>A score from a statistic and its threshold: 1 at 0, 0.5 at the threshold, 0 at twice the threshold.</summary>
    private static double Score(double statistic, double threshold) => Math.Clamp(1 - statistic / (2 * threshold), 0, 1);

    private static string Text(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string DriftReason(SeriesState s)
    {
        var unit = SensorQuantities.Find(s.Metric)?.CanonicalUnit ?? "";
        return s.DriftSource switch
        {
            DriftSource.MeterNeighbours => Text($"drift against the other meters: {s.DriftObserved:P1} of the district demand they imply, {s.DriftExpected:P1} learned"),
            DriftSource.HeadLoss => Text($"drift against the head loss to the critical point: head loss {s.DriftObserved:0.##} kPa where the inflow implies {s.DriftExpected:0.##} kPa"),
            _ => Text($"drift against its seasonal baseline: {s.DriftObserved:G4} {unit} where {s.DriftExpected:G4} is usual"),
        };
    }

    /// <summary>A missing 1-minute window once the balance stopped waiting for it: a completeness verdict of its own.</summary>
    private QualityVerdict Missing(SeriesState s, long minute)
    {
        var checks = new QualityCheck[6];
        checks[0] = new(QualityRule.Completeness, 0, true, "no window by the time the district's balance was computed");
        checks[1] = new(QualityRule.OutOfRange, 1, false, "no readings");
        checks[2] = new(QualityRule.Flatline, 1, false, Ok);
        checks[3] = s.Drifting ? new(QualityRule.Drift, 0.5, true, DriftReason(s)) : new(QualityRule.Drift, 1, false, Ok);
        checks[4] = new(QualityRule.Late, 1, false, Ok);
        checks[5] = new(QualityRule.Duplicates, 1, false, Ok);
        return new QualityVerdict(DistrictId, s.NodeId, s.Metric, minute * MinuteMs, 1, false, checks);
    }

    // ───────────────────────────── 15-minute windows: seasonal baseline, residual, own-baseline drift ─────────────────────────────

    private void AddQuarter(SeriesState s, in NodeWindow w, QualityVerdict verdict)
    {
        // A window flagged only as drifting still feeds the drift check (or its flag could never clear); only usable ones
        // teach the baseline and may be residual anomalies (a fault is a quality problem, not an anomaly).
        var usable = verdict.Usable;
        if (!usable && (w.ReadingCount == 0 || verdict[QualityRule.Completeness].Problem || verdict[QualityRule.OutOfRange].Problem
                        || verdict[QualityRule.Flatline].Problem)) return;
        var local = w.WindowStartUnixMs + _options.LocalOffsetMinutes * MinuteMs;
        if (s.Baseline.TryExpected(local, out var median, out var sigma))
        {
            // The spread of a slot's 15-minute means across days, floored by the series' own resolution and noise.
            var floor = Math.Max(1e-3 * (Math.Abs(median) + 1e-3), double.IsFinite(s.MeanAbsStep) ? s.MeanAbsStep / 1.128 / Math.Sqrt(15) : 0);
            var z = (w.Mean - median) / Math.Max(sigma, floor);
            if (usable) Residual(s, w, z, median);
            if (s.Kind == NodeKind.QualityProbe || s.Metric is "chlorine" or "turbidity" or "level")
            {
                // No correlated neighbour in the district: drift is judged against the series' own seasonal baseline.
                var was = s.Drifting;
                s.Drifting = s.Cusum.Update(z, _options.DriftAllowance, _options.DriftDecision, _options.DriftClearQuarters);
                s.DriftSource = DriftSource.OwnBaseline;
                if (s.Drifting || !was) (s.DriftObserved, s.DriftExpected) = (w.Mean, median);
            }
        }
        if (usable) s.Baseline.Add(local, w.Mean);
    }

    private void Residual(SeriesState s, in NodeWindow w, double z, double median)
    {
        var threshold = _options.ResidualSigmas;
        var far = Math.Abs(z) >= threshold;
        s.ResidualRun = far ? s.ResidualRun + 1 : 0;
        s.CalmRun = Math.Abs(z) < threshold / 2 ? s.CalmRun + 1 : 0;
        if (!s.ResidualOpen && s.ResidualRun == 1) s.ResidualStartUnixMs = w.WindowStartUnixMs;
        if (s.ResidualOpen) s.ResidualPeakSigmas = Math.Max(s.ResidualPeakSigmas, Math.Abs(z));
        var unit = SensorQuantities.Find(s.Metric)?.CanonicalUnit ?? "";
        if (!s.ResidualOpen && s.ResidualRun >= 2)
        {
            s.ResidualOpen = true;
            s.ResidualPeakSigmas = Math.Abs(z);
            _outputs.Anomalies.Add(new AnomalyEvent(ResidualId(s), AnomalyKind.Residual, DistrictId, s.NodeId, s.Metric, s.ResidualStartUnixMs, null,
                SigmaSeverity(Math.Abs(z), threshold), Math.Clamp(Math.Abs(z) / (2 * threshold), 0, 1), AnomalyState.Open, w.Mean, median, unit,
                Text($"15-minute mean {w.Mean:G5} {unit}, {z:+0.0;-0.0} robust SDs from its median {median:G5} for this time of the week")));
        }
        else if (s.ResidualOpen && s.CalmRun >= 2)
        {
            s.ResidualOpen = false;
            s.ResidualRun = 0;
            _outputs.Anomalies.Add(new AnomalyEvent(ResidualId(s), AnomalyKind.Residual, DistrictId, s.NodeId, s.Metric, s.ResidualStartUnixMs,
                w.WindowStartUnixMs - QuarterMs, SigmaSeverity(s.ResidualPeakSigmas, threshold), Math.Clamp(s.ResidualPeakSigmas / (2 * threshold), 0, 1),
                AnomalyState.Resolved, w.Mean, median, unit, Text($"back within {threshold / 2:0.#} robust SDs of its seasonal median (peak {s.ResidualPeakSigmas:0.0})")));
        }
    }

    private string ResidualId(SeriesState s) => Text($"{DistrictId}:residual:{s.NodeId}:{s.Metric}:{s.ResidualStartUnixMs}");

    private static AnomalySeverity SigmaSeverity(double sigmas, double threshold) =>
        sigmas >= 4 * threshold ? AnomalySeverity.Critical : sigmas >= 2 * threshold ? AnomalySeverity.High
        : sigmas >= 1.5 * threshold ? AnomalySeverity.Medium : AnomalySeverity.Low;

    // ───────────────────────────── the balance's minutes ─────────────────────────────

    private void StoreMinute(SeriesState s, long minute, double value, byte status)
    {
        if (_nextMinute == long.MinValue) _nextMinute = _firstMinute = minute;
        if (minute < _nextMinute) return;               // too late: that minute's balance is computed already
        while (minute >= _nextMinute + SeriesState.MinuteRing) FinalizeMinute();   // a node far ahead: stop waiting for the oldest minutes
        var slot = (int)(minute % SeriesState.MinuteRing);
        s.SlotValue[slot] = value;
        s.SlotStatus[slot] = status;
        s.LastSeenMinute = Math.Max(s.LastSeenMinute, minute);
        if (s.Required) _watermarkMinute = Math.Max(_watermarkMinute, minute + 1);
        while (_nextMinute != long.MinValue && _nextMinute < _watermarkMinute && Ready(_nextMinute)) FinalizeMinute();
    }

    /// <summary>Whether the minute can be balanced: every required series has its window, or the district's newest minute
    /// is past it by the wait.</summary>
    private bool Ready(long minute)
    {
        if (_watermarkMinute >= minute + 1 + _options.BalanceWaitMinutes) return true;
        // The first minutes wait out the whole wait: the district's nodes are still being discovered.
        if (minute <= _firstMinute + _options.BalanceWaitMinutes) return false;
        var slot = (int)(minute % SeriesState.MinuteRing);
        // Every series alive in the last hour, not only the balance's: a window arriving after its minute was balanced
        // would be reported missing.
        foreach (var s in _series)
            if (s.SlotStatus[slot] == SeriesState.Absent && (s.Required || s.LastSeenMinute >= minute - 60)) return false;
        return true;
    }

    private void FinalizeMinute()
    {
        var minute = _nextMinute;
        var slot = (int)(minute % SeriesState.MinuteRing);
        var minuteUnixMs = minute * MinuteMs;
        var day = FloorDiv(minuteUnixMs, DayMs);
        if (_day != day)
        {
            if (_day != long.MinValue) CloseDay();
            _day = day;
        }

        // Inflow: every inflow's flow must be usable. The burst check also takes a minute flagged as a spike or drifting:
        // a burst starts as a jump the spike check cannot yet tell from a spike (the burst's persistence does), and a drift
        // is too slow to look like one.
        double inflow = 0, burstInflow = 0;
        int inflows = 0, inflowMeasured = 0;
        bool inflowUsable = true, burstInflowKnown = true;
        foreach (var s in _series)
        {
            if (!(s.InBalance && s.Kind == NodeKind.Inflow)) continue;
            inflows++;
            if (s.SlotStatus[slot] == SeriesState.Usable) { inflow += s.SlotValue[slot]; inflowMeasured++; }
            else inflowUsable = false;
            if (s.SlotStatus[slot] is SeriesState.Usable or SeriesState.Valued or SeriesState.Spiked) burstInflow += s.SlotValue[slot];
            else burstInflowKnown = false;
        }

        // Meters: the district demand implied by the meters in hand (the median of each one's value over its learned share,
        // robust to one meter gone astray), which estimates a missing or unusable meter and judges each meter's drift.
        Span<double> implied = stackalloc double[_series.Count];
        var impliedCount = 0;
        foreach (var s in _series)
            if (s.InBalance && s.Kind == NodeKind.Meter && s.SlotStatus[slot] == SeriesState.Usable && s.TryShare(out var share, out _))
                implied[impliedCount++] = s.SlotValue[slot] / share;
        var demand = impliedCount > 0 ? Robust.Median(implied[..impliedCount]) : double.NaN;
        double metered = 0;
        int meters = 0, metersMeasured = 0, metersAllValued = 0;
        var meteredKnown = true;
        foreach (var s in _series)
        {
            if (!(s.InBalance && s.Kind == NodeKind.Meter)) continue;
            meters++;
            if (s.SlotStatus[slot] is SeriesState.Usable or SeriesState.Valued) metersAllValued++;
            if (s.SlotStatus[slot] == SeriesState.Usable) { metered += s.SlotValue[slot]; metersMeasured++; }
            else if (double.IsFinite(demand) && s.TryShare(out var share, out _)) metered += demand * share;
            else if (s.Baseline.TryExpected(minuteUnixMs + _options.LocalOffsetMinutes * MinuteMs, out var median, out _, dayFallback: true)) metered += median;
            else if (double.IsFinite(s.LastUsableValue)) metered += s.LastUsableValue;
            else meteredKnown = false;
        }
        // A meter's share of the total, learned only from minutes where every meter is valued and none drifts.
        if (meters > 0 && metersAllValued == meters)
        {
            _quarterSharesCount++;
            foreach (var s in _series)
                if (s.InBalance && s.Kind == NodeKind.Meter) s.QuarterSum += s.SlotValue[slot];
        }

        var balance = inflowUsable && inflows > 0 && meteredKnown ? inflow - metered : double.NaN;
        if (inflowUsable && inflows > 0)
            _inflowMeanLps = double.IsFinite(_inflowMeanLps) ? _inflowMeanLps + (inflow - _inflowMeanLps) / 1440 : inflow;

        // Efficiency: a minute at mean L/s is 60 s of it; an unusable inflow minute is estimated from its seasonal baseline.
        if (inflows > 0)
        {
            var inflowLps = inflowUsable ? inflow : EstimateInflow(minuteUnixMs);
            if (double.IsFinite(inflowLps) && meteredKnown)
            {
                _dayInflowM3 += inflowLps * 60 / 1000;
                _dayMeteredM3 += metered * 60 / 1000;
            }
            _dayNodeMinutes += inflows + meters;
            _dayMinutes++;
            _dayMeasuredNodeMinutes += inflowMeasured + metersMeasured;
        }

        HeadLossMinute(slot);
        Burst(minute, burstInflowKnown && inflows > 0 && meteredKnown ? burstInflow - metered : double.NaN);
        NightMinute(minute, NightBalance(balance));
        if ((minute + 1) % 15 == 0) CloseQuarter(minute + 1 - 15);

        // Missing windows, reported once the balance stopped waiting for them, then the slot is free for minute + 32.
        foreach (var s in _series)
        {
            // A series silent for a day is no longer reported minute by minute (its windows say the rest when it returns).
            if (s.SlotStatus[slot] == SeriesState.Absent && s.LastSeenMinute != long.MinValue && minute - s.LastSeenMinute <= 1440)
                _outputs.Quality.Add(Missing(s, minute));
            s.SlotStatus[slot] = SeriesState.Absent;
            s.SlotValue[slot] = double.NaN;
        }
        _nextMinute = minute + 1;
    }

    private double EstimateInflow(long minuteUnixMs)
    {
        double total = 0;
        foreach (var s in _series)
        {
            if (!(s.InBalance && s.Kind == NodeKind.Inflow)) continue;
            if (s.Baseline.TryExpected(minuteUnixMs + _options.LocalOffsetMinutes * MinuteMs, out var median, out _, dayFallback: true)) total += median;
            else if (double.IsFinite(s.LastUsableValue)) total += s.LastUsableValue;
            else return double.NaN;
        }
        return total;
    }

    private static long FloorDiv(long a, long b) => a / b - (a % b < 0 ? 1 : 0);

    // ───────────────────────────── burst ─────────────────────────────


    private void Burst(long minute, double balance)
    {
        var index = (int)(minute % BalanceRing);
        _balance[index] = balance;
        _balanceMinute[index] = minute;
        if (!double.IsFinite(balance)) return;     // no balance this minute: the runs neither grow nor break

        // Resolution, newest first: a burst is over when the net flow is back within half its threshold of the flow before it.
        for (var i = _bursts.Count - 1; i >= 0; i--)
        {
            var b = _bursts[i];
            var excess = balance - b.Reference;
            b.PeakExcess = Math.Max(b.PeakExcess, excess);
            if (b.StepCount < StepMinutes) { b.StepSum += excess; b.StepCount++; }
            // Over when more than half its flow is gone (not when the net flow is back to the reference: a background leak
            // growing under a day-long burst would keep it open for ever).
            if (excess < Math.Max(b.Threshold, b.Step) / 2)
            {
                if (b.Calm++ == 0) b.CalmStartMinute = minute;
            }
            else b.Calm = 0;
            if (b.Calm < _options.BurstResolveMinutes) continue;
            _bursts.RemoveAt(i);
            _outputs.Anomalies.Add(BurstEvent(b, AnomalyState.Resolved, b.CalmStartMinute * MinuteMs, balance,
                Text($"net flow back to {balance:0.00} L/s, within {b.Threshold / 2:0.00} of its reference {b.Reference:0.00} (peak excess {b.PeakExcess:0.00})")));
            // The bursts' minutes must not become the next reference.
            if (!BurstOpen)
                for (var k = 0; k < BalanceRing; k++)
                    if (_balanceMinute[k] < b.CalmStartMinute) _balance[k] = double.NaN;
        }

        // Onset, against the recent level. While the hour of reference still holds minutes from before the newest open
        // burst, that burst would be found again; once the reference is all burst, a second burst on top is one of its own.
        if (BurstOpen && minute - BalanceRing < _bursts[^1].StartMinute + _options.BurstMinutes) return;
        if (!Reference(minute, out var reference, out var threshold)) return;
        var over = balance - reference;
        if (over > threshold)
        {
            if (_burstRun++ == 0) _burstRunStartMinute = minute;
        }
        else _burstRun = 0;
        if (_burstRun < _options.BurstMinutes || _bursts.Count >= MaxOpenBursts) return;
        _burstRun = 0;
        var burst = new OpenBurst { StartMinute = _burstRunStartMinute, Reference = reference, Threshold = threshold, PeakExcess = over };
        _bursts.Add(burst);
        _outputs.Anomalies.Add(BurstEvent(burst, AnomalyState.Open, null, balance,
            Text($"net flow {balance:0.00} L/s, {over:0.00} above its reference {reference:0.00} (threshold {threshold:0.00}) for {_options.BurstMinutes} minutes")));
    }

    private AnomalyEvent BurstEvent(OpenBurst b, AnomalyState state, long? endUnixMs, double balance, string reason)
    {
        var ratio = double.IsFinite(_inflowMeanLps) && _inflowMeanLps > 0 ? b.PeakExcess / _inflowMeanLps : 1;
        var severity = ratio >= 1 ? AnomalySeverity.Critical : ratio >= 0.5 ? AnomalySeverity.High : ratio >= 0.2 ? AnomalySeverity.Medium : AnomalySeverity.Low;
        return new AnomalyEvent(Text($"{DistrictId}:burst:{b.StartMinute * MinuteMs}"), AnomalyKind.Burst, DistrictId, null, "flow",
            b.StartMinute * MinuteMs, endUnixMs, severity, 1 - Math.Exp(-b.PeakExcess / b.Threshold), state,
            balance, b.Reference, "L/s", reason);
    }

    /// <summary>The reference net flow (median of the minutes [m − 75, m − 15)) and the burst threshold from their robust
    /// minute-to-minute noise; false with fewer than 20 such minutes.</summary>
    private bool Reference(long minute, out double reference, out double threshold)
    {
        Span<double> values = stackalloc double[BalanceRing];
        Span<double> steps = stackalloc double[BalanceRing];
        int n = 0, m = 0;
        for (var t = minute - BalanceRing + 1; t <= minute - ReferenceLagMinutes; t++)
        {
            var i = (int)(((t % BalanceRing) + BalanceRing) % BalanceRing);
            if (_balanceMinute[i] != t || !double.IsFinite(_balance[i])) continue;
            values[n++] = _balance[i];
            var j = (int)((((t - 1) % BalanceRing) + BalanceRing) % BalanceRing);
            if (_balanceMinute[j] == t - 1 && double.IsFinite(_balance[j])) steps[m++] = _balance[i] - _balance[j];
        }
        if (n < 20 || m < 10)
        {
            (reference, threshold) = (double.NaN, double.NaN);
            return false;
        }
        reference = Robust.Median(values[..n]);
        var (_, mad) = Robust.MedianMad(steps[..m]);
        var sigma = Robust.MadToSigma * mad / Math.Sqrt(2);
        threshold = Math.Max(_options.BurstMinLitresPerSecond, _options.BurstSigmas * sigma);
        return true;
    }

    // ───────────────────────────── minimum night flow ─────────────────────────────

    /// <summary>The net flow without the open bursts' flow (their steps), so that a burst open at night neither hides nor
    /// fakes the night's minimum; NaN while a burst's step is still being measured or it may be ending.</summary>
    private double NightBalance(double balance)
    {
        foreach (var b in _bursts)
        {
            // Still measuring its step, or perhaps repaired (calm minutes pending): its flow is not known this minute.
            if (b.StepCount < 10 || b.Calm > 0) return double.NaN;
            balance -= b.Step;
        }
        return balance;
    }

    private void NightMinute(long minute, double balance)
    {
        var quarter = minute - (((minute % 15) + 15) % 15);
        if (quarter != _quarterStartMinute)
        {
            _quarterStartMinute = quarter;
            _quarterBalanceSum = 0;
            _quarterBalanceCount = 0;
        }
        if (double.IsFinite(balance))
        {
            _quarterBalanceSum += balance;
            _quarterBalanceCount++;
        }
    }

    /// <summary>The quarter-hour [start, start + 15) is complete: night minimum, meter shares and drift, head loss.</summary>
    private void CloseQuarter(long startMinute)
    {
        var local = startMinute * MinuteMs + _options.LocalOffsetMinutes * MinuteMs;
        var localDay = FloorDiv(local, DayMs);
        var minuteOfDay = (int)((local - localDay * DayMs) / MinuteMs);
        var inNight = minuteOfDay >= _options.NightStartMinute && minuteOfDay + 15 <= _options.NightEndMinute;
        if (inNight)
        {
            if (_nightDay != localDay)
            {
                _nightDay = localDay;
                _nightMin = double.NaN;
                _nightQuarters = 0;
                _nightSpoiled = false;
            }
            if (_quarterStartMinute == startMinute && _quarterBalanceCount >= 10)
            {
                var mean = _quarterBalanceSum / _quarterBalanceCount;
                _nightMin = double.IsNaN(_nightMin) ? mean : Math.Min(_nightMin, mean);
                _nightQuarters++;
            }
            if (minuteOfDay + 15 + 15 > _options.NightEndMinute) CloseNight(startMinute * MinuteMs + QuarterMs);
        }
        MeterShares();
        HeadLossQuarter();
    }

    private void CloseNight(long nightEndUnixMs)
    {
        var needed = (_options.NightEndMinute - _options.NightStartMinute) / 15 / 2;
        if (_nightSpoiled || _nightQuarters < needed || !double.IsFinite(_nightMin)) return;
        var mnf = _nightMin;
        _nightSpoiled = true;      // closed: once

        // Trend of the recent valid nights (Theil-Sen: the median of pairwise slopes, L/s per night).
        if (_recentNightCount == _recentNights.Length) Array.Copy(_recentNights, 1, _recentNights, 0, _recentNights.Length - 1);
        else _recentNightCount++;
        _recentNights[_recentNightCount - 1] = mnf;
        var trend = Trend();

        var baselineNights = Math.Min(_normalNightCount, _options.NightBaselineNights);
        if (baselineNights < _options.NightMinBaselineNights)
        {
            RememberNormalNight(mnf);
            return;
        }
        Span<double> scratch = stackalloc double[baselineNights];
        _normalNights.AsSpan(_normalNightCount - baselineNights, baselineNights).CopyTo(scratch);
        var (baseline, mad) = Robust.MedianMad(scratch);
        var threshold = Math.Max(_options.NightMinRiseLitresPerSecond, _options.NightSigmas * Robust.MadToSigma * mad);
        var excess = mnf - baseline;
        var raised = excess > threshold;
        var consecutive = _previousNightDay == _nightDay - 1;
        var nightStartUnixMs = _nightDay * DayMs + _options.NightStartMinute * MinuteMs - _options.LocalOffsetMinutes * MinuteMs;
        var twoNights = raised && _previousNightRaised && consecutive;
        // The first usable night after nights without a balance, strongly raised and (nearly) all balanced, stands alone
        // (DistrictAnalyzerOptions.NightAfterGapFactor says why a fault cannot do this). The first night judged after the
        // learning nights has no previous night: not a gap.
        var lostNights = _previousNightDay == long.MinValue ? 0 : _nightDay - _previousNightDay - 1;
        var nightQuarters = (_options.NightEndMinute - _options.NightStartMinute) / 15;
        var alone = lostNights > 0 && excess > _options.NightAfterGapFactor * threshold
            && _nightQuarters >= _options.NightAfterGapMinCoverage * nightQuarters;
        if (!_leakOpen && (twoNights || alone))
        {
            _leakOpen = true;
            _leakLowNights = 0;
            _leakStartUnixMs = twoNights ? nightStartUnixMs - DayMs : nightStartUnixMs;      // the first raised night
            _outputs.Anomalies.Add(LeakEvent(AnomalyState.Open, null, mnf, baseline, excess,
                Text($"minimum night flow {mnf:0.000} L/s, {excess:0.000} above the median {baseline:0.000} of {baselineNights} normal nights ") +
                (twoNights
                    ? Text($"(threshold {threshold:0.000}) two nights running, previous +{_previousNightExcess:0.000}; trend {trend:+0.000;-0.000} L/s per night")
                    : Text($"(threshold {threshold:0.000}), {excess / threshold:0.0} times it on the first night after {lostNights} without a balance ") +
                      Text($"({_nightQuarters} of {nightQuarters} quarters balanced); trend {trend:+0.000;-0.000} L/s per night"))));
        }
        else if (_leakOpen)
        {
            _leakLowNights = excess < threshold / 2 ? _leakLowNights + 1 : 0;
            if (_leakLowNights >= 2)
            {
                _leakOpen = false;
                _outputs.Anomalies.Add(LeakEvent(AnomalyState.Resolved, nightStartUnixMs - DayMs, mnf, baseline, excess,
                    Text($"minimum night flow {mnf:0.000} L/s back within {threshold / 2:0.000} of its baseline {baseline:0.000} two nights running")));
            }
        }
        // Only normal nights teach the baseline: a raised night or a night under an open leak would hide the leak it shows.
        if (!raised && !_leakOpen) RememberNormalNight(mnf);
        _previousNightRaised = raised;
        _previousNightExcess = excess;
        _previousNightDay = _nightDay;
    }

    private void RememberNormalNight(double mnf)
    {
        if (_normalNightCount == NightRing) Array.Copy(_normalNights, 1, _normalNights, 0, NightRing - 1);
        else _normalNightCount++;
        _normalNights[_normalNightCount - 1] = mnf;
    }

    private double Trend()
    {
        var n = _recentNightCount;
        if (n < 2) return 0;
        Span<double> slopes = stackalloc double[n * (n - 1) / 2];
        var k = 0;
        for (var i = 0; i < n; i++)
            for (var j = i + 1; j < n; j++) slopes[k++] = (_recentNights[j] - _recentNights[i]) / (j - i);
        return Robust.Median(slopes[..k]);
    }

    private AnomalyEvent LeakEvent(AnomalyState state, long? endUnixMs, double mnf, double baseline, double excess, string reason)
    {
        var ratio = double.IsFinite(_inflowMeanLps) && _inflowMeanLps > 0 ? excess / _inflowMeanLps : 0;
        var severity = ratio >= 0.3 ? AnomalySeverity.Critical : ratio >= 0.15 ? AnomalySeverity.High : ratio >= 0.05 ? AnomalySeverity.Medium : AnomalySeverity.Low;
        return new AnomalyEvent(Text($"{DistrictId}:background_leak:{_leakStartUnixMs}"), AnomalyKind.BackgroundLeak, DistrictId, null, "flow",
            _leakStartUnixMs, endUnixMs, severity, Math.Clamp(excess / Math.Max(mnf, 1e-9), 0, 1), state, mnf, baseline, "L/s", reason);
    }

    // ───────────────────────────── meters against their neighbours ─────────────────────────────

    private void MeterShares()
    {
        // The quarter's share of each meter from the minutes where all were valued, against its learned share.
        if (_quarterSharesCount >= 10)
        {
            double total = 0;
            var anyDrifting = false;
            foreach (var s in _series)
                if (s.InBalance && s.Kind == NodeKind.Meter) { total += s.QuarterSum; anyDrifting |= s.Drifting; }
            if (total > 0)
            {
                // The demand the meters imply (median over meters of sum / learned share) judges each: one meter astray
                // does not move the median of four.
                Span<double> implied = stackalloc double[_series.Count];
                var n = 0;
                foreach (var s in _series)
                    if (s.InBalance && s.Kind == NodeKind.Meter && !s.Drifting && s.TryShare(out var share, out _)) implied[n++] = s.QuarterSum / share;
                // A meter flagged as drifting is left out (with three meters, the median of the other two is their mean).
                var demand = n >= 2 ? Robust.Median(implied[..n]) : double.NaN;
                foreach (var s in _series)
                {
                    if (!(s.InBalance && s.Kind == NodeKind.Meter)) continue;
                    if (double.IsFinite(demand) && s.TryShare(out var share, out var sigma))
                    {
                        var observed = s.QuarterSum / demand;
                        var z = (observed - share) / Math.Max(sigma, 0.01 * share);
                        s.Drifting = s.Cusum.Update(z, _options.DriftAllowance, _options.DriftDecision, _options.DriftClearQuarters);
                        s.DriftSource = DriftSource.MeterNeighbours;
                        (s.DriftObserved, s.DriftExpected) = (observed, share);
                    }
                    if (!anyDrifting) s.AddShare(s.QuarterSum / total);
                }
            }
        }
        _quarterSharesCount = 0;
        foreach (var s in _series) s.QuarterSum = 0;
    }

    // ───────────────────────────── head loss: inflow flow and pressures ─────────────────────────────

    private void HeadLossMinute(int slot)
    {
        SeriesState? flow = null, inlet = null, critical = null;
        foreach (var s in _series)
        {
            if (s.Kind == NodeKind.Inflow && s.IsFlow) { if (flow is not null) return; flow = s; }        // one inflow: the relation holds for one feed
            else if (s.Kind == NodeKind.Inflow && s.Metric == "pressure") inlet ??= s;
            else if (s.Kind == NodeKind.PressureLogger && s.Metric == "pressure") critical ??= s;
        }
        if (flow is null || inlet is null || critical is null) return;
        bool Valued(SeriesState s) => s.SlotStatus[slot] is SeriesState.Usable or SeriesState.Valued;
        if (!Valued(flow) || !Valued(inlet) || !Valued(critical)) return;
        var q = flow.SlotValue[slot];
        _quarterQ2Sum += q * q;
        _quarterHeadSum += inlet.SlotValue[slot] - critical.SlotValue[slot];
        _quarterHeadCount++;
    }

    /// <summary>
    /// Head loss h = p(inlet) − p(critical point) grows with the square of the flow through the district (Darcy-Weisbach;
    /// Hazen-Williams' exponent 1.85 is close enough over a day's range): h ≈ a + b·Q², a being the static difference. Fitted
    /// by least squares on the last two days of usable quarter-hours. A leak raises Q and h together; a drifting inflow
    /// meter raises Q alone, a drifting pressure sensor h alone: the residual's CUSUM finds the drift, the series' own
    /// seasonal baseline says which of the three moved.
    /// </summary>
    private void HeadLossQuarter()
    {
        if (_quarterHeadCount < 10)
        {
            (_quarterQ2Sum, _quarterHeadSum, _quarterHeadCount) = (0, 0, 0);
            return;
        }
        var q2 = _quarterQ2Sum / _quarterHeadCount;
        var head = _quarterHeadSum / _quarterHeadCount;
        (_quarterQ2Sum, _quarterHeadSum, _quarterHeadCount) = (0, 0, 0);
        SeriesState? flow = null, inlet = null, critical = null;
        foreach (var s in _series)
        {
            if (s.Kind == NodeKind.Inflow && s.IsFlow) flow = s;
            else if (s.Kind == NodeKind.Inflow && s.Metric == "pressure") inlet ??= s;
            else if (s.Kind == NodeKind.PressureLogger && s.Metric == "pressure") critical ??= s;
        }
        if (flow is null || inlet is null || critical is null) return;

        if (_headCount >= 48 && Fit(out var a, out var b, out var sigma))
        {
            var expected = a + b * q2;
            var z = (head - expected) / Math.Max(sigma, 0.05);
            var flagged = _headCusum.Update(z, _options.DriftAllowance, _options.DriftDecision, _options.DriftClearQuarters);
            if (flagged && _headBlamed < 0) _headBlamed = Blame(flow, inlet, critical, _headCusum.Direction);
            if (!flagged) _headBlamed = -1;
            foreach (var s in (SeriesState[])[flow, inlet, critical])
            {
                var blamed = _headBlamed >= 0 && _series[_headBlamed] == s;
                if (blamed || s.DriftSource == DriftSource.HeadLoss)
                {
                    s.Drifting = blamed;
                    s.Cusum = _headCusum;
                    s.DriftSource = DriftSource.HeadLoss;
                    (s.DriftObserved, s.DriftExpected) = (head, expected);
                }
            }
            if (flagged) return;     // a drifting quarter does not teach the fit
        }
        if (flow.Drifting || inlet.Drifting || critical.Drifting) return;
        _headQ2[_headNext] = (float)q2;
        _head[_headNext] = (float)head;
        _headNext = (_headNext + 1) % HeadLossRing;
        if (_headCount < HeadLossRing) _headCount++;
    }

    private bool Fit(out double a, out double b, out double sigma)
    {
        double mx = 0, my = 0;
        for (var i = 0; i < _headCount; i++) { mx += _headQ2[i]; my += _head[i]; }
        mx /= _headCount;
        my /= _headCount;
        double sxx = 0, sxy = 0;
        for (var i = 0; i < _headCount; i++) { sxx += (_headQ2[i] - mx) * (_headQ2[i] - mx); sxy += (_headQ2[i] - mx) * (_head[i] - my); }
        b = sxx > 0 ? Math.Max(0, sxy / sxx) : 0;      // head loss never falls as flow rises
        a = my - b * mx;
        Span<double> residuals = stackalloc double[_headCount];
        for (var i = 0; i < _headCount; i++) residuals[i] = _head[i] - (a + b * _headQ2[i]);
        var (_, mad) = Robust.MedianMad(residuals);
        sigma = Robust.MadToSigma * mad;
        return double.IsFinite(a) && double.IsFinite(sigma);
    }

    /// <summary>Which of the three moved: a pressure sensor whose own recent level left its seasonal baseline in the
    /// direction of the residual, else the inflow meter (the usual suspect: its reading is the one a leak would move too).</summary>
    private int Blame(SeriesState flow, SeriesState inlet, SeriesState critical, int direction)
    {
        double Deviation(SeriesState s)
        {
            if (s.RecentCount == 0 || !s.Baseline.TryExpected(s.LastStartUnixMs[0] + _options.LocalOffsetMinutes * MinuteMs, out var median, out var sigma)) return 0;
            Span<double> recent = stackalloc double[SeriesState.RecentMinutes];
            s.Recent.AsSpan(0, s.RecentCount).CopyTo(recent);
            var spread = Math.Max(sigma, double.IsFinite(s.MeanAbsStep) ? s.MeanAbsStep / 1.128 : 1e-3);
            return (Robust.Median(recent[..s.RecentCount]) - median) / spread;
        }
        // Residual up (h too high for Q): inlet up, critical down or flow down. Down: the reverse.
        var inletZ = Deviation(inlet) * direction;
        var criticalZ = -Deviation(critical) * direction;
        if (Math.Max(inletZ, criticalZ) >= 3) return _series.IndexOf(inletZ >= criticalZ ? inlet : critical);
        return _series.IndexOf(flow);
    }

    // ───────────────────────────── efficiency ─────────────────────────────

    private void CloseDay()
    {
        if (_dayNodeMinutes == 0) return;
        // Measured node-minutes over those of a whole day (a day the analyser saw only part of is that much less complete).
        var completeness = _dayMeasuredNodeMinutes / (double)_dayNodeMinutes * Math.Min(1, _dayMinutes / 1440.0);
        _pastDay[_pastNext] = _day * DayMs;
        _pastInflowM3[_pastNext] = _dayInflowM3;
        _pastMeteredM3[_pastNext] = _dayMeteredM3;
        _pastCompleteness[_pastNext] = completeness;
        _pastNext = (_pastNext + 1) % 7;
        if (_pastCount < 7) _pastCount++;
        double inflow = 0, metered = 0, complete = 0;
        var days = 0;
        for (var i = 0; i < _pastCount; i++)
        {
            if (_pastDay[i] <= _day * DayMs - 7 * DayMs) continue;    // only the 7 days ending today
            inflow += _pastInflowM3[i];
            metered += _pastMeteredM3[i];
            complete += _pastCompleteness[i];
            days++;
        }
        _outputs.Efficiency.Add(new EfficiencyResult(DistrictId, _day * DayMs, _dayInflowM3, _dayMeteredM3, _dayInflowM3 - _dayMeteredM3,
            Percent(_dayInflowM3 - _dayMeteredM3, _dayInflowM3), completeness,
            days, inflow, metered, inflow - metered, Percent(inflow - metered, inflow), complete / 7));
        (_dayInflowM3, _dayMeteredM3, _dayNodeMinutes, _dayMeasuredNodeMinutes, _dayMinutes) = (0, 0, 0, 0, 0);
    }

    private static double Percent(double part, double whole) => whole > 0 ? 100 * part / whole : double.NaN;

    // ───────────────────────────── state ─────────────────────────────

    /// <summary>The whole state as bytes (format 1), from <paramref name="headroom"/> on.</summary>
    public byte[] Save(int headroom = 0)
    {
        var w = new StateWriter();
        w.Byte(Format);
        w.String(DistrictId);
        w.Int(_series.Count);
        foreach (var s in _series) s.Write(w);
        w.Long(_nextMinute);
        w.Long(_firstMinute);
        w.Long(_watermarkMinute);
        w.Doubles(_balance);
        foreach (var m in _balanceMinute) w.Long(m);
        w.Double(_inflowMeanLps);
        w.Int(_burstRun);
        w.Long(_burstRunStartMinute);
        w.Int(_bursts.Count);
        foreach (var b in _bursts)
        {
            w.Long(b.StartMinute);
            w.Double(b.Reference);
            w.Double(b.Threshold);
            w.Double(b.PeakExcess);
            w.Int(b.Calm);
            w.Long(b.CalmStartMinute);
            w.Double(b.StepSum);
            w.Int(b.StepCount);
        }
        w.Long(_quarterStartMinute);
        w.Double(_quarterBalanceSum);
        w.Int(_quarterBalanceCount);
        w.Long(_nightDay);
        w.Double(_nightMin);
        w.Int(_nightQuarters);
        w.Bool(_nightSpoiled);
        w.Int(_normalNightCount);
        for (var i = 0; i < _normalNightCount; i++) w.Double(_normalNights[i]);
        w.Int(_recentNightCount);
        for (var i = 0; i < _recentNightCount; i++) w.Double(_recentNights[i]);
        w.Bool(_previousNightRaised);
        w.Long(_previousNightDay);
        w.Double(_previousNightExcess);
        w.Bool(_leakOpen);
        w.Long(_leakStartUnixMs);
        w.Int(_leakLowNights);
        w.Double(_quarterQ2Sum);
        w.Double(_quarterHeadSum);
        w.Int(_quarterHeadCount);
        w.Int(_quarterSharesCount);
        w.Floats(_headQ2);
        w.Floats(_head);
        w.Int(_headCount);
        w.Int(_headNext);
        _headCusum.Write(w);
        w.Int(_headBlamed);
        w.Long(_day);
        w.Double(_dayInflowM3);
        w.Double(_dayMeteredM3);
        w.Long(_dayNodeMinutes);
        w.Long(_dayMeasuredNodeMinutes);
        w.Long(_dayMinutes);
        for (var i = 0; i < 7; i++)
        {
            w.Long(_pastDay[i]);
            w.Double(_pastInflowM3[i]);
            w.Double(_pastMeteredM3[i]);
            w.Double(_pastCompleteness[i]);
        }
        w.Int(_pastCount);
        w.Int(_pastNext);
        return w.ToArray(headroom);
    }

    /// <summary>An analyser from <see cref="Save"/>'s bytes; FormatException when they are not a state of this format.</summary>
    public static DistrictAnalyzer Restore(ReadOnlySpan<byte> state, DistrictAnalyzerOptions? options = null)
    {
        var r = new StateReader(state);
        var format = r.Byte();
        if (format != Format) throw new FormatException($"district analyser state: format {format}, expected {Format}");
        var a = new DistrictAnalyzer(r.String(), options);
        var count = r.Count(1);
        if (count > a._options.MaxSeries) throw new FormatException($"district analyser state: {count} series, more than MaxSeries = {a._options.MaxSeries}");
        for (var i = 0; i < count; i++) a._series.Add(SeriesState.Read(ref r));
        a._nextMinute = r.Long();
        a._firstMinute = r.Long();
        a._watermarkMinute = r.Long();
        var balance = r.Doubles();
        if (balance.Length != BalanceRing) throw new FormatException($"district analyser state: {balance.Length} balance minutes, expected {BalanceRing}");
        balance.CopyTo(a._balance, 0);
        for (var i = 0; i < BalanceRing; i++) a._balanceMinute[i] = r.Long();
        a._inflowMeanLps = r.Double();
        a._burstRun = r.Int();
        a._burstRunStartMinute = r.Long();
        var bursts = r.Int();
        if (bursts is < 0 or > MaxOpenBursts) throw new FormatException($"district analyser state: {bursts} open bursts");
        for (var i = 0; i < bursts; i++)
            a._bursts.Add(new OpenBurst { StartMinute = r.Long(), Reference = r.Double(), Threshold = r.Double(), PeakExcess = r.Double(), Calm = r.Int(), CalmStartMinute = r.Long(), StepSum = r.Double(), StepCount = r.Int() });
        a._quarterStartMinute = r.Long();
        a._quarterBalanceSum = r.Double();
        a._quarterBalanceCount = r.Int();
        a._nightDay = r.Long();
        a._nightMin = r.Double();
        a._nightQuarters = r.Int();
        a._nightSpoiled = r.Bool();
        a._normalNightCount = r.Int();
        if (a._normalNightCount is < 0 or > NightRing) throw new FormatException($"district analyser state: {a._normalNightCount} nights");
        for (var i = 0; i < a._normalNightCount; i++) a._normalNights[i] = r.Double();
        a._recentNightCount = r.Int();
        if (a._recentNightCount < 0 || a._recentNightCount > a._recentNights.Length) throw new FormatException($"district analyser state: {a._recentNightCount} recent nights");
        for (var i = 0; i < a._recentNightCount; i++) a._recentNights[i] = r.Double();
        a._previousNightRaised = r.Bool();
        a._previousNightDay = r.Long();
        a._previousNightExcess = r.Double();
        a._leakOpen = r.Bool();
        a._leakStartUnixMs = r.Long();
        a._leakLowNights = r.Int();
        a._quarterQ2Sum = r.Double();
        a._quarterHeadSum = r.Double();
        a._quarterHeadCount = r.Int();
        a._quarterSharesCount = r.Int();
        var q2 = r.Floats();
        var head = r.Floats();
        if (q2.Length != HeadLossRing || head.Length != HeadLossRing) throw new FormatException("district analyser state: head-loss ring of the wrong size");
        q2.CopyTo(a._headQ2, 0);
        head.CopyTo(a._head, 0);
        a._headCount = Math.Clamp(r.Int(), 0, HeadLossRing);
        a._headNext = Math.Clamp(r.Int(), 0, HeadLossRing - 1);
        a._headCusum = DriftCusum.Read(ref r);
        a._headBlamed = r.Int();
        if (a._headBlamed >= a._series.Count) throw new FormatException($"district analyser state: blamed series {a._headBlamed} of {a._series.Count}");
        a._day = r.Long();
        a._dayInflowM3 = r.Double();
        a._dayMeteredM3 = r.Double();
        a._dayNodeMinutes = r.Long();
        a._dayMeasuredNodeMinutes = r.Long();
        a._dayMinutes = r.Long();
        for (var i = 0; i < 7; i++)
        {
            a._pastDay[i] = r.Long();
            a._pastInflowM3[i] = r.Double();
            a._pastMeteredM3[i] = r.Double();
            a._pastCompleteness[i] = r.Double();
        }
        a._pastCount = Math.Clamp(r.Int(), 0, 7);
        a._pastNext = Math.Clamp(r.Int(), 0, 6);
        r.End();
        return a;
    }
}
