namespace StreamHealth.CallLogs.Extraction;

internal sealed partial class CallWork
{
    private enum Cue { None, Taken, Skipped, Stopped, Mentioned }

    /// <summary>"metformin — no, I mean metoprolol": a drug named and corrected to another drug within a few tokens.</summary>
    private bool IsCorrectedAway(int mentionIndex, int turnEnd)
    {
        var mention = call.Mentions[mentionIndex];
        var next = mentionIndex + 1;
        if (next >= call.Mentions.Count || call.Mentions[next].Turn != mention.Turn || call.Mentions[next].Kind != EntryKind.Medication) return false;
        if (call.Mentions[next].TokenStart - mention.TokenEnd > 6) return false;
        return HasCorrectionMarker(mention.TokenEnd, call.Mentions[next].TokenStart);
    }

    private bool HasCorrectionMarker(int from, int to)
    {
        for (var j = from; j < to; j++)
        {
            var w = call.Text(j);
            if (w is "sorry" or "wait" or "perdon" or "digo" or "actually" or "correction" or "rather" or "oops") return true;
            if (w is "i" && call.Is(j + 1, "mean")) return true;
            if (w is "quiero" && call.Is(j + 1, "decir")) return true;
        }
        return false;
    }

    /// <summary>The status cue at token j, reading negated intake ("didn't take", "no me tomé") as skipped and a cue
    /// followed by "taking"/"tomar" ("stopped taking", "dejé de tomar") as the first word's cue.</summary>
    private Cue CueAt(int j, int turnStart)
    {
        var w = call.Text(j);
        switch (w)
        {
            case "stopped" or "stop" or "quit" or "discontinued" or "suspendi" or "deje" or "dejo" or "finished": return Cue.Stopped;
            case "longer" when call.Is(j - 1, "no"): return Cue.Stopped;
            case "off" when call.Is(j - 1, "me") || call.Is(j - 1, "him") || call.Is(j - 1, "her") || call.Is(j + 1, "the") || call.Is(j + 1, "my"): return Cue.Stopped;
            case "forgot" or "forget" or "forgetting" or "skipped" or "skip" or "skipping" or "missed" or "miss" or "refused" or "olvide" or "olvido"
                or "acabo" or "olvidaba": return Cue.Skipped;
            case "out" when call.Is(j - 1, "ran") || call.Is(j - 1, "run") || call.Is(j - 1, "i'm") || call.Is(j - 1, "am") || call.Is(j - 1, "running"): return Cue.Skipped;
            case "start" or "starting" or "supposed" or "going" or "gonna" or "will" or "should" or "prescribed" or "about" or "voy": return Cue.Mentioned;
        }
        var taken = w is "took" or "take" or "takes" or "taking" or "taken" or "use" or "using" or "used" or "uses" or "gave" or "give" or "given"
            or "inject" or "injected" or "started" or "tome" or "tomo" or "tomando" or "tomar" or "toma" or "tomaba" or "tomamos" or "lowered"
            or "increased" or "switched" or "down" or "inhaled" or "put";
        if (w is "on" && j > turnStart && call.Text(j - 1) is "me" or "i'm" or "im" or "am" or "still" or "been" or "was" or "is" or "she's" or "he's" or "are" or "him" or "her")
            taken = true;
        if (!taken) return Cue.None;
        for (var k = j - 1; k >= turnStart && k >= j - 3; k--)
        {
            var before = call.Text(k);
            if (before is "didn't" or "didnt" or "haven't" or "havent" or "hasn't" or "hasnt" or "not" or "never" or "no" or "don't" or "dont"
                or "doesn't" or "won't" or "wasn't" or "couldn't" or "nunca") return Cue.Skipped;
            if (before is "supposed" or "going" or "will" or "should" or "need" or "want" or "wants") return Cue.Mentioned;
            if (before is "stopped" or "quit" or "deje" or "dejo") return Cue.Stopped;
        }
        return Cue.Taken;
    }

    private static MedicationStatus ToStatus(Cue cue) => cue switch
    {
        Cue.Taken => MedicationStatus.Taken,
        Cue.Skipped => MedicationStatus.Skipped,
        Cue.Stopped => MedicationStatus.Stopped,
        _ => MedicationStatus.Mentioned,
    };

    /// <summary>The nearest cue before the drug in its sentence; overridden by a later "took it" / "haven't taken it" /
    /// "finished it" or by a correction; "anymore" / "ya no" with a negation means stopped. Without a cue: a previous
    /// sentence's cue, the clinician's "are you taking…?", or a stated dose or frequency (a regimen) mean taken.</summary>
    private MedicationStatus Status(int mentionIndex, int turnStart, int turnEnd, Question? question, bool hasRegimen)
    {
        var mention = call.Mentions[mentionIndex];
        var sentence = call.Tokens[mention.TokenStart].Sentence;
        var cue = Cue.None;
        var negated = false;
        var s = mention.TokenStart;
        while (s > turnStart && call.Tokens[s - 1].Sentence == sentence) s--;
        for (var j = mention.TokenStart - 1; j >= s; j--)
        {
            if (call.MentionAt[j] >= 0 || call.Tokens[j].Kind != TokenKind.Word) continue;
            if (cue == Cue.None) cue = CueAt(j, turnStart);
            if (IsNegationCue(j, turnEnd) || call.Is(j, "no")) negated = true;
        }
        var e = mention.TokenEnd;
        while (e < turnEnd && call.Tokens[e].Sentence == sentence) e++;
        var anymore = false;
        for (var j = s; j < e; j++)
            if (call.Is(j, "anymore") || (call.Is(j, "any") && call.Is(j + 1, "more")) || (call.Is(j, "ya") && call.Is(j + 1, "no"))) anymore = true;
        if (anymore && (negated || cue == Cue.Skipped)) cue = Cue.Stopped;

        // After the drug: "…, I took it today", "— wait, no, I haven't taken it yet", "No, I finished it".
        var windowEnd = NextMedicationStart(mentionIndex, e);
        for (var j = mention.TokenEnd; j < windowEnd; j++)
        {
            if (call.Tokens[j].Kind != TokenKind.Word) continue;
            var after = CueAt(j, turnStart);
            if (after is Cue.None or Cue.Mentioned) continue;
            if (call.Is(j + 1, "it") || call.Is(j + 1, "them") || call.Is(j + 1, "la") || call.Is(j + 1, "lo") || HasCorrectionMarker(mention.TokenEnd, j)
                || cue == Cue.None)
            {
                cue = after;
                break;
            }
        }
        if (cue != Cue.None) return ToStatus(cue);
        // No cue in the sentence: "I take my pills every day. Metformin, lisinopril and simvastatin."
        if (s > turnStart)
        {
            var previous = call.Tokens[s - 1].Sentence;
            var hasDrug = false;
            var previousCue = Cue.None;
            for (var j = s - 1; j >= turnStart && call.Tokens[j].Sentence == previous; j--)
            {
                if (call.MentionAt[j] >= 0 && call.Mentions[call.MentionAt[j]].Kind == EntryKind.Medication) hasDrug = true;
                if (call.Tokens[j].Kind == TokenKind.Word && previousCue == Cue.None) previousCue = CueAt(j, turnStart);
            }
            if (!hasDrug && previousCue != Cue.None) return ToStatus(previousCue);
        }
        var polarity = AnswerPolarity(turnStart, turnEnd);
        if (question is not null && question.AsksAboutTaking && polarity >= 0) return MedicationStatus.Taken;
        if (question is not null && question.AsksAboutTaking && polarity < 0) return MedicationStatus.Skipped;
        return hasRegimen ? MedicationStatus.Taken : MedicationStatus.Mentioned;
    }

    private int NextMedicationStart(int mentionIndex, int sentenceEnd)
    {
        var mention = call.Mentions[mentionIndex];
        for (var n = mentionIndex + 1; n < call.Mentions.Count && call.Mentions[n].Turn == mention.Turn; n++)
            if (call.Mentions[n].Kind == EntryKind.Medication) return Math.Min(call.Mentions[n].TokenStart, sentenceEnd);
        return sentenceEnd;
    }

    private static string? DoseUnitOf(ReadOnlySpan<char> w) => w switch
    {
        "mg" or "mgs" or "milligram" or "milligrams" or "miligramo" or "miligramos" or "milligramos" => DoseUnits.Milligrams,
        "mcg" or "mcgs" or "microgram" or "micrograms" or "microgramo" or "microgramos" or "ug" => DoseUnits.Micrograms,
        "g" or "gram" or "grams" or "gramo" or "gramos" => DoseUnits.Grams,
        "ml" or "milliliter" or "milliliters" or "millilitre" or "millilitres" or "mililitro" or "mililitros" or "cc" => DoseUnits.Millilitres,
        "unit" or "units" or "unidad" or "unidades" or "u" => DoseUnits.Units,
        "puff" or "puffs" or "inhalation" or "inhalations" or "inhalacion" or "inhalaciones" or "disparo" or "disparos" or "spray" or "sprays" => DoseUnits.Puffs,
        "tablet" or "tablets" or "tab" or "tabs" or "pill" or "pills" or "capsule" or "capsules" or "caplet" or "caplets" or "pastilla"
            or "pastillas" or "tableta" or "tabletas" or "capsula" or "capsulas" or "pastillita" => DoseUnits.Tablets,
        "drop" or "drops" or "gota" or "gotas" => DoseUnits.Drops,
        _ => null,
    };

    private static bool IsDeterminer(ReadOnlySpan<char> w) => w is "the" or "my" or "his" or "her" or "la" or "el" or "mi" or "su" or "sus" or "mis"
        or "los" or "las" or "del" or "your" or "this" or "that";

    /// <summary>Dose before the drug ("two fifty of metformin", "20 units of Lantus", "two Tylenol", "half a tablet of the
    /// metoprolol") or after it up to the next drug ("metformin 1,000 mg", "Keppra 500", "losartán de 50", "insulin,
    /// 30 units"); with several doses and a correction marker between them ("10 mg, I mean 20 mg") the last one.</summary>
    private (double? Value, string? Unit) Dose(int mentionIndex, int turnEnd)
    {
        var mention = call.Mentions[mentionIndex];
        var turnStart = call.TurnTokenStart[mention.Turn];
        var insulin = mention.Canonical.StartsWith("insulin", StringComparison.Ordinal);

        // Before: [number] [unit] [of|de] [determiners] DRUG
        var j = mention.TokenStart - 1;
        while (j >= turnStart && IsDeterminer(call.Text(j))) j--;
        var hasOf = j >= turnStart && call.Text(j) is "of" or "de";
        if (hasOf) { j--; while (j >= turnStart && IsDeterminer(call.Text(j))) j--; }
        string? unitBefore = null;
        var countedNonDose = false;
        if (j >= turnStart && DoseUnitOf(call.Text(j)) is { } u) { unitBefore = u; j--; }
        else if (j >= turnStart && call.Text(j) is "dose" or "doses" or "dosis") countedNonDose = true;
        while (j >= turnStart && call.Text(j) is "big" or "small" or "whole" or "extra") j--;
        if (!countedNonDose && j >= turnStart && NumberEndingAt(j, turnStart, out var before))
        {
            if (unitBefore is not null) return (before, unitBefore);
            if (hasOf && before >= 10) return (before, insulin ? DoseUnits.Units : DoseUnits.Milligrams);
            if (!hasOf && before <= 10) return (before, insulin ? DoseUnits.Units : DoseUnits.Tablets);
        }

        // After, up to the next drug or the end of the sentence.
        var sentence = call.Tokens[mention.TokenStart].Sentence;
        var e = mention.TokenEnd;
        while (e < turnEnd && call.Tokens[e].Sentence == sentence) e++;
        var windowEnd = NextMedicationStart(mentionIndex, e);
        double? firstValue = null, lastValue = null;
        string? firstUnit = null, lastUnit = null;
        var firstAt = -1;
        var k = mention.TokenEnd;
        if (call.Is(k, "de") || call.Is(k, "of")) k++;
        for (var i = mention.TokenEnd; i < windowEnd; i++)
        {
            if (call.MentionAt[i] >= 0) continue;
            if (!NumberWords.TryParse(call.Folded, call.Tokens, i, windowEnd, allowArticle: false, out var value, out var consumed)) continue;
            var unitAt = i + consumed;
            string? unit = unitAt < windowEnd ? DoseUnitOf(call.Text(unitAt)) : null;
            if (unit is null)
            {
                // A bare number right after the name is a strength in mg ("metformin 500", "losartán de 50").
                var bare = i == k && value is >= 1 and <= 5000 && (unitAt >= windowEnd || !IsCount(call.Text(unitAt)));
                if (!bare) { i = unitAt - 1; continue; }
                unit = insulin ? DoseUnits.Units : DoseUnits.Milligrams;
            }
            if (firstValue is null) { firstValue = value; firstUnit = unit; firstAt = i; }
            lastValue = value;
            lastUnit = unit;
            if (lastValue != firstValue && HasCorrectionMarker(firstAt, i)) { firstValue = lastValue; firstUnit = lastUnit; firstAt = i; }
            i = unitAt;
        }
        return (firstValue, firstUnit);
    }

    /// <summary>Counted things that are not doses: "three days ago", "two doses", "every 4 hours".</summary>
    private static bool IsCount(ReadOnlySpan<char> w) => w is "day" or "days" or "time" or "times" or "hour" or "hours" or "week" or "weeks"
        or "dose" or "doses" or "dosis" or "vez" or "veces" or "dia" or "dias" or "hora" or "horas" or "semana" or "semanas" or "minutes"
        or "years" or "months" or "am" or "pm" or "o'clock" or "percent" or "ago" or "in" or "a";

    /// <summary>A number whose last token is <paramref name="end"/> ("two fifty", "one and a half", "half a", "an").</summary>
    private bool NumberEndingAt(int end, int turnStart, out double value)
    {
        value = 0;
        for (var start = Math.Max(turnStart, end - 4); start <= end; start++)
        {
            if (!NumberWords.TryParse(call.Folded, call.Tokens, start, end + 1, allowArticle: true, out var v, out var consumed)) continue;
            if (start + consumed != end + 1) continue;
            value = v;
            return true;
        }
        return false;
    }

    /// <summary>The first frequency phrase after the drug, up to the next drug or the end of the sentence.</summary>
    private string? MedicationFrequency(int mentionIndex, int turnEnd)
    {
        var mention = call.Mentions[mentionIndex];
        var sentence = call.Tokens[mention.TokenStart].Sentence;
        var e = mention.TokenEnd;
        while (e < turnEnd && call.Tokens[e].Sentence == sentence) e++;
        var windowEnd = NextMedicationStart(mentionIndex, e);
        for (var i = mention.TokenEnd; i < windowEnd; i++)
            if (FrequencyAt(i, windowEnd) is { } frequency) return frequency;
        return null;
    }

    internal string? FrequencyAt(int i, int end)
    {
        var w = call.Text(i);
        bool Next(int offset, string word) => i + offset < end && call.Is(i + offset, word);
        bool NextDay(int offset) => Next(offset, "day") || Next(offset, "daily") || Next(offset, "dia");
        switch (w)
        {
            case "once" when Next(1, "daily") || ((Next(1, "a") || Next(1, "per") || Next(1, "each")) && Next(2, "day")): return Frequencies.OnceDaily;
            case "once" when (Next(1, "a") || Next(1, "per") || Next(1, "each")) && Next(2, "week"): return Frequencies.Weekly;
            case "twice" when Next(1, "daily") || ((Next(1, "a") || Next(1, "per") || Next(1, "each")) && Next(2, "day")): return Frequencies.TwiceDaily;
            case "daily" or "everyday" or "qd" or "diario" or "diariamente" or "diaria": return Frequencies.OnceDaily;
            case "bid": return Frequencies.TwiceDaily;
            case "tid": return Frequencies.ThreeTimesDaily;
            case "qid": return Frequencies.FourTimesDaily;
            case "qhs" or "nightly" or "bedtime": return Frequencies.AtBedtime;
            case "prn": return Frequencies.AsNeeded;
            case "weekly": return Frequencies.Weekly;
            case "qam": return Frequencies.EveryMorning;
            case "every" or "each" or "cada":
                if (Next(1, "day") || Next(1, "dia")) return Frequencies.OnceDaily;
                if (Next(1, "other") && Next(2, "day")) return Frequencies.EveryOtherDay;
                if (Next(1, "tercer") && Next(2, "dia")) return Frequencies.EveryOtherDay;
                if (Next(1, "night") || Next(1, "evening") || Next(1, "noche")) return Frequencies.AtBedtime;
                if (Next(1, "morning") || Next(1, "manana")) return Frequencies.EveryMorning;
                if (Next(1, "week") || Next(1, "semana")) return Frequencies.Weekly;
                if (NumberWords.TryParse(call.Folded, call.Tokens, i + 1, end, allowArticle: false, out var hours, out var used)
                    && (Next(1 + used, "hours") || Next(1 + used, "hrs") || Next(1 + used, "horas") || Next(1 + used, "h")) && hours is >= 1 and <= 72)
                    return Frequencies.EveryHours((int)hours);
                return null;
            case "todos" when Next(1, "los") && Next(2, "dias"): return Frequencies.OnceDaily;
            case "at" when Next(1, "night") || Next(1, "bedtime"): return Frequencies.AtBedtime;
            case "before" when Next(1, "bed") || Next(1, "sleep") || Next(1, "bedtime"): return Frequencies.AtBedtime;
            case "in" when Next(1, "the") && (Next(2, "morning") || Next(2, "mornings")): return Frequencies.EveryMorning;
            case "in" when Next(1, "the") && Next(2, "evening"): return Frequencies.AtBedtime;
            case "por" or "en" when Next(1, "la") && Next(2, "noche"): return Frequencies.AtBedtime;
            case "por" or "en" when Next(1, "la") && Next(2, "manana"): return Frequencies.EveryMorning;
            case "antes" when Next(1, "de") && Next(2, "dormir"): return Frequencies.AtBedtime;
            case "as" when Next(1, "needed") || Next(1, "necessary"): return Frequencies.AsNeeded;
            case "when" or "if" when Next(1, "needed") || (Next(1, "i") && Next(2, "need")) || Next(1, "necessary"): return Frequencies.AsNeeded;
            case "cuando" when Next(1, "lo") || Next(1, "la") || Next(1, "necesito") || Next(1, "me"): return Frequencies.AsNeeded;
            case "morning" when Next(1, "and") && (Next(2, "night") || Next(2, "evening")): return Frequencies.TwiceDaily;
            case "mornings": return Frequencies.EveryMorning;
        }
        // "two times a day", "3 times daily", "dos veces al día", "una vez a la semana"
        if (!NumberWords.TryParse(call.Folded, call.Tokens, i, end, allowArticle: true, out var times, out var consumed)) return null;
        if (!(Next(consumed, "times") || Next(consumed, "x") || Next(consumed, "vez") || Next(consumed, "veces"))) return null;
        var afterTimes = consumed + 1;
        if (Next(afterTimes, "a") || Next(afterTimes, "per") || Next(afterTimes, "each") || Next(afterTimes, "al") || Next(afterTimes, "por")) afterTimes++;
        if (Next(afterTimes, "la")) afterTimes++;
        var week = Next(afterTimes, "week") || Next(afterTimes, "semana");
        if (!NextDay(afterTimes) && !week) return null;
        if (week) return times == 1 ? Frequencies.Weekly : null;
        return times switch
        {
            1 => Frequencies.OnceDaily,
            2 => Frequencies.TwiceDaily,
            3 => Frequencies.ThreeTimesDaily,
            4 => Frequencies.FourTimesDaily,
            _ => null,
        };
    }
}
