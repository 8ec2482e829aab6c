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

    /// <summary>Whose row was read last, for formats holding several people (GlucoBench: the <c>id</c> column); null
    /// for a one-person export. The same string instance while the person does not change.</summary>
    public virtual string? PersonId => null;

    public virtual void Dispose() => GC.SuppressFinalize(this);

    protected CgmFormatException Error(string problem) => new(Format, Line, problem);

    private Dictionary<string, (int Count, long FirstLine)>? _skipped;

    /// <summary>Records that the line just read holds no row, and why (<paramref name="reason"/> is a constant: no
    /// allocation per line). A file mixing two exports, or rows of kinds the unified format has no place for, are then
    /// reported to the client instead of disappearing.</summary>
    protected void Skip(string reason)
    {
        _skipped ??= new(StringComparer.Ordinal);
        _skipped[reason] = _skipped.TryGetValue(reason, out var seen) ? (seen.Count + 1, seen.FirstLine) : (1, Line);
    }

    /// <summary>Lines skipped so far, by reason (count and first line), in order of first appearance.</summary>
    public IReadOnlyList<SkippedRows> Skipped =>
        _skipped is null ? [] : [.. _skipped.Select(s => new SkippedRows(s.Key, s.Value.Count, s.Value.FirstLine)).OrderBy(s => s.FirstLine)];

    /// <summary>Reads every row (convenience for tests and small files).</summary>
    public List<CgmRow> ReadAll()
    {
        var rows = new List<CgmRow>();
        while (TryRead(out var row)) rows.Add(row);
        return rows;
    }
}

/// <summary>Rows of a file that were not converted, for one reason: how many, and the first one's line (entry for JSON).</summary>
public readonly record struct SkippedRows(string Reason, int Rows, long FirstLine);

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
