using System.Diagnostics;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using Xunit.Abstractions;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>A 100 MB export streams: the reader allocates nothing per row and never holds the file.</summary>
public sealed class CgmLargeFileTests(ITestOutputHelper output)
{
    private const long TargetBytes = 100L * 1024 * 1024;

    [Fact]
    public void A_100_MB_Clarity_export_parses_in_bounded_memory()
    {
        var path = Path.Combine(Path.GetTempPath(), $"clarity-large-{Guid.NewGuid():N}.csv");
        try
        {
            var (generatedRows, bytes) = WriteClarity(path, TargetBytes);
            Assert.True(bytes >= TargetBytes);

            var stopwatch = Stopwatch.StartNew();
            var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            long rows = 0, lowRows = 0;
            using (var reader = CgmFormats.Open(path))
            {
                Assert.Equal(CgmFormat.DexcomClarity, reader.Format);
                while (reader.TryRead(out var row))
                {
                    rows++;
                    if (row.Quality == CgmQuality.OutOfRange) lowRows++;
                }
            }
            var allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
            stopwatch.Stop();

            output.WriteLine($"{bytes / 1e6:F1} MB, {rows:N0} rows in {stopwatch.ElapsedMilliseconds} ms " +
                $"({stopwatch.Elapsed.TotalNanoseconds / rows:F0} ns/row, I/O included); allocated {allocated / 1024.0:F0} KiB while parsing");
            Assert.Equal(generatedRows, rows);
            Assert.Equal((generatedRows + 96) / 97, lowRows);
            // Detection head (16 KiB), the line buffer (rented, 64 KiB), the header's strings, the FileStream:
            // tens of KiB. One allocation per row would be > 30 MB here, buffering the file > 100 MB.
            Assert.True(allocated < 16 * 1024 * 1024, $"parsing allocated {allocated:N0} bytes");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A Clarity-shaped file of at least <paramref name="minBytes"/>: the sample's header and
    /// metadata rows, then EGV rows every 5 minutes (every 97th "Low"), written through a reused buffer.</summary>
    private static (long Rows, long Bytes) WriteClarity(string path, long minBytes)
    {
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        var sample = File.ReadAllLines(CgmSamples.PathOf(CgmSamples.Clarity));
        var preamble = System.Text.Encoding.UTF8.GetBytes(string.Join('\n', sample.Take(11)) + "\n");
        file.Write(preamble);
        var buffer = new byte[128];
        var timeMs = CgmSamples.Ms("2020-01-01T00:00:00");
        long rows = 0;
        while (file.Position < minBytes)
        {
            var n = 0;
            void Put(ReadOnlySpan<byte> s) { s.CopyTo(buffer.AsSpan(n)); n += s.Length; }
            (rows + 11).TryFormat(buffer, out n);
            Put(","u8);
            n += CgmTime.FormatIso(timeMs, buffer.AsSpan(n)) - 4;          // drop ".000"
            buffer[n - 9] = (byte)' ';                                        // "yyyy-MM-dd HH:mm:ss"
            Put(",EGV,,,,android G6,"u8);
            if (rows % 97 == 0) Put("Low"u8);
            else { (40 + rows % 300).TryFormat(buffer.AsSpan(n), out var w); n += w; }
            Put(",,,,,4240874,HBRPOI\n"u8);
            file.Write(buffer, 0, n);
            rows++;
            timeMs += 5 * CgmTime.MsPerMinute;
        }
        return (rows, file.Position);
    }
}
