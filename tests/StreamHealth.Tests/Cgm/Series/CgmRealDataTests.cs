using System.Globalization;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Series;
using StreamHealth.Tests.Infrastructure;
using Xunit.Abstractions;

namespace StreamHealth.Tests.Cgm.Series;

/// <summary>Hall et al. 2018 (19 people, Dexcom G4, 5-minute readings, local wall-clock without offset): every person
/// resampled, the invariants checked, and the streaming window replayed against the batch result.</summary>
public sealed class CgmRealDataTests(ITestOutputHelper log)
{
    private static Dictionary<string, List<CgmRow>> ReadHall2018()
    {
        var path = Path.Combine(Repo.SharedData, "cgm", "hall2018_19_subjects.csv");
        var people = new Dictionary<string, List<CgmRow>>();
        foreach (var line in File.ReadLines(path).Skip(1))
        {
            var fields = line.Split(',');
            var id = fields[0].Trim('"');
            var time = DateTime.ParseExact(fields[1], "yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture,
                DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal);
            var mgDl = double.Parse(fields[2], CultureInfo.InvariantCulture);
            if (!people.TryGetValue(id, out var rows)) people[id] = rows = [];
            rows.Add(CgmRow.Glucose((long)(time - DateTime.UnixEpoch).TotalMilliseconds, mgDl));
        }
        return people;
    }

    [Fact]
    public void Every_person_resamples_to_a_valid_series()
    {
        var options = new CgmSeriesOptions();
        var people = ReadHall2018();
        Assert.Equal(19, people.Count);
        Assert.Equal(34_890, people.Values.Sum(r => r.Count));

        int readings = 0, aligned = 0, imputed = 0, duplicates = 0, sequences = 0, complete = 0;
        foreach (var (id, rows) in people)
        {
            var output = new List<CgmRow>();
            var report = CgmResampler.Resample(rows.ToArray(), options, output);
            SeriesInvariants.Check(rows, output, report, options);
            // No clock change in these files (none spans a DST date), and the 75-minute losses at night
            // (e.g. 2133-027, 01:24 → 02:39) must not be taken for one.
            Assert.True(report.ClockShiftsCorrected == 0, $"{id}: {report.ClockShiftsCorrected} clock shifts");
            Assert.Equal(0, report.Dropped);
            readings += report.InputGlucoseReadings;
            aligned += report.Aligned;
            imputed += report.Imputed;
            duplicates += report.Duplicates;
            sequences += report.Sequences;

            var window = new CgmWindow(options);
            foreach (var row in rows) window.Add(row.TimeMs, (float)row.GlucoseMgDl);
            if (SeriesInvariants.CheckForecastInput(window, output)) complete++;
        }

        log.WriteLine($"{readings} readings: {aligned} aligned, {duplicates} duplicates, {imputed} imputed, {sequences} sequences, {complete} of 19 end with 8 complete hours");
        Assert.Equal(34_890, readings);
        // A 5-minute Dexcom drifting about a second per 2.5 hours: almost every reading gets its own step.
        Assert.InRange(duplicates, 0, readings / 100);
        Assert.InRange(aligned, readings * 99 / 100, readings);
        Assert.True(imputed > 100, $"{imputed} imputed");          // the 10- and 15-minute gaps
        Assert.True(sequences > 19, $"{sequences} sequences");      // the longer losses
        // 13 of the 19 files end on 8 hours without a gap over 15 minutes; the others end after a longer loss.
        Assert.True(complete >= 10, $"{complete} of 19 end with 8 complete hours");
    }
}
