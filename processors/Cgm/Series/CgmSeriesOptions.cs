using System.Globalization;

namespace StreamHealth.Cgm.Series;

/// <summary>Settings of the 5-minute series (<see cref="CgmResampler"/>, <see cref="CgmWindow"/>), bound from the
/// <c>CgmSeries</c> section. Glucose values are mg/dL throughout.</summary>
public sealed class CgmSeriesOptions
{
    public const string Section = "CgmSeries";

    /// <summary>Steps the forecaster reads (8 h of 5-minute steps); <see cref="WindowSteps"/> must hold at least this.</summary>
    public const int ForecastInputSteps = 96;

    /// <summary>Grid spacing. The grid is the multiples of this since 1970-01-01 on the series' clock, so it must divide
    /// an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60): every hour then starts on a grid time.</summary>
    public int StepMinutes { get; set; } = 5;

    /// <summary>Longest time between two real readings' grid times that is filled by linear interpolation. The
    /// default 15 minutes fills up to two missing 5-minute readings; a longer gap splits the series into sequences.</summary>
    public int MaxInterpolationGapMinutes { get; set; } = 15;

    /// <summary>Lowest value the sensor reports (inclusive). Below it a reading is kept but flagged
    /// <see cref="CgmQuality.OutOfRange"/>: Dexcom's "Low" is recorded as 39.</summary>
    public double SensorMinMgDl { get; set; } = 40;

    /// <summary>Highest value the sensor reports (inclusive); Dexcom's "High" (401) lands above it and is flagged.</summary>
    public double SensorMaxMgDl { get; set; } = 400;

    /// <summary>Values at or below this are physiologically impossible (a 0 placeholder, a negative parse): dropped and
    /// counted, never kept.</summary>
    public double DropAtOrBelowMgDl { get; set; }

    /// <summary>Values above this are physiologically impossible (a unit slip, e.g. µmol/L): dropped and counted.</summary>
    public double DropAboveMgDl { get; set; } = 1000;

    /// <summary>Undo daylight-saving and time-zone jumps of wall-clock exports (see <see cref="CgmResampler"/>).</summary>
    public bool CorrectClockShifts { get; set; } = true;

    /// <summary>How far each interval between readings around a jump may be from their mean, and how far the jump may be
    /// from a whole clock shift plus that mean, for the jump to count as a clock change. 2.5 min passes ±60 s of jitter
    /// per reading and fails a missing 5-minute reading.</summary>
    public double ClockShiftToleranceMinutes { get; set; } = 2.5;

    /// <summary>Steady intervals between readings required on each side of a jump (3 = 15 minutes of 5-minute readings).</summary>
    public int ClockShiftRegularIntervals { get; set; } = 3;

    /// <summary>Largest backward shift undone (a half-hour multiple): 14 h covers any two time zones.</summary>
    public int MaxClockShiftMinutes { get; set; } = 840;

    /// <summary>A forward jump of one hour is taken for spring-forward only when the reading after it has a wall-clock
    /// hour in [<see cref="SpringForwardFromHour"/>, <see cref="SpringForwardToHour"/>): every zone's DST starts
    /// between midnight and 03:00 local (UK 01:00→02:00, EU and US 02:00→03:00, Chile 24:00→01:00).</summary>
    public int SpringForwardFromHour { get; set; }

    /// <inheritdoc cref="SpringForwardFromHour"/>
    public int SpringForwardToHour { get; set; } = 4;

    /// <summary>Steps a <see cref="CgmWindow"/> keeps (120 = 10 h); at least <see cref="ForecastInputSteps"/>.</summary>
    public int WindowSteps { get; set; } = 120;

    /// <summary>The trend arrow is the least-squares slope of the in-range readings this far back from the latest.</summary>
    public int TrendMinutes { get; set; } = 15;

    internal long StepMs => StepMinutes * 60_000L;

    /// <summary>Every problem, one line each naming the setting and its value; empty when valid. Allocates nothing
    /// when the options are valid, so hot paths may call it per batch.</summary>
    public IReadOnlyList<string> Validate()
    {
        List<string>? errors = null;
        void Error(string name, object value, string rule) =>
            (errors ??= []).Add($"{Section}:{name} = {Format(value)}: {rule}");

        if (StepMinutes is < 1 or > 60 || 60 % StepMinutes != 0)
            Error(nameof(StepMinutes), StepMinutes, "must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)");
        if (MaxInterpolationGapMinutes < StepMinutes || MaxInterpolationGapMinutes > 1440)
            Error(nameof(MaxInterpolationGapMinutes), MaxInterpolationGapMinutes, $"must be {StepMinutes} ({nameof(StepMinutes)}) to 1440");
        if (!double.IsFinite(DropAtOrBelowMgDl) || DropAtOrBelowMgDl < 0)
            Error(nameof(DropAtOrBelowMgDl), DropAtOrBelowMgDl, "must be a finite number, 0 or more");
        if (!double.IsFinite(SensorMinMgDl) || SensorMinMgDl <= DropAtOrBelowMgDl)
            Error(nameof(SensorMinMgDl), SensorMinMgDl, $"must be a finite number above {nameof(DropAtOrBelowMgDl)} = {Format(DropAtOrBelowMgDl)}");
        if (!double.IsFinite(SensorMaxMgDl) || SensorMaxMgDl <= SensorMinMgDl)
            Error(nameof(SensorMaxMgDl), SensorMaxMgDl, $"must be a finite number above {nameof(SensorMinMgDl)} = {Format(SensorMinMgDl)}");
        if (!double.IsFinite(DropAboveMgDl) || DropAboveMgDl < SensorMaxMgDl)
            Error(nameof(DropAboveMgDl), DropAboveMgDl, $"must be a finite number, at least {nameof(SensorMaxMgDl)} = {Format(SensorMaxMgDl)}");
        if (!double.IsFinite(ClockShiftToleranceMinutes) || ClockShiftToleranceMinutes <= 0 || ClockShiftToleranceMinutes >= 15)
            Error(nameof(ClockShiftToleranceMinutes), ClockShiftToleranceMinutes, "must be above 0 and below 15 (half of a half-hour shift)");
        if (ClockShiftRegularIntervals is < 1 or > 12)
            Error(nameof(ClockShiftRegularIntervals), ClockShiftRegularIntervals, "must be 1-12");
        if (MaxClockShiftMinutes is < 30 or > 1440)
            Error(nameof(MaxClockShiftMinutes), MaxClockShiftMinutes, "must be 30-1440");
        if (SpringForwardFromHour is < 0 or > 23)
            Error(nameof(SpringForwardFromHour), SpringForwardFromHour, "must be 0-23");
        if (SpringForwardToHour <= SpringForwardFromHour || SpringForwardToHour > 24)
            Error(nameof(SpringForwardToHour), SpringForwardToHour, $"must be above {nameof(SpringForwardFromHour)} = {SpringForwardFromHour} and at most 24");
        if (WindowSteps is < ForecastInputSteps or > 8640)
            Error(nameof(WindowSteps), WindowSteps, $"must be {ForecastInputSteps} (the forecaster's input) to 8640");
        if (TrendMinutes < 2 * StepMinutes || TrendMinutes > 120)
            Error(nameof(TrendMinutes), TrendMinutes, $"must be 2 steps ({2 * StepMinutes}) to 120");
        return errors ?? (IReadOnlyList<string>)[];
    }

    /// <exception cref="ArgumentException">Listing every invalid setting by name and value.</exception>
    internal void ThrowIfInvalid(string paramName)
    {
        var problems = Validate();
        if (problems.Count > 0)
            throw new ArgumentException("invalid CGM series options: " + string.Join("; ", problems), paramName);
    }

    private static string Format(object value) => value is double d ? d.ToString("R", CultureInfo.InvariantCulture) : Convert.ToString(value, CultureInfo.InvariantCulture)!;
}
