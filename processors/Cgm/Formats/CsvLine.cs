using System.Buffers.Text;
using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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
        var start = 0;
        var i = 0;
        // Data lines rarely hold a quote: find every separator 32 bytes at a time, one bit each, and fall
        // back to the quote-aware loop below only when a quote shows up. A call of IndexOf per field costs
        // more than the scan on fields this short (3-20 bytes).
        if (Vector256.IsHardwareAccelerated)
        {
            ref var first = ref MemoryMarshal.GetReference(line);
            var separators = Vector256.Create(separator);
            var quotes = Vector256.Create((byte)'"');
            for (; i + Vector256<byte>.Count <= line.Length; i += Vector256<byte>.Count)
            {
                var chunk = Vector256.LoadUnsafe(ref first, (nuint)i);
                if (Vector256.EqualsAny(chunk, quotes)) return SplitQuoted(line, separator, fields);
                var mask = Vector256.Equals(chunk, separators).ExtractMostSignificantBits();
                while (mask != 0)
                {
                    var at = i + BitOperations.TrailingZeroCount(mask);
                    if (count < fields.Length) fields[count] = new Range(start, at);
                    count++;
                    start = at + 1;
                    mask &= mask - 1;
                }
            }
        }
        for (; i < line.Length; i++)
        {
            var c = line[i];
            if (c == separator)
            {
                if (count < fields.Length) fields[count] = new Range(start, i);
                count++;
                start = i + 1;
            }
            else if (c == (byte)'"') return SplitQuoted(line, separator, fields);
        }
        if (count < fields.Length) fields[count] = new Range(start, line.Length);
        return count + 1;
    }

    private static int SplitQuoted(ReadOnlySpan<byte> line, byte separator, Span<Range> fields)
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
        if (TryParseSimpleDecimal(field, decimalComma, out value)) return true;
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

    private static readonly double[] PowersOf10 = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];

    /// <summary>The common case, digits with at most one decimal separator and at most 15 digits, without
    /// Utf8Parser: both the digits as an integer and the power of ten are exact doubles, so the one
    /// division is correctly rounded (Clinger's fast path) and gives the same double as a full parse.</summary>
    private static bool TryParseSimpleDecimal(ReadOnlySpan<byte> field, bool decimalComma, out double value)
    {
        value = 0;
        if (field.Length > 16) return false;
        long mantissa = 0;
        var digits = 0;
        var fractionDigits = -1;
        foreach (var c in field)
        {
            var d = (uint)(c - '0');
            if (d <= 9)
            {
                mantissa = mantissa * 10 + d;
                digits++;
                if (fractionDigits >= 0) fractionDigits++;
            }
            else if ((c == (byte)'.' || (decimalComma && c == (byte)',')) && fractionDigits < 0) fractionDigits = 0;
            else return false;
        }
        if (digits == 0 || digits > 15 || fractionDigits == 0) return false;
        value = fractionDigits > 0 ? mantissa / PowersOf10[fractionDigits] : mantissa;
        return true;
    }

    /// <summary>The field as text, for error messages (truncated to 40 characters).</summary>
    public static string Show(ReadOnlySpan<byte> field)
    {
        var s = Encoding.UTF8.GetString(field.Length > 40 ? field[..40] : field);
        return field.Length > 40 ? $"\"{s}…\"" : $"\"{s}\"";
    }

    internal static string Invariant(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
}
