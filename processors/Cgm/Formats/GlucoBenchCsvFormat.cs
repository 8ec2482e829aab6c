using System.Text;

namespace StreamHealth.Cgm.Formats;

/// <summary>The GlucoBench / iglu layout of research datasets (Hall 2018, D1NAMO, …): header <c>id,time,gl</c>, maybe
/// more columns (Hall's <c>diagnosis</c>), one sensor reading a line, several people in one file:
/// <c>"1636-69-001",2014-02-03 03:42:12,93</c>. Times are the device's wall clock (<c>yyyy-MM-dd HH:mm:ss</c>), glucose
/// mg/dL; <c>NA</c> or empty glucose lines are skipped. Each row's person is <see cref="CgmRowReader.PersonId"/>; a path
/// that takes one person's export refuses a file with several (<see cref="CgmFormats.ReadFileOrder"/>).</summary>
public sealed class GlucoBenchCsvFormat : ICgmFormatReader
{
    public CgmFormat Format => CgmFormat.GlucoBench;

    /// <summary>The first non-empty line is a header with columns named exactly id, time and gl.</summary>
    public bool Matches(ReadOnlySpan<byte> head)
    {
        while (CsvColumns.NextLine(ref head, out var line))
        {
            if (line.Trim((byte)' ').IsEmpty) continue;
            var columns = CsvColumns.Names(line, CsvColumns.DetectSeparator(line));
            return CsvColumns.Find(columns, "id") >= 0 && CsvColumns.Find(columns, "time") >= 0 && CsvColumns.Find(columns, "gl") >= 0;
        }
        return false;
    }

    public CgmRowReader Open(Stream file) => new GlucoBenchCsvReader(file);
}

internal sealed class GlucoBenchCsvReader : CgmRowReader
{
    private readonly Stream _file;
    private readonly Utf8LineReader _lines;
    private readonly byte _separator;
    private readonly int _id, _time, _glucose, _fieldCount;
    // The current person: the id string is made only when the id bytes change (files are grouped by person).
    private byte[] _idBytes = [];
    private string? _personId;

    public GlucoBenchCsvReader(Stream file)
    {
        _file = file;
        _lines = new Utf8LineReader(file, format: CgmFormat.GlucoBench);
        try
        {
            ReadOnlySpan<byte> header;
            do
            {
                if (!_lines.TryReadLine(out header)) throw Error("the file has no header line");
            } while (header.Trim((byte)' ').IsEmpty);
            _separator = CsvColumns.DetectSeparator(header);
            var columns = CsvColumns.Names(header, _separator);
            _id = Required(columns, "id");
            _time = Required(columns, "time");
            _glucose = Required(columns, "gl");
            _fieldCount = 1 + Math.Max(_id, Math.Max(_time, _glucose));
        }
        catch
        {
            _lines.Dispose();
            throw;
        }
    }

    private int Required(string[] columns, string name)
    {
        var index = CsvColumns.Find(columns, name);
        return index >= 0 ? index : throw Error($"the header has no \"{name}\" column (columns: {string.Join(", ", columns)})");
    }

    public override CgmFormat Format => CgmFormat.GlucoBench;

    public override long Line => _lines.LineNumber;

    public override string? PersonId => _personId;

    public override bool TryRead(out CgmRow row)
    {
        Span<Range> fields = stackalloc Range[_fieldCount];
        while (_lines.TryReadRecord(_separator, out var line))
        {
            if (line.Trim((byte)' ').IsEmpty) continue;
            var count = CsvLine.Split(line, _separator, fields);
            var id = CgmFields.Get(line, fields, count, _id);
            if (id.IsEmpty) throw Error("the id is empty");
            var glucoseField = CgmFields.Get(line, fields, count, _glucose);
            if (glucoseField.IsEmpty || glucoseField.SequenceEqual("NA"u8)) { Skip("readings without a glucose value (NA)"); continue; }
            if (!CgmFields.TryAmount(glucoseField, decimalComma: false, out var mgDl)) throw Error(CgmFields.NotAnAmount("gl", glucoseField));
            var timeField = CgmFields.Get(line, fields, count, _time);
            if (!CgmTime.TryParseIso(timeField, out var timeMs)) throw Error(CgmFields.NotATimestamp(timeField));
            if (!id.SequenceEqual(_idBytes))
            {
                _idBytes = id.ToArray();
                _personId = Encoding.UTF8.GetString(id);
            }
            row = CgmRow.Glucose(timeMs, mgDl);
            return true;
        }
        row = default;
        return false;
    }

    public override void Dispose()
    {
        _lines.Dispose();
        _file.Dispose();
        base.Dispose();
    }
}
