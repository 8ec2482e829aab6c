using System.Diagnostics;
using StreamHealth.CallLogs.Extraction;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth calllogs extract-check [FILE] [--misses]`: the embedded call-log extractor over the
/// hand-labelled check-ins, precision / recall / F1 per kind on names and on names with attributes, per part of the set
/// (tuning, held-out, all), and its throughput.</summary>
internal static class CallLogsVerb
{
    private const string Usage = "usage: streamhealth calllogs extract-check [FILE] [--misses] [--repeat N]";
    private const string DefaultSet = "benchmarks/data/calllogs/checkins-labelled.jsonl";

    public static Task<int> RunAsync(string[] argv) => Task.FromResult(argv.FirstOrDefault() switch
    {
        "extract-check" => ExtractCheck(argv[1..], Console.Out),
        _ => throw new UsageException(Usage),
    });

    internal static int ExtractCheck(string[] argv, TextWriter output)
    {
        var args = new Args(argv, "--misses");
        if (args.Positional.Count > 1) throw new UsageException(Usage);
        var path = args.Positional.Count == 1 ? args.Positional[0] : FindDefaultSet()
            ?? throw new UsageException($"calllogs extract-check: {DefaultSet} not found above the current directory; give FILE");
        if (!File.Exists(path)) throw new UsageException($"calllogs extract-check: FILE = '{path}' does not exist");
        List<LabelledCheckin> set;
        try { set = ExtractionScorer.ReadLabelled(path); }
        catch (FormatException e) { throw new UsageException(e.Message); }
        var repeat = Math.Max(1, args.GetInt("--repeat", 20));

        IHealthEntryExtractor extractor = new EmbeddedExtractor();
        var byPart = new SortedDictionary<string, ExtractionScore>(StringComparer.Ordinal);
        var countByPart = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var all = ExtractionScore.Zero;
        foreach (var checkin in set)
        {
            var actual = extractor.Extract(checkin.Transcript);
            var score = ExtractionScorer.Score(checkin.Expected, actual);
            byPart[checkin.Part] = byPart.GetValueOrDefault(checkin.Part, ExtractionScore.Zero) + score;
            countByPart[checkin.Part] = countByPart.GetValueOrDefault(checkin.Part) + 1;
            all += score;
            if (args.Has("--misses") && !Perfect(score)) PrintMiss(output, checkin, actual);
        }

        // Throughput: the whole set `repeat` times after one warm-up pass, one thread.
        var transcripts = 0L;
        var clock = Stopwatch.StartNew();
        for (var r = 0; r < repeat; r++)
            foreach (var checkin in set) { extractor.Extract(checkin.Transcript); transcripts++; }
        clock.Stop();

        output.WriteLine($"calllogs extract-check: {set.Count} labelled transcripts from {path}, extractor {extractor.Name}");
        foreach (var (part, score) in byPart) PrintTable(output, $"{part} ({countByPart[part]} transcripts)", score);
        PrintTable(output, $"all ({set.Count} transcripts)", all);
        output.WriteLine($"throughput: {transcripts / clock.Elapsed.TotalSeconds:N0} transcripts/s ({transcripts} extractions in {clock.Elapsed.TotalMilliseconds:N0} ms, one thread)");
        return 0;
    }

    private static bool Perfect(ExtractionScore s) =>
        s.MedicationFull.FalsePositives + s.MedicationFull.FalseNegatives + s.FoodFull.FalsePositives + s.FoodFull.FalseNegatives
        + s.SymptomFull.FalsePositives + s.SymptomFull.FalseNegatives == 0;

    private static void PrintTable(TextWriter output, string title, ExtractionScore s)
    {
        output.WriteLine();
        output.WriteLine($"{title}");
        output.WriteLine("| kind | match | expected | extracted | TP | precision | recall | F1 |");
        output.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|");
        Row(output, "medication", "name", s.MedicationNames);
        Row(output, "medication", "name+dose+unit+frequency+status", s.MedicationFull);
        Row(output, "food", "item", s.FoodNames);
        Row(output, "food", "item+quantity+unit+meal", s.FoodFull);
        Row(output, "symptom", "name", s.SymptomNames);
        Row(output, "symptom", "name+present+severity+onset", s.SymptomFull);
    }

    private static void Row(TextWriter output, string kind, string match, Counts c) =>
        output.WriteLine($"| {kind} | {match} | {c.TruePositives + c.FalseNegatives} | {c.TruePositives + c.FalsePositives} | {c.TruePositives} | " +
                         $"{ExtractionScorer.Format(c.Precision)} | {ExtractionScorer.Format(c.Recall)} | {ExtractionScorer.Format(c.F1)} |");

    private static void PrintMiss(TextWriter output, LabelledCheckin checkin, ExtractionResult actual)
    {
        output.WriteLine($"--- {checkin.Id} ({checkin.Part})");
        output.WriteLine("    " + checkin.Transcript.Replace("\n", "\n    "));
        output.WriteLine("  expected: " + Describe(checkin.Expected));
        output.WriteLine("  actual:   " + Describe(actual));
    }

    internal static string Describe(ExtractionResult r) => string.Join("; ",
        r.Medications.Select(m => $"M {m.GenericName}|{m.DoseValue}|{m.DoseUnit}|{m.Frequency}|{m.Status}")
            .Concat(r.Foods.Select(f => $"F {f.Item}|{f.Quantity}|{f.Unit}|{f.Meal}"))
            .Concat(r.Symptoms.Select(s => $"S {s.Name}|{(s.Present ? "present" : "denied")}|{s.Severity}|{s.Onset}")));

    private static string? FindDefaultSet()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, DefaultSet);
                if (File.Exists(candidate)) return candidate;
            }
        }
        return null;
    }
}
