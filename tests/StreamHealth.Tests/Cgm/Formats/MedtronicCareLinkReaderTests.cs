using System.Text;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using static StreamHealth.Tests.Cgm.Formats.CgmReaderFuzz;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>The CareLink / Guardian Connect reader on the real export (expectations counted from the raw
/// file with plain string splitting) and on small inline variants: other locales, units, sections.</summary>
public sealed class MedtronicCareLinkReaderTests
{
    private static readonly MedtronicCareLinkFormat Format = new();
    private static readonly string SamplePath = Sample("medtronics_test_livia.csv");
    private const double MmolL = GlucoseUnits.MgDlPerMmolL;

    /// <summary>What the export holds, counted with string.Split: rows identical to the previous one in
    /// the same section (everything but Index) count once.</summary>
    private sealed record RawCounts(int SensorGlucose, int BgReadings, int InsulinMarkers, double InsulinUnits, int MealMarkers,
        double MealGrams, int DroppedDuplicates, int Sections);

    private static RawCounts CountRaw()
    {
        int sensor = 0, bg = 0, insulin = 0, meals = 0, duplicates = 0, sections = 0;
        double units = 0, grams = 0;
        string[]? header = null;
        string? previous = null;
        foreach (var line in File.ReadLines(SamplePath))
        {
            if (line.StartsWith("-------", StringComparison.Ordinal)) { header = null; continue; }
            if (line.StartsWith("Index;Date;Time;", StringComparison.Ordinal)) { header = line.Split(';'); previous = null; sections++; continue; }
            if (header is null || line.Length == 0) continue;
            var content = line[(line.IndexOf(';') + 1)..];
            if (content == previous) { duplicates++; continue; }
            previous = content;
            var cells = line.Split(';');
            string Cell(string name) => cells[Array.IndexOf(header, name)];
            if (Cell("Sensor Glucose (mg/dL)") != "") sensor++;
            if (Cell("BG Reading (mg/dL)") != "") bg++;
            var marker = Cell("Event Marker");
            if (marker.StartsWith("Insulin: ", StringComparison.Ordinal))
            {
                insulin++;
                units += double.Parse(marker["Insulin: ".Length..].Replace(',', '.'), System.Globalization.CultureInfo.InvariantCulture);
            }
            if (marker.StartsWith("Meal: ", StringComparison.Ordinal))
            {
                meals++;
                grams += double.Parse(marker["Meal: ".Length..].Replace("grams", "").Replace(',', '.'), System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        return new RawCounts(sensor, bg, insulin, units, meals, grams, duplicates, sections);
    }

    /// <summary>Issue 11, defect 8: the rows a CareLink export holds that the unified format has no place for (alarms,
    /// basal, notes) are reported by reason with the first line, not dropped silently.</summary>
    [Fact]
    public void Rows_not_carried_are_reported_by_reason_with_the_first_line()
    {
        using var reader = Format.Open(File.OpenRead(SamplePath));
        reader.ReadAll();
        var skipped = Assert.Single(reader.Skipped, s => s.Reason.StartsWith("rows without glucose, bolus or carbohydrate", StringComparison.Ordinal));
        Assert.True(skipped.Rows > 0 && skipped.FirstLine > 0, skipped.ToString());
    }

    [Fact]
    public void The_sample_export_reads_every_reading_fingerstick_and_marker_once()
    {
        var raw = CountRaw();
        using var reader = Format.Open(File.OpenRead(SamplePath));
        var rows = reader.ReadAll();

        Assert.Equal(2, raw.Sections);
        Assert.True(raw.SensorGlucose > 20_000);
        Assert.True(raw.DroppedDuplicates > 0, "the sample exports some markers twice; the dedup case must be exercised");
        Assert.Equal(raw.SensorGlucose, rows.Count(r => r.EventType == CgmEventType.EgvRead));
        Assert.Equal(raw.BgReadings, rows.Count(r => r.EventType == CgmEventType.Calibration));
        Assert.Equal(raw.InsulinMarkers, rows.Count(r => r.EventType == CgmEventType.InsulinFast));
        Assert.Equal(raw.InsulinUnits, rows.Where(r => r.EventType == CgmEventType.InsulinFast).Sum(r => r.InsulinFastU), 6);
        Assert.Equal(raw.MealMarkers, rows.Count(r => r.EventType == CgmEventType.Carbs));
        Assert.Equal(raw.MealGrams, rows.Where(r => r.EventType == CgmEventType.Carbs).Sum(r => r.CarbsG), 6);
        Assert.Equal(raw.SensorGlucose + raw.BgReadings + raw.InsulinMarkers + raw.MealMarkers, rows.Count);
        Assert.All(rows, r => Assert.Equal(r.TimeMs, r.OriginalTimeMs));
    }

    [Fact]
    public void The_sample_export_starts_and_ends_where_the_file_does_with_local_times()
    {
        using var reader = Format.Open(File.OpenRead(SamplePath));
        var rows = reader.ReadAll();

        // Lines 8-9 are the same "Insulin: 27,00" exported twice: one row; then line 10 "Insulin: 3,00".
        Assert.Equal((CgmEventType.InsulinFast, "2021-07-25T09:35:28.000", 27.0), (rows[0].EventType, Time(rows[0].TimeMs), rows[0].InsulinFastU));
        Assert.Equal((CgmEventType.InsulinFast, "2021-07-25T08:54:04.000", 3.0), (rows[1].EventType, Time(rows[1].TimeMs), rows[1].InsulinFastU));
        var firstCalibration = rows.First(r => r.EventType == CgmEventType.Calibration);
        Assert.Equal(("2021-07-25T00:52:53.000", 70.0), (Time(firstCalibration.TimeMs), firstCalibration.GlucoseMgDl));
        var firstMeal = rows.First(r => r.EventType == CgmEventType.Carbs);
        Assert.Equal(("2021-07-24T13:20:41.000", 60.0), (Time(firstMeal.TimeMs), firstMeal.CarbsG));

        var egv = rows.Where(r => r.EventType == CgmEventType.EgvRead).ToList();
        Assert.Equal(("2021-07-25T00:32:50.000", 55.0), (Time(egv[0].TimeMs), egv[0].GlucoseMgDl));
        Assert.Equal(("2021-04-30T14:25:15.000", 61.0), (Time(egv[^1].TimeMs), egv[^1].GlucoseMgDl));
        Assert.Equal(egv[^1], rows[^1]);
        // CareLink writes newest first; the sensor section is strictly descending, so every date and
        // time parsed into the right order.
        for (var i = 1; i < egv.Count; i++) Assert.True(egv[i].TimeMs < egv[i - 1].TimeMs, $"EGV {i} at {Time(egv[i].TimeMs)}");
        Assert.All(egv, r => Assert.InRange(r.GlucoseMgDl, 40, 400));
    }

    private const string Preamble =
        "Last Name;First Name;Patient ID;System ID;Start Date;End Date;Device;MiniMed 640G\n" +
        "\"Doe\";\"Jane\";\"\";\"\";\"01.07.2021 00:00:00\";\"25.07.2021 23:59:59\";\"Serial Number\";NG1234\n" +
        "\n";

    [Fact]
    public void Each_section_is_read_with_its_own_header_in_mmol_per_litre_with_day_first_dotted_dates()
    {
        var rows = Read(Format, Preamble +
            "-------;MiniMed 640G;Pump;NG1234;-------\n" +
            "Index;Date;Time;New Device Time;BG Reading (mmol/L);Bolus Volume Delivered (U);BWZ Carb Input (grams);Alarm\n" +
            "1,00000;25.07.2021;12:05:00;;;4,50;;\n" +
            "2,00000;25.07.2021;12:04:00;;;;60;\n" +
            "3,00000;25.07.2021;11:00:00;;6,2;;;\n" +
            "4,00000;25.07.2021;10:00:00;;;;;SENSOR ERROR\n" +
            "5,00000;25.07.2021;09:00:00;;;0,00;0;\n" +
            "\n" +
            "-------;MiniMed 640G;Sensor;GT1234;-------\n" +
            "Index;Date;Time;Sensor Glucose (mmol/L);ISIG Value\n" +
            "6,00000;25.07.2021;12:05:00;5,5;30,10\n" +
            "7,00000;24.07.2021;23:55:00;-------;\n" +
            "8,00000;24.07.2021;23:50:00;10,0;\n");

        Assert.Collection(rows,
            r => Assert.Equal((CgmEventType.InsulinFast, "2021-07-25T12:05:00.000", 4.5), (r.EventType, Time(r.TimeMs), r.InsulinFastU)),
            r => Assert.Equal((CgmEventType.Carbs, "2021-07-25T12:04:00.000", 60.0), (r.EventType, Time(r.TimeMs), r.CarbsG)),
            r => Assert.Equal((CgmEventType.Calibration, "2021-07-25T11:00:00.000", 6.2 * MmolL), (r.EventType, Time(r.TimeMs), r.GlucoseMgDl)),
            r => Assert.Equal((CgmEventType.EgvRead, "2021-07-25T12:05:00.000", 5.5 * MmolL), (r.EventType, Time(r.TimeMs), r.GlucoseMgDl)),
            r => Assert.Equal((CgmEventType.EgvRead, "2021-07-24T23:50:00.000", 10.0 * MmolL), (r.EventType, Time(r.TimeMs), r.GlucoseMgDl)));
    }

    [Fact]
    public void Guardian_markers_read_decimal_commas_and_one_row_can_hold_several_values()
    {
        var rows = Read(Format, Preamble +
            "-------;Guardian Connect;Pump;X;-------\n" +
            "Index;Date;Time;Sensor Glucose (mg/dL);BG Reading (mg/dL);Event Marker\n" +
            "0,0;2021/07/25;09:35:28;;;Insulin: 2,50\n" +
            "1,00000;2021/07/25;09:35:28;;;Insulin: 2,50\n" +      // exported twice: dropped
            "2,00000;2021/07/25;09:35:28;;;Insulin: 2,50 \n" +     // differs (a space): kept
            "3,00000;2021/07/25;09:00:00;;;Meal: 12,5 grams\n" +
            "4,00000;2021/07/25;08:00:00;;;Other\n" +
            "5,00000;2021/07/25;07:00:00;120;118;Meal: 30,00grams\n");

        Assert.Collection(rows,
            r => Assert.Equal((CgmEventType.InsulinFast, 2.5), (r.EventType, r.InsulinFastU)),
            r => Assert.Equal((CgmEventType.InsulinFast, 2.5), (r.EventType, r.InsulinFastU)),
            r => Assert.Equal((CgmEventType.Carbs, 12.5), (r.EventType, r.CarbsG)),
            r => Assert.Equal((CgmEventType.EgvRead, 120.0, "2021-07-25T07:00:00.000"), (r.EventType, r.GlucoseMgDl, Time(r.TimeMs))),
            r => Assert.Equal((CgmEventType.Calibration, 118.0, "2021-07-25T07:00:00.000"), (r.EventType, r.GlucoseMgDl, Time(r.TimeMs))),
            r => Assert.Equal((CgmEventType.Carbs, 30.0, "2021-07-25T07:00:00.000"), (r.EventType, r.CarbsG, Time(r.TimeMs))));
    }

    [Fact]
    public void Comma_separated_us_exports_use_decimal_points_and_month_first_dates_with_am_pm()
    {
        var rows = Read(Format,
            "Last Name,First Name,Patient ID\n" +
            "Doe,Jane,\n" +
            "-------,MiniMed 770G,Pump,NG1,-------\n" +
            "Index,Date,Time,New Device Time,Bolus Volume Delivered (U),Sensor Glucose (mg/dL)\n" +
            "1,7/25/2021,9:35:28 PM,,2.35,\n" +
            "2,7/25/2021,12:05:00 AM,,,101\n" +
            "3,07/03/21,12:30:00 PM,,,99\n");

        Assert.Collection(rows,
            r => Assert.Equal((CgmEventType.InsulinFast, "2021-07-25T21:35:28.000", 2.35), (r.EventType, Time(r.TimeMs), r.InsulinFastU)),
            r => Assert.Equal(("2021-07-25T00:05:00.000", 101.0), (Time(r.TimeMs), r.GlucoseMgDl)),
            r => Assert.Equal(("2021-07-03T12:30:00.000", 99.0), (Time(r.TimeMs), r.GlucoseMgDl)));
    }

    private const string SensorHeader = "-------;Guardian Connect;Sensor;X;-------\nIndex;Date;Time;Sensor Glucose (mg/dL)\n";

    private static string SensorRows(params string[] dates) => Preamble + SensorSection(dates);

    private static string SensorSection(params string[] dates) =>
        SensorHeader + string.Concat(dates.Select((d, i) => $"{i};{d};12:00:00;{100 + i}\n"));

    [Fact]
    public void Ambiguous_slash_dates_are_held_until_a_day_above_twelve_settles_the_order()
    {
        var rows = Read(Format, SensorRows("02/01/21", "01/01/21", "31/12/20"));
        Assert.Equal(["2021-01-02T12:00:00.000", "2021-01-01T12:00:00.000", "2020-12-31T12:00:00.000"],
            rows.Select(r => Time(r.TimeMs)));
        Assert.Equal([100.0, 101.0, 102.0], rows.Select(r => r.GlucoseMgDl));
    }

    [Fact]
    public void Without_a_settling_date_the_part_that_changes_is_the_day()
    {
        Assert.Equal(["2021-03-04T12:00:00.000", "2021-03-03T12:00:00.000"],
            Read(Format, SensorRows("03/04/21", "03/03/21")).Select(r => Time(r.TimeMs)));
        Assert.Equal(["2021-03-04T12:00:00.000", "2021-03-03T12:00:00.000"],
            Read(Format, SensorRows("04/03/2021", "03/03/2021")).Select(r => Time(r.TimeMs)));

        var e = ReadFails(Format, SensorRows("03/04/21", "03/04/21"));
        Assert.Equal(6, e.Line);
        Assert.Contains("day/month or month/day", e.Message);
    }

    [Fact]
    public void Many_ambiguous_rows_are_released_at_the_bound_not_held_forever()
    {
        var text = new StringBuilder(Preamble + SensorHeader);
        for (var i = 0; i < MedtronicCareLinkReader.MaxHeldRows + 10; i++)
            text.Append(i).Append(';').Append(i < 5000 ? "05/01/21" : "04/01/21").Append(";12:00:00;").Append(100 + i % 100).Append('\n');
        using var reader = Format.Open(new MemoryStream(Encoding.UTF8.GetBytes(text.ToString())));
        Assert.True(reader.TryRead(out var first));
        Assert.Equal("2021-01-05T12:00:00.000", Time(first.TimeMs));
        Assert.InRange(reader.Line, MedtronicCareLinkReader.MaxHeldRows, MedtronicCareLinkReader.MaxHeldRows + 8);
    }

    [Theory]
    [InlineData("5;2021/07/25;00:30:00;12x", 7, "Sensor Glucose (mg/dL) \"12x\" is not a number")]
    [InlineData("5;2021/07/25;00:30:00;-3", 7, "Sensor Glucose (mg/dL) \"-3\" is out of range")]
    [InlineData("5;2021/13/25;00:30:00;100", 7, "Date \"2021/13/25\" is not a valid date")]
    [InlineData("5;25 July;00:30:00;100", 7, "Date \"25 July\" is not a date")]
    [InlineData("5;2021/07/25;24:30:00;100", 7, "Time \"24:30:00\" is not a time of day")]
    [InlineData("5;2021/07/25;;100", 7, "the Time is empty")]
    [InlineData("5;2021/07/25;00:30:00;100;7", 7, "5 fields, but the section header has 4")]
    public void A_bad_row_names_its_line_and_problem(string row, int line, string problem)
    {
        var e = ReadFails(Format, Preamble + SensorHeader + "4;2021/07/25;00:35:00;101\n" + row + "\n");
        Assert.Equal(CgmFormat.MedtronicCareLink, e.Format);
        Assert.Equal(line, e.Line);
        Assert.Equal(problem, e.Problem);
        Assert.StartsWith($"medtronic_carelink line {line}: ", e.Message);
    }

    [Fact]
    public void A_marker_with_no_amount_and_a_file_with_no_section_are_errors()
    {
        var marker = ReadFails(Format, Preamble + "Index;Date;Time;Event Marker\n1;2021/07/25;09:00:00;Insulin: lots\n");
        Assert.Equal((5L, "Event Marker \"Insulin: lots\" has no usable amount"), (marker.Line, marker.Problem));

        var none = ReadFails(Format, Preamble + "just;some;text\n");
        Assert.Contains("no section header", none.Problem);
    }

    [Fact]
    public void Detection_finds_the_export_by_content_and_through_the_registry_without_a_file_name()
    {
        var bytes = File.ReadAllBytes(SamplePath);
        Assert.True(Format.Matches(bytes.AsSpan(0, CgmFormats.HeadBytes)));
        Assert.False(Format.Matches("Index;Timestamp;Glucose\n1;2021-07-25 00:00;100\n"u8));
        Assert.False(Format.Matches("\"Index\",\"Date\"\n"u8));

        using var reader = CgmFormats.Open(new TrickleStream(bytes, 4096));
        Assert.Equal(CgmFormat.MedtronicCareLink, reader.Format);
        Assert.Equal(Read(Format, bytes).Count, reader.ReadAll().Count);
    }

    [Fact]
    public void Truncated_and_byte_flipped_exports_only_ever_raise_format_errors()
    {
        // The preamble, the start of the pump section (markers, alarms, fingersticks, the duplicate) and
        // of the sensor section: every kind of line in ~25 kB.
        var lines = File.ReadAllLines(SamplePath);
        var sensorStart = Array.FindIndex(lines, l => l.StartsWith("-------;Guardian Connect;Sensor", StringComparison.Ordinal));
        var slice = string.Join("\r\n", lines.Take(120).Concat(lines.Skip(sensorStart - 1).Take(150)));
        var sample = Encoding.UTF8.GetBytes(slice + "\r\n" + SensorSection("02/01/21", "01/01/21", "31/12/20"));

        var rejected = AssertOnlyFormatErrors(Format, sample, seed: 20210725, cuts: 200, flips: 2500);
        Assert.InRange(rejected, 500, 2700);                // ~40%: the drill reaches the error paths
        AssertOnlyFormatErrors(Format, File.ReadAllBytes(SamplePath), seed: 7, cuts: 4, flips: 0);
    }
}
