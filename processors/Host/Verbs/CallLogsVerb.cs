using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.CallLogs.LlmExtraction;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth calllogs extract-check [FILE] [--misses] [--extractor embedded|openai]`: the embedded (or the
/// OpenAI-compatible endpoint's, CallLogs:Extractor) call-log extractor over the
/// hand-labelled check-ins, precision / recall / F1 per kind on names and on names with attributes, per part of the set
/// (tuning, held-out, all), and its throughput.</summary>
internal static class CallLogsVerb
{
    private const string Usage = "usage: streamhealth calllogs extract-check [FILE] [--misses] [--repeat N] [--extractor embedded|openai]";
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

        var kind = args.Get("--extractor") ?? ExtractorOptions.Embedded;
        if (kind is not (ExtractorOptions.Embedded or ExtractorOptions.OpenAi))
            throw new UsageException($"calllogs extract-check: --extractor = '{kind}': must be {ExtractorOptions.Embedded} or {ExtractorOptions.OpenAi}");
        if (kind == ExtractorOptions.OpenAi) return ExtractCheckOpenAi(set, path, args.Has("--misses"), output);

        IHealthEntryExtractor extractor = new EmbeddedExtractor();
        var results = set.Select(c => extractor.Extract(c.Transcript)).ToList();

        // Throughput: the whole set `repeat` times after one warm-up pass, one thread.
        var transcripts = 0L;
        var clock = Stopwatch.StartNew();
        for (var r = 0; r < repeat; r++)
            foreach (var checkin in set) { extractor.Extract(checkin.Transcript); transcripts++; }
        clock.Stop();

        PrintScores(output, set, results, args.Has("--misses"), $"calllogs extract-check: {set.Count} labelled transcripts from {path}, extractor {extractor.Name}");
        output.WriteLine($"throughput: {transcripts / clock.Elapsed.TotalSeconds:N0} transcripts/s ({transcripts} extractions in {clock.Elapsed.TotalMilliseconds:N0} ms, one thread)");
        return 0;
    }

    /// <summary>The endpoint's extractor (settings CallLogs:Extractor, Kind taken as openai) over the set: every transcript is
    /// submitted at once, so requests carry BatchSize transcripts; one pass (a second would be the cache's), timed whole.</summary>
    private static int ExtractCheckOpenAi(List<LabelledCheckin> set, string path, bool misses, TextWriter output)
    {
        var options = ExtractorOptions.Load(StreamHealthOptions.AddSources(new ConfigurationBuilder(),
            [KeyValuePair.Create(ExtractorOptions.Section + ":Kind", (string?)ExtractorOptions.OpenAi)]).Build());
        using var extractor = new OpenAiCompatibleExtractor(options);
        var clock = Stopwatch.StartNew();
        var results = extractor.ExtractAll(set.Select(c => c.Transcript).ToList());
        clock.Stop();
        PrintScores(output, set, results, misses, $"calllogs extract-check: {set.Count} labelled transcripts from {path}, extractor {extractor.Name} at {options.BaseUrl}");
        output.WriteLine($"endpoint: {extractor.Extracted} transcripts from its answers, {extractor.Fallbacks} by the embedded fallback, " +
                         $"{extractor.Requests} requests ({extractor.Retries} retries, {extractor.RejectedAnswers} answers rejected), " +
                         $"batch size {options.BatchSize}, {set.Count / clock.Elapsed.TotalSeconds:N1} transcripts/s ({clock.Elapsed.TotalMilliseconds:N0} ms)");
        return 0;
    }

    /// <summary>The misses (when asked), then the header and the scores per part and for the whole set.</summary>
    private static void PrintScores(TextWriter output, List<LabelledCheckin> set, IReadOnlyList<ExtractionResult> results, bool misses, string header)
    {
        var byPart = new SortedDictionary<string, ExtractionScore>(StringComparer.Ordinal);
        var countByPart = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var all = ExtractionScore.Zero;
        for (var i = 0; i < set.Count; i++)
        {
            var score = ExtractionScorer.Score(set[i].Expected, results[i]);
            byPart[set[i].Part] = byPart.GetValueOrDefault(set[i].Part, ExtractionScore.Zero) + score;
            countByPart[set[i].Part] = countByPart.GetValueOrDefault(set[i].Part) + 1;
            all += score;
            if (misses && !Perfect(score)) PrintMiss(output, set[i], results[i]);
        }
        output.WriteLine(header);
        foreach (var (part, score) in byPart) PrintTable(output, $"{part} ({countByPart[part]} transcripts)", score);
        PrintTable(output, $"all ({set.Count} transcripts)", all);
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
