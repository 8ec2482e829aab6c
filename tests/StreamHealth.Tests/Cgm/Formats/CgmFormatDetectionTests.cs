using System.Text;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>Formats are recognised from their content alone (renamed files, forward-only streams), and
/// the layouts the vendors' apps and locales produce read to the same unified rows.</summary>
public sealed class CgmFormatDetectionTests
{
    [Theory]
    [InlineData(CgmSamples.Clarity, CgmFormat.DexcomClarity)]
    [InlineData(CgmSamples.Libre, CgmFormat.LibreView)]
    [InlineData(CgmSamples.Unified, CgmFormat.Unified)]
    [InlineData(CgmSamples.ClarityUnified, CgmFormat.Unified)]
    public void A_sample_is_detected_from_its_content_under_any_name_and_from_a_forward_only_stream(string sample, CgmFormat format)
    {
        var renamed = Path.Combine(Path.GetTempPath(), $"upload-{Guid.NewGuid():N}.bin");
        File.Copy(CgmSamples.PathOf(sample), renamed);
        try
        {
            using (var fromFile = CgmFormats.Open(renamed)) Assert.Equal(format, fromFile.Format);
        }
        finally
        {
            File.Delete(renamed);
        }
        var bytes = CgmSamples.Bytes(sample);
        using var fromStream = CgmFormats.Open(new ForwardOnlyStream(bytes));
        Assert.Equal(format, fromStream.Format);
        // The detection head (16 KiB) is replayed: the forward-only read yields every row.
        Assert.Equal(CgmSamples.ReadInFileOrder(bytes).Rows, fromStream.ReadAll());
    }

    [Fact]
    public void Exports_of_other_kinds_are_not_mistaken_for_these_formats()
    {
        // A research data set with id,time,gl columns is the GlucoBench layout (issue 14: several people, read by
        // `forecast evaluate`, refused where one person's export is expected); plain garbage is nobody's.
        var hall = File.ReadAllBytes(Path.Combine(Path.GetDirectoryName(CgmSamples.PathOf(CgmSamples.Clarity))!, "hall2018_19_subjects.csv"));
        using (var reader = CgmFormats.Open(new MemoryStream(hall))) Assert.Equal(CgmFormat.GlucoBench, reader.Format);
        var unknown = Assert.Throws<UnknownCgmFormatException>(() => CgmFormats.Open(new MemoryStream("hello,world\n1,2\n"u8.ToArray())));
        Assert.Contains("dexcom_clarity", unknown.Tried);
        Assert.Contains("libreview", unknown.Tried);
        Assert.Contains("unified", unknown.Tried);
        Assert.Contains("glucobench_csv", unknown.Tried);
        Assert.StartsWith("unrecognised CGM export: tried ", unknown.Message);
        // id and time without gl is not GlucoBench.
        Assert.Throws<UnknownCgmFormatException>(() => CgmFormats.Open(new MemoryStream("id,time,glucose\n1,2020-01-01 00:00:00,100\n"u8.ToArray())));
    }

    private const string ClarityHeaderMmol =
        "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,Source Device ID," +
        "Glucose Value (mmol/L),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),Glucose Rate of Change (mmol/L/min)," +
        "Transmitter Time (Long Integer),Transmitter ID";

    /// <summary>EU layout: glucose in mmol/L (converted at 18.0182 mg/dL per mmol/L, exact to 5 decimals),
    /// decimal commas in quoted fields, an extra Sensor metadata row.</summary>
    [Fact]
    public void Dexcom_EU_mmol_layout_converts_to_mg_dl()
    {
        var csv = ClarityHeaderMmol + "\n" +
            "1,,FirstName,,Jana,,,,,,,,,\n" +
            "2,,LastName,,Nováková,,,,,,,,,\n" +
            "3,,Device,,,Dexcom G7 Mobile App,android G7,,,,,,,\n" +
            "4,,Sensor,,,,android G7,,,,,,,\n" +
            "5,,Alert,Urgent Low,,,android G7,\"3,1\",,,,,,\n" +
            "6,2024-11-22 17:55:03,EGV,,,,android G7,\"5,6\",,,,\"0,1\",1234,ABC123\n" +
            "7,2024-11-22 18:00:03,EGV,,,,android G7,7.2,,,,,1534,ABC123\n" +
            "8,2024-11-22 18:05:03,EGV,High,,,android G7,High,,,,,1834,ABC123\n" +
            "9,2024-11-22 18:07:00,Carbs,,,,android G7,,,45,,,,\n";

        var (format, rows) = CgmSamples.ReadInFileOrder(csv);

        Assert.Equal(CgmFormat.DexcomClarity, format);
        Assert.Equal(
        [
            CgmRow.Glucose(CgmSamples.Ms("2024-11-22T17:55:03"), 100.90192),
            CgmRow.Glucose(CgmSamples.Ms("2024-11-22T18:00:03"), 129.73104),
            CgmRow.Glucose(CgmSamples.Ms("2024-11-22T18:05:03"), 401, CgmQuality.OutOfRange),
            CgmRow.Event(CgmEventType.Carbs, CgmSamples.Ms("2024-11-22T18:07:00"), carbsG: 45),
        ], rows);
        Assert.Contains(",100.90192,", CgmSamples.Convert(Encoding.UTF8.GetBytes(csv), out _));
    }

    /// <summary>iOS G7 export: every header quoted, a doubly mis-decoded BOM on the first one, CRLF, ISO
    /// "T" timestamps, and the event kinds beyond glucose and insulin.</summary>
    [Fact]
    public void Dexcom_G7_iOS_variant_with_quoted_header_and_all_event_kinds()
    {
        var csv =
            "\"Ã¯Â»Â¿Index\",\"Timestamp (YYYY-MM-DDThh:mm:ss)\",\"Event Type\",\"Event Subtype\",\"Patient Info\",\"Device Info\"," +
            "\"Source Device ID\",\"Glucose Value (mg/dL)\",\"Insulin Value (u)\",\"Carb Value (grams)\",\"Duration (hh:mm:ss)\"," +
            "\"Glucose Rate of Change (mg/dL/min)\",\"Transmitter Time (Long Integer)\",\"Transmitter ID\"\r\n" +
            "1,,FirstName,,Yuri,,,,,,,,,\r\n" +
            "2,,Device,,,Dexcom G7 iOS App,iOS G7,,,,,,,\r\n" +
            "3,2025-05-01T00:01:47,EGV,,,,iOS G7,165,,,,-1.2,4237574,8AM1EY\r\n" +
            "4,2025-05-01T00:06:47,EGV,Low,,,iOS G7,Low,,,,,4237874,8AM1EY\r\n" +
            "5,2025-05-01T07:30:00,Calibration,,,,iOS G7,98,,,,,,\r\n" +
            "6,2025-05-01T07:45:00,Insulin,Fast-Acting,,,iOS G7,,4.5,,,,,\r\n" +
            "7,2025-05-01T08:00:00,Activity,Heavy,,,iOS G7,,,,0:45:00,,,\r\n" +
            "8,2025-05-01T09:00:00,Health,Stress,,,iOS G7,,,,,,,\r\n" +
            "9,2025-05-01T09:10:00,Alert,High,,,iOS G7,251,,,,,,\r\n" +
            "10,2025-05-01T09:20:00,Exercise,Light,,,iOS G7,,,,,,,\r\n";

        var (format, rows) = CgmSamples.ReadInFileOrder(csv);

        Assert.Equal(CgmFormat.DexcomClarity, format);
        Assert.Equal(
        [
            CgmRow.Glucose(CgmSamples.Ms("2025-05-01T00:01:47"), 165),
            CgmRow.Glucose(CgmSamples.Ms("2025-05-01T00:06:47"), 39, CgmQuality.OutOfRange),
            new CgmRow(0, CgmSamples.Ms("2025-05-01T07:30:00"), CgmQuality.Good, CgmEventType.Calibration, CgmSamples.Ms("2025-05-01T07:30:00"),
                98, double.NaN, double.NaN, double.NaN, double.NaN),
            CgmRow.Event(CgmEventType.InsulinFast, CgmSamples.Ms("2025-05-01T07:45:00"), insulinFastU: 4.5),
            CgmRow.Event(CgmEventType.ExerciseHeavy, CgmSamples.Ms("2025-05-01T08:00:00"), exerciseSeconds: 2700),
            CgmRow.Event(CgmEventType.HealthStress, CgmSamples.Ms("2025-05-01T09:00:00")),
            CgmRow.Event(CgmEventType.ExerciseLight, CgmSamples.Ms("2025-05-01T09:20:00")),
        ], rows);
    }

    /// <summary>Older Android exports: the hour without a leading zero, semicolon-separated after a
    /// spreadsheet re-save in a decimal-comma locale.</summary>
    [Fact]
    public void Dexcom_single_digit_hours_and_semicolon_separator()
    {
        var csv =
            "Index;Timestamp (YYYY-MM-DDThh:mm:ss);Event Type;Event Subtype;Patient Info;Device Info;Source Device ID;" +
            "Glucose Value (mg/dL);Insulin Value (u);Carb Value (grams);Duration (hh:mm:ss);Glucose Rate of Change (mg/dL/min);" +
            "Transmitter Time (Long Integer);Transmitter ID\n" +
            "1;2025-05-01 0:01:47;EGV;;;;android G6;165;;;;;4237574;8AM1EY\n" +
            "2;2025-05-01 9:10:00;Insulin;Long-Acting;;;android G6;;22,5;;;;;\n";

        var (_, rows) = CgmSamples.ReadInFileOrder(csv);

        Assert.Equal(
        [
            CgmRow.Glucose(CgmSamples.Ms("2025-05-01T00:01:47"), 165),
            CgmRow.Event(CgmEventType.InsulinSlow, CgmSamples.Ms("2025-05-01T09:10:00"), insulinSlowU: 22.5),
        ], rows);
    }

    private const string LibreHeaderMmol =
        "Device,Serial Number,Device Timestamp,Record Type,Historic Glucose mmol/L,Scan Glucose mmol/L,Non-numeric Rapid-Acting Insulin," +
        "Rapid-Acting Insulin (units),Non-numeric Food,Carbohydrates (grams),Carbohydrates (servings),Non-numeric Long-Acting Insulin," +
        "Long-Acting Insulin Value (units),Notes,Strip Glucose mmol/L,Ketone mmol/L,Meal Insulin (units),Correction Insulin (units)," +
        "User Change Insulin (units),Historic Ketone mmol/L,Scan Ketone mmol/L";

    [Fact]
    public void Libre_mmol_layout_converts_to_mg_dl_and_reads_every_record_type()
    {
        var csv = "Glucose Data,Generated on,23-11-2024 09:40 UTC,Generated by,Jane Doe\n" + LibreHeaderMmol + "\n" +
            "FreeStyle Libre 3,SN1,22-11-2024 17:40,0,5.6,,,,,,,,,,,,,,,,\n" +
            "FreeStyle Libre 3,SN1,22-11-2024 17:42,1,,6.1,,,,,,,,,,,,,,,\n" +
            "FreeStyle Libre 3,SN1,22-11-2024 17:43,2,,,,,,,,,,,5.9,,,,,,\n" +
            "FreeStyle Libre 3,SN1,22-11-2024 17:44,3,,,,,,,,,,,,0.4,,,,,\n" +
            "FreeStyle Libre 3,SN1,22-11-2024 17:45,4,,,,3.5,,,,,12,,,,,,,,\n" +
            "FreeStyle Libre 3,SN1,22-11-2024 17:46,5,,,,,,60,4,,,,,,,,,,\n" +
            "FreeStyle Libre 3,SN1,22-11-2024 17:47,6,,,,,,,,,,Walk,,,,,,,\n" +
            "FreeStyle Libre 3,SN1,22-11-2024 17:55,0,LO,,,,,,,,,,,,,,,,\n";

        var (format, rows) = CgmSamples.ReadInFileOrder(csv);

        Assert.Equal(CgmFormat.LibreView, format);
        Assert.Equal(
        [
            CgmRow.Glucose(CgmSamples.Ms("2024-11-22T17:40:00"), 100.90192),
            CgmRow.Glucose(CgmSamples.Ms("2024-11-22T17:42:00"), 109.91102),
            new CgmRow(0, CgmSamples.Ms("2024-11-22T17:43:00"), CgmQuality.Good, CgmEventType.Calibration, CgmSamples.Ms("2024-11-22T17:43:00"),
                106.30738, double.NaN, double.NaN, double.NaN, double.NaN),
            CgmRow.Event(CgmEventType.InsulinFast, CgmSamples.Ms("2024-11-22T17:45:00"), insulinFastU: 3.5),
            CgmRow.Event(CgmEventType.InsulinSlow, CgmSamples.Ms("2024-11-22T17:45:00"), insulinSlowU: 12),
            CgmRow.Event(CgmEventType.Carbs, CgmSamples.Ms("2024-11-22T17:46:00"), carbsG: 60),
            CgmRow.Glucose(CgmSamples.Ms("2024-11-22T17:55:00"), 39, CgmQuality.OutOfRange),
        ], rows);
    }

    private const string LibreHeaderMgDl =
        "Device,Serial Number,Device Timestamp,Record Type,Historic Glucose mg/dL,Scan Glucose mg/dL,Non-numeric Rapid-Acting Insulin," +
        "Rapid-Acting Insulin (units),Non-numeric Food,Carbohydrates (grams),Carbohydrates (servings),Non-numeric Long-Acting Insulin," +
        "Long-Acting Insulin (units),Notes,Strip Glucose mg/dL,Ketone mmol/L,Meal Insulin (units),Correction Insulin (units),User Change Insulin (units)";

    /// <summary>US LibreView: "Patient report" preamble, month-first dates on a 12-hour clock, a note with a
    /// line break inside its quotes.</summary>
    [Fact]
    public void Libre_US_month_first_12_hour_dates()
    {
        var csv = "Patient report\nGenerated on,11-23-2024 9:40 AM,Generated by,John Doe\n" + LibreHeaderMgDl + "\n" +
            "FreeStyle Libre 2,SN2,11-22-2024 11:45 PM,0,120,,,,,,,,,,,,,,\n" +
            "FreeStyle Libre 2,SN2,11-23-2024 12:00 AM,0,118,,,,,,,,,,,,,,\n" +
            "FreeStyle Libre 2,SN2,11-23-2024 12:01 AM,6,,,,,,,,,,\"Lunch, then\na walk\",,,,,\n" +
            "FreeStyle Libre 2,SN2,11-23-2024 12:05 PM,1,,130,,,,,,,,,,,,,\n";

        var (_, rows) = CgmSamples.ReadInFileOrder(csv);

        Assert.Equal(
        [
            CgmRow.Glucose(CgmSamples.Ms("2024-11-22T23:45:00"), 120),
            CgmRow.Glucose(CgmSamples.Ms("2024-11-23T00:00:00"), 118),
            CgmRow.Glucose(CgmSamples.Ms("2024-11-23T12:05:00"), 130),
        ], rows);
    }

    /// <summary>Month-first with nothing to say so until line 4 (02-13): the first rows wait, then all come
    /// out month-first.</summary>
    [Fact]
    public void Libre_date_order_is_decided_from_the_first_date_with_a_part_above_12()
    {
        var csv = LibreHeaderMgDl + "\n" +
            "FreeStyle Libre 2,SN2,02-11-2024 23:50,0,100,,,,,,,,,,,,,,\n" +
            "FreeStyle Libre 2,SN2,02-12-2024 00:05,0,101,,,,,,,,,,,,,,\n" +
            "FreeStyle Libre 2,SN2,02-13-2024 00:05,0,102,,,,,,,,,,,,,,\n" +
            "FreeStyle Libre 2,SN2,02-13-2024 00:20,0,103,,,,,,,,,,,,,,\n";

        var (_, rows) = CgmSamples.ReadInFileOrder(csv);

        Assert.Equal(
            [CgmSamples.Ms("2024-02-11T23:50:00"), CgmSamples.Ms("2024-02-12T00:05:00"), CgmSamples.Ms("2024-02-13T00:05:00"), CgmSamples.Ms("2024-02-13T00:20:00")],
            rows.Select(r => r.TimeMs));
    }

    /// <summary>Every date with day and month ≤ 12 (1–3 February, every 15 minutes): day-first reads a
    /// steady series, month-first would jump a month at each midnight; day-first is taken.</summary>
    [Fact]
    public void Libre_date_order_without_a_part_above_12_is_taken_from_the_readings_sequence()
    {
        var csv = new StringBuilder(LibreHeaderMgDl + "\n");
        var t = new DateTime(2024, 2, 1, 20, 0, 0);
        for (var i = 0; i < 200; i++, t = t.AddMinutes(15))
            csv.Append($"FreeStyle Libre 3,SN3,{t:dd-MM-yyyy HH:mm},0,{100 + i % 7},,,,,,,,,,,,,,\n");

        var (_, rows) = CgmSamples.ReadInFileOrder(csv.ToString());

        Assert.Equal(200, rows.Count);
        Assert.Equal(CgmSamples.Ms("2024-02-01T20:00:00"), rows[0].TimeMs);
        Assert.Equal(CgmSamples.Ms("2024-02-03T21:45:00"), rows[^1].TimeMs);
    }

    /// <summary>LibreLink-style variant: no preamble (header first), the newer "Long-Acting Insulin (units)"
    /// column name, CRLF, insulin and food rows with only non-numeric values (skipped).</summary>
    [Fact]
    public void Libre_without_preamble_and_renamed_columns()
    {
        var csv = LibreHeaderMgDl + "\r\n" +
            "FreeStyle LibreLink,SN4,25-01-2021 10:29,0,143,,,,,,,,,,,,,,\r\n" +
            "FreeStyle LibreLink,SN4,25-01-2021 10:31,4,,,Yes,,,,,,,,,,,,\r\n" +
            "FreeStyle LibreLink,SN4,25-01-2021 10:32,5,,,,,Yes,,,,,,,,,,\r\n" +
            "FreeStyle LibreLink,SN4,25-01-2021 10:35,4,,,,,,,,,18,,,,,,\r\n";

        var (format, rows) = CgmSamples.ReadInFileOrder(csv);

        Assert.Equal(CgmFormat.LibreView, format);
        Assert.Equal(
        [
            CgmRow.Glucose(CgmSamples.Ms("2021-01-25T10:29:00"), 143),
            CgmRow.Event(CgmEventType.InsulinSlow, CgmSamples.Ms("2021-01-25T10:35:00"), insulinSlowU: 18),
        ], rows);
    }

    [Fact]
    public void A_unified_file_with_reordered_and_missing_optional_columns_reads_by_name()
    {
        var csv = "datetime,event_type,glucose,quality\n" +
            "2024-11-22T17:55:00.000,EGV_READ,101.5,16\n" +
            "2024-11-22T18:00:00,INS_FAST,,0\n";

        var (format, rows) = CgmSamples.ReadInFileOrder(csv);

        Assert.Equal(CgmFormat.Unified, format);
        Assert.Equal(
        [
            CgmRow.Glucose(CgmSamples.Ms("2024-11-22T17:55:00"), 101.5, CgmQuality.Synchronised),
            CgmRow.Event(CgmEventType.InsulinFast, CgmSamples.Ms("2024-11-22T18:00:00")),
        ], rows);
    }
}
