namespace StreamHealth.Cgm.Formats;

/// <summary>Field access and value rules shared by the CSV readers' row loops (allocation-free except
/// for the message of an error about to be thrown).</summary>
internal static class CgmFields
{
    /// <summary>Field <paramref name="index"/> of a line split into <paramref name="fields"/> (of which
    /// <paramref name="count"/> exist on the line), trimmed of spaces; empty when the column is absent
    /// (-1) or the line is short.</summary>
    public static ReadOnlySpan<byte> Get(ReadOnlySpan<byte> line, ReadOnlySpan<Range> fields, int count, int index) =>
        (uint)index < (uint)Math.Min(count, fields.Length) ? line[fields[index]].Trim((byte)' ') : default;

    /// <summary>An amount (glucose, insulin, carbs): empty gives NaN; otherwise a finite number ≥ 0, with
    /// '.' or (when <paramref name="decimalComma"/>) ',' as the decimal separator. False when it is not.</summary>
    public static bool TryAmount(ReadOnlySpan<byte> field, bool decimalComma, out double value)
    {
        if (field.IsEmpty) { value = double.NaN; return true; }
        if (!CsvLine.TryParseDouble(field, out value, decimalComma) || !double.IsFinite(value) || value < 0) return false;
        value += 0.0;   // "-0" → +0, so the unified CSV never says "-0.0"
        return true;
    }

    public static string NotAnAmount(string what, ReadOnlySpan<byte> field) =>
        CsvLine.TryParseDouble(field, out var v, decimalComma: true) && v < 0
            ? $"{what} {CsvLine.Show(field)} is negative"
            : $"{what} {CsvLine.Show(field)} is not a number";

    public static string NotATimestamp(ReadOnlySpan<byte> field) =>
        field.IsEmpty ? "the timestamp is empty" : $"timestamp {CsvLine.Show(field)} is not a date and time";

    /// <summary>Seconds of an "h:mm:ss" or "mm:ss" duration (Clarity's exercise "Duration (hh:mm:ss)");
    /// NaN when empty; false when malformed.</summary>
    public static bool TryDurationSeconds(ReadOnlySpan<byte> field, out double seconds)
    {
        seconds = double.NaN;
        if (field.IsEmpty) return true;
        long total = 0;
        var parts = 0;
        while (true)
        {
            var colon = field.IndexOf((byte)':');
            var part = colon >= 0 ? field[..colon] : field;
            if (!CgmTime.Digits(part, out var n) || ++parts > 3 || (parts > 1 && (part.Length != 2 || n > 59))) return false;
            total = total * 60 + n;
            if (colon < 0) break;
            field = field[(colon + 1)..];
        }
        if (parts < 2) return false;
        seconds = total;
        return true;
    }
}
