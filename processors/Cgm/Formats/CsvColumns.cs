using System.Text;

namespace StreamHealth.Cgm.Formats;

/// <summary>Header handling shared by the CSV readers. It runs once per file (detection, or a reader
/// opening its header), so unlike the row loop it may allocate.</summary>
internal static class CsvColumns
{
    /// <summary>The widest header a reader looks at; a needed column further right is reported missing.</summary>
    public const int MaxColumns = 64;

    /// <summary>The separator of a header line: whichever of ',', ';' and tab occurs most outside quotes
    /// (',' on a tie). Exports re-saved by a spreadsheet in a decimal-comma locale use ';'.</summary>
    public static byte DetectSeparator(ReadOnlySpan<byte> line)
    {
        int commas = 0, semicolons = 0, tabs = 0;
        var inQuotes = false;
        foreach (var c in line)
        {
            if (c == (byte)'"') inQuotes = !inQuotes;
            else if (inQuotes) continue;
            else if (c == (byte)',') commas++;
            else if (c == (byte)';') semicolons++;
            else if (c == (byte)'\t') tabs++;
        }
        if (semicolons > commas && semicolons >= tabs) return (byte)';';
        return tabs > commas ? (byte)'\t' : (byte)',';
    }

    /// <summary>The header's column names, cleaned (<see cref="Clean"/>); at most <see cref="MaxColumns"/>.</summary>
    public static string[] Names(ReadOnlySpan<byte> line, byte separator)
    {
        Span<Range> fields = stackalloc Range[MaxColumns];
        var count = Math.Min(CsvLine.Split(line, separator, fields), MaxColumns);
        var names = new string[count];
        for (var i = 0; i < count; i++) names[i] = Clean(Encoding.UTF8.GetString(line[fields[i]]));
        return names;
    }

    /// <summary>A column name without quotes (straight or curly), byte-order marks — real ones and ones
    /// mis-decoded as Latin-1 once ("ï»¿") or twice ("Ã¯Â»Â¿") by a tool that re-saved the file — and
    /// surrounding spaces. Clarity exports are seen with all of these on their first column.</summary>
    public static string Clean(string raw) => raw
        .Replace("\uFEFF", "").Replace("Ã¯Â»Â¿", "").Replace("ï»¿", "")
        .Replace("\"", "").Replace("“", "").Replace("”", "")
        .Trim();

    /// <summary>Index of the first column named <paramref name="name"/> (case-insensitive), or -1.</summary>
    public static int Find(string[] columns, string name)
    {
        for (var i = 0; i < columns.Length; i++)
            if (string.Equals(columns[i], name, StringComparison.OrdinalIgnoreCase)) return i;
        return -1;
    }

    /// <summary>Index of the first column whose name starts with <paramref name="prefix"/> (case-insensitive), or -1.</summary>
    public static int FindPrefix(string[] columns, string prefix)
    {
        for (var i = 0; i < columns.Length; i++)
            if (columns[i].StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return i;
        return -1;
    }

    /// <summary>mg/dL per unit of a glucose column from the unit in its name ("Glucose Value (mmol/L)",
    /// "Historic Glucose mg/dL"), or 0 when the name carries no known unit.</summary>
    public static double GlucoseFactor(string column) =>
        column.Contains("mg/dl", StringComparison.OrdinalIgnoreCase) ? 1
        : column.Contains("mmol/l", StringComparison.OrdinalIgnoreCase) ? GlucoseUnits.MgDlPerMmolL
        : 0;

    /// <summary>The next line of a file head (split at \n, \r removed); false when the head is used up.
    /// The head may end mid-line; that last piece is returned too.</summary>
    public static bool NextLine(ref ReadOnlySpan<byte> head, out ReadOnlySpan<byte> line)
    {
        if (head.IsEmpty) { line = default; return false; }
        var newline = head.IndexOf((byte)'\n');
        line = newline >= 0 ? head[..newline] : head;
        head = newline >= 0 ? head[(newline + 1)..] : default;
        if (!line.IsEmpty && line[^1] == (byte)'\r') line = line[..^1];
        return true;
    }
}
