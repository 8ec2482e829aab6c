using System.Reflection;

namespace StreamHealth.CallLogs.Extraction;

internal enum EntryKind : byte { Medication, Food, Symptom }

internal sealed record LexiconEntry(EntryKind Kind, string Canonical);

/// <summary>
/// The shipped lexicons (Lexicons/drugs.tsv, foods.tsv, symptoms.tsv; embedded resources, see Lexicons/README.md) as one
/// phrase table keyed by folded, single-spaced token text, so a multi-word phrase is looked up from a scratch buffer
/// without allocating. Where two lexicons share a phrase the drug wins over the symptom over the food.
/// </summary>
internal sealed class Lexicon
{
    private readonly Dictionary<string, LexiconEntry> _phrases = new(StringComparer.Ordinal);
    private readonly Dictionary<string, LexiconEntry>.AlternateLookup<ReadOnlySpan<char>> _lookup;

    /// <summary>Single-word drug names of at least <see cref="MinFuzzyLength"/> chars, for one-edit typo matching.</summary>
    private readonly List<KeyValuePair<string, LexiconEntry>> _fuzzyDrugNames = [];

    public const int MinFuzzyLength = 6;

    public int MaxPhraseTokens { get; private set; }
    public int DrugCount { get; private set; }
    public int FoodCount { get; private set; }
    public int SymptomCount { get; private set; }

    public static Lexicon Shipped { get; } = LoadShipped();

    private Lexicon() => _lookup = _phrases.GetAlternateLookup<ReadOnlySpan<char>>();

    private static Lexicon LoadShipped()
    {
        var lexicon = new Lexicon();
        lexicon.DrugCount = lexicon.Add(EntryKind.Medication, ReadResource("drugs.tsv"));
        lexicon.SymptomCount = lexicon.Add(EntryKind.Symptom, ReadResource("symptoms.tsv"));
        lexicon.FoodCount = lexicon.Add(EntryKind.Food, ReadResource("foods.tsv"));
        return lexicon;
    }

    internal static Lexicon FromText(string drugs, string symptoms, string foods)
    {
        var lexicon = new Lexicon();
        lexicon.DrugCount = lexicon.Add(EntryKind.Medication, drugs);
        lexicon.SymptomCount = lexicon.Add(EntryKind.Symptom, symptoms);
        lexicon.FoodCount = lexicon.Add(EntryKind.Food, foods);
        return lexicon;
    }

    private static string ReadResource(string fileName)
    {
        var name = "StreamHealth.CallLogs.Lexicons." + fileName;
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
                           ?? throw new InvalidOperationException($"lexicon resource {name} is missing from the assembly");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Adds "canonical&lt;TAB&gt;synonym|synonym" lines; returns the number of canonical entries.</summary>
    private int Add(EntryKind kind, string tsv)
    {
        var canonicalCount = 0;
        foreach (var rawLine in tsv.Split('\n'))
        {
            var line = rawLine.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#') continue;
            var tab = line.IndexOf('\t');
            var canonical = (tab < 0 ? line : line[..tab]).Trim();
            if (canonical.Length == 0) continue;
            canonicalCount++;
            var entry = new LexiconEntry(kind, canonical);
            AddPhrase(canonical, entry);
            if (tab < 0) continue;
            foreach (var synonym in line[(tab + 1)..].Split('|', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                AddPhrase(synonym, entry);
        }
        return canonicalCount;
    }

    private void AddPhrase(string phrase, LexiconEntry entry)
    {
        var folded = TextFolding.Fold(phrase);
        var tokens = new List<Token>();
        Tokenizer.Tokenize(folded, 0, folded.Length, 0, tokens);
        if (tokens.Count == 0) return;
        var key = string.Join(' ', tokens.Select(t => folded.Substring(t.Start, t.Length)));
        if (!_phrases.TryAdd(key, entry)) return;
        MaxPhraseTokens = Math.Max(MaxPhraseTokens, tokens.Count);
        if (entry.Kind == EntryKind.Medication && tokens.Count == 1 && key.Length >= MinFuzzyLength)
            _fuzzyDrugNames.Add(new(key, entry));
    }

    public bool TryGet(ReadOnlySpan<char> key, out LexiconEntry entry)
    {
        if (_lookup.TryGetValue(key, out var found)) { entry = found; return true; }
        entry = null!;
        return false;
    }

    /// <summary>A drug name one edit (insertion, deletion, substitution or adjacent transposition) from the word, with
    /// the same first letter: "metfromin", "lisinipril". Only for words of <see cref="MinFuzzyLength"/>+ chars, where
    /// one edit rarely turns one English word into another drug name.</summary>
    public bool TryGetDrugWithTypo(ReadOnlySpan<char> word, out LexiconEntry entry)
    {
        entry = null!;
        if (word.Length < MinFuzzyLength) return false;
        foreach (var (name, candidate) in _fuzzyDrugNames)
        {
            if (Math.Abs(name.Length - word.Length) > 1 || name[0] != word[0]) continue;
            if (WithinOneEdit(name, word)) { entry = candidate; return true; }
        }
        return false;
    }

    internal static bool WithinOneEdit(ReadOnlySpan<char> a, ReadOnlySpan<char> b)
    {
        if (a.Length > b.Length) { var t = a; a = b; b = t; }
        var prefix = 0;
        while (prefix < a.Length && a[prefix] == b[prefix]) prefix++;
        if (prefix == a.Length) return b.Length - a.Length <= 1;
        if (a.Length == b.Length)
        {
            if (a[(prefix + 1)..].SequenceEqual(b[(prefix + 1)..])) return true;   // substitution
            return prefix + 1 < a.Length && a[prefix] == b[prefix + 1] && a[prefix + 1] == b[prefix]
                   && a[(prefix + 2)..].SequenceEqual(b[(prefix + 2)..]);       // transposition
        }
        return a[prefix..].SequenceEqual(b[(prefix + 1)..]);                       // insertion
    }
}
