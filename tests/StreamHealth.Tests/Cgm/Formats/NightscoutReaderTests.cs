using System.Text;
using System.Text.Json;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using static StreamHealth.Tests.Cgm.Formats.CgmReaderFuzz;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>The Nightscout entries readers: the REST JSON array and the exporter CSV of the same
/// entries must read to the same series; detection by content across every sample export.</summary>
public sealed class NightscoutReaderTests
{
    private static readonly NightscoutJsonFormat Json = new();
    private static readonly NightscoutCsvFormat Csv = new();
    private static readonly string JsonPath = Sample("nightscout_entries.json");
    private static readonly string CsvPath = Sample("nightscout_entries.csv");

    private static long Utc(string iso) => DateTimeOffset.Parse(iso, System.Globalization.CultureInfo.InvariantCulture).ToUnixTimeMilliseconds();

    [Fact]
    public void The_json_sample_reads_every_sgv_entry_at_its_utc_date()
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(JsonPath));
        var expected = document.RootElement.EnumerateArray()
            .Where(e => e.GetProperty("type").GetString() == "sgv")
            .Select(e => (e.GetProperty("date").GetInt64(), e.GetProperty("sgv").GetDouble()))
            .ToList();

        using var reader = Json.Open(File.OpenRead(JsonPath));
        var rows = reader.ReadAll();

        Assert.Equal(1000, expected.Count);
        Assert.Equal(expected, rows.Select(r => (r.TimeMs, r.GlucoseMgDl)));
        Assert.All(rows, r => Assert.Equal((CgmEventType.EgvRead, CgmQuality.Good), (r.EventType, r.Quality)));
        Assert.Equal("2026-04-05T20:30:29.000", Time(rows[0].TimeMs));
        Assert.Equal(1000, reader.Line);
    }

    [Fact]
    public void The_csv_export_reads_to_the_same_readings_as_the_json()
    {
        using var json = Json.Open(File.OpenRead(JsonPath));
        using var csv = Csv.Open(File.OpenRead(CsvPath));
        var fromJson = json.ReadAll();
        var fromCsv = csv.ReadAll();

        Assert.Equal(File.ReadLines(CsvPath).Count(l => l.Length > 0), fromCsv.Count);
        Assert.Equal(fromJson, fromCsv);
    }

    [Fact]
    public void A_small_buffer_over_a_trickling_stream_reads_the_same_rows()
    {
        var bytes = File.ReadAllBytes(JsonPath);
        using var whole = Json.Open(new MemoryStream(bytes));
        using var trickled = new NightscoutJsonReader(new TrickleStream(bytes, 7), bufferBytes: 16);
        Assert.Equal(whole.ReadAll(), trickled.ReadAll());
    }

    [Fact]
    public void Json_entries_of_every_type_read_by_their_own_rules()
    {
        var rows = Read(Json, """
            [
              {"_id":"a","type":"sgv","sgv":120,"date":1775421029000,"direction":"Flat","extra":{"nested":[1,{"sgv":"x","date":"y"}]}},
              {"type":"mbg","mbg":95,"date":1775421000000.0},
              {"type":"cal","slope":900,"intercept":30000,"scale":1,"date":1775420900000},
              {"type":"sgv","sgv":5.5,"units":"mmol","dateString":"2026-04-05T22:30:29.000+02:00"},
              {"type":"sgv","sgv":5,"date":1775420000000},
              {"sgv":130,"sysTime":"2026-04-05T20:00:00Z","dateString":"not a date"},
              {"type":"s\u0067v","sgv":"140","date":"1775419000000","device":"\"xDrip\""},
              {"type":"sgv","sgv":null,"mbg":1,"date":1775418000000,"sgv":150}
            ]
            """);

        Assert.Collection(rows,
            r => Assert.Equal((CgmEventType.EgvRead, 1775421029000, 120.0), (r.EventType, r.TimeMs, r.GlucoseMgDl)),
            r => Assert.Equal((CgmEventType.Calibration, 1775421000000, 95.0), (r.EventType, r.TimeMs, r.GlucoseMgDl)),
            r => Assert.Equal((CgmEventType.EgvRead, Utc("2026-04-05T20:30:29Z"), 5.5 * GlucoseUnits.MgDlPerMmolL), (r.EventType, r.TimeMs, r.GlucoseMgDl)),
            r => Assert.Equal((CgmEventType.EgvRead, Utc("2026-04-05T20:00:00Z"), 130.0), (r.EventType, r.TimeMs, r.GlucoseMgDl)),
            r => Assert.Equal((CgmEventType.EgvRead, 1775419000000, 140.0), (r.EventType, r.TimeMs, r.GlucoseMgDl)),
            r => Assert.Equal((CgmEventType.EgvRead, 1775418000000, 150.0), (r.EventType, r.TimeMs, r.GlucoseMgDl)));
    }

    /// <summary>Issue 11, defect 8: entries the unified format has no place for are reported by reason with the first
    /// entry, not dropped silently (a calibration record, a status code in place of an sgv).</summary>
    [Fact]
    public void Json_entries_not_carried_are_reported_by_reason_with_the_first_entry()
    {
        using var reader = Json.Open(new MemoryStream(Encoding.UTF8.GetBytes("""
            [
              {"type":"sgv","sgv":120,"date":1775421029000},
              {"type":"cal","slope":900,"intercept":30000,"scale":1,"date":1775420900000},
              {"type":"sgv","sgv":5,"date":1775420000000},
              {"type":"cal","slope":901,"intercept":30001,"scale":1,"date":1775419900000}
            ]
            """)));
        Assert.Single(reader.ReadAll());
        Assert.Equal([new SkippedRows(NightscoutEntry.SkipOtherType, 2, 2), new SkippedRows(NightscoutEntry.SkipStatusCode, 1, 3)], reader.Skipped);
    }

    [Theory]
    [InlineData("""[{"sgv":1,"date":1},{"type":"sgv","sgv":"abc","date":1775421029000}]""", 2, "sgv \"abc\" is not a number")]
    [InlineData("""[{"sgv":100,"date":1775421029000},{"type":"sgv","date":1775421029000}]""", 2, "an sgv entry without an sgv value")]
    [InlineData("""[{"type":"mbg","sgv":100,"date":1775421029000}]""", 1, "an mbg entry without an mbg value")]
    [InlineData("""[{"sgv":100,"dateString":"yesterday"}]""", 1, "no time: date is missing, and dateString and sysTime are missing or not ISO 8601")]
    [InlineData("""[{"sgv":5000,"date":1775421029000}]""", 1, "sgv 5000 is out of range")]
    [InlineData("""[{"sgv":100,"date":-5}]""", 1, "date \"-5\" is not a time in milliseconds since 1970")]
    [InlineData("""[{"sgv":100,"date":1775421029000,"units":"furlongs"}]""", 1, "units \"furlongs\" is neither mg/dl nor mmol")]
    [InlineData("""[{"sgv":100,"date":1775421029000}, 7]""", 2, "the entry is not a JSON object")]
    [InlineData("""{"sgv":100,"date":1775421029000}""", 0, "the file is not a JSON array of entries")]
    public void A_bad_json_entry_names_its_index_and_problem(string json, int entry, string problem)
    {
        var e = ReadFails(Json, json);
        Assert.Equal((CgmFormat.NightscoutJson, (long)entry, problem), (e.Format, e.Line, e.Problem));
        Assert.StartsWith(entry > 0 ? $"nightscout_json entry {entry}: " : "nightscout_json the file", e.Message);
    }

    [Theory]
    [InlineData("""[{"sgv":100,"date":1775421029000},{"sgv":""", 2)]
    [InlineData("""[{"sgv":100,"date":1775421029000}""", 1)]
    [InlineData("""[{"sgv":100,,"date":1775421029000}]""", 1)]
    [InlineData("""[{"sgv":100,"date":1775421029000}] trailing""", 1)]
    [InlineData("", 0)]
    public void Broken_json_is_a_format_error_naming_the_entry_it_reached(string json, int entry)
    {
        var e = ReadFails(Json, json);
        Assert.Equal(entry, e.Line);
        Assert.StartsWith("invalid JSON: ", e.Problem);
    }

    [Fact]
    public void Csv_with_a_header_reads_types_meter_values_and_units_by_column_name()
    {
        var rows = Read(Csv, """
            dateString,date,sgv,direction,type,mbg,units
            2026-04-05T20:30:29.000Z,1775421029000,162,Flat,sgv,,
            2026-04-05T20:25:29.000Z,1775420729000,,,mbg,101,
            2026-04-05T20:20:29.000Z,1775420429000,,,cal,,
            "2026-04-05T20:15:29.000Z",,9.0,Flat,sgv,,mmol
            """);

        Assert.Collection(rows,
            r => Assert.Equal((CgmEventType.EgvRead, 1775421029000, 162.0), (r.EventType, r.TimeMs, r.GlucoseMgDl)),
            r => Assert.Equal((CgmEventType.Calibration, 1775420729000, 101.0), (r.EventType, r.TimeMs, r.GlucoseMgDl)),
            r => Assert.Equal((CgmEventType.EgvRead, Utc("2026-04-05T20:15:29Z"), 9 * GlucoseUnits.MgDlPerMmolL), (r.EventType, r.TimeMs, r.GlucoseMgDl)));
    }

    [Fact]
    public void Headerless_csv_reads_tabs_too_and_skips_entries_without_an_sgv_or_with_a_status_code()
    {
        var rows = Read(Csv,
            "\"2026-04-05T20:30:29.000Z\"\t1775421029000\t162\t\"Flat\"\t\"share2\"\n" +
            "\"2026-04-05T20:25:29.000Z\"\t1775420729000\t\t\t\"share2\"\n" +
            "\"2026-04-05T20:20:29.000Z\"\t1775420429000\t9\t\"NONE\"\t\"share2\"\n" +
            "\n" +
            "\"2026-04-05T20:15:29.000Z\"\t1775420129000\t39\t\"Flat\"\t\"share2\"\n");

        Assert.Equal([(1775421029000, 162.0), (1775420129000, 39.0)], rows.Select(r => (r.TimeMs, r.GlucoseMgDl)));
    }

    [Theory]
    [InlineData("\"2026-04-05T20:25:28.000Z\",1775420728000,1x7,\"Flat\",", 2, "sgv \"1x7\" is not a number")]
    [InlineData("\"2026-04-05T20:25:28.000Z\",17754207e,167,\"Flat\",", 2, "date \"17754207e\" is not a time in milliseconds since 1970")]
    [InlineData("\"2026-04-05T20:25:28.000Z\",1775420728000", 2, "2 fields; an entry has at least dateString, date and sgv")]
    [InlineData("\"2026-04-05 late\",,167,\"Flat\",", 2, "dateString \"2026-04-05 late\" is not an ISO 8601 time")]
    [InlineData("\"2026-04-05T20:25:28.000Z\",1775420728000,-40,\"Flat\",", 2, "sgv -40 is out of range")]
    public void A_bad_csv_line_names_its_line_and_problem(string line, int number, string problem)
    {
        var e = ReadFails(Csv, "\"2026-04-05T20:30:29.000Z\",1775421029000,162,\"Flat\",\n" + line + "\n");
        Assert.Equal((CgmFormat.NightscoutCsv, (long)number, problem), (e.Format, e.Line, e.Problem));
        Assert.StartsWith($"nightscout_csv line {number}: ", e.Message);
    }

    [Fact]
    public void A_csv_that_does_not_start_with_an_entry_is_rejected_at_line_one()
    {
        var e = ReadFails(Csv, "\nhello,world,1\n");
        Assert.Equal(2, e.Line);
        Assert.Contains("neither a Nightscout entries header nor an entry", e.Problem);
    }

    /// <summary>Every sample export in the shared data: which of these formats claims it. Only its own
    /// sample may match a format; Clarity, LibreView, unified and the research CSV match none.</summary>
    public static TheoryData<string> SampleFiles()
    {
        var data = new TheoryData<string>();
        foreach (var path in Directory.GetFiles(Path.Combine(Infrastructure.Repo.SharedData, "cgm")).Order()) data.Add(Path.GetFileName(path));
        return data;
    }

    [Theory]
    [MemberData(nameof(SampleFiles))]
    public void Only_its_own_sample_matches_each_format(string file)
    {
        var bytes = File.ReadAllBytes(Sample(file));
        var head = bytes[..Math.Min(bytes.Length, CgmFormats.HeadBytes)];
        var expected = file switch
        {
            "medtronics_test_livia.csv" => CgmFormat.MedtronicCareLink,
            "nightscout_entries.json" => CgmFormat.NightscoutJson,
            "nightscout_entries.csv" => CgmFormat.NightscoutCsv,
            _ => (CgmFormat?)null,
        };
        var matching = new ICgmFormatReader[] { new MedtronicCareLinkFormat(), Json, Csv }.Where(f => f.Matches(head)).Select(f => f.Format).ToList();
        List<CgmFormat> expectedMatches = expected is { } format ? [format] : [];
        Assert.Equal(expectedMatches, matching);
    }

    [Theory]
    [InlineData("nightscout_entries.json", CgmFormat.NightscoutJson)]
    [InlineData("nightscout_entries.csv", CgmFormat.NightscoutCsv)]
    public void The_registry_detects_nightscout_from_a_nameless_stream(string file, CgmFormat format)
    {
        using var reader = CgmFormats.Open(new TrickleStream(File.ReadAllBytes(Sample(file)), 1000));
        Assert.Equal(format, reader.Format);
        Assert.Equal(1000, reader.ReadAll().Count);
    }

    [Fact]
    public void Nightscout_json_detection_needs_an_array_of_entry_objects()
    {
        Assert.True(Json.Matches("\uFEFF \n[\n {\"sgv\": 100, \"date\": 1}]"u8));
        Assert.False(Json.Matches("{\"sgv\": 100}"u8));
        Assert.False(Json.Matches("[{\"eventType\":\"Meal Bolus\",\"carbs\":30}]"u8));
        Assert.False(Json.Matches("[]"u8));
    }

    [Fact]
    public void Truncated_and_byte_flipped_entries_only_ever_raise_format_errors()
    {
        var json = File.ReadAllText(JsonPath);
        var cut = 0;
        for (var i = 0; i < 30; i++) cut = json.IndexOf("\n  },", cut + 1, StringComparison.Ordinal);
        var jsonSample = Encoding.UTF8.GetBytes(json[..cut] + """
              },
              {"type":"mbg","mbg":95,"date":1775421000000,"units":"mg/dl"},
              {"type":"cal","slope":900,"date":1775420900000},
              {"sgv":"5.5","units":"mmol","dateString":"2026-04-05T22:30:29+0200","x":[{"y":null}]}
            ]
            """);
        Assert.Equal(32, Read(Json, jsonSample).Count);
        var jsonRejected = AssertOnlyFormatErrors(Json, jsonSample, seed: 1775421029, cuts: 300, flips: 2000);

        var csvSample = Encoding.UTF8.GetBytes(string.Join("\n", File.ReadLines(CsvPath).Take(150)));
        var csvRejected = AssertOnlyFormatErrors(Csv, csvSample, seed: 42, cuts: 300, flips: 2000);

        // ~80% and ~65% rejected: the drill reaches the error paths (many CSV flips land in the
        // direction column and pass).
        Assert.InRange(jsonRejected, 1200, 2300);
        Assert.InRange(csvRejected, 900, 2300);
    }
}
