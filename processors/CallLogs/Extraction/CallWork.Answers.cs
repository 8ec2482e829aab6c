namespace StreamHealth.CallLogs.Extraction;

internal sealed partial class CallWork
{
    private static bool IsPainType(string name) =>
        name == "pain" || name.EndsWith(" pain", StringComparison.Ordinal) || name is "headache" or "sore throat" or "toothache";

    /// <summary>+1 for an answer that opens yes-like ("Yes", "Sí", "A little", "Sometimes"), -1 no-like ("No", "Not
    /// really", "Ninguno"), 0 otherwise.</summary>
    private int AnswerPolarity(int turnStart, int turnEnd)
    {
        var i = turnStart;
        while (i < turnEnd && call.Tokens[i].Kind == TokenKind.Punctuation) i++;
        if (i >= turnEnd) return 0;
        var w = call.Text(i);
        if (w is "yes" or "yeah" or "yep" or "yup" or "si" or "claro" or "sure" or "correct" or "uh-huh" or "mhm" or "sometimes" or "still"
            or "some" or "absolutely" or "definitely" or "right") return 1;
        if (w is "a" && (call.Is(i + 1, "little") || call.Is(i + 1, "bit"))) return 1;
        if (w is "un" && call.Is(i + 1, "poco")) return 1;
        if (w is "i" && i + 1 < turnEnd && call.Text(i + 1) is "do" or "did" or "am" or "have") return 1;
        if (w is "no" or "nope" or "nah" or "not" or "none" or "never" or "nada" or "ninguno" or "ninguna" or "nunca" or "negative") return -1;
        return 0;
    }

    /// <summary>A bare "pain" becomes the body part's pain when its sentence names one ("her chest feels fine, no
    /// pain"), or folds into the turn's earlier specific pain ("hurt her wrist. … the pain is a 6").</summary>
    private void ResolveGenericPain(int firstSymptom, int turnStart, int turnEnd)
    {
        for (var d = firstSymptom; d < _symptoms.Count; d++)
        {
            var draft = _symptoms[d];
            if (draft.Removed || draft.Name != "pain") continue;
            var sentence = call.Tokens[draft.Token].Sentence;
            string? specific = null;
            for (var j = draft.Token; j > turnStart && call.Tokens[j - 1].Sentence == sentence; j--) specific ??= PartAt(j - 1);
            for (var j = draft.Token + 1; specific is null && j < turnEnd && call.Tokens[j].Sentence == sentence; j++) specific = PartAt(j);
            if (specific is not null) { draft.Name = specific; continue; }
            for (var e = d - 1; e >= firstSymptom; e--)
            {
                var earlier = _symptoms[e];
                if (earlier.Removed || earlier.Turn != draft.Turn || earlier.Name == "pain" || !IsPainType(earlier.Name)) continue;
                earlier.Severity ??= draft.Severity;
                earlier.Onset ??= draft.Onset;
                draft.Removed = true;
                break;
            }
        }
    }

    private string? PartAt(int j) => call.MentionAt[j] < 0 ? BodyPartPain.PainOf(call.Text(j)) : null;

    /// <summary>Reads a turn against the clinician's question before it: "Any chest pain?" – "No." denies it; "Are you
    /// taking the hydrochlorothiazide?" – "Yes, 25 mg every morning." takes it; foods without a meal word get the
    /// question's meal (done where foods are read).</summary>
    private void AnswerQuestion(int turn, Question question, double confidence, int ownMedications, bool askedSymptomNamed, int firstSymptom)
    {
        var turnStart = call.TurnTokenStart[turn];
        var turnEnd = call.TurnEnd(turn);
        var polarity = AnswerPolarity(turnStart, turnEnd);
        var inferred = confidence * EmbeddedExtractorConfidence.AnswerFactor;
        if (!askedSymptomNamed && polarity != 0)
        {
            foreach (var qi in question.Symptoms)
            {
                var asked = call.Mentions[qi];
                if (_symptoms.Exists(s => s.Turn == turn && s.Name == asked.Canonical)) continue;
                var start = call.Tokens[asked.TokenStart].Start;
                var last = call.Tokens[asked.TokenEnd - 1];
                _symptoms.Add(new SymptomDraft
                {
                    Name = asked.Canonical, Present = polarity > 0,
                    Severity = polarity > 0 ? LeadingSeverity(turnStart, turnEnd) : null,
                    Onset = polarity > 0 ? FirstOnset(turnStart, turnEnd) : null,
                    Confidence = inferred, Start = start, Length = last.Start + last.Length - start, Turn = turn, Token = turnStart,
                });
            }
        }
        if (ownMedications > 0 || question.Medications.Count == 0) return;
        var cue = Cue.None;
        for (var j = turnStart; j < turnEnd && cue is Cue.None or Cue.Mentioned; j++)
            if (call.Tokens[j].Kind == TokenKind.Word) cue = CueAt(j, turnStart);
        if (cue is Cue.None or Cue.Mentioned)
        {
            if (polarity == 0) return;
            cue = polarity > 0 ? Cue.Taken : Cue.Skipped;
        }
        foreach (var qi in question.Medications)
        {
            var asked = call.Mentions[qi];
            double? dose = null;
            string? unit = null, frequency = null;
            for (var j = turnStart; j < turnEnd; j++)
            {
                if (dose is null && NumberWords.TryParse(call.Folded, call.Tokens, j, turnEnd, false, out var value, out var used)
                    && j + used < turnEnd && DoseUnitOf(call.Text(j + used)) is { } u) { dose = value; unit = u; }
                frequency ??= FrequencyAt(j, turnEnd);
            }
            var start = call.Tokens[asked.TokenStart].Start;
            var last = call.Tokens[asked.TokenEnd - 1];
            _medications.Add(new MedicationDraft
            {
                Name = asked.Canonical, Dose = dose, Unit = unit, Frequency = frequency, Status = ToStatus(cue),
                Confidence = inferred, Start = start, Length = last.Start + last.Length - start,
            });
        }
        _ = firstSymptom;
    }

    private string? LeadingSeverity(int turnStart, int turnEnd)
    {
        for (var j = turnStart; j < turnEnd && j < turnStart + 5; j++)
            if (SeverityWord(call.Text(j)) is { } severity && call.Text(j) is not "really") return severity;
        return null;
    }

    private string? FirstOnset(int turnStart, int turnEnd)
    {
        for (var j = turnStart; j < turnEnd; j++)
            if (OnsetAt(j, turnEnd) is { } onset) return onset;
        return null;
    }

    /// <summary>Pain scores: "7 out of 10", "7/10", "siete de diez", "pain is a 7", "it's a five", "about a four".
    /// Each goes to the nearest pain-type symptom of its sentence, else the turn's last earlier one, else the pain
    /// the clinician asked about ("How is the pain?" – "It's a two now").</summary>
    private void AttachPainScores(int turn, int firstSymptom, Question? question, double confidence)
    {
        var turnStart = call.TurnTokenStart[turn];
        var turnEnd = call.TurnEnd(turn);
        for (var j = turnStart; j < turnEnd; j++)
        {
            if (call.MentionAt[j] >= 0 || !TryScoreAt(j, turnStart, turnEnd, out var score, out var scoreEnd)) continue;
            var target = NearestPainDraft(j, firstSymptom);
            if (target is null && question is not null)
            {
                foreach (var qi in question.Symptoms)
                {
                    var asked = call.Mentions[qi];
                    if (!IsPainType(asked.Canonical)) continue;
                    var start = call.Tokens[asked.TokenStart].Start;
                    var last = call.Tokens[asked.TokenEnd - 1];
                    target = new SymptomDraft
                    {
                        Name = asked.Canonical, Present = true, Confidence = confidence * EmbeddedExtractorConfidence.AnswerFactor,
                        Start = start, Length = last.Start + last.Length - start, Turn = turn, Token = j,
                    };
                    _symptoms.Add(target);
                    break;
                }
            }
            if (target is not null) target.Severity = $"{score}/10";
            j = scoreEnd - 1;
        }
    }

    private SymptomDraft? NearestPainDraft(int token, int firstSymptom)
    {
        var sentence = call.Tokens[token].Sentence;
        SymptomDraft? best = null;
        var bestDistance = int.MaxValue;
        SymptomDraft? earlier = null;
        for (var d = firstSymptom; d < _symptoms.Count; d++)
        {
            var draft = _symptoms[d];
            if (draft.Removed || !IsPainType(draft.Name)) continue;
            if (call.Tokens[draft.Token].Sentence == sentence && Math.Abs(draft.Token - token) < bestDistance)
            {
                best = draft;
                bestDistance = Math.Abs(draft.Token - token);
            }
            if (draft.Token < token) earlier = draft;
        }
        return best ?? earlier;
    }

    private bool TryScoreAt(int j, int turnStart, int turnEnd, out int score, out int end)
    {
        score = 0;
        end = j;
        // "N out of 10", "N/10", "N de 10"
        if (NumberWords.TryParse(call.Folded, call.Tokens, j, turnEnd, false, out var value, out var used) && value is >= 0 and <= 10 && value == Math.Floor(value))
        {
            var k = j + used;
            var outOf = call.Is(k, "out") && call.Is(k + 1, "of") ? k + 2 : call.IsPunct(k, '/') || call.Is(k, "de") || call.Is(k, "on") ? k + 1 : -1;
            if (outOf > 0 && NumberWords.TryParse(call.Folded, call.Tokens, outOf, turnEnd, false, out var scale, out var scaleUsed) && scale == 10)
            {
                score = (int)value;
                end = outOf + scaleUsed;
                return true;
            }
        }
        // "is a 7", "it's a five", "about a four", "maybe a 3", "es un 8", "hurts a 3": a lone small number after an article
        // or a copula, not followed by a unit or noun ("a 5 mg tablet" is a dose).
        var w = call.Text(j);
        var numberAt = -1;
        if (w is "a" or "an" or "un") numberAt = j + 1;
        else if (w is "is" or "was" or "es" or "it's" or "at") numberAt = j + 1;
        if (numberAt < 0 || numberAt >= turnEnd) return false;
        if (!NumberWords.TryParse(call.Folded, call.Tokens, numberAt, turnEnd, false, out var lone, out var loneUsed)) return false;
        if (lone is < 0 or > 10 || lone != Math.Floor(lone)) return false;
        var after = numberAt + loneUsed;
        if (after < turnEnd && call.Tokens[after].Kind == TokenKind.Word && call.Text(after) is not ("today" or "now" or "and" or "or" or "right" or "this"
                or "at" or "in" or "hoy" or "ahora" or "y" or "but" or "pero" or "since" or "when" or "out")) return false;
        if (after < turnEnd && call.Tokens[after].Kind == TokenKind.Number) return false;
        score = (int)lone;
        end = after;
        return j >= turnStart;
    }

    public ExtractionResult Result()
    {
        var medications = MergeMedications();
        var foods = MergeFoods();
        var symptoms = MergeSymptoms();
        return new ExtractionResult(medications, foods, symptoms);
    }

    private TranscriptSpan Span(int start, int length) => new(start, length);

    /// <summary>One entry per drug unless two mentions give different doses (morning and evening insulin); the first
    /// definite status wins (a later "but I forgot it on Saturday" does not undo "I take it twice a day").</summary>
    private List<MedicationEntry> MergeMedications()
    {
        var merged = new List<MedicationDraft>();
        foreach (var draft in _medications)
        {
            var into = merged.Find(m => m.Name == draft.Name && (m.Dose is null || draft.Dose is null || m.Dose == draft.Dose));
            if (into is null) { merged.Add(draft); continue; }
            if (into.Status == MedicationStatus.Mentioned) into.Status = draft.Status;
            if (into.Dose is null && draft.Dose is not null) { into.Dose = draft.Dose; into.Unit = draft.Unit; }
            into.Frequency ??= draft.Frequency;
            into.Confidence = Math.Max(into.Confidence, draft.Confidence);
        }
        var result = new List<MedicationEntry>(merged.Count);
        foreach (var m in merged)
            result.Add(new MedicationEntry(m.Name, m.Dose, m.Dose is null ? null : m.Unit, m.Frequency, m.Status, Math.Round(m.Confidence, 3),
                Span(m.Start, m.Length), EmbeddedExtractor.ExtractorName));
        return result;
    }

    private List<FoodEntry> MergeFoods()
    {
        var merged = new List<FoodDraft>();
        foreach (var draft in _foods)
        {
            var into = merged.Find(f => f.Item == draft.Item && f.Meal == draft.Meal);
            if (into is null) { merged.Add(draft); continue; }
            if (into.Quantity is null) { into.Quantity = draft.Quantity; into.Unit ??= draft.Unit; }
        }
        var result = new List<FoodEntry>(merged.Count);
        foreach (var f in merged)
            result.Add(new FoodEntry(f.Item, f.Quantity, f.Unit, f.Meal, Math.Round(f.Confidence, 3), Span(f.Start, f.Length), EmbeddedExtractor.ExtractorName));
        return result;
    }

    /// <summary>One entry per symptom name: the last mention's present/denied ("I denied chest pain to the ER doctor
    /// but honestly I had some"), the latest severity and onset given.</summary>
    private List<SymptomEntry> MergeSymptoms()
    {
        var merged = new List<SymptomDraft>();
        foreach (var draft in _symptoms)
        {
            if (draft.Removed) continue;
            var into = merged.Find(s => s.Name == draft.Name);
            if (into is null) { merged.Add(draft); continue; }
            into.Present = draft.Present;
            into.Severity = draft.Severity ?? into.Severity;
            into.Onset = draft.Onset ?? into.Onset;
            into.Confidence = Math.Max(into.Confidence, draft.Confidence);
        }
        var result = new List<SymptomEntry>(merged.Count);
        foreach (var s in merged)
            result.Add(new SymptomEntry(s.Name, s.Present, s.Severity, s.Onset, Math.Round(s.Confidence, 3), Span(s.Start, s.Length), EmbeddedExtractor.ExtractorName));
        return result;
    }
}
