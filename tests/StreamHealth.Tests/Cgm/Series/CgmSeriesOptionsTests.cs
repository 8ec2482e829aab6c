using StreamHealth.Cgm.Series;

namespace StreamHealth.Tests.Cgm.Series;

public sealed class CgmSeriesOptionsTests
{
    [Fact]
    public void Defaults_are_valid_and_match_the_issue()
    {
        var options = new CgmSeriesOptions();
        Assert.Empty(options.Validate());
        Assert.Equal(5, options.StepMinutes);
        Assert.Equal(15, options.MaxInterpolationGapMinutes);
        Assert.Equal(40, options.SensorMinMgDl);
        Assert.Equal(400, options.SensorMaxMgDl);
        Assert.Equal(0, options.DropAtOrBelowMgDl);
        Assert.Equal(1000, options.DropAboveMgDl);
        Assert.Equal(120, options.WindowSteps);
    }

    [Fact]
    public void Every_invalid_setting_is_named_with_its_value()
    {
        var options = new CgmSeriesOptions
        {
            StepMinutes = 7,
            MaxInterpolationGapMinutes = 2,
            SensorMinMgDl = double.NaN,
            DropAboveMgDl = 300,
            ClockShiftToleranceMinutes = 20,
            ClockShiftRegularIntervals = 0,
            MaxClockShiftMinutes = 10,
            SpringForwardFromHour = 5,
            SpringForwardToHour = 4,
            WindowSteps = 95,
            TrendMinutes = 5,
        };
        var problems = options.Validate();
        Assert.Contains("CgmSeries:StepMinutes = 7: must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)", problems);
        Assert.Contains(problems, p => p.StartsWith("CgmSeries:MaxInterpolationGapMinutes = 2:"));
        Assert.Contains(problems, p => p.StartsWith("CgmSeries:SensorMinMgDl = NaN:"));
        Assert.Contains(problems, p => p.StartsWith("CgmSeries:DropAboveMgDl = 300:"));
        Assert.Contains(problems, p => p.StartsWith("CgmSeries:ClockShiftToleranceMinutes = 20:"));
        Assert.Contains(problems, p => p.StartsWith("CgmSeries:ClockShiftRegularIntervals = 0:"));
        Assert.Contains(problems, p => p.StartsWith("CgmSeries:MaxClockShiftMinutes = 10:"));
        Assert.Contains(problems, p => p.StartsWith("CgmSeries:SpringForwardToHour = 4:"));
        Assert.Contains("CgmSeries:WindowSteps = 95: must be 96 (the forecaster's input) to 8640", problems);
        Assert.Contains(problems, p => p.StartsWith("CgmSeries:TrendMinutes = 5:"));
        Assert.Equal(10, problems.Count);
    }

    [Fact]
    public void The_sensor_range_must_lie_inside_the_plausible_range()
    {
        var problems = new CgmSeriesOptions { DropAtOrBelowMgDl = 50 }.Validate();
        Assert.Equal(["CgmSeries:SensorMinMgDl = 40: must be a finite number above DropAtOrBelowMgDl = 50"], problems);
        problems = new CgmSeriesOptions { SensorMaxMgDl = 30 }.Validate();
        Assert.Equal(["CgmSeries:SensorMaxMgDl = 30: must be a finite number above SensorMinMgDl = 40"], problems);
    }

    [Fact]
    public void Components_refuse_invalid_options_with_the_list()
    {
        var bad = new CgmSeriesOptions { StepMinutes = 0 };
        var resample = Assert.Throws<ArgumentException>(() => CgmResampler.Resample([], bad, []));
        Assert.Contains("CgmSeries:StepMinutes = 0", resample.Message);
        var window = Assert.Throws<ArgumentException>(() => new CgmWindow(bad));
        Assert.Contains("CgmSeries:StepMinutes = 0", window.Message);
    }
}
