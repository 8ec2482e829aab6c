using System.Diagnostics;
using StreamHealth.Sensors.Anomalies;
using StreamHealth.Sensors.Anomalies.Nab;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth sensors nab DIR`: the sensors' streaming anomaly detector, run reading by reading over every
/// series of a Numenta Anomaly Benchmark layout, scored with NAB's rules under its three profiles.</summary>
internal static class SensorsVerb
{
    public static Task<int> RunAsync(string[] argv) => Task.FromResult(argv.FirstOrDefault() switch
    {
        "nab" => Nab(argv[1..], Console.Out),
        _ => throw new UsageException("usage: streamhealth sensors nab DIR [--per-series]"),
    });

    internal static int Nab(string[] argv, TextWriter output)
    {
        var args = new Args(argv, "--per-series");
        if (args.Positional.Count != 1) throw new UsageException("usage: streamhealth sensors nab DIR [--per-series]");
        IReadOnlyList<NabSeries> corpus;
        try { corpus = NabCorpus.Load(args.Positional[0]); }
        catch (InvalidDataException e) { throw new UsageException(e.Message); }

        var clock = Stopwatch.StartNew();
        var readings = 0L;
        var scores = new double[corpus.Count][];
        for (var s = 0; s < corpus.Count; s++)
        {
            var series = corpus[s];
            // The detector learns its range over NAB's probation, the part of each series NAB does not score.
            var detector = new ContextNoveltyDetector(new ContextNoveltyOptions { ProbationReadings = Math.Max(2, NabScorer.ProbationLength(series.Values.Length)) });
            scores[s] = new double[series.Values.Length];
            for (var i = 0; i < series.Values.Length; i++) scores[s][i] = detector.Update(series.Values[i]);
            readings += series.Values.Length;
        }
        var detectSeconds = clock.Elapsed.TotalSeconds;

        output.WriteLine($"NAB: {corpus.Count} series, {readings:N0} readings, {corpus.Sum(c => c.Windows.Length)} anomaly windows ({args.Positional[0]})");
        output.WriteLine($"detector: context novelty (streaming, one pass), {readings / Math.Max(detectSeconds, 1e-9):N0} readings/s");
        output.WriteLine();
        output.WriteLine("| profile | score | raw | threshold | windows detected | false-positive readings |");
        output.WriteLine("|---|---|---|---|---|---|");
        var results = NabProfile.All.Select(p => NabScorer.Score(corpus, scores, p)).ToList();
        foreach (var r in results)
            output.WriteLine($"| {r.Profile.Name} | {r.Normalized:F1} | {r.Raw:F2} | {r.Threshold:G6} | {r.WindowsDetected}/{r.Windows} | {r.FalsePositiveReadings} |");
        output.WriteLine();
        output.WriteLine("NAB scoreboard, full corpus, standard profile: ARTime 74.9, Numenta HTM 70.5, CAD OSE 69.9, KNN CAD 58.0, Relative Entropy 54.6, Windowed Gaussian 39.6, random 11.0, null 0");
        if (args.Has("--per-series"))
        {
            var standard = results[0];
            output.WriteLine();
            output.WriteLine($"per series at the standard threshold {standard.Threshold:G6}:");
            for (var s = 0; s < corpus.Count; s++)
            {
                var one = NabScorer.ScoreAt([corpus[s]], [scores[s]], NabProfile.Standard, standard.Threshold);
                output.WriteLine($"  {corpus[s].Name}: raw {one.Raw:+0.00;-0.00}, windows {one.WindowsDetected}/{one.Windows}, false-positive readings {one.FalsePositiveReadings}");
            }
        }
        return 0;
    }
}
