namespace StreamHealth.CallLogs.Extraction;

/// <summary>Char-for-char folding (lower case, Spanish/French accents removed, typographic quotes made ASCII, control
/// characters made spaces). One char in, one char out, so an offset in the folded text is the same offset in the
/// transcript and every span is exact without a mapping table.</summary>
public static class TextFolding
{
    public static void Fold(ReadOnlySpan<char> source, Span<char> destination)
    {
        for (var i = 0; i < source.Length; i++) destination[i] = Fold(source[i]);
    }

    public static string Fold(string source) =>
        string.Create(source.Length, source, static (destination, s) => Fold(s.AsSpan(), destination));

    public static char Fold(char c)
    {
        if (c < 128)
        {
            if (c is >= 'A' and <= 'Z') return (char)(c + 32);
            return c < ' ' && c != '\n' ? ' ' : c;
        }
        return c switch
        {
            'á' or 'à' or 'â' or 'ä' or 'Á' or 'À' or 'Â' or 'Ä' => 'a',
            'é' or 'è' or 'ê' or 'ë' or 'É' or 'È' or 'Ê' or 'Ë' => 'e',
            'í' or 'ì' or 'î' or 'ï' or 'Í' or 'Ì' or 'Î' or 'Ï' => 'i',
            'ó' or 'ò' or 'ô' or 'ö' or 'Ó' or 'Ò' or 'Ô' or 'Ö' => 'o',
            'ú' or 'ù' or 'û' or 'ü' or 'Ú' or 'Ù' or 'Û' or 'Ü' => 'u',
            'ñ' or 'Ñ' => 'n',
            'ç' or 'Ç' => 'c',
            '\u2018' or '\u2019' or '\u02BC' => '\'',
            '\u201C' or '\u201D' => '"',
            '\u2013' or '\u2014' => '-',
            '¿' or '¡' => ' ',
            _ => char.IsControl(c) ? ' ' : char.ToLowerInvariant(c),
        };
    }
}

internal enum TokenKind : byte { Word, Number, Punctuation }

/// <summary>A token of the folded text: [Start, Start+Length). <see cref="Turn"/> indexes the turn list,
/// <see cref="Sentence"/> and <see cref="Segment"/> count sentence and clause breaks over the whole transcript.</summary>
internal struct Token
{
    public int Start;
    public int Length;
    public TokenKind Kind;
    public int Turn;
    public int Sentence;
    public int Segment;
    public double NumberValue;
}

internal static class Tokenizer
{
    /// <summary>Appends the tokens of [start, end) of the folded text. A word is letters/digits with inner apostrophes,
    /// hyphens and ampersands ("can't", "light-headed", "pb&amp;j"); a number is digits with inner ',' or '.'
    /// ("1,000", "2.5"), split from a following unit ("20mg" → 20, mg); anything else is one punctuation char.</summary>
    public static void Tokenize(string folded, int start, int end, int turn, List<Token> tokens)
    {
        var i = start;
        while (i < end)
        {
            var c = folded[i];
            if (char.IsWhiteSpace(c)) { i++; continue; }
            var tokenStart = i;
            if (char.IsAsciiDigit(c))
            {
                i++;
                while (i < end && (char.IsAsciiDigit(folded[i]) || ((folded[i] == ',' || folded[i] == '.') && i + 1 < end && char.IsAsciiDigit(folded[i + 1])
                                                                    && char.IsAsciiDigit(folded[i - 1])))) i++;
                var text = folded.AsSpan(tokenStart, i - tokenStart);
                var value = ParseDigits(text);
                tokens.Add(new Token { Start = tokenStart, Length = i - tokenStart, Kind = TokenKind.Number, Turn = turn, NumberValue = value });
                continue;
            }
            if (char.IsLetter(c))
            {
                i++;
                while (i < end)
                {
                    var d = folded[i];
                    if (char.IsLetterOrDigit(d)) { i++; continue; }
                    if ((d == '\'' || d == '-' || d == '&') && i + 1 < end && char.IsLetter(folded[i + 1])) { i += 2; continue; }
                    break;
                }
                tokens.Add(new Token { Start = tokenStart, Length = i - tokenStart, Kind = TokenKind.Word, Turn = turn });
                continue;
            }
            tokens.Add(new Token { Start = tokenStart, Length = 1, Kind = TokenKind.Punctuation, Turn = turn });
            i++;
        }
    }

    /// <summary>"1,000" → 1000, "2.5" → 2.5; a comma followed by exactly three digits groups thousands, otherwise it is
    /// a decimal comma ("2,5" in Spanish). Absurd lengths saturate at 1e15; callers bound the values they accept.</summary>
    private static double ParseDigits(ReadOnlySpan<char> text)
    {
        double whole = 0, fraction = 0, scale = 0;
        for (var k = 0; k < text.Length; k++)
        {
            var ch = text[k];
            if (ch == ',' && !IsGroupOfThree(text, k)) { scale = 1; continue; }
            if (ch == ',') continue;
            if (ch == '.') { scale = 1; continue; }
            var digit = ch - '0';
            if (scale == 0) whole = Math.Min(whole * 10 + digit, 1e15);
            else { scale /= 10; fraction += digit * scale; }
        }
        return whole + fraction;
    }

    private static bool IsGroupOfThree(ReadOnlySpan<char> text, int comma)
    {
        var digits = 0;
        for (var k = comma + 1; k < text.Length && char.IsAsciiDigit(text[k]); k++) digits++;
        return digits == 3;
    }
}
