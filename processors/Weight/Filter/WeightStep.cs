using Google.Protobuf.Collections;
using StreamHealth.Schemas;

namespace StreamHealth.Weight.Filter;

/// <summary><see cref="WeightReason"/> as flags: bit n is the enum value n, so a step carries several
/// reasons without a list (and without allocating).</summary>
[Flags]
public enum WeightReasons : ushort
{
    None = 0,
    Accepted = 1 << (int)WeightReason.Accepted,
    Outlier = 1 << (int)WeightReason.Outlier,
    Implausible = 1 << (int)WeightReason.Implausible,
    UnknownUnit = 1 << (int)WeightReason.UnknownUnit,
    BufferedForInitialization = 1 << (int)WeightReason.BufferedForInitialization,
    Initialized = 1 << (int)WeightReason.Initialized,
    ReinitializedAfterGap = 1 << (int)WeightReason.ReinitializedAfterGap,
    ReanchoredAfterStepChange = 1 << (int)WeightReason.ReanchoredAfterStepChange,
    Duplicate = 1 << (int)WeightReason.Duplicate,
    OutOfOrder = 1 << (int)WeightReason.OutOfOrder,
    OtherPersonSuspected = 1 << (int)WeightReason.OtherPersonSuspected,
}

public static class WeightReasonsExtensions
{
    public static bool Has(this WeightReasons reasons, WeightReason reason) =>
        ((int)reasons & (1 << (int)reason)) != 0;

    /// <summary>Appends the reasons in enum order (the order WeightResult.reasons carries them).</summary>
    public static void AddTo(this WeightReasons reasons, RepeatedField<WeightReason> target)
    {
        for (var bits = (uint)reasons; bits != 0; bits &= bits - 1)
            target.Add((WeightReason)System.Numerics.BitOperations.TrailingZeroCount(bits));
    }
}

/// <summary>What <see cref="WeightKalmanFilter"/> made of one measurement: the fields of a
/// <see cref="WeightResult"/> (see <see cref="WriteTo"/>) plus whether the state must be stored.</summary>
/// <remarks>
/// The estimate fields describe the filter at the measurement's time: the updated estimate when the
/// measurement was used, else the stored estimate carried along its trend to that time (state untouched).
/// While the filter has no estimate (<see cref="NeedsInitialization"/>) they are 0, as is
/// <see cref="Confidence"/>. <see cref="RawWeightKg"/> is 0 when the value was not a finite number in a
/// known unit. <see cref="PredictionErrorKg"/> and <see cref="NormalizedInnovation"/> compare the
/// measurement with the prediction; on the step that initialises, with the new baseline (there was no
/// prediction); on a re-anchoring step, with the pre-step prediction, so they show the step's size.
/// </remarks>
public readonly record struct WeightStep
{
    public long EventTimeUnixMs { get; init; }
    /// <summary>The measurement is part of the estimate (normal update, initialisation or re-anchoring).</summary>
    public bool Accepted { get; init; }
    /// <summary>exp(−d²/2) for the normalised innovation d: 1 on the prediction, 0.61 at 1 SD, 0.01 at 3 SD.</summary>
    public double Confidence { get; init; }
    public double RawWeightKg { get; init; }
    public double FilteredWeightKg { get; init; }
    /// <summary>One standard deviation of <see cref="FilteredWeightKg"/> (sqrt of the covariance's P[0,0]).</summary>
    public double FilteredWeightSdKg { get; init; }
    public double TrendKgPerDay { get; init; }
    public double TrendKgPerWeek => 7 * TrendKgPerDay;
    /// <summary>Measurement minus predicted weight (kg).</summary>
    public double PredictionErrorKg { get; init; }
    /// <summary>|innovation| / sqrt(innovation variance); the outlier gate compares this.</summary>
    public double NormalizedInnovation { get; init; }
    /// <summary>After this step the filter has no estimate yet (buffering for initialisation).</summary>
    public bool NeedsInitialization { get; init; }
    /// <summary>This step threw the estimate away after a gap; this measurement starts the new buffer.</summary>
    public bool NeedsReinitialization { get; init; }
    public WeightReasons Reasons { get; init; }
    /// <summary>The state was modified and must be stored; false for invalid measurements and duplicates.</summary>
    public bool StateChanged { get; init; }

    /// <summary>Fills the filter's fields of <paramref name="result"/> (envelope, accepted … normalized_innovation);
    /// measurement_id, user_id and source_offset are the caller's.</summary>
    public void WriteTo(WeightResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        result.SchemaVersion = 1;
        result.EventTimeUnixMs = EventTimeUnixMs;
        result.Accepted = Accepted;
        result.Confidence = Confidence;
        result.RawWeightKg = RawWeightKg;
        result.FilteredWeightKg = FilteredWeightKg;
        result.TrendKgPerWeek = TrendKgPerWeek;
        result.PredictionErrorKg = PredictionErrorKg;
        result.NeedsInitialization = NeedsInitialization;
        result.NeedsReinitialization = NeedsReinitialization;
        result.Reasons.Clear();
        Reasons.AddTo(result.Reasons);
        result.NormalizedInnovation = NormalizedInnovation;
    }
}
