namespace StreamHealth.CallLogs.Extraction;

/// <summary>Numbers in digits and in English or Spanish words at a token position: "500", "1,000", "2.5",
/// "five hundred", "two fifty" (spoken 250), "one and a half", "half a", "twenty-five", "quinientos", "treinta y cinco",
/// "dos", "medio". "once" is never read as Spanish eleven: in these calls it is nearly always the English frequency.</summary>
internal static class NumberWords
{
    /// <summary>Largest value any rule uses; bigger numbers (hostile input, phone numbers) are not doses or scores.</summary>
    public const double MaxUsefulValue = 100_000;

    public static bool TryParse(string folded, List<Token> tokens, int index, int end, bool allowArticle, out double value, out int consumed)
    {
        value = 0;
        consumed = 0;
        if (index >= end) return false;
        var first = tokens[index];
        var firstText = folded.AsSpan(first.Start, first.Length);
        if (first.Kind == TokenKind.Number)
        {
            value = first.NumberValue;
            consumed = 1;
            if (IsWord(folded, tokens, index + 1, end, "and") && IsWord(folded, tokens, index + 2, end, "a") && IsWord(folded, tokens, index + 3, end, "half"))
            { value += 0.5; consumed = 4; }
            return value <= MaxUsefulValue;
        }
        if (first.Kind != TokenKind.Word) return false;
        if (firstText is "half" or "medio" or "media")
        {
            value = 0.5;
            consumed = IsWord(folded, tokens, index + 1, end, "a") || IsWord(folded, tokens, index + 1, end, "an") ? 2 : 1;
            return true;
        }
        if (allowArticle && firstText is "a" or "an" or "un" or "una" or "one")
        {
            if (IsWord(folded, tokens, index + 1, end, "couple")) { value = 2; consumed = IsWord(folded, tokens, index + 2, end, "of") ? 3 : 2; return true; }
            if (IsWord(folded, tokens, index + 1, end, "half")) { value = 0.5; consumed = 2; return true; }
            if (!(IsWord(folded, tokens, index + 1, end, "hundred") || IsWord(folded, tokens, index + 1, end, "thousand")))
            {
                if (firstText is "one" && IsWord(folded, tokens, index + 1, end, "and") && IsWord(folded, tokens, index + 2, end, "a")
                    && IsWord(folded, tokens, index + 3, end, "half")) { value = 1.5; consumed = 4; return true; }
                if (firstText is not "one") { value = 1; consumed = 1; return true; }
            }
        }

        double total = 0, current = 0;
        var i = index;
        var any = false;
        var sawHundred = false;
        while (i < end && tokens[i].Kind == TokenKind.Word)
        {
            var text = folded.AsSpan(tokens[i].Start, tokens[i].Length);
            if (text is "hundred" or "cien" or "ciento")
            {
                if (text is "hundred") current = Math.Max(current, 1) * 100; else current += 100;
                sawHundred = true; any = true; i++; continue;
            }
            if (text is "thousand" or "mil") { total += Math.Max(current, 1) * 1000; current = 0; any = true; i++; continue; }
            if (any && text is "and" or "y")
            {
                if (IsWord(folded, tokens, i + 1, end, "a") && IsWord(folded, tokens, i + 2, end, "half")) { current += 0.5; i += 3; break; }
                if (IsWord(folded, tokens, i + 1, end, "media") || IsWord(folded, tokens, i + 1, end, "medio")) { current += 0.5; i += 2; break; }
                if (i + 1 < end && tokens[i + 1].Kind == TokenKind.Word && WordValue(folded.AsSpan(tokens[i + 1].Start, tokens[i + 1].Length)) is > 0) { i++; continue; }
                break;
            }
            var v = WordValue(text);
            if (v is null) break;
            var word = v.Value;
            if (any && !sawHundred && current is >= 1 and <= 9 && word >= 10 && total == 0)
                current = current * 100 + word;                                  // "two fifty" → 250, "seven fifty" → 750
            else if (any && word < 10 && current % 10 != 0) break;               // "five two": two numbers, not one
            else if (any && word >= 10 && word < 100 && current % 100 != 0 && current < 100) break;
            else current += word;
            any = true;
            i++;
        }
        if (!any) return false;
        value = total + current;
        consumed = i - index;
        return true;
    }

    private static bool IsWord(string folded, List<Token> tokens, int index, int end, string word) =>
        index < end && tokens[index].Kind == TokenKind.Word && folded.AsSpan(tokens[index].Start, tokens[index].Length).SequenceEqual(word);

    /// <summary>Value of one number word (hyphenated "twenty-five" included), or null.</summary>
    internal static int? WordValue(ReadOnlySpan<char> word)
    {
        var hyphen = word.IndexOf('-');
        if (hyphen > 0)
        {
            var tens = WordValue(word[..hyphen]);
            var units = WordValue(word[(hyphen + 1)..]);
            return tens is >= 20 and <= 90 && units is >= 1 and <= 9 ? tens + units : null;
        }
        return word switch
        {
            "zero" or "cero" => 0,
            "one" or "uno" => 1,
            "two" or "dos" => 2,
            "three" or "tres" => 3,
            "four" or "cuatro" => 4,
            "five" or "cinco" => 5,
            "six" or "seis" => 6,
            "seven" or "siete" => 7,
            "eight" or "ocho" => 8,
            "nine" or "nueve" => 9,
            "ten" or "diez" => 10,
            "eleven" => 11,
            "twelve" or "doce" => 12,
            "thirteen" or "trece" => 13,
            "fourteen" or "catorce" => 14,
            "fifteen" or "quince" => 15,
            "sixteen" or "dieciseis" => 16,
            "seventeen" or "diecisiete" => 17,
            "eighteen" or "dieciocho" => 18,
            "nineteen" or "diecinueve" => 19,
            "twenty" or "veinte" => 20,
            "veintiuno" or "veintiun" => 21,
            "veintidos" => 22,
            "veintitres" => 23,
            "veinticuatro" => 24,
            "veinticinco" => 25,
            "thirty" or "treinta" => 30,
            "forty" or "cuarenta" => 40,
            "fifty" or "cincuenta" => 50,
            "sixty" or "sesenta" => 60,
            "seventy" or "setenta" => 70,
            "eighty" or "ochenta" => 80,
            "ninety" or "noventa" => 90,
            "doscientos" or "doscientas" => 200,
            "trescientos" or "trescientas" => 300,
            "cuatrocientos" => 400,
            "quinientos" or "quinientas" => 500,
            "seiscientos" => 600,
            "setecientos" => 700,
            "ochocientos" => 800,
            "novecientos" => 900,
            _ => null,
        };
    }
}
