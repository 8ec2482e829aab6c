using System.Runtime.InteropServices;

namespace StreamHealth.Cgm.Formats;

/// <summary>What a conversion read and wrote.</summary>
/// <param name="FirstTimeMs">The earliest row's time (ms since 1970 on the export's clock).</param>
/// <param name="LastTimeMs">The latest row's time.</param>
public readonly record struct ConversionResult(CgmFormat Format, int Rows, long FirstTimeMs, long LastTimeMs);

/// <summary>Any supported export → the unified CSV: detect the format from the content, read every row,
/// sort, write. Nothing is written until the whole input has been read, so a file that fails anywhere
/// leaves the output untouched (what POST /convert_to_unified relies on). The rows are held in memory
/// meanwhile (64 B each: ~110 MB for a 100 MB Clarity export); the readers themselves stream.</summary>
public static class CgmConverter
{
    /// <summary>Converts <paramref name="input"/> (left open) into unified CSV on <paramref name="output"/>.</summary>
    /// <exception cref="CgmFormatException">The input is not a supported export, cannot be read (the
    /// message names the line and the problem), or holds no row the unified format can carry; nothing has
    /// been written.</exception>
    public static ConversionResult Convert(Stream input, Stream output)
    {
        var rows = ReadAll(input, out var format);
        if (rows.Count == 0)
            throw new CgmFormatException(format, 0, "the file holds no glucose readings or events to convert");
        using (var writer = new UnifiedCsvWriter(output))
            foreach (ref readonly var row in CollectionsMarshal.AsSpan(rows)) writer.Write(row);
        return new ConversionResult(format, rows.Count, rows[0].TimeMs, rows[^1].TimeMs);
    }

    /// <summary>Every row of <paramref name="input"/> (left open) in unified order (<see cref="Sort"/>).</summary>
    public static List<CgmRow> ReadAll(Stream input, out CgmFormat format, CgmReadReport? report = null)
    {
        var rows = CgmFormats.ReadFileOrder(input, out format, report);
        Sort(rows);
        return rows;
    }

    public static List<CgmRow> ReadAll(Stream input) => ReadAll(input, out _);

    /// <summary>Sorts rows by time; rows at the same time by event type, then glucose, carbs, insulin
    /// slow/fast, exercise (absent last), original time, quality, sequence id. A total order, so the output
    /// does not depend on the order of the vendor's file: Libre lists all historic readings before all
    /// scans, and a scan and a historic reading in the same minute come out lower glucose first, as the
    /// reference conversions (*_unified.csv) have them. A file already in order is only checked.</summary>
    public static void Sort(List<CgmRow> rows)
    {
        var span = CollectionsMarshal.AsSpan(rows);
        for (var i = 1; i < span.Length; i++)
        {
            if (Compare(span[i - 1], span[i]) <= 0) continue;
            span.Sort(new RowOrder());
            return;
        }
    }

    public static int Compare(in CgmRow a, in CgmRow b)
    {
        var c = a.TimeMs.CompareTo(b.TimeMs);
        if (c != 0) return c;
        if ((c = ((byte)a.EventType).CompareTo((byte)b.EventType)) != 0) return c;
        if ((c = Value(a.GlucoseMgDl, b.GlucoseMgDl)) != 0) return c;
        if ((c = Value(a.CarbsG, b.CarbsG)) != 0) return c;
        if ((c = Value(a.InsulinSlowU, b.InsulinSlowU)) != 0) return c;
        if ((c = Value(a.InsulinFastU, b.InsulinFastU)) != 0) return c;
        if ((c = Value(a.ExerciseSeconds, b.ExerciseSeconds)) != 0) return c;
        if ((c = a.OriginalTimeMs.CompareTo(b.OriginalTimeMs)) != 0) return c;
        if ((c = ((byte)a.Quality).CompareTo((byte)b.Quality)) != 0) return c;
        return a.SequenceId.CompareTo(b.SequenceId);
    }

    /// <summary>Absent (NaN) after every value.</summary>
    private static int Value(double a, double b) =>
        double.IsNaN(a) ? (double.IsNaN(b) ? 0 : 1) : double.IsNaN(b) ? -1 : a.CompareTo(b);

    private readonly struct RowOrder : IComparer<CgmRow>
    {
        public int Compare(CgmRow a, CgmRow b) => CgmConverter.Compare(a, b);
    }
}
