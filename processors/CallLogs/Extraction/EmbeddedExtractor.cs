namespace StreamHealth.CallLogs.Extraction;

/// <summary>
/// The default extractor: shipped lexicons plus hand-written rules, no network, no I/O, deterministic, thread-safe
/// (all state is per call). Steps: parse turns (<see cref="TranscriptParser"/>), fold and tokenize, find lexicon
/// mentions (longest phrase first; body-part pain patterns; one-edit typos of drug names), then per turn of the
/// patient, a family member or an unlabelled speaker, read each mention's attributes from its sentence. A clinician's
/// turn yields nothing itself: its questions ("Any chest pain?") are kept so that a bare "No." or "Yes, 25 mg every
/// morning." in the next turn is read against them. The labelling conventions it follows, and its measured
/// accuracy and known misses, are in benchmarks/data/calllogs/README.md and benchmarks/RESULTS.md.
/// </summary>
public sealed partial class EmbeddedExtractor : IHealthEntryExtractor
{
    public const string ExtractorName = "embedded-1";

    private readonly Lexicon _lexicon;

    public EmbeddedExtractor() : this(Lexicon.Shipped) { }

    internal EmbeddedExtractor(Lexicon lexicon) => _lexicon = lexicon;

    public string Name => ExtractorName;

    public ExtractionResult Extract(string transcript)
    {
        if (string.IsNullOrEmpty(transcript)) return ExtractionResult.Empty;
        var call = new CallText(transcript, _lexicon);
        if (call.Mentions.Count == 0) return ExtractionResult.Empty;
        var work = new CallWork(call);
        work.Run();
        return work.Result();
    }
}

/// <summary>A lexicon hit: tokens [TokenStart, TokenEnd) of one turn.</summary>
internal readonly record struct Mention(EntryKind Kind, string Canonical, int TokenStart, int TokenEnd, int Turn, bool Typo);

/// <summary>The folded text, turns, tokens (with sentence, segment and comma-clause numbers) and mentions of one call.</summary>
internal sealed class CallText
{
    public readonly string Original;
    public readonly string Folded;
    public readonly List<TranscriptTurn> Turns;
    public readonly List<Token> Tokens = [];
    public readonly List<int> TurnTokenStart = [];
    public readonly List<Mention> Mentions = [];
    /// <summary>Index into <see cref="Mentions"/> of the mention covering each token, or -1.</summary>
    public int[] MentionAt = [];
    /// <summary>Comma-delimited clause number of each token (a sentence break or segment break also starts one).</summary>
    public int[] Clause = [];

    private readonly Lexicon _lexicon;

    public CallText(string transcript, Lexicon lexicon)
    {
        Original = transcript;
        _lexicon = lexicon;
        Folded = TextFolding.Fold(transcript);
        Turns = TranscriptParser.Parse(transcript);
        for (var t = 0; t < Turns.Count; t++)
        {
            TurnTokenStart.Add(Tokens.Count);
            Tokenizer.Tokenize(Folded, Turns[t].ContentStart, Turns[t].ContentEnd, t, Tokens);
        }
        TurnTokenStart.Add(Tokens.Count);
        MarkStructure();
        FindMentions();
    }

    public ReadOnlySpan<char> Text(int token) => Folded.AsSpan(Tokens[token].Start, Tokens[token].Length);

    public bool Is(int token, string word) => token >= 0 && token < Tokens.Count && Tokens[token].Kind != TokenKind.Number
                                              && Text(token).SequenceEqual(word);

    public bool IsPunct(int token, char c) => token >= 0 && token < Tokens.Count && Tokens[token].Kind == TokenKind.Punctuation
                                              && Folded[Tokens[token].Start] == c;

    public int TurnEnd(int turn) => TurnTokenStart[turn + 1];

    private void MarkStructure()
    {
        Clause = new int[Tokens.Count];
        int sentence = 0, segment = 0, clause = 0;
        var previousTurn = -1;
        var previousEnd = 0;
        for (var i = 0; i < Tokens.Count; i++)
        {
            var token = Tokens[i];
            var newSentence = token.Turn != previousTurn || Folded.AsSpan(previousEnd, Math.Max(0, token.Start - previousEnd)).Contains('\n');
            if (i > 0 && Tokens[i - 1].Kind == TokenKind.Punctuation && Folded[Tokens[i - 1].Start] is '.' or '!' or '?' or ';') newSentence = true;
            if (newSentence) { sentence++; segment++; clause++; }
            else if (StartsSegment(i)) { segment++; clause++; }
            else if (i > 0 && IsPunct(i - 1, ',')) clause++;
            token.Sentence = sentence;
            token.Segment = segment;
            Tokens[i] = token;
            Clause[i] = clause;
            previousTurn = token.Turn;
            previousEnd = token.Start + token.Length;
        }
    }

    /// <summary>A contrast word ("but", "pero") or a new subject after a comma or "and" ("…, I felt dizzy",
    /// "… and I feel tired") ends the scope of a negation, an onset and a severity.</summary>
    private bool StartsSegment(int i)
    {
        var text = Text(i);
        if (text is "but" or "pero" or "though" or "although" or "however" or "aunque" or "except" or "sino" or "whereas") return true;
        if (i == 0) return false;
        var afterComma = IsPunct(i - 1, ',') || IsPunct(i - 1, '-');
        var afterAnd = Is(i - 1, "and") || Is(i - 1, "y");
        if (!afterComma && !afterAnd) return false;
        if (text is "i" or "i'm" or "i've" or "i'd" or "i'll" or "im" or "ive" or "she" or "he" or "she's" or "he's" or "we" or "yo"
            or "they") return true;
        return afterComma && text is "it's" or "its" or "it";
    }

    private void FindMentions()
    {
        MentionAt = new int[Tokens.Count];
        Array.Fill(MentionAt, -1);
        Span<char> key = stackalloc char[160];
        for (var turn = 0; turn < Turns.Count; turn++)
        {
            var end = TurnEnd(turn);
            var i = TurnTokenStart[turn];
            while (i < end)
            {
                if (Tokens[i].Kind == TokenKind.Punctuation) { i++; continue; }
                var matched = false;
                for (var n = Math.Min(_lexicon.MaxPhraseTokens, end - i); n >= 1 && !matched; n--)
                {
                    var length = 0;
                    var fits = true;
                    for (var k = i; k < i + n; k++)
                    {
                        var text = Text(k);
                        if (length + text.Length + 1 > key.Length) { fits = false; break; }
                        if (k > i) key[length++] = ' ';
                        text.CopyTo(key[length..]);
                        length += text.Length;
                    }
                    if (!fits || !_lexicon.TryGet(key[..length], out var entry)) continue;
                    Add(new Mention(entry.Kind, entry.Canonical, i, i + n, turn, false));
                    i += n;
                    matched = true;
                }
                if (matched) continue;
                if (BodyPartPain.TryMatch(this, i, end, out var painName, out var painEnd))
                {
                    Add(new Mention(EntryKind.Symptom, painName, i, painEnd, turn, false));
                    i = painEnd;
                    continue;
                }
                if (Tokens[i].Kind == TokenKind.Word && _lexicon.TryGetDrugWithTypo(Text(i), out var drug))
                    Add(new Mention(EntryKind.Medication, drug.Canonical, i, i + 1, turn, true));
                i++;
            }
        }
    }

    private void Add(Mention mention)
    {
        for (var k = mention.TokenStart; k < mention.TokenEnd; k++) MentionAt[k] = Mentions.Count;
        Mentions.Add(mention);
    }
}

/// <summary>"my knee hurts", "hurt her wrist", "pain in my hip", "me duele la rodilla", "dolor en la espalda":
/// a body part with a pain word, normalised to that part's pain.</summary>
internal static class BodyPartPain
{
    public static string? PainOf(ReadOnlySpan<char> part) => part switch
    {
        "knee" or "knees" or "rodilla" or "rodillas" => "knee pain",
        "back" or "espalda" => "back pain",
        "hip" or "hips" or "cadera" => "hip pain",
        "wrist" or "wrists" or "muneca" => "wrist pain",
        "shoulder" or "shoulders" or "hombro" or "hombros" => "shoulder pain",
        "neck" or "cuello" => "neck pain",
        "leg" or "legs" or "pierna" or "piernas" => "leg pain",
        "foot" or "feet" or "pie" or "pies" => "foot pain",
        "ankle" or "ankles" or "tobillo" or "tobillos" => "ankle pain",
        "arm" or "arms" or "brazo" or "brazos" => "arm pain",
        "hand" or "hands" or "mano" or "manos" => "hand pain",
        "elbow" or "codo" => "elbow pain",
        "joints" or "articulaciones" => "joint pain",
        "head" or "cabeza" => "headache",
        "chest" or "pecho" => "chest pain",
        "stomach" or "belly" or "tummy" or "abdomen" or "estomago" or "barriga" or "panza" => "abdominal pain",
        "throat" or "garganta" => "sore throat",
        "ear" or "ears" or "oido" or "oidos" => "ear pain",
        "tooth" or "teeth" or "muela" or "diente" => "toothache",
        _ => null,
    };

    private static bool IsPossessive(ReadOnlySpan<char> w) =>
        w is "my" or "her" or "his" or "the" or "mi" or "su" or "la" or "el" or "los" or "las" or "a";

    public static bool TryMatch(CallText call, int i, int end, out string name, out int matchEnd)
    {
        name = "";
        matchEnd = i;
        var w = call.Text(i);
        // "hurt/hurts/injured (my|her|his) PART", "pain in (my) PART", "dolor de/en (la) PART", "me/le duele(n) (la) PART"
        var partAt = -1;
        if (w is "hurt" or "hurts" or "injured" or "sprained" && i + 1 < end)
            partAt = IsPossessive(call.Text(i + 1)) ? i + 2 : -1;
        else if (w is "pain" or "dolor" or "pains" && i + 2 < end && (call.Is(i + 1, "in") || call.Is(i + 1, "en") || call.Is(i + 1, "de")))
            partAt = i + 2 < end && IsPossessive(call.Text(i + 2)) ? i + 3 : i + 2;
        else if (w is "me" or "le" && i + 1 < end && (call.Is(i + 1, "duele") || call.Is(i + 1, "duelen")))
            partAt = i + 2 < end && IsPossessive(call.Text(i + 2)) ? i + 3 : i + 2;
        if (partAt >= 0 && partAt < end)
        {
            if (call.Is(partAt, "lower") && partAt + 1 < end && call.Is(partAt + 1, "back")) partAt++;
            if (PainOf(call.Text(partAt)) is { } pain) { name = pain; matchEnd = partAt + 1; return true; }
            return false;
        }
        // "PART hurts", "PART is hurting", "PART aches"
        if (w is "lower" && i + 1 < end && call.Is(i + 1, "back")) i++;
        var partPain = PainOf(call.Text(i));
        if (partPain is null || i + 1 >= end) return false;
        var next = i + 1;
        if (call.Is(next, "is") || call.Is(next, "are") || call.Is(next, "was") || call.Is(next, "been") || call.Is(next, "keeps")) next++;
        if (next < end && call.Text(next) is "hurts" or "hurt" or "hurting" or "aches" or "ache" or "aching" or "sore" or "killing" or "bothering")
        {
            name = partPain;
            matchEnd = next + 1;
            return true;
        }
        return false;
    }
}
