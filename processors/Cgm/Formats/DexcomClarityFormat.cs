using System.Runtime.CompilerServices;
using System.Text;

namespace StreamHealth.Cgm.Formats;

/// <summary>Dexcom Clarity CSV export (G6 and G7, Android and iOS, mg/dL and the EU mmol/L layout).
/// Line 1 is the header ("Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,…,Glucose
/// Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),…"), often with a damaged BOM
/// on its first column; then rows without a timestamp (FirstName, LastName, Device, Sensor and one per
/// alert setting), then the timestamped data. Columns are found by name, not position.</summary>
public sealed class DexcomClarityFormat : ICgmFormatReader
{
    public CgmFormat Format => CgmFormat.DexcomClarity;

    /// <summary>The first non-empty line names a Timestamp, an Event Type and a Glucose Value column.</summary>
    public bool Matches(ReadOnlySpan<byte> head)
    {
        while (CsvColumns.NextLine(ref head, out var line))
        {
            if (line.Trim((byte)' ').IsEmpty) continue;
            return line.IndexOf("Timestamp"u8) >= 0 && line.IndexOf("Event Type"u8) >= 0 && line.IndexOf("Glucose Value"u8) >= 0;
        }
        return false;
    }

    public CgmRowReader Open(Stream file) => new DexcomClarityReader(file);
}

/// <summary>Rows out of a Clarity export: EGV → EGV_READ ("High" = 401, "Low" = 39 mg/dL, flagged out of
/// range), Calibration → CALIBRAT, Carbs → CARBS_IN, Insulin Fast-/Long-Acting → INS_FAST/INS_SLOW,
/// Exercise (G7: Activity) Light/Medium/Heavy → XRCS_* with its duration, Health → HLTH_*. Rows without a
/// timestamp (patient, device, alert settings), alerts and event types the unified format has no place
/// for are skipped.</summary>
internal sealed class DexcomClarityReader : CgmRowReader
{
    private readonly Stream _file;
    private readonly Utf8LineReader _lines;
    private readonly byte _separator;
    private readonly int _fieldCount;
    private readonly int _timestamp, _eventType, _eventSubtype, _glucose, _insulin, _carbs, _duration;
    private readonly double _mgDlPerUnit;

    public DexcomClarityReader(Stream file)
    {
        _file = file;
        _lines = new Utf8LineReader(file, format: CgmFormat.DexcomClarity);
        try
        {
            ReadOnlySpan<byte> header;
            do
            {
                if (!_lines.TryReadLine(out header)) throw Error("the file has no header line");
            } while (header.Trim((byte)' ').IsEmpty);
            _separator = CsvColumns.DetectSeparator(header);
            var columns = CsvColumns.Names(header, _separator);
            _timestamp = Required(columns, CsvColumns.FindPrefix(columns, "Timestamp"), "Timestamp (YYYY-MM-DDThh:mm:ss)");
            _eventType = Required(columns, CsvColumns.Find(columns, "Event Type"), "Event Type");
            _glucose = Required(columns, CsvColumns.FindPrefix(columns, "Glucose Value"), "Glucose Value (mg/dL)");
            _eventSubtype = CsvColumns.Find(columns, "Event Subtype");
            _insulin = CsvColumns.FindPrefix(columns, "Insulin Value");
            _carbs = CsvColumns.FindPrefix(columns, "Carb Value");
            _duration = CsvColumns.FindPrefix(columns, "Duration");
            _mgDlPerUnit = CsvColumns.GlucoseFactor(columns[_glucose]);
            if (_mgDlPerUnit == 0) throw Error($"column \"{columns[_glucose]}\" has no glucose unit StreamHealth knows (mg/dL or mmol/L)");
            _fieldCount = 1 + Math.Max(Math.Max(Math.Max(_timestamp, _eventType), Math.Max(_eventSubtype, _glucose)),
                Math.Max(Math.Max(_insulin, _carbs), _duration));
        }
        catch
        {
            _lines.Dispose();
            throw;
        }
    }

    public override CgmFormat Format => CgmFormat.DexcomClarity;

    public override long Line => _lines.LineNumber;

    private int Required(string[] columns, int index, string name) =>
        index >= 0 ? index : throw Error($"the header has no \"{name}\" column (columns: {string.Join(", ", columns)})");

    [SkipLocalsInit]
    public override bool TryRead(out CgmRow row)
    {
        Span<Range> fields = stackalloc Range[_fieldCount];
        while (_lines.TryReadRecord(_separator, out var line))
        {
            if (line.IsEmpty) continue;
            var count = CsvLine.Split(line, _separator, fields);
            // Patient, device and alert-setting rows carry no time and are skipped by their type; a reading
            // or event without a time is an error, not a row to drop quietly.
            var kind = Classify(CgmFields.Get(line, fields, count, _eventType));
            if (kind == Kind.Skip)
            {
                Skip(SkipReason(CgmFields.Get(line, fields, count, _eventType)));
                continue;
            }
            var timeMs = Time(CgmFields.Get(line, fields, count, _timestamp));
            var subtype = CgmFields.Get(line, fields, count, _eventSubtype);
            switch (kind)
            {
                case Kind.Egv:
                {
                    var value = CgmFields.Get(line, fields, count, _glucose);
                    row = OutOfRange(value, out var mgDl)
                        ? CgmRow.Glucose(timeMs, mgDl, CgmQuality.OutOfRange)
                        : CgmRow.Glucose(timeMs, Glucose(value, "glucose value"));
                    return true;
                }
                case Kind.Calibration:
                {
                    var mgDl = Glucose(CgmFields.Get(line, fields, count, _glucose), "calibration glucose value");
                    row = new CgmRow(0, timeMs, CgmQuality.Good, CgmEventType.Calibration, timeMs, mgDl,
                        double.NaN, double.NaN, double.NaN, double.NaN);
                    return true;
                }
                case Kind.Carbs:
                    row = CgmRow.Event(CgmEventType.Carbs, timeMs, carbsG: Amount(CgmFields.Get(line, fields, count, _carbs), "carb value"));
                    return true;
                case Kind.Insulin:
                {
                    var units = Amount(CgmFields.Get(line, fields, count, _insulin), "insulin value");
                    row = Ascii.EqualsIgnoreCase(subtype, "Long-Acting"u8)
                        ? CgmRow.Event(CgmEventType.InsulinSlow, timeMs, insulinSlowU: units)
                        : CgmRow.Event(CgmEventType.InsulinFast, timeMs, insulinFastU: units);
                    return true;
                }
                case Kind.Exercise:
                {
                    var duration = CgmFields.Get(line, fields, count, _duration);
                    if (!CgmFields.TryDurationSeconds(duration, out var seconds))
                        throw Error($"duration {CsvLine.Show(duration)} is not hh:mm:ss");
                    var type = Ascii.EqualsIgnoreCase(subtype, "Light"u8) ? CgmEventType.ExerciseLight
                        : Ascii.EqualsIgnoreCase(subtype, "Heavy"u8) ? CgmEventType.ExerciseHeavy
                        : CgmEventType.ExerciseMedium;
                    row = CgmRow.Event(type, timeMs, exerciseSeconds: seconds);
                    return true;
                }
                default:
                    row = CgmRow.Event(HealthType(subtype), timeMs);
                    return true;
            }
        }
        row = default;
        return false;
    }

    private enum Kind : byte { Skip, Egv, Calibration, Carbs, Insulin, Exercise, Health }

    private static Kind Classify(ReadOnlySpan<byte> eventType)
    {
        if (eventType.SequenceEqual("EGV"u8)) return Kind.Egv;
        if (Ascii.EqualsIgnoreCase(eventType, "Insulin"u8)) return Kind.Insulin;
        if (Ascii.EqualsIgnoreCase(eventType, "Carbs"u8)) return Kind.Carbs;
        if (Ascii.EqualsIgnoreCase(eventType, "EGV"u8)) return Kind.Egv;
        if (Ascii.EqualsIgnoreCase(eventType, "Calibration"u8)) return Kind.Calibration;
        if (Ascii.EqualsIgnoreCase(eventType, "Exercise"u8) || Ascii.EqualsIgnoreCase(eventType, "Activity"u8)) return Kind.Exercise;
        if (Ascii.EqualsIgnoreCase(eventType, "Health"u8)) return Kind.Health;
        // Alert, FirstName, LastName, Device, Sensor; and event types newer than this reader, which are
        // skipped rather than failing the file: Clarity has added kinds before (G7's Activity).
        return Kind.Skip;
    }

    /// <summary>Clarity's own non-data rows are expected; anything else (another export appended, a newer event type)
    /// is worth telling the client about separately.</summary>
    private static string SkipReason(ReadOnlySpan<byte> eventType) =>
        Ascii.EqualsIgnoreCase(eventType, "Alert"u8) ? "alert rows (not carried by the unified format)"
        : Ascii.EqualsIgnoreCase(eventType, "FirstName"u8) || Ascii.EqualsIgnoreCase(eventType, "LastName"u8)
          || Ascii.EqualsIgnoreCase(eventType, "Device"u8) || Ascii.EqualsIgnoreCase(eventType, "Sensor"u8)
            ? "patient and device rows (no time)"
            : "unknown event type (another format, or a newer export)";

    private static CgmEventType HealthType(ReadOnlySpan<byte> subtype) =>
        Ascii.EqualsIgnoreCase(subtype, "Illness"u8) ? CgmEventType.HealthIllness
        : Ascii.EqualsIgnoreCase(subtype, "Stress"u8) ? CgmEventType.HealthStress
        : Ascii.EqualsIgnoreCase(subtype, "Low Symptoms"u8) ? CgmEventType.HealthLowSymptoms
        : Ascii.EqualsIgnoreCase(subtype, "Cycle"u8) ? CgmEventType.HealthCycle
        : Ascii.EqualsIgnoreCase(subtype, "Alcohol"u8) ? CgmEventType.HealthAlcohol
        : CgmEventType.Other;

    /// <summary>Clarity writes "High" and "Low" for readings outside the sensor's 40–400 mg/dL range.</summary>
    private static bool OutOfRange(ReadOnlySpan<byte> value, out double mgDl)
    {
        mgDl = Ascii.EqualsIgnoreCase(value, "Low"u8) ? GlucoseUnits.DexcomLowMgDl
            : Ascii.EqualsIgnoreCase(value, "High"u8) ? GlucoseUnits.DexcomHighMgDl
            : double.NaN;
        return !double.IsNaN(mgDl);
    }

    private long Time(ReadOnlySpan<byte> timestamp)
    {
        if (CgmTime.TryParseIso(timestamp, out var ms)) return ms;
        // Older exports write the hour without a leading zero ("2025-05-01 0:01:47").
        if (CgmTime.TryParseParts(timestamp, out var parts) && parts.YearFirst && CgmTime.TryCompose(parts, CgmDateOrder.Unknown, out ms))
            return ms;
        throw Error(CgmFields.NotATimestamp(timestamp));
    }

    private double Glucose(ReadOnlySpan<byte> value, string what)
    {
        var mgDl = Amount(value, what);
        if (double.IsNaN(mgDl)) throw Error($"{what} is empty");
        return _mgDlPerUnit == 1 ? mgDl : GlucoseUnits.MmolLToMgDl(mgDl);
    }

    /// <summary>Decimal commas are accepted everywhere: in a comma-separated file they can only appear in a
    /// quoted field ("5,6"), so there is no ambiguity.</summary>
    private double Amount(ReadOnlySpan<byte> value, string what)
    {
        if (!CgmFields.TryAmount(value, decimalComma: true, out var amount)) throw Error(CgmFields.NotAnAmount(what, value));
        if (double.IsNaN(amount)) throw Error($"{what} is empty");
        return amount;
    }

    public override void Dispose()
    {
        _lines.Dispose();
        _file.Dispose();
        base.Dispose();
    }
}
