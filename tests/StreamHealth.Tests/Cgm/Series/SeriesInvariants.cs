using StreamHealth.Cgm;
using StreamHealth.Cgm.Series;

namespace StreamHealth.Tests.Cgm.Series;

/// <summary>Everything a resampled series must satisfy, checked against its input (on a continuous clock, so each
/// reading's nearest grid time is known). Throws with the first violation.</summary>
internal static class SeriesInvariants
{
    public static void Check(IReadOnlyList<CgmRow> input, IReadOnlyList<CgmRow> output, ResampleReport report, CgmSeriesOptions options)
    {
        var stepMs = options.StepMinutes * 60_000L;
        var maxGapMs = options.MaxInterpolationGapMinutes * 60_000L;

        // Sorted by time, on the grid; within one time the glucose row first.
        for (var i = 0; i < output.Count; i++)
        {
            if (output[i].TimeMs % stepMs != 0) Assert.Fail($"row {i} at {output[i].TimeMs} is off the grid");
            if (i == 0) continue;
            if (output[i].TimeMs < output[i - 1].TimeMs) Assert.Fail($"row {i} goes back in time");
            if (output[i].TimeMs == output[i - 1].TimeMs)
                if (IsGlucose(output[i])) Assert.Fail($"row {i}: a second glucose row, or a glucose row after an event, at {output[i].TimeMs}");
        }

        var glucose = output.Where(IsGlucose).ToList();
        Assert.Equal(report.Aligned, glucose.Count(r => r.EventType == CgmEventType.EgvRead));
        Assert.Equal(report.Imputed, glucose.Count(r => r.EventType == CgmEventType.Imputation));
        Assert.Equal(report.Sequences, glucose.Select(r => r.SequenceId).Distinct().Count());
        Assert.Equal(report.InputGlucoseReadings, report.Aligned + report.Duplicates + report.Dropped);

        // Sequences: ids 0, 1, … in time order, one glucose row per step inside, more than the threshold apart,
        // each starting and ending on a real reading; imputed rows exactly the linear fill between real ones.
        for (var i = 0; i < glucose.Count; i++)
        {
            var row = glucose[i];
            var imputed = row.EventType == CgmEventType.Imputation;
            Assert.Equal(imputed, (row.Quality & CgmQuality.Imputed) != 0);
            var outside = row.GlucoseMgDl < options.SensorMinMgDl || row.GlucoseMgDl > options.SensorMaxMgDl;
            if (outside != ((row.Quality & CgmQuality.OutOfRange) != 0)) Assert.Fail($"glucose row {i} ({row.GlucoseMgDl} mg/dL) has OutOfRange wrong");
            if (!(row.GlucoseMgDl > options.DropAtOrBelowMgDl && row.GlucoseMgDl <= options.DropAboveMgDl)) Assert.Fail($"impossible value {row.GlucoseMgDl} kept");
            if (i == 0)
            {
                Assert.Equal(0, row.SequenceId);
                Assert.False(imputed, "the series starts with an imputed row");
                continue;
            }
            var previous = glucose[i - 1];
            if (row.SequenceId == previous.SequenceId)
            {
                if (row.TimeMs - previous.TimeMs != stepMs)
                    Assert.Fail($"sequence {row.SequenceId}: {row.TimeMs - previous.TimeMs} ms between glucose rows {i - 1} and {i}");
            }
            else
            {
                Assert.Equal(previous.SequenceId + 1, row.SequenceId);
                if (row.TimeMs - previous.TimeMs <= maxGapMs) Assert.Fail($"sequences {previous.SequenceId} and {row.SequenceId} only {row.TimeMs - previous.TimeMs} ms apart");
                if (imputed) Assert.Fail($"sequence {row.SequenceId} starts with an imputed row");
                if (previous.EventType == CgmEventType.Imputation) Assert.Fail($"sequence {previous.SequenceId} ends with an imputed row");
            }
        }
        Assert.True(glucose.Count == 0 || glucose[^1].EventType == CgmEventType.EgvRead, "the series ends with an imputed row");
        CheckImputedRows(glucose, maxGapMs);

        // Every plausible reading either appears (same original time and value, snapped to its nearest step) or is
        // a duplicate in a step whose kept reading is at least as near the grid time; impossible ones never appear.
        var readings = input.Where(r => r.EventType == CgmEventType.EgvRead).ToList();
        var plausible = readings.Where(r => r.GlucoseMgDl > options.DropAtOrBelowMgDl && r.GlucoseMgDl <= options.DropAboveMgDl).ToList();
        Assert.Equal(readings.Count - plausible.Count, report.Dropped);
        Assert.Equal(readings.Count, report.InputGlucoseReadings);
        var kept = new Dictionary<(long, double), List<CgmRow>>();
        foreach (var row in glucose.Where(r => r.EventType == CgmEventType.EgvRead))
        {
            var key = (row.OriginalTimeMs, row.GlucoseMgDl);
            if (!kept.TryGetValue(key, out var list)) kept[key] = list = [];
            list.Add(row);
        }
        var byStep = glucose.Where(r => r.EventType == CgmEventType.EgvRead).ToDictionary(r => r.TimeMs);
        var unmatched = 0;
        foreach (var reading in plausible)
        {
            var nearestMs = NearestGridMs(reading.TimeMs, stepMs);
            if (kept.TryGetValue((reading.OriginalTimeMs, reading.GlucoseMgDl), out var list) && list.Count > 0)
            {
                var match = list[^1];
                list.RemoveAt(list.Count - 1);
                if (match.TimeMs != nearestMs) Assert.Fail($"reading at {reading.TimeMs} output at {match.TimeMs}, not its nearest step {nearestMs}");
                Assert.Equal(match.TimeMs != match.OriginalTimeMs, (match.Quality & CgmQuality.Synchronised) != 0);
                continue;
            }
            unmatched++;
            if (!byStep.TryGetValue(nearestMs, out var keeper)) Assert.Fail($"duplicate at {reading.TimeMs}: no reading kept at {nearestMs}");
            if ((keeper.Quality & CgmQuality.DuplicateTime) == 0) Assert.Fail($"reading kept at {nearestMs} lacks DuplicateTime");
            if (Math.Abs(keeper.OriginalTimeMs - nearestMs) > Math.Abs(reading.TimeMs - nearestMs))
                Assert.Fail($"at {nearestMs} the kept reading ({keeper.OriginalTimeMs}) is further from the grid than a duplicate ({reading.TimeMs})");
        }
        Assert.Equal(report.Duplicates, unmatched);
        Assert.All(kept.Values, list => Assert.Empty(list));
        Assert.Equal(report.Duplicates > 0, glucose.Any(r => (r.Quality & CgmQuality.DuplicateTime) != 0));

        CheckEvents(input, output, report, glucose, stepMs, maxGapMs);
    }

    private static void CheckImputedRows(List<CgmRow> glucose, long maxGapMs)
    {
        for (var i = 0; i < glucose.Count; i++)
        {
            if (glucose[i].EventType != CgmEventType.Imputation) continue;
            var left = i - 1;
            while (glucose[left].EventType == CgmEventType.Imputation) left--;
            var right = i + 1;
            while (glucose[right].EventType == CgmEventType.Imputation) right++;
            var a = glucose[left];
            var b = glucose[right];
            if (b.TimeMs - a.TimeMs > maxGapMs) Assert.Fail($"imputed row at {glucose[i].TimeMs} fills a {b.TimeMs - a.TimeMs} ms gap");
            var expected = a.GlucoseMgDl + (b.GlucoseMgDl - a.GlucoseMgDl) * (glucose[i].TimeMs - a.TimeMs) / (b.TimeMs - a.TimeMs);
            Assert.Equal(expected, glucose[i].GlucoseMgDl, 9);
            Assert.InRange(glucose[i].GlucoseMgDl, Math.Min(a.GlucoseMgDl, b.GlucoseMgDl) - 1e-9, Math.Max(a.GlucoseMgDl, b.GlucoseMgDl) + 1e-9);
            Assert.Equal(glucose[i].TimeMs, glucose[i].OriginalTimeMs);
        }
    }

    /// <summary>Events: each input event once, snapped to its nearest step, in the sequence covering its time or the
    /// nearer one when that is at most the interpolation gap away; else left out and counted as unattached. Sensor
    /// readings alone make the series' points: events (a calibration's value included) never add one.</summary>
    private static void CheckEvents(IReadOnlyList<CgmRow> input, IReadOnlyList<CgmRow> output, ResampleReport report,
        List<CgmRow> glucose, long stepMs, long maxGapMs)
    {
        var inputEvents = input.Where(r => r.EventType is not (CgmEventType.EgvRead or CgmEventType.Imputation)).ToList();
        var outputEvents = output.Where(r => !IsGlucose(r)).ToList();
        Assert.Equal(inputEvents.Count, report.Events);
        Assert.Equal(inputEvents.Count - report.Unattached, outputEvents.Count);
        Assert.Equal(glucose.Count, output.Count(r => r.IsSeriesPoint));
        var sequences = glucose.GroupBy(r => r.SequenceId).Select(g => (Id: g.Key, From: g.First().TimeMs, To: g.Last().TimeMs)).ToList();
        long Distance(long timeMs) => sequences.Count == 0 ? long.MaxValue
            : sequences.Min(s => timeMs >= s.From && timeMs <= s.To ? 0 : Math.Min(Math.Abs(timeMs - s.From), Math.Abs(timeMs - s.To)));
        var expected = inputEvents.Select(r => (r.EventType, r.OriginalTimeMs, NearestGridMs(r.TimeMs, stepMs), r.CarbsG, r.InsulinFastU))
            .Where(e => Distance(e.Item3) <= maxGapMs).OrderBy(x => x).ToList();
        var actual = outputEvents.Select(r => (r.EventType, r.OriginalTimeMs, r.TimeMs, r.CarbsG, r.InsulinFastU)).OrderBy(x => x).ToList();
        Assert.Equal(expected, actual);

        foreach (var e in outputEvents)
        {
            Assert.Equal(e.TimeMs != e.OriginalTimeMs, (e.Quality & CgmQuality.Synchronised) != 0);
            var inside = sequences.FirstOrDefault(s => e.TimeMs >= s.From && e.TimeMs <= s.To);
            if (inside != default)
            {
                Assert.Equal(inside.Id, e.SequenceId);
                continue;
            }
            var own = sequences[e.SequenceId];
            Assert.Equal(Distance(e.TimeMs), Math.Min(Math.Abs(e.TimeMs - own.From), Math.Abs(e.TimeMs - own.To)));
        }
    }

    /// <summary>The window's forecaster input equals the last steps of the batch series of the same readings: complete
    /// exactly when the batch's last sequence is that long, the same values where it is. Returns whether complete.</summary>
    public static bool CheckForecastInput(CgmWindow window, IReadOnlyList<CgmRow> batch, int steps = CgmSeriesOptions.ForecastInputSteps)
    {
        var lastSequence = batch.Last(IsGlucose).SequenceId;
        var series = batch.Where(r => IsGlucose(r) && r.SequenceId == lastSequence).ToList();
        var input = new float[steps];
        var complete = window.TryCopyLatest(steps, input, out var lastStepTimeMs);
        Assert.Equal(series.Count >= steps, complete);
        Assert.Equal(series[^1].TimeMs, lastStepTimeMs);
        Assert.Equal((float)series[^1].GlucoseMgDl, window.LatestGlucoseMgDl);
        if (complete)
            for (var s = 0; s < steps; s++) Assert.Equal(series[series.Count - steps + s].GlucoseMgDl, input[s], 3);
        return complete;
    }

    public static bool IsGlucose(CgmRow row) => row.EventType is CgmEventType.EgvRead or CgmEventType.Imputation;

    public static long NearestGridMs(long timeMs, long stepMs) => (long)Math.Floor((timeMs + stepMs / 2) / (double)stepMs) * stepMs;
}
