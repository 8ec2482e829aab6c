using System.Globalization;
using StreamHealth.Schemas;

namespace StreamHealth.Weight.Filter;

/// <summary>Measurement noise by source, as a standard deviation in kg. It is the whole scatter of a
/// reading around the person's underlying weight (water, food and clothes as well as the instrument),
/// which is why even the clinic's scale is not trusted to 0.1 kg.</summary>
public sealed class WeightSourceNoiseTable
{
    /// <summary>Clinic scale, calibrated, read by staff.</summary>
    public double CareTeam { get; set; } = 1.0;

    /// <summary>A home Bluetooth/Wi-Fi scale: good instrument, any time of day.</summary>
    public double ConnectedScale { get; set; } = 1.2;

    /// <summary>Typed in by the patient: rounding, memory and unit slips on top.</summary>
    public double PatientReported { get; set; } = 1.6;

    /// <summary><see cref="WeightSource.Unspecified"/> and sources a newer producer may add: the noisiest.</summary>
    public double Unspecified { get; set; } = 2.0;

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

    /// <summary>Measurement noise per source (kg, one standard deviation).</summary>
    public WeightSourceNoiseTable MeasurementSdKg { get; set; } = new();

    /// <summary>Spectral density q of the white-noise acceleration (kg²/day³): over dt days the trend's
    /// variance grows by q·dt. 2e-4 lets the trend drift by about ±0.14 kg/day (±1 kg/week) over 100 days,
    /// the size of a diet starting or stopping.</summary>
    public double AccelerationNoiseKg2PerDay3 { get; set; } = 2e-4;

    /// <summary>Reject a measurement when |innovation| / sqrt(innovation variance) exceeds this.</summary>
    public double OutlierGateSigma { get; set; } = 3.5;

    /// <summary>How fast the person's own scatter is learned: each accepted reading moves the noise scale (the multiplier
    /// of the source's measurement variance) this far towards what its innovation says (covariance matching), so about
    /// 1 / rate readings make up what is known. People differ: a day-to-day SD of 0.5 kg or 2 kg on the same scale, and
    /// one source SD for both flagged a noisy person's ordinary readings and let a quiet person's 4-kg typo through.</summary>
    public double NoiseScaleLearningRate { get; set; } = 0.05;

    /// <summary>The learned noise scale is held within [<see cref="NoiseScaleMin"/>, <see cref="NoiseScaleMax"/>] (a
    /// variance multiplier: 0.3-4 is an SD of 0.55-2 times the source's).</summary>
    public double NoiseScaleMin { get; set; } = 0.3;

    /// <inheritdoc cref="NoiseScaleMin"/>
    public double NoiseScaleMax { get; set; } = 4;

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

    /// <summary>No accepted measurement for longer than this: the estimate is stale, start again.</summary>
    public double ReinitializeGapDays { get; set; } = 30;

    /// <summary>A second track (rejected readings that agree with each other) with no reading for this
    /// long is forgotten.</summary>
    public double ReanchorWindowDays { get; set; } = 7;

    /// <summary>Readings closer together than this count as one independent day of evidence: stepping
    /// off and on the scale a minute later confirms nothing.</summary>
    public double IndependentSpacingDays { get; set; } = 0.75;

    /// <summary>The second track replaces the user's after ReanchorMinIndependentDays + |step| /
    /// ReanchorStepKgPerIndependentDay independent days with no reading of the user's in between
    /// (a care-team reading on the second track, or a declared surgery, confirms at once). A household
    /// member visits for days; a real step of 10 kg persists for weeks, so it may take 13 days to prove.</summary>
    public double ReanchorMinIndependentDays { get; set; } = 3;

    public double ReanchorStepKgPerIndependentDay { get; set; } = 1.0;

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

        if (MeasurementSdKg is null)
        {
            errors.Add($"{Section}:MeasurementSdKg is missing");
        }
        else
        {
            var noise = MeasurementSdKg;
            Positive("MeasurementSdKg:CareTeam", noise.CareTeam);
            Positive("MeasurementSdKg:ConnectedScale", noise.ConnectedScale);
            Positive("MeasurementSdKg:PatientReported", noise.PatientReported);
            Positive("MeasurementSdKg:Unspecified", noise.Unspecified);
            var noisiestKnown = Math.Max(noise.CareTeam, Math.Max(noise.ConnectedScale, noise.PatientReported));
            if (noise.Unspecified < noisiestKnown)
                errors.Add($"{Section}:MeasurementSdKg:Unspecified = {Format(noise.Unspecified)}: must be at least the noisiest known source ({Format(noisiestKnown)}), since an unknown source could be any of them");
        }
        NonNegative(nameof(AccelerationNoiseKg2PerDay3), AccelerationNoiseKg2PerDay3);
        Positive(nameof(OutlierGateSigma), OutlierGateSigma);
        if (!(NoiseScaleLearningRate is >= 0 and <= 1))
            errors.Add($"{Section}:{nameof(NoiseScaleLearningRate)} = {Format(NoiseScaleLearningRate)}: must be 0-1 (0: the source's noise only)");
        Positive(nameof(NoiseScaleMin), NoiseScaleMin);
        if (!(NoiseScaleMin <= 1 && NoiseScaleMax >= 1))
            errors.Add($"{Section}:{nameof(NoiseScaleMin)} = {Format(NoiseScaleMin)}, {nameof(NoiseScaleMax)} = {Format(NoiseScaleMax)}: the range must hold 1 (the source's own noise)");
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
        Positive(nameof(ReinitializeGapDays), ReinitializeGapDays);
        Positive(nameof(ReanchorWindowDays), ReanchorWindowDays);
        NonNegative(nameof(IndependentSpacingDays), IndependentSpacingDays);
        NonNegative(nameof(ReanchorMinIndependentDays), ReanchorMinIndependentDays);
        Positive(nameof(ReanchorStepKgPerIndependentDay), ReanchorStepKgPerIndependentDay);
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
