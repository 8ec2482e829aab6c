namespace StreamHealth.Cgm.Formats;

/// <summary>A streaming reader of one export: rows come out one at a time in file order, so a file
/// of any size is read in a bounded buffer. Throws <see cref="CgmFormatException"/> naming the line
/// on the first row it cannot read (a caller that writes anywhere reads everything first, or
/// validates in a first pass, so a bad file never leaves a partial write).</summary>
public abstract class CgmRowReader : IDisposable
{
    public abstract CgmFormat Format { get; }

    /// <summary>1-based number of the line (or, for JSON, the entry) last read.</summary>
    public abstract long Line { get; }

    /// <summary>The next row, or false at the end of the file. Rows the export holds but the unified
    /// format has no place for (alerts, device info, notes) are skipped, not returned.</summary>
    public abstract bool TryRead(out CgmRow row);

    public virtual void Dispose() => GC.SuppressFinalize(this);

    protected CgmFormatException Error(string problem) => new(Format, Line, problem);

    /// <summary>Reads every row (convenience for tests and small files).</summary>
    public List<CgmRow> ReadAll()
    {
        var rows = new List<CgmRow>();
        while (TryRead(out var row)) rows.Add(row);
        return rows;
    }
}

/// <summary>One supported format: how to recognise it from the head of a file (never the file name)
/// and how to open a reader.</summary>
public interface ICgmFormatReader
{
    CgmFormat Format { get; }

    /// <summary>True when <paramref name="head"/> (the first bytes of the file, BOM included, up to
    /// <see cref="CgmFormats.HeadBytes"/>) looks like this format.</summary>
    bool Matches(ReadOnlySpan<byte> head);

    /// <summary>Opens a reader over the whole file (<paramref name="file"/> starts at byte 0).</summary>
    CgmRowReader Open(Stream file);
}
