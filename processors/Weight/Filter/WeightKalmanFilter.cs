using System.Globalization;
using StreamHealth.Schemas;

namespace StreamHealth.Weight.Filter;

/// <summary>Per-user body-weight Kalman filter (issue 4): weight and trend with outlier gating,
/// re-anchoring after real step changes, robust (re)initialisation, duplicate and order checks.</summary>
/// <remarks>
/// <para>Use: load the user's <see cref="WeightFilterState"/> (<see cref="WeightStateCodec.Decode"/>, or
/// <see cref="WeightStateCodec.NewState"/> for a new user), call <see cref="Process"/>, store the state
/// again when <see cref="WeightStep.StateChanged"/>, emit <see cref="WeightStep.WriteTo"/>'s WeightResult.
/// The filter object holds only its options and is safe to share between threads; a state must not be
/// processed by two threads at once. Pure code: no I/O, no clock (time is the measurement's event time).</para>
/// <para>What <see cref="Process"/> does, in order:</para>
/// <list type="number">
/// <item>Unit: kg, lb, st converted to kg; unspecified → UNKNOWN_UNIT. Value NaN/∞ or outside
/// [MinPlausibleKg, MaxPlausibleKg] → IMPLAUSIBLE. Neither changes the state.</item>
/// <item>Same time, source, unit and raw value as one of the last <see cref="MeasurementFingerprint.RingSize"/>
/// measurements processed → DUPLICATE, state unchanged.</item>
/// <item>Older than the newest processed measurement → OUT_OF_ORDER: not used (the filter never rewinds);
/// only its fingerprint is kept.</item>
/// <item>No estimate yet: buffered (BUFFERED_FOR_INITIALIZATION, needs_initialization) until
/// InitMinMeasurements lie within InitWindowDays; then <see cref="RobustBaseline"/> starts the estimate
/// (INITIALIZED).</item>
/// <item>More than ReinitializeGapDays since the last accepted measurement → the estimate is dropped
/// (REINITIALIZED_AFTER_GAP, needs_reinitialization) and this measurement starts the new buffer.</item>
/// <item>Predict to the measurement's time; normalised innovation d = |y|/√S above OutlierGateSigma →
/// OUTLIER (estimate unchanged, the measurement joins the pending rejections). When the last
/// ReanchorRejections pending rejections lie within ReanchorWindowDays, on the same side of the prediction
/// and within ReanchorMaxSpreadKg of each other, the weight really moved: the level restarts at their
/// median (REANCHORED_AFTER_STEP_CHANGE, accepted), keeping the trend but resetting its uncertainty.</item>
/// <item>Otherwise the Kalman update (ACCEPTED); pending rejections are cleared, since they were not consecutive.</item>
/// </list>
/// </remarks>
public sealed class WeightKalmanFilter
{
    private const double MsPerDay = 86_400_000.0;

    private readonly double _varianceCareTeam;
    private readonly double _varianceConnectedScale;
    private readonly double _variancePatientReported;
    private readonly double _varianceUnspecified;
    private readonly double _accelerationNoise;
    private readonly double _gate;
    private readonly int _initMinMeasurements;
    private readonly long _initWindowMs;
    private readonly double _initWindowDays;
    private readonly double _initMinSlopeSpanDays;
    private readonly double _initialTrendSd;
    private readonly double _initOutlierZ;
    private readonly double _gapMs;
    private readonly int _reanchorRejections;
    private readonly long _reanchorWindowMs;
    private readonly double _reanchorMaxSpreadKg;
    private readonly double _minKg;
    private readonly double _maxKg;

    /// <summary>Reads <paramref name="options"/> once; later changes to the object have no effect.</summary>
    /// <exception cref="ArgumentException">Listing every invalid setting by name and value.</exception>
    public WeightKalmanFilter(WeightFilterOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        if (problems.Count > 0)
            throw new ArgumentException("invalid weight filter options: " + string.Join("; ", problems), nameof(options));

        static double Square(double x) => x * x;
        _varianceCareTeam = Square(options.MeasurementSdKg.CareTeam);
        _varianceConnectedScale = Square(options.MeasurementSdKg.ConnectedScale);
        _variancePatientReported = Square(options.MeasurementSdKg.PatientReported);
        _varianceUnspecified = Square(options.MeasurementSdKg.Unspecified);
        _accelerationNoise = options.AccelerationNoiseKg2PerDay3;
        _gate = options.OutlierGateSigma;
        _initMinMeasurements = Math.Min(options.InitMinMeasurements, RobustBaseline.MaxSamples);
        _initWindowDays = options.InitWindowDays;
        _initWindowMs = (long)(options.InitWindowDays * MsPerDay);
        _initMinSlopeSpanDays = options.InitMinSlopeSpanDays;
        _initialTrendSd = options.InitialTrendSdKgPerDay;
        _initOutlierZ = options.InitOutlierZ;
        _gapMs = options.ReinitializeGapDays * MsPerDay;
        _reanchorRejections = options.ReanchorRejections;
        _reanchorWindowMs = (long)(options.ReanchorWindowDays * MsPerDay);
        _reanchorMaxSpreadKg = options.ReanchorMaxSpreadKg;
        _minKg = options.MinPlausibleKg;
        _maxKg = options.MaxPlausibleKg;
    }

    /// <summary>Measurement variance (kg²) the filter assumes for <paramref name="source"/>.</summary>
    public double MeasurementVarianceKg2(WeightSource source) => source switch
    {
        WeightSource.CareTeam => _varianceCareTeam,
        WeightSource.ConnectedScale => _varianceConnectedScale,
        WeightSource.PatientReported => _variancePatientReported,
        _ => _varianceUnspecified,
    };

    /// <summary>Processes one measurement, mutating <paramref name="state"/> in place (see the class remarks).
    /// Allocation-free on the accepted path once the fingerprint ring is full.</summary>
    public WeightStep Process(WeightFilterState state, in WeightObservation observation)
    {
        ArgumentNullException.ThrowIfNull(state);
        var time = observation.TimeUnixMs;
        if (!WeightUnits.TryToKilograms(observation.Value, observation.Unit, out var kg))
            return Describe(state, time, double.NaN, 0, WeightReasons.UnknownUnit, stateChanged: false);
        if (!double.IsFinite(kg) || kg < _minKg || kg > _maxKg)
            return Describe(state, time, double.IsFinite(kg) ? kg : double.NaN, 0, WeightReasons.Implausible, stateChanged: false);

        var variance = MeasurementVarianceKg2(observation.Source);
        var fingerprint = MeasurementFingerprint.Of(observation);
        if (MeasurementFingerprint.Contains(state.RecentFingerprints, fingerprint))
            return Describe(state, time, kg, variance, WeightReasons.Duplicate, stateChanged: false);

        // A migrated v1 state has an estimate but no fingerprints yet; a new state has neither.
        var processedBefore = state.Initialized || state.RecentFingerprints.Count > 0;
        RememberFingerprint(state, fingerprint);
        if (processedBefore && time < state.EventTimeUnixMs)
            return Describe(state, time, kg, variance, WeightReasons.OutOfOrder, stateChanged: true);
        state.EventTimeUnixMs = time;

        if (!state.Initialized)
            return Buffer(state, time, kg, observation.Source, variance, WeightReasons.None);

        if (time - state.EstimateTimeUnixMs > _gapMs)
        {
            ForgetEstimate(state);
            return Buffer(state, time, kg, observation.Source, variance, WeightReasons.ReinitializedAfterGap)
                with { NeedsReinitialization = true };
        }

        var core = Load(state);
        core.Predict((time - state.EstimateTimeUnixMs) / MsPerDay, _accelerationNoise);
        var innovationVariance = core.InnovationVariance(variance);
        var innovation = kg - core.WeightKg;
        var normalized = Math.Abs(innovation) / Math.Sqrt(innovationVariance);
        if (normalized > _gate)
            return RejectOrReanchor(state, in core, time, kg, observation.Source, variance, innovation, normalized);

        core.Update(innovation, innovationVariance);
        Store(state, in core, time);
        state.UpdateCount++;
        if (state.PendingRejections.Count > 0) state.PendingRejections.Clear();
        return EstimateStep(time, accepted: true, kg, innovation, normalized, in core, WeightReasons.Accepted);
    }

    /// <summary>The result of a measurement compared with an estimate: the updated one (Kalman update,
    /// re-anchor, initialisation) or, for a rejected measurement, the unchanged prediction.</summary>
    private static WeightStep EstimateStep(long time, bool accepted, double kg, double innovation, double normalized,
        in WeightTrendKalman estimate, WeightReasons reasons) => new()
    {
        EventTimeUnixMs = time,
        Accepted = accepted,
        Confidence = Math.Exp(-0.5 * normalized * normalized),
        RawWeightKg = kg,
        FilteredWeightKg = estimate.WeightKg,
        FilteredWeightSdKg = Math.Sqrt(estimate.VarWeightKg2),
        TrendKgPerDay = estimate.TrendKgPerDay,
        PredictionErrorKg = innovation,
        NormalizedInnovation = normalized,
        Reasons = reasons,
        StateChanged = true,
    };

    /// <summary>Starts (or restarts) the estimate from a batch, e.g. a user's recent history imported at
    /// sign-up, instead of waiting for the buffer. Whatever <paramref name="state"/> held is replaced (its
    /// duplicate fingerprints are kept and the batch's added); its newest time becomes the batch's newest.</summary>
    /// <remarks>Rule: 1 to <see cref="RobustBaseline.MaxSamples"/> measurements, in any order, every one in a
    /// known unit with a finite plausible value, all within InitWindowDays of each other (a longer history
    /// belongs in <see cref="Process"/>, which follows the trend through it). Identical measurements count once.
    /// Samples far from the batch's median are left out of the estimate as at ordinary initialisation.
    /// The returned step describes the newest measurement.</remarks>
    /// <exception cref="ArgumentException">Naming the first offending measurement, field and value.</exception>
    public WeightStep Initialize(WeightFilterState state, ReadOnlySpan<WeightObservation> batch)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (batch.IsEmpty)
            throw new ArgumentException("batch is empty: Initialize needs at least 1 measurement", nameof(batch));
        if (batch.Length > RobustBaseline.MaxSamples)
            throw new ArgumentException($"batch holds {batch.Length} measurements; Initialize takes at most {RobustBaseline.MaxSamples} (replay a longer history through Process)", nameof(batch));

        var newest = 0;
        var oldestTime = long.MaxValue;
        for (var i = 0; i < batch.Length; i++)
        {
            ref readonly var o = ref batch[i];
            if (!WeightUnits.TryToKilograms(o.Value, o.Unit, out var kg))
                throw new ArgumentException($"batch[{i}].Unit = {o.Unit}: must be kg, lb or st", nameof(batch));
            if (!double.IsFinite(o.Value))
                throw new ArgumentException($"batch[{i}].Value = {Format(o.Value)}: not a finite number", nameof(batch));
            if (kg < _minKg || kg > _maxKg)
                throw new ArgumentException($"batch[{i}].Value = {Format(o.Value)} {o.Unit} ({Format(Math.Round(kg, 2))} kg): outside the plausible {Format(_minKg)}-{Format(_maxKg)} kg", nameof(batch));
            if (o.TimeUnixMs >= batch[newest].TimeUnixMs) newest = i;
            oldestTime = Math.Min(oldestTime, o.TimeUnixMs);
        }
        var newestTime = batch[newest].TimeUnixMs;
        if (newestTime - oldestTime > _initWindowMs)
            throw new ArgumentException(
                $"batch spans {Format(Math.Round((newestTime - oldestTime) / MsPerDay, 1))} days ({Iso(oldestTime)} to {Iso(newestTime)}); " +
                $"Initialize takes measurements within {WeightFilterOptions.Section}:InitWindowDays = {Format(_initWindowDays)} days of each other (replay a longer history through Process)",
                nameof(batch));

        Span<BaselineSample> samples = stackalloc BaselineSample[batch.Length];
        Span<ulong> fingerprints = stackalloc ulong[batch.Length];
        var count = 0;
        var newestSample = 0;
        for (var i = 0; i < batch.Length; i++)
        {
            var fingerprint = MeasurementFingerprint.Of(batch[i]);
            if (fingerprints[..count].Contains(fingerprint)) continue;
            fingerprints[count] = fingerprint;
            WeightUnits.TryToKilograms(batch[i].Value, batch[i].Unit, out var kg);
            if (batch[i].TimeUnixMs == newestTime) newestSample = count;
            samples[count++] = new BaselineSample(batch[i].TimeUnixMs, kg, MeasurementVarianceKg2(batch[i].Source));
        }

        ForgetEstimate(state);
        state.InitBuffer.Clear();
        foreach (var fingerprint in fingerprints[..count]) RememberFingerprint(state, fingerprint);
        state.EventTimeUnixMs = newestTime;
        return StartEstimate(state, samples[..count], newestSample, WeightReasons.None);
    }

    private WeightStep Buffer(WeightFilterState state, long time, double kg, WeightSource source, double variance, WeightReasons reasons)
    {
        var buffer = state.InitBuffer;
        var windowStart = time - _initWindowMs;
        while (buffer.Count > 0 && buffer[0].TimeUnixMs < windowStart) buffer.RemoveAt(0);
        buffer.Add(new WeightStateSample { TimeUnixMs = time, WeightKg = kg, Source = source });
        if (buffer.Count < _initMinMeasurements)
        {
            return new WeightStep
            {
                EventTimeUnixMs = time,
                RawWeightKg = kg,
                NeedsInitialization = true,
                Reasons = reasons | WeightReasons.BufferedForInitialization,
                StateChanged = true,
            };
        }

        // The buffer never exceeds the init minimum (it initialises on reaching it), so the stack stays small.
        Span<BaselineSample> samples = stackalloc BaselineSample[buffer.Count];
        for (var i = 0; i < buffer.Count; i++)
            samples[i] = new BaselineSample(buffer[i].TimeUnixMs, buffer[i].WeightKg, MeasurementVarianceKg2(buffer[i].Source));
        buffer.Clear();
        return StartEstimate(state, samples, samples.Length - 1, reasons);
    }

    /// <summary>Fits the robust baseline at the time of <paramref name="samples"/>[<paramref name="current"/>]
    /// and describes that measurement; it is accepted unless the fit left it out as an outlier.</summary>
    private WeightStep StartEstimate(WeightFilterState state, ReadOnlySpan<BaselineSample> samples, int current, WeightReasons reasons)
    {
        var time = samples[current].TimeUnixMs;
        Span<bool> excluded = stackalloc bool[samples.Length];
        var core = RobustBaseline.Fit(samples, time, _initOutlierZ, _initMinSlopeSpanDays, _initialTrendSd, excluded, out var used);
        state.Initialized = true;
        Store(state, in core, time);
        state.UpdateCount = (uint)used;
        state.BaselineWeightKg = core.WeightKg;
        state.BaselineTimeUnixMs = time;
        state.PendingRejections.Clear();

        var kg = samples[current].WeightKg;
        var innovation = kg - core.WeightKg;
        var normalized = Math.Abs(innovation) / Math.Sqrt(core.InnovationVariance(samples[current].VarianceKg2));
        var accepted = !excluded[current];
        return EstimateStep(time, accepted, kg, innovation, normalized, in core,
            reasons | WeightReasons.Initialized | (accepted ? WeightReasons.None : WeightReasons.Outlier));
    }

    private WeightStep RejectOrReanchor(WeightFilterState state, in WeightTrendKalman predicted, long time, double kg,
        WeightSource source, double variance, double innovation, double normalized)
    {
        var pending = state.PendingRejections;
        var windowStart = time - _reanchorWindowMs;
        while (pending.Count > 0 && pending[0].TimeUnixMs < windowStart) pending.RemoveAt(0);
        pending.Add(new WeightStateSample { TimeUnixMs = time, WeightKg = kg, Source = source });
        while (pending.Count > _reanchorRejections) pending.RemoveAt(0);

        if (pending.Count >= _reanchorRejections && TryReanchor(state, in predicted, time, out var anchored))
        {
            return EstimateStep(time, accepted: true, kg, innovation, normalized, in anchored, WeightReasons.ReanchoredAfterStepChange);
        }
        return EstimateStep(time, accepted: false, kg, innovation, normalized, in predicted, WeightReasons.Outlier);
    }

    /// <summary>Re-anchors when the pending rejections agree: all on one side of the prediction (a real step
    /// moves every reading the same way; independent gross errors scatter) and, once the trend is taken out,
    /// within ReanchorMaxSpreadKg of each other.</summary>
    private bool TryReanchor(WeightFilterState state, in WeightTrendKalman predicted, long time, out WeightTrendKalman anchored)
    {
        var pending = state.PendingRejections;
        Span<double> levels = stackalloc double[pending.Count];
        var above = 0;
        var below = 0;
        var min = double.MaxValue;
        var max = double.MinValue;
        var meanVariance = 0.0;
        for (var i = 0; i < pending.Count; i++)
        {
            // Each rejection carried to the current time along the trend, so a fast loss is not "spread".
            var level = pending[i].WeightKg - predicted.TrendKgPerDay * ((pending[i].TimeUnixMs - time) / MsPerDay);
            levels[i] = level;
            if (level > predicted.WeightKg) above++; else below++;
            min = Math.Min(min, level);
            max = Math.Max(max, level);
            meanVariance += MeasurementVarianceKg2(pending[i].Source) / pending.Count;
        }
        if ((above > 0 && below > 0) || max - min > _reanchorMaxSpreadKg)
        {
            anchored = default;
            return false;
        }

        // Level from the agreeing readings alone; the trend survives (a step does not say the diet stopped)
        // but its certainty does not, so both are re-learnt quickly from the next readings.
        anchored = new WeightTrendKalman(
            weightKg: RobustBaseline.MedianInPlace(levels),
            trendKgPerDay: predicted.TrendKgPerDay,
            varWeightKg2: Math.PI / 2 * meanVariance / pending.Count,
            covWeightTrendKg2PerDay: 0,
            varTrendKg2PerDay2: _initialTrendSd * _initialTrendSd);
        Store(state, in anchored, time);
        state.UpdateCount = (uint)pending.Count;
        pending.Clear();
        return true;
    }

    /// <summary>A step that changes no estimate: the stored estimate carried along its trend to
    /// <paramref name="time"/> (backwards for OUT_OF_ORDER, where the variance is not grown), compared with
    /// <paramref name="kg"/> when that is a number.</summary>
    private WeightStep Describe(WeightFilterState state, long time, double kg, double variance, WeightReasons reasons, bool stateChanged)
    {
        var hasValue = !double.IsNaN(kg);
        if (!state.Initialized)
        {
            return new WeightStep
            {
                EventTimeUnixMs = time,
                RawWeightKg = hasValue ? kg : 0,
                NeedsInitialization = true,
                Reasons = reasons,
                StateChanged = stateChanged,
            };
        }
        var core = Load(state);
        var dtDays = (time - state.EstimateTimeUnixMs) / MsPerDay;
        if (dtDays >= 0) core.Predict(dtDays, _accelerationNoise);
        else core.WeightKg += core.TrendKgPerDay * dtDays;
        var innovation = hasValue ? kg - core.WeightKg : 0;
        var normalized = hasValue ? Math.Abs(innovation) / Math.Sqrt(core.InnovationVariance(variance)) : 0;
        return new WeightStep
        {
            EventTimeUnixMs = time,
            Confidence = hasValue ? Math.Exp(-0.5 * normalized * normalized) : 0,
            RawWeightKg = hasValue ? kg : 0,
            FilteredWeightKg = core.WeightKg,
            FilteredWeightSdKg = Math.Sqrt(core.VarWeightKg2),
            TrendKgPerDay = core.TrendKgPerDay,
            PredictionErrorKg = innovation,
            NormalizedInnovation = normalized,
            Reasons = reasons,
            StateChanged = stateChanged,
        };
    }

    private static void RememberFingerprint(WeightFilterState state, ulong fingerprint)
    {
        var cursor = state.FingerprintCursor;
        MeasurementFingerprint.Add(state.RecentFingerprints, ref cursor, fingerprint);
        state.FingerprintCursor = cursor;
    }

    /// <summary>Back to "no estimate"; the baseline of the last initialisation and the fingerprints stay.</summary>
    private static void ForgetEstimate(WeightFilterState state)
    {
        state.Initialized = false;
        Store(state, default, 0);
        state.UpdateCount = 0;
        state.PendingRejections.Clear();
    }

    private static WeightTrendKalman Load(WeightFilterState state) => new(
        state.WeightKg, state.TrendKgPerDay,
        state.CovarianceWeightKg2, state.CovarianceWeightTrendKg2PerDay, state.CovarianceTrendKg2PerDay2);

    private static void Store(WeightFilterState state, in WeightTrendKalman core, long estimateTimeUnixMs)
    {
        state.WeightKg = core.WeightKg;
        state.TrendKgPerDay = core.TrendKgPerDay;
        state.CovarianceWeightKg2 = core.VarWeightKg2;
        state.CovarianceWeightTrendKg2PerDay = core.CovWeightTrendKg2PerDay;
        state.CovarianceTrendKg2PerDay2 = core.VarTrendKg2PerDay2;
        state.EstimateTimeUnixMs = estimateTimeUnixMs;
    }

    private static string Format(double value) => value.ToString("0.###", CultureInfo.InvariantCulture);

    private static string Iso(long unixMs) =>
        DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
}
