using System.Text;

namespace StreamHealth.Cgm.Formats;

/// <summary>Medtronic CareLink exports (Guardian Connect app, MiniMed pumps). Recognised by a section
/// header line that starts <c>Index;Date;Time</c> (or with commas, as US exports are written).</summary>
public sealed class MedtronicCareLinkFormat : ICgmFormatReader
{
    public CgmFormat Format => CgmFormat.MedtronicCareLink;

    public bool Matches(ReadOnlySpan<byte> head)
    {
        if (head.StartsWith("\uFEFF"u8)) head = head[3..];
        while (!head.IsEmpty)
        {
            var newline = head.IndexOf((byte)'\n');
            var line = newline < 0 ? head : head[..newline];
            if (!line.IsEmpty && line[^1] == (byte)'\r') line = line[..^1];
            if (MedtronicCareLinkReader.IsSectionHeader(line, out _)) return true;
            if (newline < 0) break;
            head = head[(newline + 1)..];
        }
        return false;
    }

    public CgmRowReader Open(Stream file) => new MedtronicCareLinkReader(file);
}

/// <summary>Reads a CareLink export section by section. The file opens with patient lines, then any
/// number of sections, each a <c>-------;Guardian Connect;Sensor;…</c> line and its own header
/// (<c>Index;Date;Time;…</c>); columns are found by name in each section's header, so pump-event and
/// sensor sections with different layouts both read. Semicolon files use decimal commas ("27,00").
/// Rows come out in file order (CareLink writes newest first).
/// <para>Mapping: Sensor Glucose → EGV_READ; BG Reading and Sensor Calibration BG (fingersticks) →
/// CALIBRAT; Bolus Volume Delivered → INS_FAST; BWZ Carb Input (grams) → CARBS_IN; the Guardian Connect
/// app's Event Marker "Insulin: N" → INS_FAST and "Meal: N grams" → CARBS_IN. The insulin marker does not
/// say which insulin: a once-daily long-acting dose logged this way reads as INS_FAST too, because
/// guessing the type from the dose or the hour would mislabel silently. mmol/L columns are converted
/// to mg/dL (BWZ Carb Input in exchanges is not read: an exchange is 10 to 15 g by country). Alarms, basal
/// rates, other markers and rows without any of these are skipped. A row identical to the one before it
/// in everything but Index is dropped: the app exports some markers twice at the same second, and
/// keeping both would double the dose.</para>
/// <para>Dates: yyyy/MM/dd, yyyy-MM-dd, dd.MM.yyyy (dots are day-first in every locale that uses them),
/// dd-MM-yyyy, and slash dates with the year last, whose day/month order is settled per file by the first
/// date with a part above 12; rows are held back until then (bounded by <see cref="MaxHeldRows"/>, after
/// which, or at the end, the part that changes between dates is taken as the day). Times H:mm[:ss], with
/// an optional AM/PM.</para></summary>
internal sealed class MedtronicCareLinkReader : CgmRowReader
{
    /// <summary>Rows held back while slash dates are ambiguous: ~35 days of 5-minute readings, far more than
    /// the 12 days after which a date part above 12 must have appeared.</summary>
    internal const int MaxHeldRows = 10_000;

    private const int MaxColumns = 256;
    private const double MaxGlucoseMgDl = 2000;
    private const double MaxInsulinU = 500;
    private const double MaxCarbsG = 2000;

    private readonly Stream _file;
    private readonly Utf8LineReader _lines;
    private readonly Queue<CgmRow> _ready = new();
    private readonly Queue<HeldRow> _held = new();
    private Section? _section;
    private bool _sawHeader;
    private byte[] _previous = new byte[512];
    private int _previousLength = -1;

    private SlashOrder _slashOrder;
    private int _ambiguousFirst = -1, _ambiguousSecond = -1;
    private bool _firstVaries, _secondVaries;
    private long _firstAmbiguousLine;

    public MedtronicCareLinkReader(Stream file)
    {
        _file = file;
        _lines = new Utf8LineReader(file);
    }

    public override CgmFormat Format => CgmFormat.MedtronicCareLink;

    public override long Line => _lines.LineNumber;

    public override bool TryRead(out CgmRow row)
    {
        while (true)
        {
            if (_ready.TryDequeue(out row)) return true;
            if (_lines.TryReadLine(out var line))
            {
                ReadLine(line);
                continue;
            }
            if (_held.Count > 0)
            {
                ResolveSlashOrderByVariation();
                continue;
            }
            if (!_sawHeader) throw Error("no section header (a line starting Index;Date;Time) found");
            return false;
        }
    }

    public override void Dispose()
    {
        _lines.Dispose();
        _file.Dispose();
        base.Dispose();
    }

    internal static bool IsSectionHeader(ReadOnlySpan<byte> line, out byte separator)
    {
        Span<Range> fields = stackalloc Range[3];
        foreach (var candidate in ";,\t"u8)
        {
            if (CsvLine.Split(line, candidate, fields) >= 3
                && Ascii.EqualsIgnoreCase(line[fields[0]].Trim((byte)' '), "Index"u8)
                && Ascii.EqualsIgnoreCase(line[fields[1]].Trim((byte)' '), "Date"u8)
                && Ascii.EqualsIgnoreCase(line[fields[2]].Trim((byte)' '), "Time"u8))
            {
                separator = candidate;
                return true;
            }
        }
        separator = 0;
        return false;
    }

    private void ReadLine(ReadOnlySpan<byte> line)
    {
        if (line.Trim((byte)' ').IsEmpty) return;
        if (line.StartsWith("-------"u8))
        {
            _section = null;
            return;
        }
        if (IsSectionHeader(line, out var separator))
        {
            _section = Section.Parse(line, separator, this);
            _sawHeader = true;
            _previousLength = -1;
            return;
        }
        if (_section is null) return;                     // patient lines and notes before the first section
        ReadRow(line, _section);
    }

    private void ReadRow(ReadOnlySpan<byte> line, Section s)
    {
        Span<Range> fields = stackalloc Range[MaxColumns];
        var count = CsvLine.Split(line, s.Separator, fields);
        if (count > s.Names.Length)
            throw Error($"{count} fields, but the section header has {s.Names.Length}");
        fields = fields[..count];

        // Everything after Index, compared with the row before: identical exported twice.
        var content = count > 1 ? line[fields[1].Start.Value..] : line;
        if (_previousLength >= 0 && content.SequenceEqual(_previous.AsSpan(0, _previousLength)))
        {
            Skip("rows exported twice (identical to the row before)");
            return;
        }
        if (content.Length > _previous.Length) _previous = new byte[Math.Max(content.Length, _previous.Length * 2)];
        content.CopyTo(_previous);
        _previousLength = content.Length;

        var sensor = Value(line, fields, s.SensorGlucose, s, MaxGlucoseMgDl, positive: true);
        var meter = Value(line, fields, s.BgReading, s, MaxGlucoseMgDl, positive: true);
        var calibration = Value(line, fields, s.CalibrationBg, s, MaxGlucoseMgDl, positive: true);
        var bolus = Value(line, fields, s.BolusDelivered, s, MaxInsulinU, positive: false);
        var carbs = Value(line, fields, s.CarbInput, s, MaxCarbsG, positive: false);
        double markerInsulin = double.NaN, markerCarbs = double.NaN;
        if (s.EventMarker.Index >= 0) ReadMarker(Field(line, fields, s.EventMarker.Index), out markerInsulin, out markerCarbs);

        var hasCalibration = !double.IsNaN(meter) || !double.IsNaN(calibration);
        if (double.IsNaN(sensor) && !hasCalibration && !(bolus > 0) && !(carbs > 0) && !(markerInsulin > 0) && !(markerCarbs > 0))
        {
            Skip("rows without glucose, bolus or carbohydrate (alarms, basal, notes)");   // nothing the unified format holds
            return;
        }

        var date = ReadDate(Field(line, fields, s.Date), out var year, out var first, out var second);
        var timeOfDayMs = ReadTimeOfDay(Field(line, fields, s.Time));

        // Built with the time of day only; the date is added once its day/month order is known.
        Span<CgmRow> rows = stackalloc CgmRow[8];
        var n = 0;
        if (!double.IsNaN(sensor)) rows[n++] = CgmRow.Glucose(timeOfDayMs, sensor);
        if (!double.IsNaN(meter)) rows[n++] = Calibration(timeOfDayMs, meter);
        if (!double.IsNaN(calibration) && calibration != meter) rows[n++] = Calibration(timeOfDayMs, calibration);
        if (carbs > 0) rows[n++] = CgmRow.Event(CgmEventType.Carbs, timeOfDayMs, carbsG: carbs);
        if (markerCarbs > 0) rows[n++] = CgmRow.Event(CgmEventType.Carbs, timeOfDayMs, carbsG: markerCarbs);
        if (bolus > 0) rows[n++] = CgmRow.Event(CgmEventType.InsulinFast, timeOfDayMs, insulinFastU: bolus);
        if (markerInsulin > 0) rows[n++] = CgmRow.Event(CgmEventType.InsulinFast, timeOfDayMs, insulinFastU: markerInsulin);

        if (date == DateKind.Ambiguous)
        {
            NoteAmbiguous(first, second);
            foreach (var r in rows[..n]) _held.Enqueue(new HeldRow(r, false, year, first, second));
            if (_held.Count >= MaxHeldRows) ResolveSlashOrderByVariation();
            return;
        }
        var dayMs = CgmTime.DaysFromCivil(year, first, second) * CgmTime.MsPerDay;
        if (_held.Count > 0)
        {
            foreach (var r in rows[..n]) _held.Enqueue(new HeldRow(At(r, dayMs + r.TimeMs), true, 0, 0, 0));
            if (_slashOrder != SlashOrder.Unknown) ReleaseHeld();
            else if (_held.Count >= MaxHeldRows) ResolveSlashOrderByVariation();
            return;
        }
        foreach (var r in rows[..n]) _ready.Enqueue(At(r, dayMs + r.TimeMs));
    }

    private static CgmRow Calibration(long timeMs, double mgDl) =>
        new(0, timeMs, CgmQuality.Good, CgmEventType.Calibration, timeMs, mgDl, double.NaN, double.NaN, double.NaN, double.NaN);

    private static CgmRow At(CgmRow row, long timeMs) => row with { TimeMs = timeMs, OriginalTimeMs = timeMs };

    private static ReadOnlySpan<byte> Field(ReadOnlySpan<byte> line, ReadOnlySpan<Range> fields, int index) =>
        index >= 0 && index < fields.Length ? line[fields[index]].Trim((byte)' ') : default;

    /// <summary>The column's value in mg/dL (or U, g), NaN when empty or CareLink's "-------" placeholder.</summary>
    private double Value(ReadOnlySpan<byte> line, ReadOnlySpan<Range> fields, Column column, Section s, double max, bool positive)
    {
        if (column.Index < 0) return double.NaN;
        var field = Field(line, fields, column.Index);
        if (field.IsEmpty || field.IndexOfAnyExcept((byte)'-') < 0) return double.NaN;
        if (!CsvLine.TryParseDouble(field, out var value, s.DecimalComma) || !double.IsFinite(value))
            throw Error($"{s.Names[column.Index]} {CsvLine.Show(field)} is not a number");
        value *= column.Scale;
        if (value < 0 || (positive && value == 0) || value > max)
            throw Error($"{s.Names[column.Index]} {CsvLine.Show(field)} is out of range");
        return value;
    }

    /// <summary>Guardian Connect markers: "Insulin: 27,00", "Meal: 45,00grams". Other markers ("Other",
    /// exercise, notes) carry nothing the unified format can place and are ignored.</summary>
    private void ReadMarker(ReadOnlySpan<byte> marker, out double insulinU, out double carbsG)
    {
        insulinU = carbsG = double.NaN;
        if (marker.StartsWith("Insulin:"u8))
            insulinU = MarkerNumber(marker, marker[8..], ""u8, MaxInsulinU);
        else if (marker.StartsWith("Meal:"u8))
            carbsG = MarkerNumber(marker, marker[5..], "grams"u8, MaxCarbsG);
    }

    private double MarkerNumber(ReadOnlySpan<byte> marker, ReadOnlySpan<byte> rest, ReadOnlySpan<byte> unit, double max)
    {
        rest = rest.Trim((byte)' ');
        if (!unit.IsEmpty && rest.EndsWith(unit)) rest = rest[..^unit.Length].TrimEnd((byte)' ');
        if (!CsvLine.TryParseDouble(rest, out var value, decimalComma: true) || !double.IsFinite(value) || value < 0 || value > max)
            throw Error($"Event Marker {CsvLine.Show(marker)} has no usable amount");
        return value;
    }

    private enum DateKind : byte { Resolved, Ambiguous }

    private enum SlashOrder : byte { Unknown, DayFirst, MonthFirst }

    /// <summary>Resolved: year, month, day. Ambiguous (a slash date with both leading parts ≤ 12 before the
    /// file's order is known): year and the two leading parts as written.</summary>
    private DateKind ReadDate(ReadOnlySpan<byte> s, out int year, out int first, out int second)
    {
        year = first = second = 0;
        if (s.IsEmpty) throw Error("the Date is empty");
        var separator = s.IndexOfAnyExcept("0123456789"u8) is var at and > 0 ? s[at] : (byte)0;
        var text = separator == '.' && s[^1] == '.' ? s[..^1] : s;        // Hungarian "2021.07.25."
        Span<Range> parts = stackalloc Range[4];
        if (separator is not ((byte)'/' or (byte)'.' or (byte)'-') || CsvLine.Split(text, separator, parts) != 3
            || !CgmTime.Digits(text[parts[0]], out var p0) || !CgmTime.Digits(text[parts[1]], out var p1)
            || !CgmTime.Digits(text[parts[2]], out var p2))
            throw Error($"Date {CsvLine.Show(s)} is not a date");
        int month, day;
        var yearFirst = text[parts[0]].Length == 4;
        if (yearFirst)
        {
            (year, month, day) = (p0, p1, p2);
        }
        else
        {
            var yearDigits = text[parts[2]].Length;
            if (yearDigits is not (2 or 4)) throw Error($"Date {CsvLine.Show(s)} is not a date");
            year = yearDigits == 2 ? 2000 + p2 : p2;
            if (separator != '/' || _slashOrder == SlashOrder.DayFirst) (day, month) = (p0, p1);
            else if (_slashOrder == SlashOrder.MonthFirst) (month, day) = (p0, p1);
            else if (p0 > 12 && p1 <= 12) { SettleSlashOrder(SlashOrder.DayFirst); (day, month) = (p0, p1); }
            else if (p1 > 12 && p0 <= 12) { SettleSlashOrder(SlashOrder.MonthFirst); (month, day) = (p0, p1); }
            else if (p0 <= 12 && p1 <= 12 && p0 >= 1 && p1 >= 1 && CgmTime.IsValidDate(year, 1, 1))
            {
                (first, second) = (p0, p1);
                return DateKind.Ambiguous;
            }
            else throw Error($"Date {CsvLine.Show(s)} is not a date");
        }
        if (!CgmTime.IsValidDate(year, month, day))
        {
            var order = !yearFirst && separator == '/' ? (_slashOrder == SlashOrder.MonthFirst ? " (month/day/year, like the file's earlier dates)" : " (day/month/year, like the file's earlier dates)") : "";
            throw Error($"Date {CsvLine.Show(s)} is not a valid date{order}");
        }
        (first, second) = (month, day);
        return DateKind.Resolved;
    }

    private void NoteAmbiguous(int first, int second)
    {
        if (_ambiguousFirst < 0)
        {
            (_ambiguousFirst, _ambiguousSecond) = (first, second);
            _firstAmbiguousLine = Line;
            return;
        }
        _firstVaries |= first != _ambiguousFirst;
        _secondVaries |= second != _ambiguousSecond;
    }

    private void SettleSlashOrder(SlashOrder order)
    {
        _slashOrder = order;
        ReleaseHeld();
    }

    /// <summary>No date has settled the order: across consecutive days the day changes and the month
    /// mostly does not, so the part that changes is the day.</summary>
    private void ResolveSlashOrderByVariation()
    {
        if (_firstVaries == _secondVaries && _ambiguousFirst != _ambiguousSecond)
            throw new CgmFormatException(Format, _firstAmbiguousLine,
                $"dates like {_ambiguousFirst:00}/{_ambiguousSecond:00} could be day/month or month/day, and no date in the file tells which");
        SettleSlashOrder(_firstVaries && !_secondVaries ? SlashOrder.DayFirst : SlashOrder.MonthFirst);
    }

    private void ReleaseHeld()
    {
        while (_held.TryDequeue(out var held))
        {
            if (held.Resolved)
            {
                _ready.Enqueue(held.Row);
                continue;
            }
            var (month, day) = _slashOrder == SlashOrder.DayFirst ? (held.Second, held.First) : (held.First, held.Second);
            _ready.Enqueue(At(held.Row, CgmTime.DaysFromCivil(held.Year, month, day) * CgmTime.MsPerDay + held.Row.TimeMs));
        }
    }

    /// <summary>H:mm, H:mm:ss or H:mm:ss.fff, optionally followed by AM/PM.</summary>
    private long ReadTimeOfDay(ReadOnlySpan<byte> s)
    {
        var text = s;
        var meridiem = 0;
        if (text.Length > 2 && (text[^1] | 0x20) == 'm' && ((text[^2] | 0x20) is 'a' or 'p'))
        {
            meridiem = (text[^2] | 0x20) == 'a' ? 1 : 2;
            text = text[..^2].TrimEnd((byte)' ');
        }
        Span<Range> parts = stackalloc Range[4];
        var count = CsvLine.Split(text, (byte)':', parts);
        int hour = 0, minute = 0, second = 0, milli = 0;
        var ok = count is 2 or 3 && text[parts[0]].Length <= 2 && text[parts[1]].Length == 2
            && CgmTime.Digits(text[parts[0]], out hour) && CgmTime.Digits(text[parts[1]], out minute);
        if (ok && count == 3)
        {
            var sec = text[parts[2]];
            var dot = sec.IndexOf((byte)'.');
            var whole = dot < 0 ? sec : sec[..dot];
            ok = whole.Length == 2 && CgmTime.Digits(whole, out second);
            if (ok && dot >= 0)
            {
                var fraction = sec[(dot + 1)..];
                ok = fraction.Length is >= 1 and <= 3 && CgmTime.Digits(fraction, out milli);
                for (var i = fraction.Length; ok && i < 3; i++) milli *= 10;
            }
        }
        if (ok && meridiem != 0)
        {
            ok = hour is >= 1 and <= 12;
            hour = hour % 12 + (meridiem == 2 ? 12 : 0);
        }
        if (!ok || hour > 23 || minute > 59 || second > 59)
            throw Error(s.IsEmpty ? "the Time is empty" : $"Time {CsvLine.Show(s)} is not a time of day");
        return ((hour * 60L + minute) * 60 + second) * 1000 + milli;
    }

    private readonly record struct HeldRow(CgmRow Row, bool Resolved, int Year, int First, int Second);

    /// <summary>A column of the section and the factor to mg/dL (18.0182 for mmol/L, 1 otherwise).</summary>
    private readonly record struct Column(int Index, double Scale)
    {
        public static Column None => new(-1, 1);
    }

    private sealed class Section
    {
        public required byte Separator { get; init; }
        public required bool DecimalComma { get; init; }
        public required string[] Names { get; init; }
        /// <summary>Date and Time are the second and third columns: that is how a header is recognised.</summary>
        public int Date => 1;
        public int Time => 2;
        public Column SensorGlucose { get; private set; } = Column.None;
        public Column BgReading { get; private set; } = Column.None;
        public Column CalibrationBg { get; private set; } = Column.None;
        public Column BolusDelivered { get; private set; } = Column.None;
        public Column CarbInput { get; private set; } = Column.None;
        public Column EventMarker { get; private set; } = Column.None;

        public static Section Parse(ReadOnlySpan<byte> line, byte separator, MedtronicCareLinkReader reader)
        {
            Span<Range> fields = stackalloc Range[MaxColumns];
            var count = CsvLine.Split(line, separator, fields);
            if (count > MaxColumns) throw reader.Error($"the section header has {count} columns, more than {MaxColumns}");
            var names = new string[count];
            for (var i = 0; i < count; i++) names[i] = Encoding.UTF8.GetString(line[fields[i]].Trim((byte)' '));
            var s = new Section { Separator = separator, DecimalComma = separator != ',', Names = names };
            for (var i = 0; i < count; i++)
            {
                switch (names[i])
                {
                    case "Sensor Glucose (mg/dL)": s.SensorGlucose = new(i, 1); break;
                    case "Sensor Glucose (mmol/L)": s.SensorGlucose = new(i, GlucoseUnits.MgDlPerMmolL); break;
                    case "BG Reading (mg/dL)": s.BgReading = new(i, 1); break;
                    case "BG Reading (mmol/L)": s.BgReading = new(i, GlucoseUnits.MgDlPerMmolL); break;
                    case "Sensor Calibration BG (mg/dL)": s.CalibrationBg = new(i, 1); break;
                    case "Sensor Calibration BG (mmol/L)": s.CalibrationBg = new(i, GlucoseUnits.MgDlPerMmolL); break;
                    case "Bolus Volume Delivered (U)": s.BolusDelivered = new(i, 1); break;
                    case "BWZ Carb Input (grams)": s.CarbInput = new(i, 1); break;
                    case "Event Marker": s.EventMarker = new(i, 1); break;
                }
            }
            return s;
        }
    }
}
