namespace StreamHealth.Cgm.Formats;

/// <summary>Format detection and the registry of readers. Detection looks at the content only (the
/// first <see cref="HeadBytes"/> bytes), never the file name, and tries the readers in a fixed order;
/// a file nobody recognises gets an <see cref="UnknownCgmFormatException"/> naming every format tried.</summary>
public static class CgmFormats
{
    public const int HeadBytes = 16 * 1024;

    /// <summary>Every supported reader, in detection order (most specific first).</summary>
    public static IReadOnlyList<ICgmFormatReader> Readers { get; } =
    [
        new UnifiedCsvFormat(),
        new DexcomClarityFormat(),
        new LibreViewFormat(),
        new MedtronicCareLinkFormat(),
        new NightscoutJsonFormat(),
        new GlucoBenchCsvFormat(),                     // id,time,gl: several people; before the headerless guess
        new NightscoutCsvFormat(),                     // headerless: keep after every format with a header
    ];

    /// <summary>The format of the file whose first bytes are <paramref name="head"/>, or null.</summary>
    public static ICgmFormatReader? Detect(ReadOnlySpan<byte> head)
    {
        foreach (var reader in Readers)
            if (reader.Matches(head)) return reader;
        return null;
    }

    /// <summary>Detects the format of <paramref name="file"/> and opens a reader over it. The stream need
    /// not be seekable: the head is read once and replayed to the reader. The reader owns the stream and
    /// disposes it unless <paramref name="leaveOpen"/>.</summary>
    public static CgmRowReader Open(Stream file, bool leaveOpen = false)
    {
        try
        {
            return OpenOwned(file, leaveOpen);
        }
        catch
        {
            if (!leaveOpen) file.Dispose();
            throw;
        }
    }

    private static CgmRowReader OpenOwned(Stream file, bool leaveOpen)
    {
        var head = new byte[HeadBytes];
        var length = 0;
        while (length < head.Length)
        {
            var n = file.Read(head, length, head.Length - length);
            if (n == 0) break;
            length += n;
        }
        if (length == 0) throw new CgmFormatException(null, 0, "the file is empty");
        var reader = Detect(head.AsSpan(0, length))
            ?? throw new UnknownCgmFormatException(Readers.Select(r => r.Format.Name()).ToList());
        return reader.Open(new HeadReplayStream(head, length, file, leaveOpen));
    }

    /// <summary>Every row of the file in the file's own order (the resampler finds daylight-saving jumps by it);
    /// the stream is left open. Throws <see cref="CgmFormatException"/> before returning anything. A glucose value no
    /// sensor or meter reports (at or below 0, above <see cref="GlucoseUnits.ImpossibleAboveMgDl"/>) is kept, flagged
    /// <see cref="CgmQuality.OutOfRange"/>; <paramref name="report"/>, when given, receives the lines skipped by reason,
    /// those flagged values, and (if it asks) each row's line.</summary>
    public static List<CgmRow> ReadFileOrder(Stream file, out CgmFormat format, CgmReadReport? report = null)
    {
        using var reader = Open(file, leaveOpen: true);
        format = reader.Format;
        var rows = new List<CgmRow>();
        // A file of several people (GlucoBench layout) read here would become one person's series: refused.
        HashSet<string>? people = null;
        string? person = null;
        while (reader.TryRead(out var row))
        {
            if (!ReferenceEquals(reader.PersonId, person))
            {
                person = reader.PersonId;
                if (person is not null) (people ??= new(StringComparer.Ordinal)).Add(person);
            }
            if (row.HasGlucose && !(row.GlucoseMgDl > 0 && row.GlucoseMgDl <= GlucoseUnits.ImpossibleAboveMgDl))
            {
                row = row with { Quality = row.Quality | CgmQuality.OutOfRange };
                if (report is not null && report.ImpossibleGlucose++ == 0) report.FirstImpossibleGlucoseLine = reader.Line;
            }
            rows.Add(row);
            report?.RowLines?.Add(reader.Line);
        }
        if (people is { Count: > 1 }) throw new MultiplePeopleException(reader.Format, people);
        report?.Skipped.AddRange(reader.Skipped);
        return rows;
    }

    public static CgmRowReader Open(string path) => Open(File.OpenRead(path));
}

/// <summary>A file holding several people's readings (the GlucoBench layout) where one person's export is expected:
/// an upload or a conversion would mix them into one series.</summary>
public sealed class MultiplePeopleException(CgmFormat format, IReadOnlyCollection<string> people)
    : CgmFormatException(format, 0, $"the file holds the readings of {people.Count} people (ids {Ids(people)}); this takes one person's " +
                                     "export: split the file by id (or evaluate the model on it with `streamhealth forecast evaluate`)")
{
    public int People { get; } = people.Count;

    private static string Ids(IReadOnlyCollection<string> people) =>
        string.Join(", ", people.Take(5).Select(p => $"\"{p}\"")) + (people.Count > 5 ? ", …" : "");
}

/// <summary>What reading a file left out or flagged (see <see cref="CgmFormats.ReadFileOrder"/>).</summary>
public sealed class CgmReadReport
{
    /// <summary>Lines that held no row, by reason.</summary>
    public List<SkippedRows> Skipped { get; } = [];
    /// <summary>Glucose values no sensor reports (flagged <see cref="CgmQuality.OutOfRange"/>), and the first one's line.</summary>
    public int ImpossibleGlucose { get; set; }
    public long FirstImpossibleGlucoseLine { get; set; }
    /// <summary>When set, filled with each row's line (entry for JSON), in file order: errors found later can name it.</summary>
    public List<long>? RowLines { get; init; }
    public int SkippedRows => Skipped.Sum(s => s.Rows);
}

/// <summary>Replays bytes already read from a non-seekable stream, then continues with the stream.</summary>
internal sealed class HeadReplayStream(byte[] head, int headLength, Stream rest, bool leaveOpen = false) : Stream
{
    private int _position;

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_position < headLength)
        {
            var n = Math.Min(buffer.Length, headLength - _position);
            head.AsSpan(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }
        return rest.Read(buffer);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && !leaveOpen) rest.Dispose();
        base.Dispose(disposing);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
