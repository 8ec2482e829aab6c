namespace StreamHealth.CallLogs.Extraction;

/// <summary>Where an entry came from in the transcript: UTF-16 offsets into the exact string given to the extractor.</summary>
public readonly record struct TranscriptSpan(int Start, int Length);

public enum MedicationStatus { Taken, Skipped, Stopped, Mentioned }

public enum Meal { Breakfast, Lunch, Dinner, Snack }

/// <summary>One medication of the patient's. <see cref="DoseUnit"/> is one of <see cref="DoseUnits"/>;
/// <see cref="Frequency"/> one of <see cref="Frequencies"/> or "every N hours".</summary>
public sealed record MedicationEntry(
    string GenericName, double? DoseValue, string? DoseUnit, string? Frequency, MedicationStatus Status,
    double Confidence, TranscriptSpan Span, string Extractor);

/// <summary>One food or drink the patient had. <see cref="Item"/> is the lexicon's English name (arroz → rice);
/// <see cref="Unit"/> a singular serving word (slice, cup, glass, bowl, piece, plate, bag, handful, …) or null.</summary>
public sealed record FoodEntry(
    string Item, double? Quantity, string? Unit, Meal? Meal,
    double Confidence, TranscriptSpan Span, string Extractor);

/// <summary>One symptom of the patient's, present or denied. <see cref="Severity"/> is "mild", "moderate", "severe" or a
/// pain score "N/10"; <see cref="Onset"/> a normalised phrase: "today", "this morning", "last night", "yesterday",
/// "N days ago", "N weeks ago", "last week".</summary>
public sealed record SymptomEntry(
    string Name, bool Present, string? Severity, string? Onset,
    double Confidence, TranscriptSpan Span, string Extractor);

public sealed record ExtractionResult(
    IReadOnlyList<MedicationEntry> Medications, IReadOnlyList<FoodEntry> Foods, IReadOnlyList<SymptomEntry> Symptoms)
{
    public static readonly ExtractionResult Empty = new([], [], []);

    /// <summary>Which extractor produced the result when it is not the one called (an LLM extractor's fallback sets the embedded
    /// extractor's name); null: the one called. The check-in records it; each entry carries its own too.</summary>
    public string? Extractor { get; init; }
}

/// <summary>Turns a call transcript (the format of <see cref="TranscriptParser"/>) into the patient's own health entries.
/// Implementations must be pure with respect to the transcript (no state kept between calls) and safe to call from
/// several stream threads. Two implement it: <see cref="EmbeddedExtractor"/> and, for an OpenAI-compatible endpoint,
/// StreamHealth.CallLogs.LlmExtraction.OpenAiCompatibleExtractor (which may block its caller for a request).</summary>
public interface IHealthEntryExtractor
{
    /// <summary>Recorded in every entry's Extractor field, e.g. "embedded-1".</summary>
    string Name { get; }

    ExtractionResult Extract(string transcript);
}

public static class DoseUnits
{
    public const string Milligrams = "mg", Micrograms = "mcg", Grams = "g", Millilitres = "ml", Units = "units",
        Puffs = "puffs", Tablets = "tablets", Drops = "drops";
}

public static class Frequencies
{
    public const string OnceDaily = "once daily", TwiceDaily = "twice daily", ThreeTimesDaily = "three times daily",
        FourTimesDaily = "four times daily", AtBedtime = "at bedtime", EveryMorning = "every morning", AsNeeded = "as needed",
        Weekly = "weekly", EveryOtherDay = "every other day";

    public static string EveryHours(int hours) => $"every {hours} hours";
}
