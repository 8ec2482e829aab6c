using System.Text;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>What a user can get wrong: every problem is a <see cref="CgmFormatException"/> naming the line
/// and the problem, never another exception, and a failed conversion writes nothing.</summary>
public sealed class CgmFormatErrorTests
{
    private static CgmFormatException ReadFails(string text) => ReadFails(Encoding.UTF8.GetBytes(text));

    private static CgmFormatException ReadFails(byte[] file) =>
        Assert.ThrowsAny<CgmFormatException>(() => CgmConverter.ReadAll(new MemoryStream(file)));

    private static byte[] ReplaceLine(string sample, int lineNumber, Func<string, string> edit)
    {
        var lines = File.ReadAllText(CgmSamples.PathOf(sample)).Split('\n');
        lines[lineNumber - 1] = edit(lines[lineNumber - 1]);
        return Encoding.UTF8.GetBytes(string.Join('\n', lines));
    }

    private static byte[] ReplaceField(string sample, int lineNumber, int column, string value) =>
        ReplaceLine(sample, lineNumber, line =>
        {
            var fields = line.Split(',');
            fields[column] = value;
            return string.Join(',', fields);
        });

    [Fact]
    public void A_bad_value_names_the_format_line_and_value()
    {
        Assert.Equal("dexcom_clarity line 57: glucose value \"abc\" is not a number",
            ReadFails(ReplaceField(CgmSamples.Clarity, 57, 7, "abc")).Message);
        Assert.Equal("dexcom_clarity line 57: glucose value \"-5\" is negative",
            ReadFails(ReplaceField(CgmSamples.Clarity, 57, 7, "-5")).Message);
        Assert.Equal("dexcom_clarity line 57: glucose value is empty",
            ReadFails(ReplaceField(CgmSamples.Clarity, 57, 7, "")).Message);
        Assert.Equal("dexcom_clarity line 20: timestamp \"1961-04-31 01:41:46\" is not a date and time",
            ReadFails(ReplaceField(CgmSamples.Clarity, 20, 1, "1961-04-31 01:41:46")).Message);
        Assert.Equal("dexcom_clarity line 57: the timestamp is empty",
            ReadFails(ReplaceField(CgmSamples.Clarity, 57, 1, "")).Message);
        Assert.Equal("dexcom_clarity line 79: insulin value \"27 u\" is not a number",
            ReadFails(ReplaceField(CgmSamples.Clarity, 79, 8, "27 u")).Message);

        var libre = ReadFails(ReplaceField(CgmSamples.Libre, 100, 4, "9x"));
        Assert.Equal(CgmFormat.LibreView, libre.Format);
        Assert.Equal(100, libre.Line);
        Assert.Equal("historic glucose \"9x\" is not a number", libre.Problem);
        Assert.Equal("libreview line 100: record type \"zero\" is not a number",
            ReadFails(ReplaceField(CgmSamples.Libre, 100, 3, "zero")).Message);

        Assert.Equal("unified line 10: event type \"EGV_RAED\" is not a unified event code",
            ReadFails(ReplaceField(CgmSamples.ClarityUnified, 10, 3, "EGV_RAED")).Message);
        Assert.Equal("unified line 10: quality \"64\" is not a combination of the unified quality flags (0–31)",
            ReadFails(ReplaceField(CgmSamples.ClarityUnified, 10, 2, "64")).Message);
    }

    [Fact]
    public void A_missing_required_column_is_named()
    {
        var clarity = ReadFails(ReplaceField(CgmSamples.Clarity, 1, 2, "Event Type Code"));
        Assert.Equal(1, clarity.Line);
        Assert.StartsWith("the header has no \"Event Type\" column (columns: Index, Timestamp (YYYY-MM-DDThh:mm:ss), Event Type Code,", clarity.Problem);

        var libre = ReadFails(ReplaceField(CgmSamples.Libre, 2, 2, "When"));
        Assert.Equal(2, libre.Line);
        Assert.StartsWith("the header has no \"Device Timestamp\" column", libre.Problem);

        Assert.Equal("unified line 1: the header has no \"datetime\" column (columns: original_datetime, event_type, glucose)",
            ReadFails("original_datetime,event_type,glucose\n2024-01-01T00:00:00,EGV_READ,100\n").Message);
    }

    [Fact]
    public void An_unknown_glucose_unit_is_an_error_not_a_guess()
    {
        Assert.Equal("dexcom_clarity line 1: column \"Glucose Value (mg/L)\" has no glucose unit StreamHealth knows (mg/dL or mmol/L)",
            ReadFails(ReplaceField(CgmSamples.Clarity, 1, 7, "Glucose Value (mg/L)")).Message);
    }

    [Fact]
    public void Libre_dates_that_neither_order_settles_are_an_error()
    {
        // Every date is 3 April or 4 March, all on one day: both orders read the same steady series.
        var csv = "Device,Serial Number,Device Timestamp,Record Type,Historic Glucose mg/dL,Scan Glucose mg/dL\n" +
            "FreeStyle Libre 3,SN,03-04-2024 10:00,0,100,\n" +
            "FreeStyle Libre 3,SN,03-04-2024 10:05,0,101,\n";
        var error = ReadFails(csv);
        Assert.Equal(2, error.Line);
        Assert.Contains("cannot tell whether dates are day-month-year or month-day-year", error.Message);

        // Unless day == month: then the order does not matter.
        var (_, rows) = CgmSamples.ReadInFileOrder(csv.Replace("03-04-2024", "04-04-2024"));
        Assert.Equal(CgmSamples.Ms("2024-04-04T10:05:00"), rows[^1].TimeMs);
    }

    [Fact]
    public void Libre_dates_that_contradict_the_order_seen_earlier_are_an_error()
    {
        var csv = "Device,Serial Number,Device Timestamp,Record Type,Historic Glucose mg/dL\n" +
            "FreeStyle Libre 3,SN,13-04-2024 10:00,0,100\n" +
            "FreeStyle Libre 3,SN,04-14-2024 10:05,0,101\n";
        Assert.Equal("libreview line 3: the date \"04-14-2024\" is the other way round from the date \"13-04-2024\" on line 2, which is day-month-year",
            ReadFails(csv).Message);
    }

    [Fact]
    public void An_empty_file_and_a_blank_one_are_errors_naming_the_problem()
    {
        Assert.Equal("the file is empty", ReadFails([]).Message);
        Assert.IsType<UnknownCgmFormatException>(ReadFails("\n\n  \n"));
    }

    /// <summary>A header and no data is a readable file with no rows; converting it is an error (there is
    /// nothing to convert), and nothing is written.</summary>
    [Theory]
    [InlineData(CgmSamples.Clarity, 11, CgmFormat.DexcomClarity)]      // header + patient, device and alert rows
    [InlineData(CgmSamples.Libre, 2, CgmFormat.LibreView)]             // preamble + header
    [InlineData(CgmSamples.ClarityUnified, 1, CgmFormat.Unified)]
    public void A_header_only_file_reads_no_rows_and_converts_to_an_error(string sample, int headerLines, CgmFormat format)
    {
        var headerOnly = string.Join('\n', File.ReadAllText(CgmSamples.PathOf(sample)).Split('\n').Take(headerLines)) + "\n";

        var (detected, rows) = CgmSamples.ReadInFileOrder(headerOnly);
        Assert.Equal(format, detected);
        Assert.Empty(rows);

        var output = new MemoryStream();
        var error = Assert.ThrowsAny<CgmFormatException>(() => CgmConverter.Convert(new MemoryStream(Encoding.UTF8.GetBytes(headerOnly)), output));
        Assert.Equal(format, error.Format);
        Assert.Contains("no glucose readings or events", error.Message);
        Assert.Equal(0, output.Length);
    }

    [Fact]
    public void A_file_that_fails_on_its_last_line_writes_nothing()
    {
        var lines = File.ReadAllLines(CgmSamples.PathOf(CgmSamples.Clarity));
        var bad = Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n3980,1961-04-25 18:57:22,EGV,,,,android G6,lots,,,,,5428874,HBRPOI\n");
        var output = new MemoryStream();

        var error = Assert.ThrowsAny<CgmFormatException>(() => CgmConverter.Convert(new MemoryStream(bad), output));

        Assert.Equal(3981, error.Line);
        Assert.Equal(0, output.Length);
    }

    /// <summary>Cut anywhere (an interrupted upload), a file either fails with a CgmFormatException or reads
    /// as a prefix of the whole file's rows: all rows but the last exactly, the last at least with the same
    /// time and type (a cut inside its value, "144" → "14", cannot be told from a shorter number: the
    /// exports do not all end with a newline, so a missing one proves nothing).</summary>
    [Theory]
    [InlineData(CgmSamples.Clarity)]
    [InlineData(CgmSamples.Libre)]
    [InlineData(CgmSamples.Unified)]
    public void A_truncated_file_fails_cleanly_or_reads_a_prefix(string sample)
    {
        var whole = CgmSamples.Bytes(sample);
        var all = CgmSamples.ReadInFileOrder(whole).Rows;
        var random = new Random(20261123);
        int prefixes = 0, failures = 0;
        for (var i = 0; i < 150; i++)
        {
            var cut = i < 50 ? random.Next(0, 20_000) : random.Next(0, whole.Length);
            List<CgmRow> rows;
            try
            {
                rows = CgmSamples.ReadInFileOrder(whole.AsSpan(0, cut).ToArray()).Rows;
            }
            catch (CgmFormatException)
            {
                failures++;
                continue;
            }
            prefixes++;
            Assert.True(rows.Count <= all.Count);
            for (var r = 0; r < rows.Count - 1; r++) Assert.Equal(all[r], rows[r]);
            if (rows.Count > 0)
            {
                Assert.Equal(all[rows.Count - 1].TimeMs, rows[^1].TimeMs);
                Assert.Equal(all[rows.Count - 1].EventType, rows[^1].EventType);
            }
        }
        Assert.True(prefixes > 0 && failures > 0, $"{prefixes} prefixes, {failures} failures: both outcomes should occur");
    }

    /// <summary>Random damage: byte flips (any byte, or CSV-significant ones), and random garbage. Seeded, so
    /// a failure reproduces; the only exception allowed out is CgmFormatException.</summary>
    [Fact]
    public void Fuzzed_input_never_throws_anything_but_CgmFormatException()
    {
        var samples = new[] { CgmSamples.Clarity, CgmSamples.Libre, CgmSamples.Unified }
            .Select(s => CgmSamples.Bytes(s).AsSpan(0, 12_000).ToArray()).ToArray();
        var significant = "0123456789,;\"\n\r-:./ TAPMHighLowEGV_"u8.ToArray();
        var random = new Random(42);
        for (var i = 0; i < 4000; i++)
        {
            var source = samples[i % samples.Length];
            byte[] data;
            switch (i / samples.Length % 3)
            {
                case 0:
                    data = (byte[])source.Clone();
                    for (var k = random.Next(1, 20); k > 0; k--) data[random.Next(data.Length)] = (byte)random.Next(256);
                    break;
                case 1:
                    data = (byte[])source.Clone();
                    for (var k = random.Next(1, 20); k > 0; k--) data[random.Next(data.Length)] = significant[random.Next(significant.Length)];
                    break;
                default:
                    data = new byte[random.Next(3000)];
                    random.NextBytes(data);
                    if (random.Next(2) == 0) source.AsSpan(0, Math.Min(600, data.Length)).CopyTo(data);   // a real header, then garbage
                    break;
            }
            try
            {
                CgmConverter.Convert(new MemoryStream(data), Stream.Null);
            }
            catch (CgmFormatException)
            {
            }
            catch (Exception e)
            {
                Assert.Fail($"iteration {i}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            }
        }
    }
}
