using StreamHealth.Schemas;

namespace StreamHealth.Weight.Filter;

/// <summary>One weigh-in as the filter sees it: the fields of a <see cref="WeightMeasurement"/> that the
/// maths needs, as a struct so the hot path does not allocate.</summary>
/// <param name="TimeUnixMs">When the person stood on the scale (event time, UTC milliseconds).</param>
/// <param name="Value">The reading in <paramref name="Unit"/>.</param>
/// <param name="Unit">kg, lb or st; <see cref="WeightUnit.Unspecified"/> is rejected (UNKNOWN_UNIT).</param>
/// <param name="Source">Decides the measurement noise; unknown sources get the noisiest.</param>
/// <param name="DeclaredEvent">Surgery declared with this measurement: the filter follows a step at once
/// and lifts its bound on sustained rates of change for DeclaredEventDays.</param>
public readonly record struct WeightObservation(long TimeUnixMs, double Value, WeightUnit Unit, WeightSource Source,
    WeightEvent DeclaredEvent = WeightEvent.Unspecified)
{
    public static WeightObservation From(WeightMeasurement measurement) =>
        new(measurement.EventTimeUnixMs, measurement.Value, measurement.Unit, measurement.Source, measurement.DeclaredEvent);
}
