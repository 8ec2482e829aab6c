using System.Buffers.Text;
using System.Globalization;
using System.Text;

namespace StreamHealth.Cgm.Formats;

/// <summary>Splits one CSV line into field ranges without allocating. Quoted fields ("a,b", with ""
/// for a quote) are returned without their outer quotes; a field that contained doubled quotes is
/// returned raw (still with "" inside) — no CGM column needs them. Callers keep a
/// <c>Span&lt;Range&gt;</c> on the stack sized to the widest layout.</summary>
public static class CsvLine
{
    /// <summary>Fills <paramref name="fields"/> and returns the number of fields on the line (which may
    /// exceed <paramref name="fields"/>.Length; extra fields are counted but not stored).</summary>
    public static int Split(ReadOnlySpan<byte> line, byte separator, Span<Range> fields)
    {
        var count = 0;
        var i = 0;
        while (true)
        {
            int start, end;
            if (i < line.Length && line[i] == (byte)'"')
            {
                start = i + 1;
                var j = start;
                while (true)
                {
                    var q = line[j..].IndexOf((byte)'"');
                    if (q < 0) { j = line.Length; end = j; break; }           // unterminated: take the rest
                    j += q;
                    if (j + 1 < line.Length && line[j + 1] == (byte)'"') { j += 2; continue; }
                    end = j;
                    j++;
                    break;
                }
                var sep = j < line.Length ? line[j..].IndexOf(separator) : -1;
                i = sep < 0 ? line.Length + 1 : j + sep + 1;
            }
            else
            {
                start = i;
                var sep = i <= line.Length ? line[i..].IndexOf(separator) : -1;
                end = sep < 0 ? line.Length : i + sep;
                i = end + 1;
            }
            if (count < fields.Length) fields[count] = new Range(start, end);
            count++;
            if (i > line.Length) return count;
        }
    }

    /// <summary>Parses a decimal number with '.' (or ',' when <paramref name="decimalComma"/>) as the
    /// decimal separator, allowing surrounding spaces. Allocation-free.</summary>
    public static bool TryParseDouble(ReadOnlySpan<byte> field, out double value, bool decimalComma = false)
    {
        field = field.Trim((byte)' ');
        if (field.IsEmpty) { value = double.NaN; return false; }
        if (decimalComma && field.IndexOf((byte)',') is var comma and >= 0)
        {
            Span<byte> copy = stackalloc byte[Math.Min(field.Length, 64)];
            if (field.Length > copy.Length) { value = double.NaN; return false; }
            field.CopyTo(copy);
            copy[comma] = (byte)'.';
            return Utf8Parser.TryParse(copy, out value, out var n) && n == copy.Length;
        }
        return Utf8Parser.TryParse(field, out value, out var consumed) && consumed == field.Length;
    }

    /// <summary>The field as text, for error messages (truncated to 40 characters).</summary>
    public static string Show(ReadOnlySpan<byte> field)
    {
        var s = Encoding.UTF8.GetString(field.Length > 40 ? field[..40] : field);
        return field.Length > 40 ? $"\"{s}…\"" : $"\"{s}\"";
    }

    internal static string Invariant(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
}
