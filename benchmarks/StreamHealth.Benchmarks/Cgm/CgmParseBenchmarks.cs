using System.Text;
using BenchmarkDotNet.Attributes;
using StreamHealth.Cgm.Formats;

namespace StreamHealth.Benchmarks.Cgm;

/// <summary>Parsing cost per row of the CGM export readers (issue "CGM ingestion" asks for at least 1 million
/// rows/s per core for Dexcom and unified). Each op is one row: a whole in-memory export of ~100k rows is
/// detected and read per invoke, so rows/s = 1e9 / mean ns and the per-file costs (detection head, header,
/// pooled buffer) are spread over the rows as they are in a real upload.</summary>
/// <remarks>The files are the shared samples repeated with the year moved on per copy (1961, 1962, …), so
/// the mix of rows is the vendors': Clarity 99% EGV plus insulin and "Low" rows, Libre historic and scan
/// readings plus type-6 rows to skip.</remarks>
[MemoryDiagnoser]
public class CgmParseBenchmarks
{
    private const int ClarityCopies = 25;
    private const int ClarityRows = 3969 * ClarityCopies;
    private const int LibreCopies = 22;
    private const int LibreRows = 4621 * LibreCopies;

    private byte[] _clarity = [];
    private byte[] _unified = [];
    private byte[] _libre = [];
    private readonly MemoryStream _output = new();

    [GlobalSetup]
    public void Setup()
    {
        var data = Path.Combine(FindShared(), "data", "cgm");
        _clarity = Repeat(File.ReadAllLines(Path.Combine(data, "Clarity_Export_synthetic.csv")), headerLines: 11, ClarityCopies,
            (line, year) => line.Replace("1961-", $"{year}-"));
        _libre = Repeat(File.ReadAllLines(Path.Combine(data, "FreeStyle_Libre_3_synthetic.csv")), headerLines: 2, LibreCopies,
            (line, year) => line.Replace("-1961 ", $"-{year} "));
        var unified = new MemoryStream();
        CgmConverter.Convert(new MemoryStream(_clarity), unified);
        _unified = unified.ToArray();
        Check(_clarity, ClarityRows);
        Check(_libre, LibreRows);
        Check(_unified, ClarityRows);
    }

    [Benchmark(OperationsPerInvoke = ClarityRows)]
    public long DexcomClarity() => Count(_clarity);

    [Benchmark(OperationsPerInvoke = ClarityRows)]
    public long Unified() => Count(_unified);

    [Benchmark(OperationsPerInvoke = LibreRows)]
    public long LibreView() => Count(_libre);

    /// <summary>The whole POST /convert_to_unified path for Clarity: detect, read into a list, sort (the file is
    /// in order, so only checked), write the unified CSV into memory.</summary>
    [Benchmark(OperationsPerInvoke = ClarityRows)]
    public long DexcomClarityToUnifiedCsv()
    {
        _output.SetLength(0);
        return CgmConverter.Convert(new MemoryStream(_clarity, writable: false), _output).Rows;
    }

    private static long Count(byte[] file)
    {
        using var reader = CgmFormats.Open(new MemoryStream(file, writable: false));
        long rows = 0;
        while (reader.TryRead(out _)) rows++;
        return rows;
    }

    private static void Check(byte[] file, long rows)
    {
        if (Count(file) != rows) throw new InvalidOperationException($"setup: expected {rows} rows, read {Count(file)}");
    }

    private static byte[] Repeat(string[] lines, int headerLines, int copies, Func<string, int, string> moveYear)
    {
        var text = new StringBuilder();
        foreach (var line in lines.Take(headerLines)) text.Append(line).Append('\n');
        for (var copy = 0; copy < copies; copy++)
            foreach (var line in lines.Skip(headerLines)) text.Append(moveYear(line, 1961 + copy)).Append('\n');
        return Encoding.UTF8.GetBytes(text.ToString());
    }

    /// <summary>The shared folder beside the checkout (/work/shared).</summary>
    private static string FindShared() => Path.GetFullPath(Path.Combine(RepoPaths.Root, "..", "shared"));
}
