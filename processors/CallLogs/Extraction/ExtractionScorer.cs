using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace StreamHealth.CallLogs.Extraction;

/// <summary>One hand-labelled transcript of benchmarks/data/calllogs/checkins-labelled.jsonl (schema in the README beside it).</summary>
public sealed record LabelledCheckin(string Id, string Part, string Transcript, ExtractionResult Expected);

public readonly record struct Counts(int TruePositives, int FalsePositives, int FalseNegatives)
{
    public double Precision => TruePositives + FalsePositives == 0 ? 1 : (double)TruePositives / (TruePositives + FalsePositives);
    public double Recall => TruePositives + FalseNegatives == 0 ? 1 : (double)TruePositives / (TruePositives + FalseNegatives);
    public double F1 => Precision + Recall == 0 ? 0 : 2 * Precision * Recall / (Precision + Recall);
    public static Counts operator +(Counts a, Counts b) => new(a.TruePositives + b.TruePositives, a.FalsePositives + b.FalsePositives, a.FalseNegatives + b.FalseNegatives);
}

/// <summary>Micro-averaged counts per kind, on names alone and on names with attributes.</summary>
public sealed record ExtractionScore(Counts MedicationNames, Counts MedicationFull, Counts FoodNames, Counts FoodFull, Counts SymptomNames, Counts SymptomFull)
{
    public static readonly ExtractionScore Zero = new(default, default, default, default, default, default);

    public static ExtractionScore operator +(ExtractionScore a, ExtractionScore b) => new(
        a.MedicationNames + b.MedicationNames, a.MedicationFull + b.MedicationFull, a.FoodNames + b.FoodNames, a.FoodFull + b.FoodFull,
        a.SymptomNames + b.SymptomNames, a.SymptomFull + b.SymptomFull);
}

/// <summary>
/// Scores extracted entries against labelled ones, per transcript, as multisets: on names, an entry matches an unmatched
/// expected entry of the same normalised name; with attributes, also every attribute must be equal — medication
/// name + dose value + unit + frequency + status; food item + quantity + unit + meal; symptom name + present/denied +
/// severity + onset. An absent attribute equals only an absent attribute (stating a dose the label lacks is as wrong
/// as missing one); doses and quantities compare within 1e-6. Counts are summed over transcripts (micro-average).
/// </summary>
public static class ExtractionScorer
{
    public static ExtractionScore Score(ExtractionResult expected, ExtractionResult actual) => new(
        Match(expected.Medications, actual.Medications, static m => m.GenericName, null),
        Match(expected.Medications, actual.Medications, static m => m.GenericName, static (a, b) => MedicationEqual(a, b)),
        Match(expected.Foods, actual.Foods, static f => f.Item, null),
        Match(expected.Foods, actual.Foods, static f => f.Item, static (a, b) => a.Item == b.Item && a.Meal == b.Meal && a.Unit == b.Unit && Same(a.Quantity, b.Quantity)),
        Match(expected.Symptoms, actual.Symptoms, static s => s.Name, null),
        Match(expected.Symptoms, actual.Symptoms, static s => s.Name, static (a, b) => a.Name == b.Name && a.Present == b.Present && a.Severity == b.Severity && a.Onset == b.Onset));

    private static bool MedicationEqual(MedicationEntry a, MedicationEntry b) =>
        a.Status == b.Status && a.Frequency == b.Frequency && a.DoseUnit == b.DoseUnit && Same(a.DoseValue, b.DoseValue);

    private static bool Same(double? a, double? b) => a is null ? b is null : b is not null && Math.Abs(a.Value - b.Value) < 1e-6;

    /// <summary>Greedy multiset matching within one transcript; with <paramref name="equal"/> null only names count.
    /// Greedy is exact here: with attributes, two expected entries of one name rarely differ, and names alone are interchangeable.</summary>
    private static Counts Match<T>(IReadOnlyList<T> expected, IReadOnlyList<T> actual, Func<T, string> name, Func<T, T, bool>? equal)
    {
        var used = new bool[expected.Count];
        var truePositives = 0;
        foreach (var a in actual)
        {
            for (var e = 0; e < expected.Count; e++)
            {
                if (used[e] || name(expected[e]) != name(a)) continue;
                if (equal is not null && !equal(expected[e], a)) continue;
                used[e] = true;
                truePositives++;
                break;
            }
        }
        return new Counts(truePositives, actual.Count - truePositives, expected.Count - truePositives);
    }

    public static List<LabelledCheckin> ReadLabelled(string path)
    {
        var list = new List<LabelledCheckin>();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            LabelledLine? parsed;
            try { parsed = JsonSerializer.Deserialize(line, LabelledJson.Default.LabelledLine); }
            catch (JsonException e) { throw new FormatException($"{path}:{lineNumber}: not a labelled transcript ({e.Message})", e); }
            if (parsed is null || parsed.Id is null || parsed.Transcript is null)
                throw new FormatException($"{path}:{lineNumber}: id and transcript are required");
            var expected = parsed.Expected ?? new LabelledExpected();
            var span = new TranscriptSpan(0, 0);
            list.Add(new LabelledCheckin(parsed.Id, parsed.Part ?? "all", parsed.Transcript, new ExtractionResult(
                (expected.Medications ?? []).Select(m => new MedicationEntry(m.Name, m.Dose, m.Unit, m.Frequency, ParseStatus(m.Status, path, lineNumber), 1, span, "label")).ToList(),
                (expected.Foods ?? []).Select(f => new FoodEntry(f.Item, f.Quantity, f.Unit, ParseMeal(f.Meal, path, lineNumber), 1, span, "label")).ToList(),
                (expected.Symptoms ?? []).Select(s => new SymptomEntry(s.Name, s.Present, s.Severity, s.Onset, 1, span, "label")).ToList())));
        }
        return list;
    }

    private static MedicationStatus ParseStatus(string? status, string path, int line) => status switch
    {
        "taken" => MedicationStatus.Taken,
        "skipped" => MedicationStatus.Skipped,
        "stopped" => MedicationStatus.Stopped,
        "mentioned" => MedicationStatus.Mentioned,
        _ => throw new FormatException($"{path}:{line}: status = '{status}' is not taken, skipped, stopped or mentioned"),
    };

    private static Meal? ParseMeal(string? meal, string path, int line) => meal switch
    {
        null => null,
        "breakfast" => Meal.Breakfast,
        "lunch" => Meal.Lunch,
        "dinner" => Meal.Dinner,
        "snack" => Meal.Snack,
        _ => throw new FormatException($"{path}:{line}: meal = '{meal}' is not breakfast, lunch, dinner or snack"),
    };

    public static string Format(double value) => value.ToString("0.000", CultureInfo.InvariantCulture);
}

internal sealed class LabelledLine
{
    public string? Id { get; set; }
    public string? Part { get; set; }
    public string? Transcript { get; set; }
    public LabelledExpected? Expected { get; set; }
}

internal sealed class LabelledExpected
{
    public List<LabelledMedication>? Medications { get; set; }
    public List<LabelledFood>? Foods { get; set; }
    public List<LabelledSymptom>? Symptoms { get; set; }
}

internal sealed record LabelledMedication(string Name, double? Dose, string? Unit, string? Frequency, string? Status);
internal sealed record LabelledFood(string Item, double? Quantity, string? Unit, string? Meal);
internal sealed record LabelledSymptom(string Name, bool Present, string? Severity, string? Onset);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(LabelledLine))]
internal sealed partial class LabelledJson : JsonSerializerContext;
