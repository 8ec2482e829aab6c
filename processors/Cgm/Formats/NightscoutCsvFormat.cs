using System.Globalization;

namespace StreamHealth.Cgm.Formats;

/// <summary>Nightscout entries as its exporters write them in CSV: usually no header, one entry a line,
/// <c>"2026-04-05T20:30:29.000Z",1775421029000,162,"Flat",</c> (dateString, date, sgv, direction,
/// device; comma- or tab-separated), sometimes with a header naming the fields
/// (<c>dateString,date,sgv,direction,type,…</c>). Recognised by the first line's shape: that header, or
/// an ISO time, a millisecond epoch and a number.</summary>
public sealed class NightscoutCsvFormat : ICgmFormatReader
{
    public CgmFormat Format => CgmFormat.NightscoutCsv;

    public bool Matches(ReadOnlySpan<byte> head)
    {
        if (head.StartsWith("\uFEFF"u8)) head = head[3..];
        while (!head.IsEmpty)
        {
            var newline = head.IndexOf((byte)'\n');
            var line = newline < 0 ? head : head[..newline];
            if (!line.IsEmpty && line[^1] == (byte)'\r') line = line[..^1];
            if (!line.Trim((byte)' ').IsEmpty) return NightscoutCsvReader.TryLayout(line, out _);
            if (newline < 0) break;
            head = head[(newline + 1)..];
        }
        return false;
    }

    public CgmRowReader Open(Stream file) => new NightscoutCsvReader(file);
}

/// <summary>Reads one entry a line. Times are UTC: the date column (ms), else dateString. Without a type
/// column every line is an sgv entry, and a line with an empty sgv (an mbg or cal entry the exporter
/// flattened) is skipped; with one, "mbg" lines read the mbg column as CALIBRAT. Values are mg/dL unless
/// a units column says mmol.</summary>
internal sealed class NightscoutCsvReader : CgmRowReader
{
    private const int MaxColumns = 64;

    private readonly Stream _file;
    private readonly Utf8LineReader _lines;
    private Layout? _layout;

    public NightscoutCsvReader(Stream file)
    {
        _file = file;
        _lines = new Utf8LineReader(file);
    }

    public override CgmFormat Format => CgmFormat.NightscoutCsv;

    public override long Line => _lines.LineNumber;

    /// <summary>Where the fields are, from the first line: a header, or the exporter's fixed order.</summary>
    internal sealed record Layout(byte Separator, bool Header, int DateString, int Date, int Sgv, int Mbg, int Type, int Units)
    {
        public static Layout Positional(byte separator) => new(separator, false, 0, 1, 2, -1, -1, -1);
    }

    internal static bool TryLayout(ReadOnlySpan<byte> line, out Layout? layout)
    {
        var separator = line.IndexOf((byte)'\t') >= 0 ? (byte)'\t' : (byte)',';
        Span<Range> fields = stackalloc Range[MaxColumns];
        var count = Math.Min(CsvLine.Split(line, separator, fields), MaxColumns);
        int dateString = -1, date = -1, sgv = -1, mbg = -1, type = -1, units = -1;
        for (var i = 0; i < count; i++)
        {
            var name = line[fields[i]].Trim((byte)' ');
            if (name.SequenceEqual("dateString"u8)) dateString = i;
            else if (name.SequenceEqual("date"u8)) date = i;
            else if (name.SequenceEqual("sgv"u8)) sgv = i;
            else if (name.SequenceEqual("mbg"u8)) mbg = i;
            else if (name.SequenceEqual("type"u8)) type = i;
            else if (name.SequenceEqual("units"u8)) units = i;
        }
        if (sgv >= 0 && (date >= 0 || dateString >= 0))
        {
            layout = new Layout(separator, true, dateString, date, sgv, mbg, type, units);
            return true;
        }
        layout = null;
        if (count < 3
            || !NightscoutEntry.TryParseIsoUtc(line[fields[0]].Trim((byte)' '), out _)
            || !NightscoutEntry.TryParseEpochMs(line[fields[1]].Trim((byte)' '), out _)
            || !CsvLine.TryParseDouble(line[fields[2]], out _))
            return false;
        layout = Layout.Positional(separator);
        return true;
    }

    public override bool TryRead(out CgmRow row)
    {
        while (_lines.TryReadLine(out var line))
        {
            if (line.Trim((byte)' ').IsEmpty) continue;
            if (_layout is null)
            {
                if (!TryLayout(line, out _layout))
                    throw Error("neither a Nightscout entries header nor an entry (ISO time, epoch milliseconds, sgv)");
                if (_layout!.Header) continue;
            }
            if (TryReadEntry(line, _layout, out row)) return true;
        }
        if (_layout is null) throw Error("the file has no entries");
        row = default;
        return false;
    }

    private bool TryReadEntry(ReadOnlySpan<byte> line, Layout layout, out CgmRow row)
    {
        row = default;
        Span<Range> fields = stackalloc Range[MaxColumns];
        var count = CsvLine.Split(line, layout.Separator, fields);
        if (!layout.Header && count < 3) throw Error($"{count} fields; an entry has at least dateString, date and sgv");
        fields = fields[..Math.Min(count, MaxColumns)];

        var date = Field(line, fields, layout.Date);
        var dateString = Field(line, fields, layout.DateString);
        long timeMs;
        if (!date.IsEmpty)
        {
            if (!NightscoutEntry.TryParseEpochMs(date, out timeMs))
                throw Error($"date {CsvLine.Show(date)} is not a time in milliseconds since 1970");
        }
        else if (dateString.IsEmpty) throw Error("no time: date and dateString are empty");
        else if (!NightscoutEntry.TryParseIsoUtc(dateString, out timeMs))
            throw Error($"dateString {CsvLine.Show(dateString)} is not an ISO 8601 time");

        var kind = layout.Type >= 0 ? NightscoutEntry.ParseKind(Field(line, fields, layout.Type)) : NightscoutEntry.Kind.Sgv;
        if (kind is not (NightscoutEntry.Kind.Sgv or NightscoutEntry.Kind.Mbg))
        {
            Skip(NightscoutEntry.SkipOtherType);
            return false;
        }
        var name = kind == NightscoutEntry.Kind.Sgv ? "sgv" : "mbg";
        var valueField = Field(line, fields, kind == NightscoutEntry.Kind.Sgv ? layout.Sgv : layout.Mbg);
        if (valueField.IsEmpty)
        {
            if (layout.Type < 0)
            {
                Skip("entries without an sgv value");
                return false;
            }
            throw Error($"an {name} entry without an {name} value");
        }
        if (!CsvLine.TryParseDouble(valueField, out var value) || !double.IsFinite(value))
            throw Error($"{name} {CsvLine.Show(valueField)} is not a number");

        var mmol = false;
        var units = Field(line, fields, layout.Units);
        if (!units.IsEmpty && !NightscoutEntry.TryParseUnits(units, out mmol))
            throw Error($"units {CsvLine.Show(units)} is neither mg/dl nor mmol");

        var ok = NightscoutEntry.TryGlucose(value, mmol, out var mgDl, out var statusCode);
        if (statusCode && kind == NightscoutEntry.Kind.Sgv)
        {
            Skip(NightscoutEntry.SkipStatusCode);
            return false;
        }
        if (!ok) throw Error($"{name} {value.ToString(CultureInfo.InvariantCulture)}{(mmol ? " mmol/L" : "")} is out of range");
        row = NightscoutEntry.Reading(kind, timeMs, mgDl);
        return true;
    }

    private static ReadOnlySpan<byte> Field(ReadOnlySpan<byte> line, ReadOnlySpan<Range> fields, int index) =>
        index >= 0 && index < fields.Length ? line[fields[index]].Trim((byte)' ') : default;

    public override void Dispose()
    {
        _lines.Dispose();
        _file.Dispose();
        base.Dispose();
    }
}
