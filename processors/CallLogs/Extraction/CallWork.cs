namespace StreamHealth.CallLogs.Extraction;

/// <summary>The per-call rules of <see cref="EmbeddedExtractor"/>: attribution, negation, attributes, question/answer,
/// merging. One instance per call; nothing is shared between calls.</summary>
internal sealed partial class CallWork(CallText call)
{
    private sealed class SymptomDraft
    {
        public required string Name;
        public bool Present;
        public string? Severity;
        public string? Onset;
        public double Confidence;
        public int Start, Length, Turn, Token;
        public bool Removed;
    }

    private sealed class MedicationDraft
    {
        public required string Name;
        public double? Dose;
        public string? Unit;
        public string? Frequency;
        public MedicationStatus Status;
        public double Confidence;
        public int Start, Length;
    }

    private sealed class FoodDraft
    {
        public required string Item;
        public double? Quantity;
        public string? Unit;
        public Meal? Meal;
        public double Confidence;
        public int Start, Length;
    }

    /// <summary>What a clinician's question asked about, read against the next non-clinician turn.</summary>
    private sealed class Question
    {
        public readonly List<int> Symptoms = [];
        public readonly List<int> Medications = [];
        public Meal? Meal;
        public bool AsksAboutTaking;
    }

    private readonly List<SymptomDraft> _symptoms = [];
    private readonly List<MedicationDraft> _medications = [];
    private readonly List<FoodDraft> _foods = [];
    private int[] _firstMentionOfTurn = [];

    public void Run()
    {
        _firstMentionOfTurn = new int[call.Turns.Count + 1];
        var m = 0;
        for (var t = 0; t <= call.Turns.Count; t++)
        {
            while (m < call.Mentions.Count && call.Mentions[m].Turn < t) m++;
            _firstMentionOfTurn[t] = m;
        }
        Question? pending = null;
        for (var t = 0; t < call.Turns.Count; t++)
        {
            if (call.Turns[t].Role == SpeakerRole.Clinician) { pending = ReadQuestion(t); continue; }
            ReadTurn(t, pending);
            pending = null;
        }
    }

    private Question? ReadQuestion(int turn)
    {
        var start = call.TurnTokenStart[turn];
        var end = call.TurnEnd(turn);
        Question? question = null;
        for (var i = start; i < end; i++)
        {
            if (!call.IsPunct(i, '?')) continue;
            question ??= new Question();
            var sentence = call.Tokens[i].Sentence;
            var s = i;
            while (s > start && call.Tokens[s - 1].Sentence == sentence) s--;
            for (var k = s; k < i; k++)
            {
                var mi = call.MentionAt[k];
                if (mi >= 0 && call.Mentions[mi].TokenStart == k)
                {
                    if (call.Mentions[mi].Kind == EntryKind.Symptom) question.Symptoms.Add(mi);
                    else if (call.Mentions[mi].Kind == EntryKind.Medication) question.Medications.Add(mi);
                }
                question.Meal ??= MealCueAt(k, forFood: true);
                if (call.Text(k) is "take" or "taking" or "took" or "use" or "using" or "tomando" or "toma" or "tomo" or "tomar")
                    question.AsksAboutTaking = true;
            }
        }
        return question;
    }

    private double BaseConfidence(SpeakerRole role) => role switch
    {
        SpeakerRole.Patient => EmbeddedExtractorConfidence.Patient,
        SpeakerRole.Family => EmbeddedExtractorConfidence.Family,
        _ => EmbeddedExtractorConfidence.Unlabelled,
    };

    private void ReadTurn(int turn, Question? question)
    {
        var role = call.Turns[turn].Role;
        var family = role == SpeakerRole.Family;
        var confidence = BaseConfidence(role);
        var turnStart = call.TurnTokenStart[turn];
        var turnEnd = call.TurnEnd(turn);
        var firstSymptom = _symptoms.Count;
        var ownMedications = 0;
        var askedSymptomNamed = false;

        for (var mi = _firstMentionOfTurn[turn]; mi < _firstMentionOfTurn[turn + 1]; mi++)
        {
            var mention = call.Mentions[mi];
            var person = ClosestPerson(mention.TokenStart, turnStart);
            if (family && person == Person.First) continue;
            var mentionConfidence = mention.Typo ? confidence * EmbeddedExtractorConfidence.TypoFactor : confidence;
            var start = call.Tokens[mention.TokenStart].Start;
            var last = call.Tokens[mention.TokenEnd - 1];
            var length = last.Start + last.Length - start;
            switch (mention.Kind)
            {
                case EntryKind.Symptom:
                    if (question is not null && question.Symptoms.Exists(q => call.Mentions[q].Canonical == mention.Canonical)) askedSymptomNamed = true;
                    if (!family && person == Person.Third) continue;
                    _symptoms.Add(new SymptomDraft
                    {
                        Name = mention.Canonical, Present = !IsNegated(mention, turnStart, turnEnd), Severity = Severity(mention, turnEnd),
                        Onset = Onset(mention, turnStart, turnEnd), Confidence = mentionConfidence, Start = start, Length = length,
                        Turn = turn, Token = mention.TokenStart,
                    });
                    break;
                case EntryKind.Medication:
                    ownMedications++;
                    if (IsCorrectedAway(mi, turnEnd)) continue;
                    var (dose, unit) = Dose(mi, turnEnd);
                    var frequency = MedicationFrequency(mi, turnEnd);
                    _medications.Add(new MedicationDraft
                    {
                        Name = mention.Canonical, Dose = dose, Unit = unit, Frequency = frequency,
                        Status = Status(mi, turnStart, turnEnd, question, dose is not null || frequency is not null),
                        Confidence = mentionConfidence, Start = start, Length = length,
                    });
                    break;
                case EntryKind.Food:
                    if (IsNegated(mention, turnStart, turnEnd)) continue;
                    var (quantity, servingUnit) = FoodQuantity(mention, turnStart);
                    _foods.Add(new FoodDraft
                    {
                        Item = mention.Canonical, Quantity = quantity, Unit = servingUnit,
                        Meal = MealOf(mention.TokenStart, turnStart, turnEnd) ?? question?.Meal,
                        Confidence = mentionConfidence, Start = start, Length = length,
                    });
                    break;
            }
        }

        ResolveGenericPain(firstSymptom, turnStart, turnEnd);
        if (question is not null) AnswerQuestion(turn, question, confidence, ownMedications, askedSymptomNamed, firstSymptom);
        AttachPainScores(turn, firstSymptom, question, confidence);
    }

    private enum Person { None, First, Third }

    /// <summary>Whose entry this is: the nearest person word before the mention in its sentence. "I've had a cough"
    /// (first person) in a daughter's turn is hers, not the patient's; "my son has a fever" in the patient's turn is the
    /// son's. "my own" is first person; "my mom" is third (the noun is nearer).</summary>
    private Person ClosestPerson(int mentionToken, int turnStart)
    {
        var sentence = call.Tokens[mentionToken].Sentence;
        for (var j = mentionToken - 1; j >= turnStart && call.Tokens[j].Sentence == sentence; j--)
        {
            if (call.MentionAt[j] >= 0) continue;
            var w = call.Text(j);
            if (w is "my" && call.Is(j + 1, "own")) return Person.First;
            if (w is "i" or "i'm" or "i've" or "i'd" or "i'll" or "im" or "ive" or "myself" or "yo") return Person.First;
            if (w is "he" or "she" or "he's" or "she's" or "him" or "her" or "his" or "ella" or "mom" or "dad" or "mother" or "father"
                or "mama" or "papa" or "mami" or "papi" or "husband" or "wife" or "son" or "daughter" or "grandson" or "granddaughter"
                or "grandma" or "grandpa" or "grandmother" or "grandfather" or "brother" or "sister" or "esposo" or "esposa" or "hijo"
                or "hija" or "nieto" or "nieta" or "abuela" or "abuelo" or "hermano" or "hermana" or "madre" or "padre" or "neighbor"
                or "friend" or "they")
                return Person.Third;
        }
        return Person.None;
    }

    /// <summary>A negation cue before the mention in its segment ("no fever or chills": both), or "gone" / "went away"
    /// after it. "No," (an answer, followed by a comma) is not a cue: "No, the nausea is gone" is read by "gone".</summary>
    private bool IsNegated(Mention mention, int turnStart, int turnEnd)
    {
        var segment = call.Tokens[mention.TokenStart].Segment;
        for (var j = mention.TokenStart - 1; j >= turnStart && call.Tokens[j].Segment == segment; j--)
            if (call.MentionAt[j] < 0 && IsNegationCue(j, turnEnd)) return true;
        for (var j = mention.TokenEnd; j < turnEnd && call.Tokens[j].Segment == segment; j++)
        {
            if (call.MentionAt[j] >= 0) continue;
            var w = call.Text(j);
            if (w is "gone" or "resolved" or "quito" or "quitaron") return true;
            if (w is "went" or "goes" or "gone" && call.Is(j + 1, "away")) return true;
        }
        return false;
    }

    private bool IsNegationCue(int j, int turnEnd)
    {
        var w = call.Text(j);
        if (w is "no")
        {
            var next = j + 1;
            if (next >= turnEnd || call.Tokens[next].Kind == TokenKind.Punctuation || call.Is(next, "wait")) return false;
            return true;
        }
        if (w is "not" or "never" or "without" or "denies" or "denied" or "deny" or "denying" or "none" or "nor" or "sin" or "ni"
            or "nunca" or "tampoco" or "ningun" or "ninguna" or "ninguno" or "nada" or "dont" or "didnt" or "havent" or "hasnt"
            or "doesnt" or "isnt" or "wasnt" or "arent") return true;
        return w.EndsWith("n't") && w is not "can't";
    }

    private static string? SeverityWord(ReadOnlySpan<char> w) => w switch
    {
        "mild" or "slight" or "slightly" or "minor" or "leve" or "low" or "little" or "bit" or "poco" or "poquito" => "mild",
        "moderate" or "moderada" or "moderado" or "medium" or "bad" or "mal" => "moderate",
        "severe" or "terrible" or "awful" or "horrible" or "intense" or "excruciating" or "worst" or "unbearable" or "fuerte" or "fuertes"
            or "mucha" or "mucho" or "very" or "muy" or "extreme" or "really" => "severe",
        _ => null,
    };

    /// <summary>An intensity word just before the mention ("a little dizzy", "bad headache", "very weak") or after it
    /// ("it's severe"), or in a following mention-less segment of the sentence ("my chest hurts, it's severe").</summary>
    private string? Severity(Mention mention, int turnEnd)
    {
        var segment = call.Tokens[mention.TokenStart].Segment;
        for (var j = mention.TokenStart - 1; j >= 0 && j >= mention.TokenStart - 3 && call.Tokens[j].Segment == segment && call.MentionAt[j] < 0; j--)
        {
            var severity = SeverityWord(call.Text(j));
            if (severity is null) continue;
            if (severity == "moderate" && call.Text(j) is "bad" && j > 0 && call.Text(j - 1) is "really" or "very" or "so" or "pretty" or "too" or "real")
                return "severe";
            if (call.Text(j) is "really" && !call.Is(j + 1, "bad")) continue;
            return severity;
        }
        var sentence = call.Tokens[mention.TokenStart].Sentence;
        for (var j = mention.TokenEnd; j < turnEnd && j < mention.TokenEnd + 6 && call.Tokens[j].Sentence == sentence; j++)
        {
            if (call.MentionAt[j] >= 0) break;
            if (call.Tokens[j].Segment != segment && SegmentHasMention(j, turnEnd)) break;
            var w = call.Text(j);
            if (w is "is" or "it's" or "its" or "was" or "are" or "feels" or "felt" or "been" or "pretty" or "quite" or "es" or "esta" or "it" or "s"
                or "kind" or "of" or "so" or "too" or "," or "and" || call.Tokens[j].Kind == TokenKind.Punctuation) continue;
            var severity = SeverityWord(w);
            if (severity is "severe" && w is "very" or "really" or "muy" && j + 1 < turnEnd && SeverityWord(call.Text(j + 1)) is { } intensified)
                return intensified == "mild" ? "mild" : "severe";
            if (severity is not null && w is not "little" and not "bit" and not "low") return severity == "moderate" && w is "bad" ? "moderate" : severity;
            break;
        }
        return null;
    }

    private bool SegmentHasMention(int tokenInSegment, int turnEnd)
    {
        var segment = call.Tokens[tokenInSegment].Segment;
        var j = tokenInSegment;
        while (j > 0 && call.Tokens[j - 1].Segment == segment) j--;
        for (; j < turnEnd && call.Tokens[j].Segment == segment; j++)
            if (call.MentionAt[j] >= 0) return true;
        return false;
    }

    private bool SegmentHasSymptom(int segment, int from, int turnStart, int turnEnd)
    {
        var j = from;
        while (j > turnStart && call.Tokens[j - 1].Segment == segment) j--;
        for (; j < turnEnd && call.Tokens[j].Segment == segment; j++)
            if (call.MentionAt[j] >= 0 && call.Mentions[call.MentionAt[j]].Kind == EntryKind.Symptom) return true;
        return false;
    }

    /// <summary>The onset phrase of the mention's segment; else of the previous segment of the sentence when that one
    /// names no symptom ("Mom skipped her pills today, she was nauseous"); else of following segments that name nothing
    /// ("my chest hurts, it's severe, started an hour ago").</summary>
    private string? Onset(Mention mention, int turnStart, int turnEnd)
    {
        var segment = call.Tokens[mention.TokenStart].Segment;
        var sentence = call.Tokens[mention.TokenStart].Sentence;
        var s = mention.TokenStart;
        while (s > turnStart && call.Tokens[s - 1].Segment == segment) s--;
        if (OnsetIn(s, turnEnd, segment) is { } own) return own;
        if (s > turnStart && call.Tokens[s - 1].Sentence == sentence)
        {
            var previous = call.Tokens[s - 1].Segment;
            var p = s - 1;
            while (p > turnStart && call.Tokens[p - 1].Segment == previous) p--;
            if (!SegmentHasSymptom(previous, p, turnStart, turnEnd) && OnsetIn(p, turnEnd, previous) is { } before) return before;
        }
        var e = mention.TokenEnd;
        while (e < turnEnd && call.Tokens[e].Segment == segment) e++;
        while (e < turnEnd && call.Tokens[e].Sentence == sentence)
        {
            var next = call.Tokens[e].Segment;
            if (SegmentHasMention(e, turnEnd)) break;
            if (OnsetIn(e, turnEnd, next) is { } after) return after;
            while (e < turnEnd && call.Tokens[e].Segment == next) e++;
        }
        return null;
    }

    private string? OnsetIn(int from, int turnEnd, int segment)
    {
        for (var j = from; j < turnEnd && call.Tokens[j].Segment == segment; j++)
            if (call.MentionAt[j] < 0 && OnsetAt(j, turnEnd) is { } onset) return onset;
        return null;
    }

    private string? OnsetAt(int j, int turnEnd)
    {
        var w = call.Text(j);
        switch (w)
        {
            case "today" or "hoy" or "tonight" or "earlier": return "today";
            case "yesterday" or "ayer": return "yesterday";
            case "anoche": return "last night";
            case "this" or "esta" when call.Is(j + 1, "morning") || call.Is(j + 1, "manana"): return "this morning";
            case "this" or "esta" when call.Is(j + 1, "afternoon") || call.Is(j + 1, "evening") || call.Is(j + 1, "tarde"): return "today";
            case "last" when call.Is(j + 1, "night"): return "last night";
            case "last" when call.Is(j + 1, "week") && !call.Is(j - 1, "the"): return "last week";
            case "semana" when call.Is(j + 1, "pasada"): return "last week";
        }
        // "N days ago", "for N days", "the past N days", "hace N días", "for a week", "the past week", "an hour ago"
        var k = j;
        var leading = w is "for" or "past" or "last" or "hace" or "since";
        if (leading) k++;
        if (call.Is(k, "the")) k++;
        if (call.Is(k, "past") || call.Is(k, "last")) { leading = true; k++; }
        double count = 1;
        var hasCount = NumberWords.TryParse(call.Folded, call.Tokens, k, turnEnd, allowArticle: true, out var parsed, out var consumed);
        if (hasCount) { count = parsed; k += consumed; }
        if (!hasCount && !leading) return null;
        if (k >= turnEnd) return null;
        var unit = call.Text(k);
        var ago = call.Is(k + 1, "ago") || call.Is(k + 1, "now");
        if (!(leading || ago) || count is < 1 or > 365 || count != Math.Floor(count)) return null;
        var n = (int)count;
        return unit switch
        {
            "day" or "days" or "dia" or "dias" => n == 1 ? "yesterday" : $"{n} days ago",
            "week" or "weeks" or "semana" or "semanas" => $"{n} weeks ago".Replace("1 weeks", "1 week"),
            "hour" or "hours" or "hora" or "horas" => "today",
            _ => null,
        };
    }
}

internal static class EmbeddedExtractorConfidence
{
    public const double Patient = 0.9, Family = 0.8, Unlabelled = 0.6, TypoFactor = 0.85, AnswerFactor = 0.75;
}
