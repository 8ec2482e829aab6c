namespace StreamHealth.Sensors.Anomalies.Nab;

/// <summary>A NAB application profile: the weights of a true positive, a false positive and a missed window.</summary>
public sealed record NabProfile(string Name, double TruePositiveWeight, double FalsePositiveWeight, double FalseNegativeWeight)
{
    /// <summary>NAB's config/profiles.json.</summary>
    public static readonly NabProfile Standard = new("standard", 1.0, 0.11, 1.0);
    public static readonly NabProfile RewardLowFalsePositives = new("reward_low_FP_rate", 1.0, 0.22, 1.0);
    public static readonly NabProfile RewardLowFalseNegatives = new("reward_low_FN_rate", 1.0, 0.11, 2.0);
    public static readonly IReadOnlyList<NabProfile> All = [Standard, RewardLowFalsePositives, RewardLowFalseNegatives];
}

/// <summary>A profile's result: the normalised score (null detector 0, perfect detector 100), the raw score, the
/// threshold that gave it (detections are scores ≥ threshold) and the counts at that threshold.</summary>
public sealed record NabScore(NabProfile Profile, double Normalized, double Raw, double Threshold,
    int WindowsDetected, int Windows, int FalsePositiveReadings);

/// <summary>
/// NAB's scoring rules (Lavin &amp; Ahmad 2015; numenta/NAB nab/sweeper.py and optimizer.py), implemented here:
/// <list type="bullet">
/// <item>The first 15 % of each series (at most 750 readings) is probation: nothing there counts.</item>
/// <item>A window counts once: the best of its detections, weighted by the scaled sigmoid of the detection's position
/// (earliest ≈ +1·tpWeight, right edge ≈ 0); a window with no detection costs −fnWeight.</item>
/// <item>Each detection outside every window costs fpWeight × the scaled sigmoid of its distance past the previous
/// window in that window's widths (−1·fpWeight before the first window or 3 widths on).</item>
/// <item>One threshold per profile for the whole corpus, the best over every distinct score (an exact sweep).</item>
/// <item>Normalised: 100 × (raw − null) / (perfect − null), null = −fnWeight × windows, perfect = tpWeight × windows.</item>
/// </list>
/// </summary>
public static class NabScorer
{
    public const double ProbationFraction = 0.15;

    /// <summary>NAB's probation length of a series of <paramref name="rows"/> readings: min(⌊0.15·n⌋, 0.15·5000).</summary>
    public static int ProbationLength(int rows) => (int)Math.Min(Math.Floor(ProbationFraction * rows), ProbationFraction * 5000);

    /// <summary>NAB's scaled sigmoid of a relative position (−1 = window's left edge, 0 = right edge, &gt; 0 past it).</summary>
    public static double ScaledSigmoid(double relativePosition) =>
        relativePosition >= 3.0 ? -1.0 : 2.0 / (1.0 + Math.Exp(5.0 * relativePosition)) - 1.0;

    /// <summary>What one reading would contribute if it were a detection: its window (−1 outside every window) and its
    /// weighted score; probation readings are left out.</summary>
    internal readonly record struct Row(double AnomalyScore, int Window, double SweepScore);

    internal static void AddRows(NabSeries series, ReadOnlySpan<double> anomalyScores, NabProfile profile, int windowBase, List<Row> rows)
    {
        if (anomalyScores.Length != series.Values.Length)
            throw new ArgumentException($"{series.Name}: {anomalyScores.Length} scores for {series.Values.Length} readings", nameof(anomalyScores));
        var maxTp = ScaledSigmoid(-1.0);
        var probation = ProbationLength(series.Values.Length);
        var next = 0;
        var current = -1;                 // index into series.Windows, or -1 outside
        int previousRight = -1, previousWidth = 0;
        for (var i = 0; i < anomalyScores.Length; i++)
        {
            if (next < series.Windows.Length && i == series.Windows[next].First) current = next++;
            double sweep;
            if (current >= 0)
            {
                var (first, last) = series.Windows[current];
                double width = last - first + 1;
                // NAB's position: −(right − i + 1) / width, so the left edge is −1 and the right edge −1/width.
                sweep = ScaledSigmoid(-(last - i + 1) / width) * profile.TruePositiveWeight / maxTp;
            }
            else
            {
                // A one-reading window has width 1: NAB divides by zero there and gets ±inf, i.e. position ≥ 3.
                var position = previousRight < 0 ? 3.0
                    : previousWidth > 1 ? Math.Abs(previousRight - i) / (double)(previousWidth - 1) : 3.0;
                sweep = ScaledSigmoid(position) * profile.FalsePositiveWeight;
            }
            if (i >= probation) rows.Add(new Row(anomalyScores[i], current >= 0 ? windowBase + current : -1, sweep));
            if (current >= 0 && i == series.Windows[current].Last)
            {
                previousRight = i;
                previousWidth = series.Windows[current].Last - series.Windows[current].First + 1;
                current = -1;
            }
        }
    }

    /// <summary>Scores a detector's output (one score per reading of each series, same order) under one profile, at the
    /// threshold that is best for the whole corpus (NAB's optimiser: an exact sweep over every distinct score).</summary>
    public static NabScore Score(IReadOnlyList<NabSeries> corpus, IReadOnlyList<double[]> anomalyScores, NabProfile profile) =>
        Sweep(corpus, anomalyScores, profile, fixedThreshold: null);

    /// <summary>The same at a given threshold: detections are the readings scored ≥ <paramref name="threshold"/>.</summary>
    public static NabScore ScoreAt(IReadOnlyList<NabSeries> corpus, IReadOnlyList<double[]> anomalyScores, NabProfile profile, double threshold) =>
        Sweep(corpus, anomalyScores, profile, threshold);

    private static NabScore Sweep(IReadOnlyList<NabSeries> corpus, IReadOnlyList<double[]> anomalyScores, NabProfile profile, double? fixedThreshold)
    {
        if (corpus.Count != anomalyScores.Count) throw new ArgumentException("one score array per series", nameof(anomalyScores));
        var rows = new List<Row>();
        var windows = 0;
        for (var s = 0; s < corpus.Count; s++)
        {
            AddRows(corpus[s], anomalyScores[s], profile, windows, rows);
            windows += corpus[s].Windows.Length;
        }
        // Highest scores first; equal scores are one threshold step (as NAB's sweep).
        rows.Sort((a, b) => b.AnomalyScore.CompareTo(a.AnomalyScore));
        // A window entirely inside probation is not scored (NAB leaves it out of the sweep) but still counts in the
        // normalisation below, as NAB counts every labelled window there.
        var best = new double[windows];
        var raw = 0.0;
        var inScoring = new bool[windows];
        foreach (var r in rows) if (r.Window >= 0) inScoring[r.Window] = true;
        for (var w = 0; w < windows; w++) if (inScoring[w]) { best[w] = -profile.FalseNegativeWeight; raw += best[w]; }

        var (bestRaw, bestThreshold, detected, bestDetected, falsePositives, bestFalsePositives) = (raw, 1.1, 0, 0, 0, 0);
        for (var i = 0; i < rows.Count;)
        {
            var threshold = rows[i].AnomalyScore;
            if (fixedThreshold is { } t && threshold < t) break;
            for (; i < rows.Count && rows[i].AnomalyScore == threshold; i++)
            {
                var r = rows[i];
                if (r.Window < 0) { raw += r.SweepScore; falsePositives++; continue; }
                if (r.SweepScore <= best[r.Window]) continue;
                if (best[r.Window] == -profile.FalseNegativeWeight) detected++;
                raw += r.SweepScore - best[r.Window];
                best[r.Window] = r.SweepScore;
            }
            if (fixedThreshold is not null || raw > bestRaw)
                (bestRaw, bestThreshold, bestDetected, bestFalsePositives) = (raw, fixedThreshold ?? threshold, detected, falsePositives);
        }
        var nullScore = -profile.FalseNegativeWeight * windows;
        var perfect = profile.TruePositiveWeight * windows;
        var normalized = perfect == nullScore ? 0 : 100 * (bestRaw - nullScore) / (perfect - nullScore);
        return new NabScore(profile, normalized, bestRaw, bestThreshold, bestDetected, windows, bestFalsePositives);
    }
}
