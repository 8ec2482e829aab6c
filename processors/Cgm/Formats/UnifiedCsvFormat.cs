using System.Buffers.Text;
using System.Runtime.CompilerServices;

namespace StreamHealth.Cgm.Formats;

/// <summary>The unified CSV itself (what <see cref="UnifiedCsvWriter"/> writes): header
/// <c>sequence_id,original_datetime,quality,event_type,datetime,glucose,carbs,insulin_slow,insulin_fast,exercise</c>.
/// Columns are found by name, so the extended variant with more columns (original_glucose, …) reads too;
/// columns the unified row has no place for are ignored. datetime, event_type and glucose are required;
/// a missing sequence_id or quality reads as 0, a missing original_datetime as datetime.</summary>
public sealed class UnifiedCsvFormat : ICgmFormatReader
{
    public CgmFormat Format => CgmFormat.Unified;

    /// <summary>The first non-empty line names event_type and datetime columns.</summary>
    public bool Matches(ReadOnlySpan<byte> head)
    {
        while (CsvColumns.NextLine(ref head, out var line))
        {
            if (line.Trim((byte)' ').IsEmpty) continue;
            return line.IndexOf("event_type"u8) >= 0 && line.IndexOf("datetime"u8) >= 0;
        }
        return false;
    }

    public CgmRowReader Open(Stream file) => new UnifiedCsvReader(file);
}

internal sealed class UnifiedCsvReader : CgmRowReader
{
    private readonly Stream _file;
    private readonly Utf8LineReader _lines;
    private readonly byte _separator;
    private readonly int _fieldCount;
    private readonly int _sequenceId, _originalTime, _quality, _eventType, _time, _glucose, _carbs, _insulinSlow, _insulinFast, _exercise;

    public UnifiedCsvReader(Stream file)
    {
        _file = file;
        _lines = new Utf8LineReader(file, format: CgmFormat.Unified);
        try
        {
            ReadOnlySpan<byte> header;
            do
            {
                if (!_lines.TryReadLine(out header)) throw Error("the file has no header line");
            } while (header.Trim((byte)' ').IsEmpty);
            _separator = CsvColumns.DetectSeparator(header);
            var columns = CsvColumns.Names(header, _separator);
            _time = Required(columns, "datetime");
            _eventType = Required(columns, "event_type");
            _glucose = Required(columns, "glucose");
            _sequenceId = CsvColumns.Find(columns, "sequence_id");
            _originalTime = CsvColumns.Find(columns, "original_datetime");
            _quality = CsvColumns.Find(columns, "quality");
            _carbs = CsvColumns.Find(columns, "carbs");
            _insulinSlow = CsvColumns.Find(columns, "insulin_slow");
            _insulinFast = CsvColumns.Find(columns, "insulin_fast");
            _exercise = CsvColumns.Find(columns, "exercise");
            ReadOnlySpan<int> all = [_time, _eventType, _glucose, _sequenceId, _originalTime, _quality, _carbs, _insulinSlow, _insulinFast, _exercise];
            _fieldCount = 1 + Max(all);
        }
        catch
        {
            _lines.Dispose();
            throw;
        }
    }

    private static int Max(ReadOnlySpan<int> values)
    {
        var max = -1;
        foreach (var v in values) max = Math.Max(max, v);
        return max;
    }

    private int Required(string[] columns, string name)
    {
        var index = CsvColumns.Find(columns, name);
        return index >= 0 ? index : throw Error($"the header has no \"{name}\" column (columns: {string.Join(", ", columns)})");
    }

    public override CgmFormat Format => CgmFormat.Unified;

    public override long Line => _lines.LineNumber;

    [SkipLocalsInit]
    public override bool TryRead(out CgmRow row)
    {
        Span<Range> fields = stackalloc Range[_fieldCount];
        while (_lines.TryReadRecord(_separator, out var line))
        {
            if (line.IsEmpty) continue;
            var count = CsvLine.Split(line, _separator, fields);

            var timeField = CgmFields.Get(line, fields, count, _time);
            if (!CgmTime.TryParseIso(timeField, out var timeMs)) throw Error(CgmFields.NotATimestamp(timeField));
            var originalTimeMs = timeMs;
            var originalField = CgmFields.Get(line, fields, count, _originalTime);
            if (!originalField.IsEmpty && !CgmTime.TryParseIso(originalField, out originalTimeMs))
                throw Error($"original_datetime {CsvLine.Show(originalField)} is not a date and time");

            var typeField = CgmFields.Get(line, fields, count, _eventType);
            if (!CgmEventTypes.TryParse(typeField, out var eventType))
                throw Error(typeField.IsEmpty ? "the event type is empty" : $"event type {CsvLine.Show(typeField)} is not a unified event code");

            var sequenceId = 0;
            var sequenceField = CgmFields.Get(line, fields, count, _sequenceId);
            if (!sequenceField.IsEmpty && !(Utf8Parser.TryParse(sequenceField, out sequenceId, out var used) && used == sequenceField.Length))
                throw Error($"sequence_id {CsvLine.Show(sequenceField)} is not a whole number");

            var quality = 0;
            var qualityField = CgmFields.Get(line, fields, count, _quality);
            if (!qualityField.IsEmpty && !(CgmTime.Digits(qualityField, out quality) && quality <= (int)AllQualityFlags))
                throw Error($"quality {CsvLine.Show(qualityField)} is not a combination of the unified quality flags (0–{(int)AllQualityFlags})");

            row = new CgmRow(sequenceId, originalTimeMs, (CgmQuality)quality, eventType, timeMs,
                Amount(line, fields, count, _glucose, "glucose"),
                Amount(line, fields, count, _carbs, "carbs"),
                Amount(line, fields, count, _insulinSlow, "insulin_slow"),
                Amount(line, fields, count, _insulinFast, "insulin_fast"),
                Amount(line, fields, count, _exercise, "exercise"));
            return true;
        }
        row = default;
        return false;
    }

    private const CgmQuality AllQualityFlags = CgmQuality.OutOfRange | CgmQuality.Calibration | CgmQuality.Imputed
        | CgmQuality.DuplicateTime | CgmQuality.Synchronised;

    private double Amount(ReadOnlySpan<byte> line, ReadOnlySpan<Range> fields, int count, int index, string column)
    {
        var field = CgmFields.Get(line, fields, count, index);
        return CgmFields.TryAmount(field, decimalComma: false, out var value) ? value : throw Error(CgmFields.NotAnAmount(column, field));
    }

    public override void Dispose()
    {
        _lines.Dispose();
        _file.Dispose();
        base.Dispose();
    }
}
