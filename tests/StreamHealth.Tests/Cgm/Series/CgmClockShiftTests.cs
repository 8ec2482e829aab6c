using StreamHealth.Cgm;
using StreamHealth.Cgm.Series;
using static StreamHealth.Tests.Cgm.Series.SyntheticCgm;

namespace StreamHealth.Tests.Cgm.Series;

/// <summary>Daylight-saving and time-zone shifts in wall-clock exports, and the genuine gaps that must not be taken
/// for them.</summary>
public sealed class CgmClockShiftTests
{
    /// <summary>A Dexcom-like sensor on the continuous clock: exactly every 5 minutes, 12 s past the grid, values
    /// that never repeat an hour apart.</summary>
    private static List<CgmRow> Sensor(string firstWallClock, int count)
    {
        var first = At(firstWallClock);
        var rows = new List<CgmRow>(count);
        for (var i = 0; i < count; i++) rows.Add(CgmRow.Glucose(first + i * Cadence, Math.Round(140 + 40 * Math.Sin(i / 7.0) + i % 3)));
        return rows;
    }

    /// <summary>The series is the same as the continuous-clock one; only original times and the Synchronised flag
    /// (set on every shifted row) may differ.</summary>
    private static void AssertSameSeries(List<CgmRow> expected, List<CgmRow> actual)
    {
        static CgmRow Comparable(CgmRow r) => r with { OriginalTimeMs = 0, Quality = r.Quality & ~CgmQuality.Synchronised };
        Assert.Equal(expected.Select(Comparable), actual.Select(Comparable));
    }

    [Fact]
    public void Fall_back_repeats_an_hour_on_the_wall_clock_and_is_undone()
    {
        var truth = Sensor("2025-11-02 00:02:12", 48);   // to 03:57 on the continuous (summer-time) clock
        var wall = ToWallClock(truth, [new ClockChange(At("2025-11-02 02:00"), -Hour)]);
        Assert.Equal(At("2025-11-02 01:57:12"), wall[23].TimeMs);
        Assert.Equal(At("2025-11-02 01:02:12"), wall[24].TimeMs);   // the repeated hour starts

        var (output, report) = Resample(wall);
        var (expected, _) = Resample(truth);

        Assert.Equal(new ResampleReport(48, 48, 0, 0, 0, 0, 1, 1, 0, 0), report);
        AssertSameSeries(expected, output);
        Assert.Equal(wall.Select(r => r.OriginalTimeMs), output.Select(r => r.OriginalTimeMs));   // wall clock kept
        Assert.Equal(At("2025-11-02 02:00"), output[24].TimeMs);
    }

    [Fact]
    public void Spring_forward_skips_an_hour_on_the_wall_clock_and_is_closed()
    {
        var truth = Sensor("2025-03-30 00:01:40", 48);
        var wall = ToWallClock(truth, [new ClockChange(At("2025-03-30 02:00"), Hour)]);
        Assert.Equal(At("2025-03-30 01:56:40"), wall[23].TimeMs);
        Assert.Equal(At("2025-03-30 03:01:40"), wall[24].TimeMs);

        var (output, report) = Resample(wall);

        Assert.Equal(new ResampleReport(48, 48, 0, 0, 0, 0, 1, 1, 0, 0), report);
        AssertSameSeries(Resample(truth).Output, output);
    }

    [Fact]
    public void A_fall_back_with_a_reading_missing_at_the_switch_is_still_undone()
    {
        var truth = Sensor("2025-11-02 00:02:12", 48);
        truth.RemoveAt(24);
        var wall = ToWallClock(truth, [new ClockChange(At("2025-11-02 02:00"), -Hour)]);

        var (output, report) = Resample(wall);

        Assert.Equal(1, report.ClockShiftsCorrected);
        Assert.Equal(1, report.Imputed);
        AssertSameSeries(Resample(truth).Output, output);
    }

    [Fact]
    public void Travel_westwards_is_undone_at_any_hour_travel_eastwards_is_left_as_a_gap()
    {
        var truth = Sensor("2025-06-12 13:00:30", 60);
        var west = ToWallClock(truth, [new ClockChange(At("2025-06-12 15:00"), -3 * Hour)]);
        var (output, report) = Resample(west);
        Assert.Equal(1, report.ClockShiftsCorrected);
        AssertSameSeries(Resample(truth).Output, output);

        var halfHourZone = ToWallClock(truth, [new ClockChange(At("2025-06-12 15:00"), -30 * Minute)]);
        (output, report) = Resample(halfHourZone);
        Assert.Equal(1, report.ClockShiftsCorrected);
        AssertSameSeries(Resample(truth).Output, output);

        // Forward by three hours looks exactly like a signal loss: not undone.
        (output, report) = Resample(ToWallClock(truth, [new ClockChange(At("2025-06-12 15:00"), 3 * Hour)]));
        Assert.Equal(0, report.ClockShiftsCorrected);
        Assert.Equal(2, report.Sequences);
    }

    [Fact]
    public void A_descending_export_with_a_fall_back_gives_the_ascending_result()
    {
        var truth = Sensor("2025-11-02 00:02:12", 48);
        var wall = ToWallClock(truth, [new ClockChange(At("2025-11-02 02:00"), -Hour)]);
        wall.Insert(20, CgmRow.Event(CgmEventType.Carbs, At("2025-11-02 01:41"), carbsG: 20));
        wall.Insert(30, CgmRow.Event(CgmEventType.InsulinFast, At("2025-11-02 01:24"), insulinFastU: 3));   // after the switch
        var (ascending, ascendingReport) = Resample(wall);
        wall.Reverse();

        var (descending, descendingReport) = Resample(wall);

        Assert.Equal(ascending, descending);
        Assert.Equal(ascendingReport, descendingReport);
        Assert.Equal(1, descendingReport.ClockShiftsCorrected);
        Assert.Equal(At("2025-11-02 02:25"), Assert.Single(descending, r => r.EventType == CgmEventType.InsulinFast).TimeMs);
    }

    [Fact]
    public void Events_beside_the_switch_take_the_clock_of_the_nearer_reading()
    {
        var truth = Sensor("2025-11-02 00:02:12", 48);
        // On the continuous clock: one event a minute before the switch, one a minute after, both between the same
        // two readings (01:57:12 and 02:02:12).
        truth.Insert(24, CgmRow.Event(CgmEventType.Carbs, At("2025-11-02 01:59"), carbsG: 25));
        truth.Insert(25, CgmRow.Event(CgmEventType.InsulinFast, At("2025-11-02 02:01"), insulinFastU: 2));
        var wall = ToWallClock(truth, [new ClockChange(At("2025-11-02 02:00"), -Hour)]);
        Assert.Equal(At("2025-11-02 01:01"), wall[25].TimeMs);

        var (output, _) = Resample(wall);

        Assert.Equal(At("2025-11-02 02:00"), Assert.Single(output, r => r.EventType == CgmEventType.Carbs).TimeMs);
        Assert.Equal(At("2025-11-02 02:00"), Assert.Single(output, r => r.EventType == CgmEventType.InsulinFast).TimeMs);
        AssertSameSeries(Resample(truth).Output, output);
    }

    [Fact]
    public void A_lost_hour_in_the_afternoon_is_a_gap()
    {
        var rows = Sensor("2025-06-12 13:00:12", 40);
        rows.RemoveRange(12, 12);   // 14:00 to 14:55 lost: 65 minutes between readings

        var (_, report) = Resample(rows);

        Assert.Equal(0, report.ClockShiftsCorrected);
        Assert.Equal(2, report.Sequences);
    }

    [Fact]
    public void At_night_only_a_lost_hour_that_continues_the_cadence_exactly_is_taken_for_spring_forward()
    {
        // Exactly 60 minutes between readings (11 lost): a jump of an hour would leave 0 minutes between them.
        var rows = Sensor("2025-06-12 01:00:12", 40);
        rows.RemoveRange(12, 11);
        Assert.Equal(0, Resample(rows).Report.ClockShiftsCorrected);

        // 75 minutes (as in the Hall 2018 data, 01:24 → 02:39): 15 minutes would be left, not the 5-minute cadence.
        rows = Sensor("2025-06-12 01:00:12", 40);
        rows.RemoveRange(12, 14);
        Assert.Equal(0, Resample(rows).Report.ClockShiftsCorrected);

        // 65 minutes, but the cadence before it is not steady (a reading missing just before).
        rows = Sensor("2025-06-12 01:00:12", 40);
        rows.RemoveRange(12, 12);
        rows.RemoveAt(10);
        Assert.Equal(0, Resample(rows).Report.ClockShiftsCorrected);

        // 65 minutes on a steady cadence between 00:00 and 04:00 is exactly what spring-forward looks like: by design
        // it is closed, and counted so that it shows.
        rows = Sensor("2025-06-12 01:00:12", 40);
        rows.RemoveRange(12, 12);
        var (output, report) = Resample(rows);
        Assert.Equal(1, report.ClockShiftsCorrected);
        Assert.Equal(1, report.Sequences);
        Assert.Equal(At("2025-06-12 03:00:12"), output[12].OriginalTimeMs);
        Assert.Equal(At("2025-06-12 02:00"), output[12].TimeMs);
    }

    [Fact]
    public void A_block_the_export_repeats_is_duplicates_not_a_clock_change()
    {
        var rows = Sensor("2025-06-12 00:00:12", 60);
        // The file repeats 03:05-04:00 exactly right after 04:00, then goes on.
        rows.InsertRange(49, rows.GetRange(37, 12));

        var (output, report) = Resample(rows);

        Assert.Equal(0, report.ClockShiftsCorrected);
        Assert.Equal(12, report.Duplicates);
        Assert.Equal(1, report.Sequences);
        Assert.Equal(60, output.Count);
    }

    [Fact]
    public void Correction_can_be_switched_off()
    {
        var truth = Sensor("2025-11-02 00:02:12", 48);
        var wall = ToWallClock(truth, [new ClockChange(At("2025-11-02 02:00"), -Hour)]);

        var (_, report) = Resample(wall, new CgmSeriesOptions { CorrectClockShifts = false });

        Assert.Equal(0, report.ClockShiftsCorrected);
        Assert.Equal(12, report.Duplicates);
    }
}
