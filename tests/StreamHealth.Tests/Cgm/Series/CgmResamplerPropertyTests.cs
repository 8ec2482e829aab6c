using StreamHealth.Cgm;
using StreamHealth.Cgm.Series;
using Xunit.Sdk;
using static StreamHealth.Tests.Cgm.Series.SyntheticCgm;

namespace StreamHealth.Tests.Cgm.Series;

/// <summary>The resampler's invariants over hundreds of generated exports (seeded, so a failure names its seed and
/// replays). Each test also checks that the generator produced the cases it is about, so none passes vacuously.</summary>
public sealed class CgmResamplerPropertyTests
{
    private static readonly CgmSeriesOptions Options = new();

    internal static void ForEachSeed(int seeds, Action<int> check)
    {
        for (var seed = 0; seed < seeds; seed++)
        {
            try { check(seed); }
            catch (Exception e) when (e is XunitException or InvalidOperationException or ArgumentException)
            {
                throw new XunitException($"seed {seed}: {e.Message}");
            }
        }
    }

    [Fact]
    public void Invariants_hold_on_generated_exports_with_gaps_duplicates_bad_values_and_local_reordering()
    {
        var total = new long[7];
        ForEachSeed(300, seed =>
        {
            var random = new Random(seed);
            var generator = new SyntheticCgm(random);
            var rows = generator.Generate(RandomMidnight(random) + random.Next(86_400) * 1000L);
            generator.ShuffleLocally(rows);

            var (output, report) = Resample(rows);

            SeriesInvariants.Check(rows, output, report, Options);
            Assert.Equal(0, report.ClockShiftsCorrected);
            total[0] += report.Duplicates;
            total[1] += report.Imputed;
            total[2] += report.Sequences > 1 ? 1 : 0;
            total[3] += report.Dropped;
            total[4] += report.OutOfRange;
            total[5] += report.Events;
            total[6] += output.Count(r => (r.Quality & CgmQuality.Synchronised) == 0 && r.EventType == CgmEventType.EgvRead);
        });
        Assert.All(total, count => Assert.True(count > 50, $"the generator produced too few cases: {string.Join(", ", total)}"));
    }

    /// <summary>Issue 11, defect 5: sensor readings alone define the grid, gaps and sequences. Off-grid calibrations and
    /// events far from every reading added to generated exports never add a point to a step, never join or stretch a
    /// sequence, and are each either attached near a sequence or counted as unattached.</summary>
    [Fact]
    public void Events_never_add_points_or_stretch_sequences()
    {
        int calibrations = 0, strays = 0;
        ForEachSeed(200, seed =>
        {
            var random = new Random(seed);
            var generator = new SyntheticCgm(random) { MaxReadings = 800 };
            var rows = generator.Generate(RandomMidnight(random));
            var readings = rows.Where(r => r.EventType == CgmEventType.EgvRead).Select(r => r.TimeMs).ToList();
            var (withoutExtras, baseReport) = Resample(rows);
            for (var k = random.Next(1, 6); k > 0; k--)
            {
                var at = readings[random.Next(readings.Count)] + random.Next(-149, 150) * 1000L;
                rows.Add(CgmRow.Event(CgmEventType.Calibration, at) with { GlucoseMgDl = random.Next(60, 250) });
                calibrations++;
            }
            var farMs = (random.Next(2) == 0 ? readings.Max() : readings.Min()) + (random.Next(2) == 0 ? 1 : -1) * random.Next(1, 800) * Day;
            var stray = random.Next(3);
            for (var k = 0; k < stray; k++)
                rows.Insert(random.Next(rows.Count + 1), CgmRow.Event(CgmEventType.Calibration, farMs + k * Hour) with { GlucoseMgDl = 120 });
            generator.ShuffleLocally(rows);

            var (output, report) = Resample(rows);

            SeriesInvariants.Check(rows, output, report, Options);
            // The points, their steps and sequences are those of the readings alone.
            Assert.Equal(withoutExtras.Where(r => r.IsSeriesPoint), output.Where(r => r.IsSeriesPoint));
            Assert.Equal(baseReport.Sequences, report.Sequences);
            var dataset = StreamHealth.Cgm.Pipeline.CgmDataset.FromSeries(StreamHealth.Cgm.Formats.CgmFormat.Unified, Options.StepMinutes, output);
            Assert.Equal(dataset.Points, dataset.TimesUnixMs.Distinct().Count());
            Assert.True(report.Unattached >= baseReport.Unattached + (farMs > readings.Max() + Hour || farMs < readings.Min() - 2 * Hour ? stray : 0));
            strays += stray;
        });
        Assert.True(calibrations > 200 && strays > 100, $"{calibrations} calibrations, {strays} strays");
    }

    [Fact]
    public void Without_clock_shifts_the_order_of_the_rows_does_not_matter()
    {
        ForEachSeed(150, seed =>
        {
            var random = new Random(seed);
            var generator = new SyntheticCgm(random) { MaxReadings = 600 };
            var rows = generator.Generate(RandomMidnight(random));
            var (expected, expectedReport) = Resample(rows);

            var shuffled = rows.ToList();
            generator.Shuffle(shuffled);
            var (actual, actualReport) = Resample(shuffled);
            Assert.Equal(expectedReport, actualReport);
            Assert.Equal(expected, actual);

            rows.Reverse();
            (actual, actualReport) = Resample(rows);
            Assert.Equal(expectedReport, actualReport);
            Assert.Equal(expected, actual);
        });
    }

    [Fact]
    public void Resampling_an_output_again_changes_nothing()
    {
        ForEachSeed(100, seed =>
        {
            var random = new Random(seed);
            var generator = new SyntheticCgm(random) { MaxReadings = 600 };
            var rows = generator.Generate(RandomMidnight(random));
            var (once, first) = Resample(rows);

            var (twice, second) = Resample(once);

            Assert.Equal(once, twice);
            Assert.Equal(first.Imputed, second.PreviouslyImputedIgnored);
            Assert.Equal(first.Aligned, second.Aligned);
            Assert.Equal(0, second.Duplicates);
        });
    }

    [Fact]
    public void Clock_shifted_exports_resample_to_the_continuous_series()
    {
        int springs = 0, falls = 0, travels = 0, descending = 0;
        ForEachSeed(200, seed =>
        {
            var random = new Random(seed);
            var midnight = RandomMidnight(random);
            List<ClockChange> changes = random.Next(4) switch
            {
                0 => [new(midnight + 2 * Hour, Hour)],
                1 => [new(midnight + 2 * Hour, -Hour)],
                // Spring-forward, then fall-back two days later: at 01:00 on the first reading's clock = 02:00 summer time.
                2 => [new(midnight + 2 * Hour, Hour), new(midnight + 2 * Day + Hour, -Hour)],
                _ => [new(midnight + random.Next(6, 22) * Hour + random.Next(60) * Minute, random.Next(2) == 0 ? -30 * Minute : -random.Next(1, 4) * Hour)],
            };
            var startMs = midnight - random.Next(2, 30) * Hour + random.Next(300) * 1000L;
            var needed = (int)((changes[^1].AtMs + 2 * Hour - startMs) / Cadence);
            var generator = new SyntheticCgm(random) { MinReadings = needed, MaxReadings = needed + 600 };
            generator.QuietAround.AddRange(changes.Select(c => c.AtMs));
            var truth = generator.Generate(startMs);
            generator.ShuffleLocally(truth);
            var wall = ToWallClock(truth, changes);
            if (random.Next(2) == 0)
            {
                wall.Reverse();
                descending++;
            }

            var (expected, expectedReport) = Resample(truth);
            var (actual, actualReport) = Resample(wall);

            SeriesInvariants.Check(truth, expected, expectedReport, Options);
            Assert.Equal(0, expectedReport.ClockShiftsCorrected);
            Assert.Equal(expectedReport with { ClockShiftsCorrected = changes.Count }, actualReport);
            Assert.Equal(expected.Count, actual.Count);
            for (var i = 0; i < expected.Count; i++)
            {
                var e = expected[i];
                var a = actual[i];
                Assert.Equal(e with { OriginalTimeMs = 0, Quality = e.Quality & ~CgmQuality.Synchronised },
                    a with { OriginalTimeMs = 0, Quality = a.Quality & ~CgmQuality.Synchronised });
                // The wall-clock time is kept: it differs from the continuous one by the shifts in effect.
                var shiftMs = changes.Where(c => e.OriginalTimeMs >= c.AtMs).Sum(c => c.ShiftMs);
                if (e.EventType != CgmEventType.Imputation) Assert.Equal(e.OriginalTimeMs + shiftMs, a.OriginalTimeMs);
            }
            foreach (var change in changes)
            {
                if (change.ShiftMs == Hour) springs++;
                else if (change.ShiftMs == -Hour) falls++;
                else travels++;
            }
        });
        Assert.True(springs > 50 && falls > 50 && travels > 20 && descending > 50, $"{springs} springs, {falls} falls, {travels} travels, {descending} descending");
    }
}
