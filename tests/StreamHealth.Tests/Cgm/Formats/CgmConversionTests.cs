using System.Text;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>The two vendor samples converted exactly as the reference conversions beside them
/// (*_unified.csv), line by line, and the unified CSV read back and written again unchanged.</summary>
public sealed class CgmConversionTests
{
    [Theory]
    [InlineData(CgmSamples.Clarity, CgmSamples.ClarityUnified, CgmFormat.DexcomClarity, 3969)]
    [InlineData(CgmSamples.Libre, CgmSamples.LibreUnified, CgmFormat.LibreView, 4621)]
    public void A_vendor_sample_converts_to_its_reference_unified_file_line_for_line(string sample, string reference, CgmFormat format, int rows)
    {
        var actual = CgmSamples.Convert(CgmSamples.Bytes(sample), out var result).Split('\n');
        var expected = File.ReadAllText(CgmSamples.PathOf(reference)).Split('\n');

        Assert.Equal(format, result.Format);
        Assert.Equal(rows, result.Rows);
        for (var i = 0; i < Math.Min(expected.Length, actual.Length); i++)
            Assert.True(expected[i] == actual[i], $"line {i + 1}:\n expected {expected[i]}\n actual   {actual[i]}");
        Assert.Equal(expected.Length, actual.Length);
    }

    [Fact]
    public void Clarity_keeps_readings_and_insulin_and_drops_patient_device_and_alert_rows()
    {
        var (_, rows) = CgmSamples.ReadInFileOrder(CgmSamples.Bytes(CgmSamples.Clarity));

        // 3,979 data lines: 10 without a timestamp (FirstName, LastName, Device, 7 alert settings) dropped.
        Assert.Equal(3969, rows.Count);
        Assert.Equal(3922, rows.Count(r => r.EventType == CgmEventType.EgvRead));
        Assert.Equal(33, rows.Count(r => r.EventType == CgmEventType.InsulinFast && r.InsulinFastU > 0));
        Assert.Equal(14, rows.Count(r => r.EventType == CgmEventType.InsulinSlow && r.InsulinSlowU > 0));
        var lows = rows.Where(r => r.Quality == CgmQuality.OutOfRange).ToList();
        Assert.Equal(5, lows.Count);
        Assert.All(lows, r => Assert.Equal(GlucoseUnits.DexcomLowMgDl, r.GlucoseMgDl));
        Assert.All(rows, r => Assert.Equal(r.TimeMs, r.OriginalTimeMs));
        Assert.All(rows, r => Assert.Equal(0, r.SequenceId));
    }

    /// <summary>Ties: the Libre export lists every historic reading (type 0) before every scan (type 1), and
    /// the reference conversion orders a scan and a historic reading in the same minute by glucose, not by
    /// file order: at 22:35 historic 99 then scan 107, but at 23:20 scan 91 (line 4312) before historic 93
    /// (line 13). A stable sort by time alone would give 93 then 91; the converter's total order (time, event
    /// type, glucose, …) gives the reference's order for all 73 tied minutes in the sample.</summary>
    [Fact]
    public void Rows_at_the_same_time_are_ordered_by_value_not_by_file_order()
    {
        var (_, inFileOrder) = CgmSamples.ReadInFileOrder(CgmSamples.Bytes(CgmSamples.Libre));
        var at2320 = CgmSamples.Ms("1961-04-12T23:20:00");
        Assert.Equal([93.0, 91.0], inFileOrder.Where(r => r.TimeMs == at2320).Select(r => r.GlucoseMgDl));

        var sorted = CgmConverter.ReadAll(new MemoryStream(CgmSamples.Bytes(CgmSamples.Libre)));
        Assert.Equal([91.0, 93.0], sorted.Where(r => r.TimeMs == at2320).Select(r => r.GlucoseMgDl));

        // And the order does not depend on the file's: reversed input, same output.
        var reversed = new List<CgmRow>(inFileOrder);
        reversed.Reverse();
        CgmConverter.Sort(reversed);
        Assert.Equal(sorted, reversed);
    }

    [Fact]
    public void The_unified_csv_reads_back_to_the_rows_it_was_written_from()
    {
        var unifiedText = CgmSamples.Convert(CgmSamples.Bytes(CgmSamples.Clarity), out _);
        var (format, reread) = CgmSamples.ReadInFileOrder(unifiedText);
        Assert.Equal(CgmFormat.Unified, format);
        Assert.Equal(CgmConverter.ReadAll(new MemoryStream(CgmSamples.Bytes(CgmSamples.Clarity))), reread);

        // Written again: byte for byte the same text (times, "144.0", empty absent values).
        Assert.Equal(unifiedText, CgmSamples.Convert(Encoding.UTF8.GetBytes(unifiedText), out _));
    }

    /// <summary>The extended unified variant carries original_glucose between original_datetime and quality.
    /// It reads by column name; the unified row has no original_glucose, so the conversion writes the core
    /// ten columns: the output is the input with that one column removed (here glucose == original_glucose
    /// on every row, so nothing is lost).</summary>
    [Fact]
    public void The_extended_unified_variant_reads_by_column_name_and_converts_to_the_core_columns()
    {
        var input = File.ReadAllLines(CgmSamples.PathOf(CgmSamples.Unified));
        Assert.StartsWith("sequence_id,original_datetime,original_glucose,quality,", input[0]);

        var output = CgmSamples.Convert(CgmSamples.Bytes(CgmSamples.Unified), out var result).Split('\n');

        Assert.Equal(CgmFormat.Unified, result.Format);
        Assert.Equal(8274, result.Rows);
        Assert.Equal(input.Length, output.Length - 1);
        for (var i = 0; i < input.Length; i++)
        {
            var withoutOriginalGlucose = input[i].Split(',').Where((_, column) => column != 2);
            Assert.Equal(string.Join(',', withoutOriginalGlucose), output[i]);
        }
    }

    [Fact]
    public void Convert_reports_the_span_of_the_rows_and_leaves_the_input_stream_open()
    {
        var input = new ForwardOnlyStream(CgmSamples.Bytes(CgmSamples.Clarity));
        var result = CgmConverter.Convert(input, new MemoryStream());

        Assert.False(input.Disposed);
        Assert.Equal(CgmSamples.Ms("1961-04-12T00:56:47"), result.FirstTimeMs);
        Assert.Equal(CgmSamples.Ms("1961-04-25T18:52:23"), result.LastTimeMs);
    }
}
