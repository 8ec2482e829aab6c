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
/// InitMinMeasurements that agree (within InitOutlierZ of the noisiest reading's SD of one of them) lie within the init
/// window (InitWindowDays, widened to InitCadenceWindowMultiple × the person's cadence for people who weigh less often,
/// at most InitMaxWindowDays); then <see cref="RobustBaseline"/> starts the estimate from those (INITIALIZED). A
/// buffered reading further than InitSuspectZ SDs from every reading before it, while those agree (or there is one),
/// is reported as an OUTLIER too.</item>
/// <item>More than ReinitializeGapDays since the last accepted measurement → the estimate is dropped
/// (REINITIALIZED_AFTER_GAP, needs_reinitialization) and this measurement starts the new buffer.</item>
/// <item>Predict to the measurement's time; normalised innovation d = |y|/√S within OutlierGateSigma →
/// ACCEPTED (Kalman update), unless a live second track of two readings or more explains it better by
/// SecondTrackLogLikelihoodRatio (then as below). R is the person's day-to-day fluctuation, learned from their
/// accepted readings (from BodySdKg, within BodySdMinKg-BodySdMaxKg), plus the source's own error (InstrumentSdKg).
/// The trend is held within ±MaxSustainedRateKgPerWeek unless a surgery was declared in the last DeclaredEventDays.</item>
/// <item>A measurement declaring surgery that misses the gate re-anchors at once (REANCHORED_AFTER_STEP_CHANGE).</item>
/// <item>Otherwise it is compared with the second track (<see cref="WeightTrack"/>): readings that agree with
/// each other but not with the user. One that fits neither is an OUTLIER (and starts a second track when
/// there is none). One that fits it is rejected as OUTLIER + OTHER_PERSON_SUSPECTED and adds evidence:
/// an independent day when IndependentSpacingDays have passed since its last. The second track becomes
/// the user's (REANCHORED_AFTER_STEP_CHANGE, accepted) when, with no accepted reading of the user's in between, it
/// has lasted ReanchorMinDays + |step| / ReanchorStepKgPerDay days since its first reading and holds
/// ReanchorMinIndependentDays + |step| / ReanchorStepKgPerIndependentDay independent days, or at once on a
/// care-team reading. The user's previous track is then kept for RetainPreviousTrackDays: a reading of it switches
/// back at once, and the other track becomes the suspect again.</item>
/// </list>
/// </remarks>
public sealed class WeightKalmanFilter
{
    private const double MsPerDay = 86_400_000.0;
    /// <summary>Readings kept while looking for InitMinMeasurements that agree (older ones drop out).</summary>
    private const int MaxInitBuffer = 16;

    /// <summary>A second track needs this many readings before it may take readings inside the user's gate.</summary>
    private const int SecondTrackMinReadings = 2;

    private readonly double _varianceCareTeam;
    private readonly double _varianceConnectedScale;
    private readonly double _variancePatientReported;
    private readonly double _varianceUnspecified;
    private readonly double _accelerationNoise;
    private readonly double _gate;
    private readonly double _bodyVariancePrior;
    private readonly double _bodyVarianceMin;
    private readonly double _bodyVarianceMax;
    private readonly double _bodyVariancePriorReadings;
    private readonly double _bodyVarianceLearningRate;
    private readonly double _secondTrackLogLikelihoodRatio;
    private readonly int _initMinMeasurements;
    private readonly long _initWindowMs;
    private readonly double _initWindowDays;
    private readonly double _initTrendMinSpanDays;
    private readonly double _initialTrendSd;
    private readonly double _initOutlierZ;
    private readonly double _initSuspectZ;
    private readonly double _initCadenceWindowMultiple;
    private readonly double _initMaxWindowDays;
    private readonly double _gapMs;
    private readonly long _reanchorWindowMs;
    private readonly long _independentSpacingMs;
    private readonly double _reanchorMinDays;
    private readonly double _reanchorStepKgPerDay;
    private readonly double _reanchorMinIndependentDays;
    private readonly double _reanchorStepKgPerIndependentDay;
    private readonly long _retainPreviousTrackMs;
    private readonly double _maxTrendKgPerDay;
    private readonly long _declaredEventMs;
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
        _varianceCareTeam = Square(options.InstrumentSdKg.CareTeam);
        _varianceConnectedScale = Square(options.InstrumentSdKg.ConnectedScale);
        _variancePatientReported = Square(options.InstrumentSdKg.PatientReported);
        _varianceUnspecified = Square(options.InstrumentSdKg.Unspecified);
        _accelerationNoise = options.AccelerationNoiseKg2PerDay3;
        _gate = options.OutlierGateSigma;
        _bodyVariancePrior = Square(options.BodySdKg);
        _bodyVarianceMin = Square(options.BodySdMinKg);
        _bodyVarianceMax = Square(options.BodySdMaxKg);
        _bodyVariancePriorReadings = options.BodyVariancePriorReadings;
        _bodyVarianceLearningRate = options.BodyVarianceLearningRate;
        _secondTrackLogLikelihoodRatio = options.SecondTrackLogLikelihoodRatio;
        _initMinMeasurements = Math.Min(options.InitMinMeasurements, RobustBaseline.MaxSamples);
        _initWindowDays = options.InitWindowDays;
        _initWindowMs = (long)(options.InitWindowDays * MsPerDay);
        _initTrendMinSpanDays = options.InitTrendMinSpanDays;
        _initialTrendSd = options.InitialTrendSdKgPerDay;
        _initOutlierZ = options.InitOutlierZ;
        _initSuspectZ = options.InitSuspectZ;
        _initCadenceWindowMultiple = options.InitCadenceWindowMultiple;
        _initMaxWindowDays = options.InitMaxWindowDays;
        _gapMs = options.ReinitializeGapDays * MsPerDay;
        _reanchorWindowMs = (long)(options.ReanchorWindowDays * MsPerDay);
        _independentSpacingMs = (long)(options.IndependentSpacingDays * MsPerDay);
        _reanchorMinDays = options.ReanchorMinDays;
        _reanchorStepKgPerDay = options.ReanchorStepKgPerDay;
        _reanchorMinIndependentDays = options.ReanchorMinIndependentDays;
        _reanchorStepKgPerIndependentDay = options.ReanchorStepKgPerIndependentDay;
        _retainPreviousTrackMs = (long)(options.RetainPreviousTrackDays * MsPerDay);
        _maxTrendKgPerDay = options.MaxSustainedRateKgPerWeek / 7;
        _declaredEventMs = (long)(options.DeclaredEventDays * MsPerDay);
        _minKg = options.MinPlausibleKg;
        _maxKg = options.MaxPlausibleKg;
    }

    /// <summary>The reading's own error variance (kg²) for <paramref name="source"/> (InstrumentSdKg²).</summary>
    public double InstrumentVarianceKg2(WeightSource source) => source switch
    {
        WeightSource.CareTeam => _varianceCareTeam,
        WeightSource.ConnectedScale => _varianceConnectedScale,
        WeightSource.PatientReported => _variancePatientReported,
        _ => _varianceUnspecified,
    };

    /// <summary>The person's day-to-day fluctuation (kg²): learned from their accepted readings, BodySdKg² until then.</summary>
    public double BodyVarianceKg2(WeightFilterState state) => state.BodyVarianceKg2 > 0 ? state.BodyVarianceKg2 : _bodyVariancePrior;

    /// <summary>Measurement variance R (kg²) the filter assumes for a reading of <paramref name="source"/> by this person:
    /// their fluctuation, which every source sees, plus the source's own error.</summary>
    public double MeasurementVarianceKg2(WeightFilterState state, WeightSource source) => BodyVarianceKg2(state) + InstrumentVarianceKg2(source);

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

        var variance = MeasurementVarianceKg2(state, observation.Source);
        var fingerprint = MeasurementFingerprint.Of(observation);
        if (MeasurementFingerprint.Contains(state.RecentFingerprints, fingerprint))
            return Describe(state, time, kg, variance, WeightReasons.Duplicate, stateChanged: false);

        // A migrated v1 state has an estimate but no fingerprints yet; a new state has neither.
        var processedBefore = state.Initialized || state.RecentFingerprints.Count > 0;
        RememberFingerprint(state, fingerprint);
        if (processedBefore && time < state.EventTimeUnixMs)
            return Describe(state, time, kg, variance, WeightReasons.OutOfOrder, stateChanged: true);
        state.EventTimeUnixMs = time;
        var surgery = observation.DeclaredEvent == WeightEvent.Surgery;
        if (surgery) state.DeclaredEventUntilUnixMs = time + _declaredEventMs;

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
        {
            if (surgery) return ReanchorOnDeclaredEvent(state, in core, time, kg, variance, innovation, normalized);
            return SecondHypothesis(state, in core, time, kg, observation.Source, variance, innovation, normalized);
        }
        if (FitsSecondTrackBetter(state, time, kg, variance, innovationVariance, normalized))
            return SecondHypothesis(state, in core, time, kg, observation.Source, variance, innovation, normalized);

        LearnBodyVariance(state, innovation, innovationVariance, variance, observation.Source);
        core.Update(innovation, innovationVariance);
        BoundTrend(state, ref core, time);
        NoteUserReading(state, time);
        Store(state, in core, time);
        state.UpdateCount++;
        return EstimateStep(time, accepted: true, kg, innovation, normalized, in core, WeightReasons.Accepted);
    }

    /// <summary>Covariance matching on an accepted reading: E[y²] = HPHᵀ + body + instrument, so y² less the estimate's
    /// and the source's share is one look at the person's fluctuation. Rejected readings do not count (someone else's,
    /// or a typo); an estimate set too low still learns, since the readings it accepts then spread to the gate's edge.
    /// The fluctuation is common to every source: one person's clinic and home readings scatter alike, which a
    /// multiplier of each source's variance got wrong (the clinic's readings of a noisy person were flagged).</summary>
    private void LearnBodyVariance(WeightFilterState state, double innovation, double innovationVariance, double variance, WeightSource source)
    {
        var observed = innovation * innovation - (innovationVariance - variance) - InstrumentVarianceKg2(source);
        var readings = state.BodyVarianceReadings;
        var rate = Math.Max(_bodyVarianceLearningRate, 1.0 / (_bodyVariancePriorReadings + readings + 1));
        state.BodyVarianceKg2 = Math.Clamp((1 - rate) * BodyVarianceKg2(state) + rate * observed, _bodyVarianceMin, _bodyVarianceMax);
        if (readings < uint.MaxValue) state.BodyVarianceReadings = readings + 1;
    }

    /// <summary>A reading inside the user's gate that a live second track of other readings explains much better
    /// (log-likelihood ratio above SecondTrackLogLikelihoodRatio): a household member a few kilograms from a noisy
    /// user, once two of their readings fell outside the user's gate. The previous user track is not asked: the
    /// user's gate came first and returning to it takes a reading outside it.</summary>
    private bool FitsSecondTrackBetter(WeightFilterState state, long time, double kg, double variance, double innovationVariance, double normalized)
    {
        var second = state.SecondTrack;
        if (second is null || second.PreviousUserTrack || second.ReadingCount < SecondTrackMinReadings
            || time - second.LastEvidenceTimeUnixMs > _reanchorWindowMs)
            return false;
        var track = LoadTrack(second);
        track.Predict((time - second.EstimateTimeUnixMs) / MsPerDay, _accelerationNoise);
        var trackInnovationVariance = track.InnovationVariance(variance);
        var trackInnovation = kg - track.WeightKg;
        var logLikelihoodRatio = 0.5 * (normalized * normalized - trackInnovation * trackInnovation / trackInnovationVariance)
            - 0.5 * Math.Log(trackInnovationVariance / innovationVariance);
        return logLikelihoodRatio > _secondTrackLogLikelihoodRatio;
    }

    /// <summary>The trend held within the physiological bound unless a declared event lifted it.</summary>
    private void BoundTrend(WeightFilterState state, ref WeightTrendKalman core, long time)
    {
        if (time < state.DeclaredEventUntilUnixMs) return;
        core.TrendKgPerDay = Math.Clamp(core.TrendKgPerDay, -_maxTrendKgPerDay, _maxTrendKgPerDay);
    }

    /// <summary>A reading of the user's own track: contests a suspected second track (its independent days
    /// restart, so someone weighing between the user's readings never takes over), forgets an expired
    /// previous track, and updates the user's cadence.</summary>
    private void NoteUserReading(WeightFilterState state, long time)
    {
        var second = state.SecondTrack;
        if (second is not null)
        {
            if (second.PreviousUserTrack) { if (time > second.RetainUntilUnixMs) state.SecondTrack = null; }
            else { second.IndependentDays = 0; second.FirstEvidenceTimeUnixMs = 0; }
        }
        var last = state.LastIndependentTimeUnixMs;
        if (last == 0 || time - last >= _independentSpacingMs)
        {
            if (last != 0)
            {
                // Smoothed over about five intervals; a pause is not the person's habit, so one counts at most 30 days.
                var intervalDays = Math.Min((time - last) / MsPerDay, 30);
                state.CadenceDays = state.CadenceDays > 0 ? 0.8 * state.CadenceDays + 0.2 * intervalDays : intervalDays;
            }
            state.LastIndependentTimeUnixMs = time;
        }
    }

    /// <summary>Declared surgery: the level restarts at this reading, the old track is not kept (there is
    /// nothing to return to) and the trend may be steep for DeclaredEventDays.</summary>
    private WeightStep ReanchorOnDeclaredEvent(WeightFilterState state, in WeightTrendKalman predicted, long time, double kg,
        double variance, double innovation, double normalized)
    {
        var anchored = new WeightTrendKalman(kg, predicted.TrendKgPerDay, variance, 0, _initialTrendSd * _initialTrendSd);
        state.SecondTrack = null;
        NoteUserReading(state, time);
        Store(state, in anchored, time);
        state.UpdateCount = 1;
        return EstimateStep(time, accepted: true, kg, innovation, normalized, in anchored, WeightReasons.ReanchoredAfterStepChange);
    }

    /// <summary>A reading outside the user's gate: for the second track, against it, or the start of one.</summary>
    private WeightStep SecondHypothesis(WeightFilterState state, in WeightTrendKalman predicted, long time, double kg,
        WeightSource source, double variance, double innovation, double normalized)
    {
        var second = state.SecondTrack;
        if (second is not null && (second.PreviousUserTrack
                ? time > second.RetainUntilUnixMs
                : time - second.LastEvidenceTimeUnixMs > _reanchorWindowMs))
            second = state.SecondTrack = null;

        if (second is not null)
        {
            var track = LoadTrack(second);
            track.Predict((time - second.EstimateTimeUnixMs) / MsPerDay, _accelerationNoise);
            var trackInnovationVariance = track.InnovationVariance(variance);
            var trackInnovation = kg - track.WeightKg;
            if (Math.Abs(trackInnovation) <= _gate * Math.Sqrt(trackInnovationVariance))
            {
                track.Update(trackInnovation, trackInnovationVariance);
                BoundTrend(state, ref track, time);
                second.ReadingCount++;
                if (time - second.LastEvidenceTimeUnixMs >= _independentSpacingMs)
                {
                    second.IndependentDays++;
                    second.LastEvidenceTimeUnixMs = time;
                }
                var stepKg = Math.Abs(track.WeightKg - predicted.WeightKg);
                if (second.FirstEvidenceTimeUnixMs == 0) second.FirstEvidenceTimeUnixMs = time;
                var spanDays = (time - second.FirstEvidenceTimeUnixMs) / MsPerDay;
                var proven = second.PreviousUserTrack || source == WeightSource.CareTeam
                    || (second.IndependentDays >= _reanchorMinIndependentDays + stepKg / _reanchorStepKgPerIndependentDay
                        && spanDays >= _reanchorMinDays + stepKg / _reanchorStepKgPerDay);
                if (proven)
                {
                    // Swap: the second track becomes the user's; the user's becomes the second, kept to
                    // return to at once, or, when we were returning, suspected again as the other person.
                    var returning = second.PreviousUserTrack;
                    var count = second.ReadingCount;
                    StoreTrack(second, in predicted, time);
                    second.PreviousUserTrack = !returning;
                    second.RetainUntilUnixMs = returning ? 0 : time + _retainPreviousTrackMs;
                    second.IndependentDays = 0;
                    second.ReadingCount = Math.Max(state.UpdateCount, 1);
                    second.LastEvidenceTimeUnixMs = time;
                    NoteUserReading(state, time);
                    Store(state, in track, time);
                    state.UpdateCount = count;
                    return EstimateStep(time, accepted: true, kg, innovation, normalized, in track, WeightReasons.ReanchoredAfterStepChange);
                }
                StoreTrack(second, in track, time);
                return EstimateStep(time, accepted: false, kg, innovation, normalized, in predicted,
                    WeightReasons.Outlier | WeightReasons.OtherPersonSuspected);
            }
        }

        // Neither track: start a second one unless a live one holds more than a single reading.
        if (second is null || (!second.PreviousUserTrack && second.ReadingCount <= 1))
        {
            second ??= state.SecondTrack = new WeightTrack();
            var start = new WeightTrendKalman(kg, predicted.TrendKgPerDay, variance, 0, _initialTrendSd * _initialTrendSd);
            StoreTrack(second, in start, time);
            second.IndependentDays = 1;
            second.LastEvidenceTimeUnixMs = time;
            second.FirstEvidenceTimeUnixMs = time;
            second.ReadingCount = 1;
            second.PreviousUserTrack = false;
            second.RetainUntilUnixMs = 0;
        }
        return EstimateStep(time, accepted: false, kg, innovation, normalized, in predicted, WeightReasons.Outlier);
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
            samples[count++] = new BaselineSample(batch[i].TimeUnixMs, kg, MeasurementVarianceKg2(state, batch[i].Source));
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
        // The person's cadence widens the window, so someone who weighs weekly gets 3 readings inside it:
        // the one learnt before a gap, else the buffer's shortest spacing (the longest would let one stale
        // reading from weeks ago count for a person who now weighs daily).
        var cadenceDays = state.CadenceDays;
        if (cadenceDays <= 0 && buffer.Count > 0)
        {
            var shortestMs = time - buffer[^1].TimeUnixMs;
            for (var i = 1; i < buffer.Count; i++) shortestMs = Math.Min(shortestMs, buffer[i].TimeUnixMs - buffer[i - 1].TimeUnixMs);
            cadenceDays = shortestMs / MsPerDay;
        }
        var windowDays = Math.Clamp(_initCadenceWindowMultiple * cadenceDays, _initWindowDays, Math.Max(_initWindowDays, _initMaxWindowDays));
        var windowStart = time - (long)(windowDays * MsPerDay);
        while (buffer.Count > 0 && buffer[0].TimeUnixMs < windowStart) buffer.RemoveAt(0);
        buffer.Add(new WeightStateSample { TimeUnixMs = time, WeightKg = kg, Source = source });
        while (buffer.Count > MaxInitBuffer) buffer.RemoveAt(0);

        // The estimate starts only from InitMinMeasurements readings that agree with each other (within InitOutlierZ of
        // the noisiest reading's SD around one of them): two pounds-entered-as-kilograms readings among three must not
        // become the level the person's own readings are then rejected against.
        var noisiest = 0.0;
        foreach (var sample in buffer) noisiest = Math.Max(noisiest, MeasurementVarianceKg2(state, sample.Source));
        var tolerance = _initOutlierZ * Math.Sqrt(noisiest);
        var center = -1;
        var agreeing = 0;
        for (var i = buffer.Count - 1; i >= 0 && buffer.Count >= _initMinMeasurements; i--)
        {
            var count = 0;
            foreach (var sample in buffer)
                if (Math.Abs(sample.WeightKg - buffer[i].WeightKg) <= tolerance) count++;
            if (count > agreeing) (center, agreeing) = (i, count);
        }
        if (agreeing < _initMinMeasurements)
        {
            return new WeightStep
            {
                EventTimeUnixMs = time,
                RawWeightKg = kg,
                NeedsInitialization = true,
                Reasons = reasons | WeightReasons.BufferedForInitialization | (SuspectWhileBuffering(buffer, tolerance, _initSuspectZ * Math.Sqrt(noisiest)) ? WeightReasons.Outlier : WeightReasons.None),
                StateChanged = true,
            };
        }

        // The agreeing readings, and this one last (the fit leaves it out if it is not one of them).
        Span<BaselineSample> samples = stackalloc BaselineSample[agreeing + 1];
        var n = 0;
        var centerKg = buffer[center].WeightKg;
        for (var i = 0; i < buffer.Count - 1; i++)
            if (Math.Abs(buffer[i].WeightKg - centerKg) <= tolerance)
                samples[n++] = new BaselineSample(buffer[i].TimeUnixMs, buffer[i].WeightKg, MeasurementVarianceKg2(state, buffer[i].Source));
        samples[n++] = new BaselineSample(time, kg, variance);
        buffer.Clear();
        return StartEstimate(state, samples[..n], n - 1, reasons);
    }

    // While buffering: the newest reading is further than InitSuspectZ SDs from every reading before it, and those agree
    // (one reading, or two of them within the init tolerance). Until the estimate starts the first readings are presumed
    // right. Reported as an OUTLIER now (a stream cannot flag it later); it stays in the buffer, so that if the earlier
    // readings were the mistake, the ones that follow still start the estimate around it.
    private static bool SuspectWhileBuffering(Google.Protobuf.Collections.RepeatedField<WeightStateSample> buffer, double tolerance, double suspectKg)
    {
        var newest = buffer[^1].WeightKg;
        var earlierAgree = buffer.Count == 2;
        for (var i = 0; i < buffer.Count - 1; i++)
        {
            if (Math.Abs(buffer[i].WeightKg - newest) <= suspectKg) return false;
            for (var j = i + 1; j < buffer.Count - 1 && !earlierAgree; j++)
                earlierAgree = Math.Abs(buffer[i].WeightKg - buffer[j].WeightKg) <= tolerance;
        }
        return earlierAgree;
    }

    /// <summary>Fits the robust baseline at the time of <paramref name="samples"/>[<paramref name="current"/>]
    /// and describes that measurement; it is accepted unless the fit left it out as an outlier.</summary>
    private WeightStep StartEstimate(WeightFilterState state, ReadOnlySpan<BaselineSample> samples, int current, WeightReasons reasons)
    {
        var time = samples[current].TimeUnixMs;
        Span<bool> excluded = stackalloc bool[samples.Length];
        var core = RobustBaseline.Fit(samples, time, _initOutlierZ, _initTrendMinSpanDays, _initialTrendSd,
            time < state.DeclaredEventUntilUnixMs ? double.PositiveInfinity : _maxTrendKgPerDay, excluded, out var used);
        state.Initialized = true;
        Store(state, in core, time);
        state.UpdateCount = (uint)used;
        state.BaselineWeightKg = core.WeightKg;
        state.BaselineTimeUnixMs = time;
        state.SecondTrack = null;

        var kg = samples[current].WeightKg;
        var innovation = kg - core.WeightKg;
        var normalized = Math.Abs(innovation) / Math.Sqrt(core.InnovationVariance(samples[current].VarianceKg2));
        var accepted = !excluded[current];
        return EstimateStep(time, accepted, kg, innovation, normalized, in core,
            reasons | WeightReasons.Initialized | (accepted ? WeightReasons.None : WeightReasons.Outlier));
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
        state.SecondTrack = null;
    }

    private static WeightTrendKalman Load(WeightFilterState state) => new(
        state.WeightKg, state.TrendKgPerDay,
        state.CovarianceWeightKg2, state.CovarianceWeightTrendKg2PerDay, state.CovarianceTrendKg2PerDay2);

    private static WeightTrendKalman LoadTrack(WeightTrack track) => new(
        track.WeightKg, track.TrendKgPerDay,
        track.CovarianceWeightKg2, track.CovarianceWeightTrendKg2PerDay, track.CovarianceTrendKg2PerDay2);

    private static void StoreTrack(WeightTrack track, in WeightTrendKalman core, long estimateTimeUnixMs)
    {
        track.WeightKg = core.WeightKg;
        track.TrendKgPerDay = core.TrendKgPerDay;
        track.CovarianceWeightKg2 = core.VarWeightKg2;
        track.CovarianceWeightTrendKg2PerDay = core.CovWeightTrendKg2PerDay;
        track.CovarianceTrendKg2PerDay2 = core.VarTrendKg2PerDay2;
        track.EstimateTimeUnixMs = estimateTimeUnixMs;
    }

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
