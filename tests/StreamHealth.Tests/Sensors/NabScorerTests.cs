using StreamHealth.Sensors.Anomalies.Nab;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Sensors;

/// <summary>NAB's scoring rules against cases computed by hand (issue 16, "NAB check"). The series: 100 readings,
/// probation ⌊0.15·100⌋ = 15, one window on rows 40…49 (width 10).</summary>
public sealed class NabScorerTests
{
    private const double MaxTp = 0.9866142981514305;   // 2·sigmoid(5) − 1

    private static NabSeries Series(params (int, int)[] windows) =>
        new("cat/s.csv", [.. Enumerable.Range(0, 100).Select(i => $"t{i}")], new double[100], windows);

    private static double[] Detections(params (int Row, double Score)[] at)
    {
        var scores = new double[100];
        foreach (var (row, score) in at) scores[row] = score;
        return scores;
    }

    private static (int Code, string StdOut, string StdErr) Nab(params string[] args) =>
        Repo.Run("dotnet", [ChildHost.HostDll, "sensors", "nab", .. args], timeoutMs: 120_000);

    private static NabScore Standard(NabSeries s, double[] scores) => NabScorer.Score([s], [scores], NabProfile.Standard);

    [Fact]
    public void The_scaled_sigmoid_is_NABs()
    {
        Assert.Equal(MaxTp, NabScorer.ScaledSigmoid(-1.0), 12);
        Assert.Equal(0.0, NabScorer.ScaledSigmoid(0.0), 12);
        Assert.Equal(-MaxTp, NabScorer.ScaledSigmoid(1.0), 12);
        Assert.Equal(-1.0, NabScorer.ScaledSigmoid(3.0));
        Assert.Equal(-1.0, NabScorer.ScaledSigmoid(7.5));
        Assert.Equal(15, NabScorer.ProbationLength(100));
        Assert.Equal(750, NabScorer.ProbationLength(22_695));   // capped at 0.15 × 5000
    }

    [Fact]
    public void A_detection_at_the_windows_first_row_is_a_perfect_score()
    {
        var r = Standard(Series((40, 49)), Detections((40, 1.0)));
        Assert.Equal(1.0, r.Raw, 12);
        Assert.Equal(100.0, r.Normalized, 9);
        Assert.Equal((1, 1, 0), (r.WindowsDetected, r.Windows, r.FalsePositiveReadings));
    }

    [Fact]
    public void No_detection_is_the_null_score_and_a_late_one_counts_less()
    {
        Assert.Equal(0.0, Standard(Series((40, 49)), Detections()).Normalized, 9);
        // At the right edge: position −(49 − 49 + 1)/10 = −0.1 → (2·sigmoid(0.5) − 1)/maxTP = 0.248242
        var late = Standard(Series((40, 49)), Detections((49, 1.0)));
        Assert.Equal(0.24824154977542992, late.Raw, 9);
        Assert.Equal(62.4120774887715, late.Normalized, 6);
        // Only the window's best detection counts: an early and a late one score as the early one alone.
        Assert.Equal(1.0, Standard(Series((40, 49)), Detections((40, 1.0), (49, 1.0))).Raw, 12);
    }

    [Fact]
    public void False_positives_cost_fpWeight_scaled_by_their_distance_past_the_window()
    {
        // Before any window: −1 × 0.11.
        var before = Standard(Series((40, 49)), Detections((20, 1.0), (40, 1.0)));
        Assert.Equal(0.89, before.Raw, 12);
        Assert.Equal(94.5, before.Normalized, 9);
        Assert.Equal(1, before.FalsePositiveReadings);
        // 5 rows past the right edge: position |49 − 54| / (10 − 1) → 0.11 × (2·sigmoid(−2.78) − 1) = −0.097122
        var after = Standard(Series((40, 49)), Detections((40, 1.0), (54, 1.0)));
        Assert.Equal(1.0 - 0.09712188136763907, after.Raw, 9);
        // The reward-low-FP profile doubles the cost.
        var lowFp = NabScorer.Score([Series((40, 49))], [Detections((20, 1.0), (40, 1.0))], NabProfile.RewardLowFalsePositives);
        Assert.Equal(0.78, lowFp.Raw, 12);
    }

    [Fact]
    public void Probation_readings_count_for_nothing()
    {
        // Row 10 is inside probation: no false positive, and a window there is not scored.
        Assert.Equal(-1.0, Standard(Series((40, 49)), Detections((10, 1.0))).Raw, 12);
        var inProbation = Standard(Series((5, 8), (40, 49)), Detections((6, 1.0), (40, 1.0)));
        Assert.Equal(1.0, inProbation.Raw, 12);            // the window at 5…8 adds neither +1 nor −1
        Assert.Equal(2, inProbation.Windows);              // … but counts in the normalisation, as NAB's
        Assert.Equal(75.0, inProbation.Normalized, 9);     // 100 × (1 − (−2)) / (2 − (−2))
    }

    [Fact]
    public void The_threshold_is_the_best_for_the_corpus_and_detections_are_scores_at_or_above_it()
    {
        // Candidates: 0.95 → −1 − 0.11; 0.9 → +1 − 0.11 = 0.89 (best); 0.5 → 0.78; 0 → every reading detected.
        var scores = Detections((20, 0.95), (40, 0.9), (30, 0.5));
        var r = Standard(Series((40, 49)), scores);
        Assert.Equal(0.9, r.Threshold);
        Assert.Equal(0.89, r.Raw, 12);
        Assert.Equal(0.78, NabScorer.ScoreAt([Series((40, 49))], [scores], NabProfile.Standard, 0.5).Raw, 12);
        // Reward-low-FN: a miss costs 2, so null = −2 and the same detections normalise to 100 × (0.89 + 2) / 3.
        var lowFn = NabScorer.Score([Series((40, 49))], [scores], NabProfile.RewardLowFalseNegatives);
        Assert.Equal(100 * 2.89 / 3, lowFn.Normalized, 9);
    }

    [Fact]
    public void One_threshold_serves_every_series_of_the_corpus()
    {
        // Series a wants 0.9 (its window) and series b has a 0.95 false positive: any threshold ≤ 0.9 pays for it.
        var a = Series((40, 49)) with { Name = "a.csv" };
        var b = Series() with { Name = "b.csv" };
        var r = NabScorer.Score([a, b], [Detections((40, 0.9)), Detections((60, 0.95))], NabProfile.Standard);
        Assert.Equal(0.89, r.Raw, 12);
        Assert.Equal(0.9, r.Threshold);
    }

    [Fact]
    public void The_corpus_reader_names_the_file_and_line_of_bad_input()
    {
        using var dir = new ScratchDirectory();
        Directory.CreateDirectory(Path.Combine(dir.Path, "data", "c"));
        Directory.CreateDirectory(Path.Combine(dir.Path, "labels"));
        var labels = Path.Combine(dir.Path, "labels", "combined_windows.json");
        File.WriteAllText(Path.Combine(dir.Path, "data", "c", "s.csv"),
            "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,2\n2014-01-01 00:05:00,3\n2014-01-01 00:10:00,4\n");
        File.WriteAllText(labels, """{"c/s.csv": [["2014-01-01 00:05:00.000000", "2014-01-01 00:10:00.000000"]]}""");
        var s = Assert.Single(NabCorpus.Load(dir.Path));
        Assert.Equal([1.0, 2, 3, 4], s.Values);
        Assert.Equal((1, 3), s.Windows[0]);                // a repeated timestamp is its first row, as NAB's index()

        File.WriteAllText(labels, """{"c/s.csv": [["2014-01-01 00:05:00.000000", "2015-01-01 00:00:00.000000"]]}""");
        Assert.Contains("2015-01-01 00:00:00.000000 is not a timestamp", Assert.Throws<InvalidDataException>(() => NabCorpus.Load(dir.Path)).Message);
        File.WriteAllText(labels, """{"../../etc/passwd": []}""");
        Assert.Contains("leaves the data directory", Assert.Throws<InvalidDataException>(() => NabCorpus.Load(dir.Path)).Message);
        File.WriteAllText(labels, """{"c/s.csv": []}""");
        File.AppendAllText(Path.Combine(dir.Path, "data", "c", "s.csv"), "2014-01-01 00:15:00,NaN\n");
        Assert.Contains("s.csv:6: expected 'timestamp,value' with a finite number", Assert.Throws<InvalidDataException>(() => NabCorpus.Load(dir.Path)).Message);
        File.WriteAllText(labels, "[1, 2]");
        Assert.Contains("not a map of series", Assert.Throws<InvalidDataException>(() => NabCorpus.Load(dir.Path)).Message);
        // The command turns each into one line naming the file (exit 2), never a stack trace.
        var (code, _, stderr) = Nab(dir.Path);
        Assert.Equal(2, code);
        Assert.StartsWith("streamhealth: ", stderr);
        Assert.Contains("combined_windows.json: not a map of series", stderr);
        Assert.DoesNotContain("   at ", stderr);
    }

    [Fact]
    public void The_command_scores_the_shared_corpus_under_the_three_profiles()
    {
        var (code, text, stderr) = Nab(Path.Combine(Repo.SharedData, "sensors", "nab"), "--per-series");
        Assert.True(code == 0, stderr);
        Assert.Contains("NAB: 35 series, 181,653 readings, 55 anomaly windows", text);
        foreach (var profile in NabProfile.All)
        {
            var line = text.Split('\n').Single(l => l.StartsWith($"| {profile.Name} |", StringComparison.Ordinal));
            var score = double.Parse(line.Split('|')[2], System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(score, 0.0, 100.0);             // better than the null detector, and a real NAB score
        }
        Assert.Contains("realKnownCause/nyc_taxi.csv: raw", text);
    }

    private sealed class ScratchDirectory : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("nab-").FullName;
        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
