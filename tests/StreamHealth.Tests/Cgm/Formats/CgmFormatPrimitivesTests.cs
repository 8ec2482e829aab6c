using System.Buffers.Text;
using System.Globalization;
using System.Text;
using StreamHealth.Cgm.Formats;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>The building blocks the readers share: CSV records and fields, numbers, vendor timestamps.</summary>
public sealed class CgmFormatPrimitivesTests
{
    private static string[] SplitToStrings(string line, char separator = ',')
    {
        var bytes = Encoding.UTF8.GetBytes(line);
        Span<Range> fields = stackalloc Range[64];
        var count = CsvLine.Split(bytes, (byte)separator, fields);
        var result = new string[Math.Min(count, fields.Length)];
        for (var i = 0; i < result.Length; i++) result[i] = Encoding.UTF8.GetString(bytes.AsSpan()[fields[i]]);
        return result;
    }

    /// <summary>The vectorised path (32 bytes at a time) against string.Split, on quote-free lines of every
    /// length around the vector width, with separators at the chunk edges.</summary>
    [Fact]
    public void Split_of_quote_free_lines_matches_string_split_at_every_length()
    {
        var random = new Random(7);
        for (var i = 0; i < 3000; i++)
        {
            var chars = new char[random.Next(0, 140)];
            for (var c = 0; c < chars.Length; c++) chars[c] = random.Next(4) == 0 ? ',' : (char)('a' + random.Next(26));
            var line = new string(chars);
            Assert.Equal(line.Split(','), SplitToStrings(line));
        }
    }

    [Fact]
    public void Split_reads_quoted_fields_anywhere_on_the_line()
    {
        Assert.Equal(["a", "b,c", "d"], SplitToStrings("a,\"b,c\",d"));
        var longPrefix = string.Join(',', Enumerable.Range(0, 20).Select(i => $"f{i}"));     // the quote comes after 32 bytes
        Assert.Equal([.. longPrefix.Split(','), "5,6", ""], SplitToStrings(longPrefix + ",\"5,6\","));
        Assert.Equal(["x", "un", "y"], SplitToStrings("x,\"un\"dropped,y"));       // text after the closing quote is dropped
        Assert.Equal(["x", "open"], SplitToStrings("x,\"open"));                    // unterminated: the rest of the line
        Assert.Equal(["a", "b"], SplitToStrings("a;b", ';'));
        // More fields than room: counted, not stored.
        Span<Range> two = stackalloc Range[2];
        Assert.Equal(4, CsvLine.Split("1,2,3,4"u8, (byte)',', two));
    }

    /// <summary>The exact fast path for plain decimals gives the same double as Utf8Parser.</summary>
    [Fact]
    public void Plain_decimals_parse_to_the_same_double_as_a_full_parse()
    {
        var random = new Random(11);
        for (var i = 0; i < 20_000; i++)
        {
            var digits = random.Next(1, 16);
            var text = random.NextInt64(0, (long)Math.Pow(10, digits)).ToString(CultureInfo.InvariantCulture);
            var point = random.Next(0, text.Length);
            if (point > 0) text = text[..point] + "." + text[point..];
            var bytes = Encoding.ASCII.GetBytes(text);
            Assert.True(CsvLine.TryParseDouble(bytes, out var fast));
            Assert.True(Utf8Parser.TryParse(bytes, out double full, out _));
            Assert.Equal(full, fast);
        }
        Assert.True(CsvLine.TryParseDouble("5,6"u8, out var comma, decimalComma: true));
        Assert.Equal(5.6, comma);
        Assert.False(CsvLine.TryParseDouble("5,6"u8, out _));
        Assert.True(CsvLine.TryParseDouble("1e3"u8, out var exponent));          // falls back to Utf8Parser
        Assert.Equal(1000, exponent);
        Assert.False(CsvLine.TryParseDouble("1.2.3"u8, out _));
    }

    [Theory]
    [InlineData("1961-04-12 00:56:47", "1961-04-12T00:56:47", CgmDateOrder.Unknown)]
    [InlineData("2025-05-01 0:01:47", "2025-05-01T00:01:47", CgmDateOrder.Unknown)]
    [InlineData("2025/05/01T13:05", "2025-05-01T13:05:00", CgmDateOrder.Unknown)]
    [InlineData("12-04-1961 22:30", "1961-04-12T22:30:00", CgmDateOrder.DayMonthYear)]
    [InlineData("12-04-1961 22:30", "1961-12-04T22:30:00", CgmDateOrder.MonthDayYear)]
    [InlineData("04/13/2024 12:00 AM", "2024-04-13T00:00:00", CgmDateOrder.MonthDayYear)]
    [InlineData("04/13/2024 12:30 pm", "2024-04-13T12:30:00", CgmDateOrder.MonthDayYear)]
    [InlineData("13.04.2024 01:02:03.5", "2024-04-13T01:02:03.500", CgmDateOrder.DayMonthYear)]
    public void Vendor_timestamps_parse_in_the_given_day_month_order(string text, string iso, CgmDateOrder order)
    {
        Assert.True(CgmTime.TryParseParts(Encoding.ASCII.GetBytes(text), out var parts));
        Assert.True(CgmTime.TryCompose(parts, order, out var ms));
        Assert.Equal(CgmSamples.Ms(iso), ms);
    }

    [Theory]
    [InlineData("")]
    [InlineData("2024-04-13")]
    [InlineData("2024-04-13 1:2")]
    [InlineData("13-04-24 10:00")]
    [InlineData("2024-04/13 10:00")]
    [InlineData("04/13/2024 13:00 PM")]
    [InlineData("04/13/2024 10:00 XM")]
    [InlineData("20245-04-13 10:00")]
    [InlineData("2024-04-13 10:00 trailing")]
    public void Malformed_vendor_timestamps_are_rejected(string text) =>
        Assert.False(CgmTime.TryParseParts(Encoding.ASCII.GetBytes(text), out _));

    [Fact]
    public void A_record_continues_over_a_line_break_inside_quotes_and_keeps_line_numbers()
    {
        var text = "h1,h2\r\n1,\"note with\r\ntwo lines, and \"\"quotes\"\"\"\r\n2,plain\r\n3,say \"hi\r\n4,x";
        using var reader = new Utf8LineReader(new MemoryStream(Encoding.UTF8.GetBytes(text)), bufferBytes: 16);
        var records = new List<(long Line, string Text)>();
        while (reader.TryReadRecord((byte)',', out var record)) records.Add((reader.LineNumber, Encoding.UTF8.GetString(record)));

        Assert.Equal(
        [
            (1, "h1,h2"),
            (2, "1,\"note with\r\ntwo lines, and \"\"quotes\"\"\""),
            (4, "2,plain"),
            (5, "3,say \"hi"),                   // a quote inside an unquoted field is just a character
            (6, "4,x"),
        ], records);
    }

    [Fact]
    public void An_unterminated_quote_runs_to_the_end_of_the_file_and_a_runaway_record_is_an_error()
    {
        using (var reader = new Utf8LineReader(new MemoryStream("a,\"open\nb\nc\n"u8.ToArray())))
        {
            Assert.True(reader.TryReadRecord((byte)',', out var record));
            Assert.Equal("a,\"open\nb\nc\n", Encoding.UTF8.GetString(record));
            Assert.False(reader.TryReadRecord((byte)',', out _));
        }
        var runaway = new byte[Utf8LineReader.MaxLineBytes + 10];
        runaway.AsSpan().Fill((byte)'\n');
        runaway[0] = (byte)'"';
        using var big = new Utf8LineReader(new MemoryStream(runaway), format: CgmFormat.LibreView);
        var error = Assert.Throws<CgmFormatException>(() => big.TryReadRecord((byte)',', out _));
        Assert.Equal(CgmFormat.LibreView, error.Format);
        Assert.Contains("longer than", error.Message);
    }

    [Fact]
    public void Header_names_lose_quotes_and_damaged_byte_order_marks()
    {
        // The Clarity sample's first line: a real BOM, then a quoted field holding a BOM decoded as Latin-1.
        var header = File.ReadAllBytes(CgmSamples.PathOf(CgmSamples.Clarity)).AsSpan(3, 60);
        Assert.Equal("Index", CsvColumns.Names(header, (byte)',')[0]);
        Assert.Equal("Timestamp (YYYY-MM-DDThh:mm:ss)", CsvColumns.Names(header, (byte)',')[1]);
        Assert.Equal((byte)';', CsvColumns.DetectSeparator("a;b;\"c,d,e\""u8));
        Assert.Equal((byte)'\t', CsvColumns.DetectSeparator("a\tb\tc"u8));
    }
}
