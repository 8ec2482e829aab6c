using StreamHealth.Cgm;
using StreamHealth.Cgm.Series;
using static StreamHealth.Tests.Cgm.Series.SyntheticCgm;

namespace StreamHealth.Tests.Cgm.Series;

/// <summary>One test per resampling rule, on hand-made rows.</summary>
public sealed class CgmResamplerTests
{
    private static readonly CgmSeriesOptions Options = new();
    private static readonly long T0 = At("2025-03-10 08:00");

    [Fact]
    public void Each_reading_goes_to_the_nearest_grid_time_and_keeps_its_original_time()
    {
        var (output, report) = Resample([
            CgmRow.Glucose(T0 + 2 * Minute + 29_999, 100),   // 2:29.999 past: back to T0
            CgmRow.Glucose(T0 + 7 * Minute + 30_000, 110),   // exactly half-way: the later step, T0 + 10
            CgmRow.Glucose(T0 + 15 * Minute, 120),           // on the grid: not moved
        ]);

        Assert.Equal([T0, T0 + 10 * Minute, T0 + 15 * Minute], output.Where(r => r.EventType == CgmEventType.EgvRead).Select(r => r.TimeMs));
        Assert.Equal([T0 + 2 * Minute + 29_999, T0 + 7 * Minute + 30_000, T0 + 15 * Minute],
            output.Where(r => r.EventType == CgmEventType.EgvRead).Select(r => r.OriginalTimeMs));
        Assert.Equal([CgmQuality.Synchronised, CgmQuality.Synchronised, CgmQuality.Good],
            output.Where(r => r.EventType == CgmEventType.EgvRead).Select(r => r.Quality));
        Assert.Equal(new ResampleReport(3, 3, 1, 0, 0, 0, 1, 0, 0, 0), report);
        var imputed = Assert.Single(output, r => r.EventType == CgmEventType.Imputation);
        Assert.Equal(T0 + 5 * Minute, imputed.TimeMs);
    }

    [Fact]
    public void Of_two_readings_in_one_step_the_nearer_is_kept_and_flagged_whatever_the_order()
    {
        CgmRow[] rows =
        [
            CgmRow.Glucose(T0, 100),
            CgmRow.Glucose(T0 + 5 * Minute + 90_000, 130),   // step T0 + 5 (1:30 late)
            CgmRow.Glucose(T0 + 5 * Minute - 40_000, 120),   // step T0 + 5 (0:40 early): nearer, kept
            CgmRow.Glucose(T0 + 10 * Minute, 140),
            CgmRow.Glucose(T0 + 10 * Minute, 140),            // exact duplicate
        ];
        foreach (var order in new CgmRow[][] { rows, Enumerable.Reverse(rows).ToArray(), [rows[2], rows[4], rows[0], rows[1], rows[3]] })
        {
            var (output, report) = Resample(order);
            Assert.Equal(3, output.Count);
            Assert.Equal(120, output[1].GlucoseMgDl);
            Assert.Equal(T0 + 5 * Minute - 40_000, output[1].OriginalTimeMs);
            Assert.Equal(CgmQuality.DuplicateTime | CgmQuality.Synchronised, output[1].Quality);
            Assert.Equal(CgmQuality.DuplicateTime, output[2].Quality);
            Assert.Equal(CgmQuality.Good, output[0].Quality);
            Assert.Equal(2, report.Duplicates);
            Assert.Equal(3, report.Aligned);
            Assert.Equal(5, report.InputGlucoseReadings);
        }
    }

    [Fact]
    public void Equally_near_duplicates_keep_the_earlier_then_the_lower_value()
    {
        var (output, _) = Resample([CgmRow.Glucose(T0 + 60_000, 101), CgmRow.Glucose(T0 - 60_000, 105)]);
        Assert.Equal(105, Assert.Single(output).GlucoseMgDl);
        (output, _) = Resample([CgmRow.Glucose(T0, 101), CgmRow.Glucose(T0, 99)]);
        Assert.Equal(99, Assert.Single(output).GlucoseMgDl);
    }

    [Fact]
    public void Gaps_up_to_the_threshold_are_interpolated_and_longer_ones_split_sequences()
    {
        var (output, report) = Resample([
            CgmRow.Glucose(T0, 100),
            CgmRow.Glucose(T0 + 15 * Minute, 160),   // 15 min: two rows imputed
            CgmRow.Glucose(T0 + 35 * Minute, 150),   // 20 min: new sequence
            CgmRow.Glucose(T0 + 40 * Minute, 150),
        ]);

        Assert.Equal([T0, T0 + 5 * Minute, T0 + 10 * Minute, T0 + 15 * Minute, T0 + 35 * Minute, T0 + 40 * Minute], output.Select(r => r.TimeMs));
        Assert.Equal([100, 120, 140, 160, 150, 150], output.Select(r => r.GlucoseMgDl));
        Assert.Equal([0, 0, 0, 0, 1, 1], output.Select(r => r.SequenceId));
        foreach (var imputed in output.GetRange(1, 2))
        {
            Assert.Equal(CgmEventType.Imputation, imputed.EventType);
            Assert.Equal(CgmQuality.Imputed, imputed.Quality);
            Assert.Equal(imputed.TimeMs, imputed.OriginalTimeMs);
            Assert.True(double.IsNaN(imputed.CarbsG));
        }
        Assert.Equal(new ResampleReport(4, 4, 2, 0, 0, 0, 2, 0, 0, 0), report);
    }

    [Fact]
    public void The_threshold_and_step_are_configurable()
    {
        var rows = new[] { CgmRow.Glucose(T0, 100), CgmRow.Glucose(T0 + 30 * Minute, 130) };
        Assert.Equal(2, Resample(rows).Report.Sequences);
        var (output, report) = Resample(rows, new CgmSeriesOptions { MaxInterpolationGapMinutes = 30 });
        Assert.Equal(1, report.Sequences);
        Assert.Equal([100, 105, 110, 115, 120, 125, 130], output.Select(r => r.GlucoseMgDl));

        (output, report) = Resample(rows, new CgmSeriesOptions { StepMinutes = 15, MaxInterpolationGapMinutes = 30, TrendMinutes = 30 });
        Assert.Equal([100, 115, 130], output.Select(r => r.GlucoseMgDl));
        Assert.Equal(1, report.Imputed);
    }

    [Fact]
    public void Out_of_range_values_are_kept_and_flagged_impossible_ones_dropped()
    {
        double[] values = [39, 40, 400, 401, 1000, double.NaN, 0, -3, 1000.5, double.PositiveInfinity];
        var rows = values.Select((v, i) => CgmRow.Glucose(T0 + i * 5 * Minute, v)).ToArray();

        var (output, report) = Resample(rows);

        Assert.Equal([39, 40, 400, 401, 1000], output.Select(r => r.GlucoseMgDl));
        Assert.Equal([CgmQuality.OutOfRange, CgmQuality.Good, CgmQuality.Good, CgmQuality.OutOfRange, CgmQuality.OutOfRange],
            output.Select(r => r.Quality));
        Assert.Equal(new ResampleReport(10, 5, 0, 0, 3, 5, 1, 0, 0, 0), report);
    }

    [Fact]
    public void An_imputed_value_outside_the_sensor_range_is_flagged_too()
    {
        var (output, _) = Resample([CgmRow.Glucose(T0, 39), CgmRow.Glucose(T0 + 10 * Minute, 39)]);
        Assert.Equal(CgmQuality.Imputed | CgmQuality.OutOfRange, output[1].Quality);
    }

    [Fact]
    public void Events_are_snapped_and_given_the_sequence_a_reading_at_their_time_would_join_or_reported()
    {
        var carbsBefore = CgmRow.Event(CgmEventType.Carbs, T0 - 21 * Minute, carbsG: 30);
        var insulinBefore = CgmRow.Event(CgmEventType.InsulinSlow, T0 - 14 * Minute, insulinSlowU: 10);
        var insulinInside = CgmRow.Event(CgmEventType.InsulinFast, T0 + 6 * Minute, insulinFastU: 4);
        var sameStepTwice = CgmRow.Event(CgmEventType.InsulinFast, T0 + 6 * Minute, insulinFastU: 4);
        var exerciseNearFirst = CgmRow.Event(CgmEventType.ExerciseLight, T0 + 19 * Minute, exerciseSeconds: 900);
        var calibrationNearSecond = CgmRow.Event(CgmEventType.Calibration, T0 + 41 * Minute) with { GlucoseMgDl = 140 };
        var carbsSoonAfter = CgmRow.Event(CgmEventType.Carbs, T0 + 63 * Minute, carbsG: 20);
        var carbsAfter = CgmRow.Event(CgmEventType.Carbs, T0 + 400 * Minute, carbsG: 12);
        var (output, report) = Resample([
            carbsAfter, calibrationNearSecond, CgmRow.Glucose(T0, 100), insulinInside, CgmRow.Glucose(T0 + 10 * Minute, 110),
            exerciseNearFirst, CgmRow.Glucose(T0 + 50 * Minute, 150), carbsBefore, sameStepTwice, insulinBefore, carbsSoonAfter,
        ]);

        Assert.Equal(
        [
            (CgmEventType.InsulinSlow, T0 - 15 * Minute, 0),     // 15 min before sequence 0: a reading there would join it
            (CgmEventType.EgvRead, T0, 0),
            (CgmEventType.Imputation, T0 + 5 * Minute, 0),
            (CgmEventType.InsulinFast, T0 + 5 * Minute, 0),
            (CgmEventType.InsulinFast, T0 + 5 * Minute, 0),
            (CgmEventType.EgvRead, T0 + 10 * Minute, 0),
            (CgmEventType.ExerciseLight, T0 + 20 * Minute, 0),   // 10 min after sequence 0, 30 before sequence 1
            (CgmEventType.Calibration, T0 + 40 * Minute, 1),     // 10 min before sequence 1
            (CgmEventType.EgvRead, T0 + 50 * Minute, 1),
            (CgmEventType.Carbs, T0 + 65 * Minute, 1),           // 15 min after sequence 1
        ], output.Select(r => (r.EventType, r.TimeMs, r.SequenceId)));
        // The carbs 20 min before the first reading and 350 min after the last are near no sequence: reported, not placed.
        Assert.Equal(8, report.Events);
        Assert.Equal(2, report.Unattached);
        Assert.Equal(140, output[7].GlucoseMgDl);   // a calibration's fingerstick value is not a reading
        Assert.Equal(CgmQuality.Synchronised, output[0].Quality);
        Assert.Equal(CgmQuality.Synchronised, output[9].Quality);
        Assert.Equal(T0 + 6 * Minute, output[3].OriginalTimeMs);
        Assert.Equal(3, report.InputGlucoseReadings);
    }

    /// <summary>Issue 11, defect 5: a calibration at an off-grid minute sits on the sensor reading's step; the series
    /// still has one point per step.</summary>
    [Fact]
    public void An_off_grid_calibration_attaches_to_its_step_and_is_not_a_second_point()
    {
        var rows = new List<CgmRow>
        {
            CgmRow.Glucose(T0, 100), CgmRow.Glucose(T0 + 5 * Minute, 104),
            CgmRow.Event(CgmEventType.Calibration, T0 + 7 * Minute) with { GlucoseMgDl = 120 },
            CgmRow.Glucose(T0 + 10 * Minute, 108),
        };
        var dataset = StreamHealth.Cgm.Pipeline.CgmDataset.Resample(StreamHealth.Cgm.Formats.CgmFormat.Unified, rows, new CgmSeriesOptions(), out var report);
        Assert.Equal([T0, T0 + 5 * Minute, T0 + 10 * Minute], dataset.TimesUnixMs);
        Assert.Equal([100f, 104f, 108f], dataset.GlucoseMgDl);
        Assert.Equal(0, report.Unattached);

        var (series, _) = Resample(rows);
        var calibration = Assert.Single(series, r => r.EventType == CgmEventType.Calibration);
        Assert.Equal((T0 + 5 * Minute, 0, 120.0), (calibration.TimeMs, calibration.SequenceId, calibration.GlucoseMgDl));
        Assert.Equal(3, series.Count(r => r.IsSeriesPoint));
    }

    /// <summary>Issue 11, defect 5: a calibration two years after the last sensor reading does not join its sequence
    /// (nor make the dataset span two years); it is reported.</summary>
    [Fact]
    public void A_calibration_years_after_the_last_reading_joins_no_sequence_and_is_reported()
    {
        var rows = Readings(T0, 12, Cadence, 100, 110);
        var twoYearsLater = T0 + 2 * 365 * 86_400_000L;
        rows.Add(CgmRow.Event(CgmEventType.Calibration, twoYearsLater) with { GlucoseMgDl = 130 });
        var dataset = StreamHealth.Cgm.Pipeline.CgmDataset.Resample(StreamHealth.Cgm.Formats.CgmFormat.Unified, rows, new CgmSeriesOptions(), out var report);
        Assert.Equal(1, dataset.Sequences);
        Assert.Equal(12, dataset.Points);
        Assert.True(dataset.TimesUnixMs[^1] < T0 + 86_400_000L);
        Assert.Equal(1, report.Unattached);

        var (series, _) = Resample(rows);
        Assert.DoesNotContain(series, r => r.EventType == CgmEventType.Calibration);
    }

    [Fact]
    public void A_descending_export_gives_the_ascending_result()
    {
        var ascending = Readings(T0, 30, Cadence, 100, 104, 108, 111, 115, 117, 120);
        ascending.RemoveRange(10, 2);
        ascending.Insert(5, CgmRow.Event(CgmEventType.Carbs, T0 + 26 * Minute, carbsG: 40));
        var descending = Enumerable.Reverse(ascending).ToList();
        var (expected, expectedReport) = Resample(ascending);
        var (actual, actualReport) = Resample(descending);
        Assert.Equal(expected, actual);
        Assert.Equal(expectedReport, actualReport);
        Assert.Equal(2, actualReport.Imputed);
    }

    [Fact]
    public void Nothing_in_nothing_out_and_events_alone_form_no_sequence()
    {
        var (output, report) = Resample([]);
        Assert.Empty(output);
        Assert.Equal(default, report);

        (output, report) = Resample([CgmRow.Event(CgmEventType.Carbs, T0, carbsG: 10), CgmRow.Glucose(T0, double.NaN)]);
        Assert.Empty(output);
        Assert.Equal(new ResampleReport(1, 0, 0, 0, 0, 1, 0, 0, 1, 0, Unattached: 1), report);
    }

    [Fact]
    public void Resampling_an_output_again_gives_the_same_output()
    {
        var rows = Readings(T0 + 70_000, 40, Cadence + 3_000);
        rows.RemoveRange(20, 2);
        rows.Add(CgmRow.Event(CgmEventType.InsulinSlow, T0 + 33 * Minute, insulinSlowU: 12));
        var (once, first) = Resample(rows);
        var (twice, second) = Resample(once);
        Assert.Equal(once, twice);
        Assert.Equal(first.Imputed, second.PreviouslyImputedIgnored);
        Assert.Equal(first.Imputed, second.Imputed);
        Assert.True(first.Imputed > 0);
    }

    [Fact]
    public void Output_is_appended_to_the_list()
    {
        var existing = CgmRow.Glucose(1, 1);
        var output = new List<CgmRow> { existing };
        CgmResampler.Resample([CgmRow.Glucose(T0, 100)], Options, output);
        Assert.Equal(2, output.Count);
        Assert.Equal(existing, output[0]);
    }
}
