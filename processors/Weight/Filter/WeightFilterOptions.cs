using System.Globalization;
using StreamHealth.Schemas;

namespace StreamHealth.Weight.Filter;

/// <summary>A reading's own error by source, as a standard deviation in kg: the instrument, rounding and
/// recording, on top of the person's day-to-day fluctuation (<see cref="WeightFilterOptions.BodySdKg"/>),
/// which every source sees alike.</summary>
public sealed class WeightSourceNoiseTable
{
    /// <summary>Clinic scale, calibrated, read by staff.</summary>
    public double CareTeam { get; set; } = 0.2;

    /// <summary>A home Bluetooth/Wi-Fi scale: repeatable to a few hundred grams.</summary>
    public double ConnectedScale { get; set; } = 0.3;

    /// <summary>Typed in by the patient: rounding to the pound or half kilogram, memory and slips on top.</summary>
    public double PatientReported { get; set; } = 0.6;

    /// <summary><see cref="WeightSource.Unspecified"/> and sources a newer producer may add: at least the noisiest.</summary>
    public double Unspecified { get; set; } = 1.0;

    public double SdKgFor(WeightSource source) => source switch
    {
        WeightSource.CareTeam => CareTeam,
        WeightSource.ConnectedScale => ConnectedScale,
        WeightSource.PatientReported => PatientReported,
        _ => Unspecified,
    };
}

/// <summary>Settings of <see cref="WeightKalmanFilter"/>, bound from the <c>WeightFilter</c> section.
/// Defaults are argued in README.md ("Weight filter") and measured in benchmarks/RESULTS.md.</summary>
public sealed class WeightFilterOptions
{
    public const string Section = "WeightFilter";

    /// <summary>The reading's own error per source (kg, one standard deviation), added to the person's
    /// fluctuation: R = body variance + source variance.</summary>
    public WeightSourceNoiseTable InstrumentSdKg { get; set; } = new();

    /// <summary>Spectral density q of the white-noise acceleration (kg²/day³): over dt days the trend's
    /// variance grows by q·dt. 2e-4 lets the trend drift by about ±0.14 kg/day (±1 kg/week) over 100 days,
    /// the size of a diet starting or stopping.</summary>
    public double AccelerationNoiseKg2PerDay3 { get; set; } = 2e-4;

    /// <summary>Reject a measurement when |innovation| / sqrt(innovation variance) exceeds this.</summary>
    public double OutlierGateSigma { get; set; } = 3.2;

    /// <summary>The person's day-to-day fluctuation (water, food, clothes; kg, one SD) assumed until their
    /// own is learned. People differ: 0.5 kg or 2 kg on the same scale. It starts at the wide end, so a noisy
    /// person's first weeks are not flagged while the filter learns; a quiet person's gate narrows as it does.</summary>
    public double BodySdKg { get; set; } = 1.5;

    /// <summary>The learned fluctuation is held within [<see cref="BodySdMinKg"/>, <see cref="BodySdMaxKg"/>].</summary>
    public double BodySdMinKg { get; set; } = 0.5;

    /// <inheritdoc cref="BodySdMinKg"/>
    public double BodySdMaxKg { get; set; } = 3.0;

    /// <summary>How the fluctuation is learned from accepted readings (covariance matching: the innovation²
    /// less the estimate's and the source's share). <see cref="BodySdKg"/> counts as this many readings, so
    /// the n-th reading moves the estimate by 1 / (prior + n), down to <see cref="BodyVarianceLearningRate"/>:
    /// a running mean at first, then an average over about 1 / rate readings that follows a person whose
    /// scatter changes. A faster rate let the estimate dip low often enough to flag ordinary readings.</summary>
    public double BodyVariancePriorReadings { get; set; } = 20;

    /// <inheritdoc cref="BodyVariancePriorReadings"/>
    public double BodyVarianceLearningRate { get; set; } = 0.015;

    /// <summary>Measurements needed inside <see cref="InitWindowDays"/> before the filter starts.</summary>
    public int InitMinMeasurements { get; set; } = 3;

    public double InitWindowDays { get; set; } = 14;

    /// <summary>Buffered readings spanning at least this many days start the estimate with their own
    /// (Theil–Sen) trend; shorter spans start flat, since a slope from two mornings is noise.</summary>
    public double InitTrendMinSpanDays { get; set; } = 7;

    /// <summary>Standard deviation of a trend nobody has measured yet (kg/day): a flat start, or a second
    /// track started from one reading, is given this much room to learn its slope.</summary>
    public double InitialTrendSdKgPerDay { get; set; } = 0.1;

    /// <summary>(Re)initialisation waits for InitMinMeasurements within max(InitWindowDays, this × the
    /// person's cadence) days, at most <see cref="InitMaxWindowDays"/>: a weekly weigher restarts too.</summary>
    public double InitCadenceWindowMultiple { get; set; } = 3;

    public double InitMaxWindowDays { get; set; } = 30;

    /// <summary>Initialisation drops samples further than this many robust SDs (1.4826·MAD) from the median.</summary>
    public double InitOutlierZ { get; set; } = 3.5;

    /// <summary>While buffering, a reading further than this many SDs from every earlier one is reported as
    /// an OUTLIER when those earlier ones agree (or there is one): until the estimate starts, the first
    /// readings are presumed right.</summary>
    public double InitSuspectZ { get; set; } = 5.25;

    /// <summary>No accepted measurement for longer than this: the estimate is stale, start again.</summary>
    public double ReinitializeGapDays { get; set; } = 30;

    /// <summary>A second track (rejected readings that agree with each other) with no reading for this
    /// long is forgotten.</summary>
    public double ReanchorWindowDays { get; set; } = 7;

    /// <summary>Readings closer together than this count as one independent day of evidence: stepping
    /// off and on the scale a minute later confirms nothing.</summary>
    public double IndependentSpacingDays { get; set; } = 0.75;

    /// <summary>The second track replaces the user's when, with no reading of the user's in between, it has
    /// lasted ReanchorMinDays + |step| / ReanchorStepKgPerDay days and holds ReanchorMinIndependentDays +
    /// |step| / ReanchorStepKgPerIndependentDay independent days (a care-team reading on the second track, or
    /// a declared surgery, confirms at once). A household member visits for up to ten days and is usually far
    /// from the user (children, other adults); a real step persists, so ten days of it prove it, and a bigger
    /// step takes longer.</summary>
    public double ReanchorMinDays { get; set; } = 9;

    /// <inheritdoc cref="ReanchorMinDays"/>
    public double ReanchorStepKgPerDay { get; set; } = 10;

    /// <inheritdoc cref="ReanchorMinDays"/>
    public double ReanchorMinIndependentDays { get; set; } = 2;

    /// <inheritdoc cref="ReanchorMinDays"/>
    public double ReanchorStepKgPerIndependentDay { get; set; } = 10;

    /// <summary>A reading inside the user's gate goes to a live second track of at least two readings when
    /// the second track explains it better by this log-likelihood ratio (e³ ≈ 20 times as likely): a household
    /// member a few kilograms from a noisy user is inside the user's gate, but nearer their own track.</summary>
    public double SecondTrackLogLikelihoodRatio { get; set; } = 3;

    /// <summary>After a re-anchoring the previous track is kept this long: a reading of it switches back at once.</summary>
    public double RetainPreviousTrackDays { get; set; } = 14;

    /// <summary>Physiological bound on the sustained rate of change (kg/week, either way) outside a
    /// declared event: fat and lean mass do not move faster for weeks on end; a diet's first-week water
    /// loss is left to the level, not the trend.</summary>
    public double MaxSustainedRateKgPerWeek { get; set; } = 2.0;

    /// <summary>How long a declared surgery lifts <see cref="MaxSustainedRateKgPerWeek"/>.</summary>
    public double DeclaredEventDays { get; set; } = 90;

    public double MinPlausibleKg { get; set; } = 20;

    public double MaxPlausibleKg { get; set; } = 400;

    /// <summary>Every problem, one line each naming the setting and its value; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        void Positive(string name, double value)
        {
            if (!double.IsFinite(value) || value <= 0)
                errors.Add($"{Section}:{name} = {Format(value)}: must be a finite number above 0");
        }
        void NonNegative(string name, double value)
        {
            if (!double.IsFinite(value) || value < 0)
                errors.Add($"{Section}:{name} = {Format(value)}: must be a finite number, 0 or more");
        }

        if (InstrumentSdKg is null)
        {
            errors.Add($"{Section}:InstrumentSdKg is missing");
        }
        else
        {
            var noise = InstrumentSdKg;
            NonNegative("InstrumentSdKg:CareTeam", noise.CareTeam);
            NonNegative("InstrumentSdKg:ConnectedScale", noise.ConnectedScale);
            NonNegative("InstrumentSdKg:PatientReported", noise.PatientReported);
            NonNegative("InstrumentSdKg:Unspecified", noise.Unspecified);
            var noisiestKnown = Math.Max(noise.CareTeam, Math.Max(noise.ConnectedScale, noise.PatientReported));
            if (noise.Unspecified < noisiestKnown)
                errors.Add($"{Section}:InstrumentSdKg:Unspecified = {Format(noise.Unspecified)}: must be at least the noisiest known source ({Format(noisiestKnown)}), since an unknown source could be any of them");
        }
        NonNegative(nameof(AccelerationNoiseKg2PerDay3), AccelerationNoiseKg2PerDay3);
        Positive(nameof(OutlierGateSigma), OutlierGateSigma);
        Positive(nameof(BodySdMinKg), BodySdMinKg);
        if (!(BodySdMinKg <= BodySdKg && BodySdKg <= BodySdMaxKg))
            errors.Add($"{Section}:{nameof(BodySdKg)} = {Format(BodySdKg)}: must lie within {nameof(BodySdMinKg)} = {Format(BodySdMinKg)} and {nameof(BodySdMaxKg)} = {Format(BodySdMaxKg)}");
        NonNegative(nameof(BodyVariancePriorReadings), BodyVariancePriorReadings);
        if (!(BodyVarianceLearningRate is >= 0 and <= 1))
            errors.Add($"{Section}:{nameof(BodyVarianceLearningRate)} = {Format(BodyVarianceLearningRate)}: must be 0-1 (0: a running mean that never forgets)");
        if (InitMinMeasurements is < 1 or > 32)
            errors.Add($"{Section}:{nameof(InitMinMeasurements)} = {InitMinMeasurements}: must be 1-32");
        Positive(nameof(InitWindowDays), InitWindowDays);
        NonNegative(nameof(InitTrendMinSpanDays), InitTrendMinSpanDays);
        Positive(nameof(InitialTrendSdKgPerDay), InitialTrendSdKgPerDay);
        Positive(nameof(InitCadenceWindowMultiple), InitCadenceWindowMultiple);
        Positive(nameof(InitMaxWindowDays), InitMaxWindowDays);
        if (InitMaxWindowDays < InitWindowDays)
            errors.Add($"{Section}:{nameof(InitMaxWindowDays)} = {Format(InitMaxWindowDays)}: must be at least {nameof(InitWindowDays)} = {Format(InitWindowDays)}");
        Positive(nameof(InitOutlierZ), InitOutlierZ);
        Positive(nameof(InitSuspectZ), InitSuspectZ);
        Positive(nameof(ReinitializeGapDays), ReinitializeGapDays);
        Positive(nameof(ReanchorWindowDays), ReanchorWindowDays);
        NonNegative(nameof(IndependentSpacingDays), IndependentSpacingDays);
        NonNegative(nameof(ReanchorMinDays), ReanchorMinDays);
        Positive(nameof(ReanchorStepKgPerDay), ReanchorStepKgPerDay);
        NonNegative(nameof(ReanchorMinIndependentDays), ReanchorMinIndependentDays);
        Positive(nameof(ReanchorStepKgPerIndependentDay), ReanchorStepKgPerIndependentDay);
        NonNegative(nameof(SecondTrackLogLikelihoodRatio), SecondTrackLogLikelihoodRatio);
        NonNegative(nameof(RetainPreviousTrackDays), RetainPreviousTrackDays);
        Positive(nameof(MaxSustainedRateKgPerWeek), MaxSustainedRateKgPerWeek);
        NonNegative(nameof(DeclaredEventDays), DeclaredEventDays);
        Positive(nameof(MinPlausibleKg), MinPlausibleKg);
        Positive(nameof(MaxPlausibleKg), MaxPlausibleKg);
        if (MaxPlausibleKg <= MinPlausibleKg)
            errors.Add($"{Section}:{nameof(MaxPlausibleKg)} = {Format(MaxPlausibleKg)}: must be above {nameof(MinPlausibleKg)} = {Format(MinPlausibleKg)}");
        return errors;
    }

    private static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
