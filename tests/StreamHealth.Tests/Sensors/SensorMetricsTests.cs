using StreamHealth.Sensors.Metrics;
using StreamHealth.Sensors.Readings;

namespace StreamHealth.Tests.Sensors;

/// <summary>The pure parts of the sensors topology: units, window statistics, the minute buckets and the state codecs.</summary>
public sealed class SensorMetricsTests
{
    [Fact]
    public void Statistics_are_exact_with_percentiles_interpolated_between_order_statistics()
    {
        double[] values = [4, 1, 3, 2, 10];
        var s = WindowStatistics.Compute(values);
        Assert.Equal(5, s.Count);
        Assert.Equal((1.0, 10.0, 4.0), (s.Min, s.Max, s.Mean));
        Assert.Equal(Math.Sqrt((9 + 4 + 1 + 0 + 36) / 5.0), s.StdDev, 12);
        Assert.Equal(3.0, s.P50);                           // position 2 of 1,2,3,4,10
        Assert.Equal(4 + (10 - 4) * 0.8, s.P95, 12);        // position 0.95 × 4 = 3.8
        Assert.True(double.IsNaN(WindowStatistics.Compute([]).Mean));
        Assert.Equal(0, WindowStatistics.Compute([]).Count);
        // Large, close values (pressures in Pa, say) keep their spread: no cancellation.
        double[] close = [1e9 + 1, 1e9 + 2, 1e9 + 3];
        Assert.Equal(Math.Sqrt(2.0 / 3), WindowStatistics.Compute(close).StdDev, 9);
    }

    [Theory]
    [InlineData("flow", 3.6, "m3/h", 1.0)]
    [InlineData("flow", 60, "L/min", 1.0)]
    [InlineData("pressure", 3, "bar", 300.0)]
    [InlineData("pressure", 10, "m", 98.0665)]
    [InlineData("level", 250, "cm", 2.5)]
    [InlineData("chlorine", 0.4, "ppm", 0.4)]
    [InlineData("turbidity", 1.2, "FNU", 1.2)]
    public void Readings_are_converted_to_the_canonical_unit(string metric, double value, string unit, double expected)
    {
        Assert.Null(SensorQuantities.Convert(metric, value, unit, out var quantity, out var canonical));
        Assert.Equal(expected, canonical, 9);
        Assert.Equal(metric, quantity.Metric);
    }

    [Theory]
    [InlineData("flow", 5, "bar", "unit = 'bar': not a unit of flow")]
    [InlineData("Flow", 5, "L/s", "metric = 'Flow': not one of")]
    [InlineData("", 5, "L/s", "metric = '': not one of")]
    [InlineData("pressure", 40, "bar", "outside what a pressure sensor can report (-101.325-2500 kPa)")]
    [InlineData("turbidity", -0.5, "NTU", "outside what a turbidity sensor can report")]
    [InlineData("level", double.PositiveInfinity, "m", "not a finite number")]
    public void Impossible_readings_are_refused_naming_the_problem(string metric, double value, string unit, string reason) =>
        Assert.Contains(reason, SensorQuantities.Convert(metric, value, unit, out _, out _));

    [Fact]
    public void A_bucket_counts_an_event_time_once_and_knows_a_replayed_record()
    {
        var b = new MinuteBucket();
        Assert.Equal(MinuteBucket.Outcome.Added, b.Add(1_000, 5, sourceOffset: 10, late: false));
        Assert.Equal(MinuteBucket.Outcome.Duplicate, b.Add(1_000, 6, sourceOffset: 11, late: false));
        Assert.Equal(MinuteBucket.Outcome.AlreadyApplied, b.Add(1_000, 5, sourceOffset: 10, late: false));
        // The repeat processed again after a crash (its series' fence lost, its minute kept): known by its offset, not counted twice.
        Assert.Equal(MinuteBucket.Outcome.AlreadyApplied, b.Add(1_000, 6, sourceOffset: 11, late: false));
        Assert.Equal(MinuteBucket.Outcome.Added, b.Add(2_000, 7, sourceOffset: 12, late: true));
        Assert.Equal((2, 1, 1), (b.Readings.Count, b.DuplicateCount, b.LateCount));
        var decoded = MinuteBucketSerDes.Instance.Decode(MinuteBucketSerDes.Instance.Encode(b));
        Assert.Equal(b.Readings, decoded.Readings);
        Assert.Equal((1, 1), (decoded.DuplicateCount, decoded.LateCount));
        Assert.Equal(MinuteBucket.Outcome.AlreadyApplied, decoded.Add(1_000, 6, sourceOffset: 11, late: false));
        // Format 1 (a count of repeats, no offsets) is still read.
        byte[] formatOne = [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        Assert.Equal((0, 2, 0), MinuteBucketSerDes.Instance.Decode(formatOne) is var old ? (old.Readings.Count, old.DuplicateCount, old.LateCount) : default);
        Assert.Throws<FormatException>(() => MinuteBucketSerDes.Instance.Decode([1, 0, 0]));
        Assert.Throws<FormatException>(() => MinuteBucketSerDes.Instance.Decode([.. MinuteBucketSerDes.Instance.Encode(b), 0]));
    }

    [Fact]
    public void The_series_state_round_trips_and_the_topology_provisions_both_changelogs()
    {
        var state = new SensorSeriesState { StreamTimeUnixMs = 1_800_000_000_000, DistrictId = "dma-7", PurgeFromUnixMs = 1_799_990_000_000 };
        state.NextWindowStartUnixMs[0] = 1;
        state.NextWindowStartUnixMs[1] = 2;
        state.NextWindowStartUnixMs[2] = 3;
        var decoded = SensorSeriesStateSerDes.Instance.Decode(SensorSeriesStateSerDes.Instance.Encode(state));
        Assert.Equal((state.StreamTimeUnixMs, state.DistrictId, state.PurgeFromUnixMs), (decoded.StreamTimeUnixMs, decoded.DistrictId, decoded.PurgeFromUnixMs));
        Assert.Equal([1L, 2, 3], decoded.NextWindowStartUnixMs);
        Assert.Throws<FormatException>(() => SensorSeriesStateSerDes.Instance.Decode([2]));
        Assert.Equal(["sensors-sensors-minutes-changelog", "sensors-sensors-series-changelog"], SensorsTopology.Create(new StreamHealth.Sensors.Network.NodeRegistry(Npgsql.NpgsqlDataSource.Create("Host=unused"), TimeSpan.FromSeconds(10))).ChangelogTopics().Order());
        Assert.Equal(-60_000 + 0, SensorWindows.Floor(-1, 60_000));              // floor, not truncation, before 1970
        Assert.Equal("n-1|flow|000001800000000", SensorWindows.BucketKey(SensorWindows.SeriesKey("n-1", "flow"), 1_800_000_000));
    }

    [Fact]
    public void Settings_out_of_range_are_refused_naming_the_setting()
    {
        Assert.Contains("Sensors:GraceMinutes", Assert.Throws<ArgumentException>(() => new SensorsOptions { GraceMinutes = -1 }.Validate()).Message);
        Assert.Contains("Sensors:MaxEmptyWindows", Assert.Throws<ArgumentException>(() => new SensorsOptions { MaxEmptyWindows = -1 }.Validate()).Message);
        Assert.Contains("Sensors:KeepMinutesAfterClose", Assert.Throws<ArgumentException>(() => new SensorsOptions { KeepMinutesAfterClose = double.NaN }.Validate()).Message);
    }
}
