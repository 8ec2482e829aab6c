using BenchmarkDotNet.Attributes;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Series;

namespace StreamHealth.Benchmarks.Cgm;

/// <summary>Cost of the 5-minute series maths (the CGM issue asks for resampling at 5 million points/s or more, i.e.
/// at most 200 ns per point). Resampling ops are points: ns per op = ns per input row, points/s = 1e9 / mean.</summary>
/// <remarks>The input is one person's ~340 days from a Dexcom-like sensor: every 5 minutes less 33 ms (the Hall 2018
/// receivers drift about a second per 2.5 hours, so the reading's phase against the grid goes round eleven times and
/// readings near the half-way point sometimes share a step), ±5 s of jitter, 1 % of readings starting a gap (half
/// short, imputed; half long, splitting sequences), 0.5 % near-duplicates, 0.2 % exact duplicates, 0.3 % "Low"/"High",
/// 0.1 % absent values, 1 % insulin events. The output list is reused with its capacity, as a caller resampling
/// person after person would.</remarks>
[MemoryDiagnoser]
public class CgmResampleBenchmarks
{
    private const int Points = 100_000;
    private const int WindowBlock = 1024;
    private const long Cadence = 300_000;

    private readonly CgmSeriesOptions _options = new();
    private readonly List<CgmRow> _output = new(2 * Points);
    private CgmRow[] _fileOrder = [];
    private CgmRow[] _descending = [];
    private CgmRow[] _shuffled = [];
    private CgmRow[] _fallBack = [];
    private long[] _windowTimesMs = [];
    private float[] _windowMgDl = [];
    private CgmWindow _window = null!;
    private readonly float[] _forecastInput = new float[CgmSeriesOptions.ForecastInputSteps];
    private readonly byte[] _windowBytes = new byte[CgmWindow.MaxSerializedSize(120)];
    private long _windowOffsetMs;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(23);
        _fileOrder = Export(random, Points);
        _descending = Enumerable.Reverse(_fileOrder).ToArray();
        _shuffled = (CgmRow[])_fileOrder.Clone();
        random.Shuffle(_shuffled);
        var report = CgmResampler.Resample(_fileOrder, _options, _output);
        if (report.Duplicates == 0 || report.Imputed == 0 || report.Sequences < 10 || report.Dropped == 0)
            throw new InvalidOperationException($"the export lacks the cases it should time: {report}");
        Console.WriteLine($"// export: {report}");

        // The same export with a fall-back near the middle (where the cadence is steady): from there on the wall
        // clock repeats an hour.
        var at = Points / 2;
        while (CgmResampler.Resample(_fallBack = FallBackAt(at), _options, _output).ClockShiftsCorrected != 1) at++;

        _windowTimesMs = new long[WindowBlock];
        _windowMgDl = new float[WindowBlock];
        for (var i = 0; i < WindowBlock; i++)
        {
            _windowTimesMs[i] = i * Cadence + random.Next(-60, 61) * 1000;
            _windowMgDl[i] = (float)Math.Round(140 + 50 * Math.Sin(i / 20.0));
        }
        _window = new CgmWindow(_options);
        _windowOffsetMs = 1_736_121_600_000;
        AddBlock();
        if (!_window.TryCopyLatest(_forecastInput.Length, _forecastInput, out _))
            throw new InvalidOperationException("the warm window should hold 8 complete hours");
    }

    private CgmRow[] FallBackAt(int first)
    {
        var rows = (CgmRow[])_fileOrder.Clone();
        for (var i = first; i < rows.Length; i++)
            rows[i] = rows[i] with { TimeMs = rows[i].TimeMs - 3_600_000, OriginalTimeMs = rows[i].OriginalTimeMs - 3_600_000 };
        return rows;
    }

    private static CgmRow[] Export(Random random, int points)
    {
        var rows = new List<CgmRow>(points + points / 50);
        var nominalMs = 1_704_067_200_000L + 132_000;   // 2024-01-01, 2:12 past the grid
        double mgDl = 130;
        while (rows.Count < points)
        {
            nominalMs += Cadence - 33;
            var gap = random.NextDouble();
            if (gap < 0.005) nominalMs += random.Next(1, 3) * Cadence;
            else if (gap < 0.01) nominalMs += random.Next(15, 120) * Cadence;
            var timeMs = nominalMs + random.Next(-5_000, 5_001);
            mgDl = Math.Clamp(mgDl + (random.NextDouble() - 0.5) * 10, 45, 380);
            double value = Math.Round(mgDl);
            var kind = random.NextDouble();
            if (kind < 0.003) value = random.Next(2) == 0 ? 39 : 401;
            else if (kind < 0.004) value = double.NaN;
            rows.Add(CgmRow.Glucose(timeMs, value));
            var extra = random.NextDouble();
            if (extra < 0.005) rows.Add(CgmRow.Glucose(timeMs + random.Next(-120, 121) * 1000, value + 2));
            else if (extra < 0.007) rows.Add(CgmRow.Glucose(timeMs, value));
            else if (extra < 0.017) rows.Add(CgmRow.Event(CgmEventType.InsulinFast, timeMs + 40_000, insulinFastU: 3));
        }
        return rows.GetRange(0, points).ToArray();
    }

    /// <summary>An export in file order (ascending): the usual case, no sort needed.</summary>
    [Benchmark(OperationsPerInvoke = Points)]
    public int ResampleFileOrder() => Resample(_fileOrder);

    /// <summary>A descending export (newest first, as some vendors write them).</summary>
    [Benchmark(OperationsPerInvoke = Points)]
    public int ResampleDescending() => Resample(_descending);

    /// <summary>Rows in random order: the worst case, a full sort of the readings.</summary>
    [Benchmark(OperationsPerInvoke = Points)]
    public int ResampleShuffled() => Resample(_shuffled);

    /// <summary>The file-order export with a daylight-saving fall-back detected and undone.</summary>
    [Benchmark(OperationsPerInvoke = Points)]
    public int ResampleWithFallBack() => Resample(_fallBack);

    private int Resample(CgmRow[] rows)
    {
        _output.Clear();
        return CgmResampler.Resample(rows, _options, _output).Aligned;
    }

    /// <summary>One streamed reading into a warm window: each moves the window one step forward.</summary>
    [Benchmark(OperationsPerInvoke = WindowBlock)]
    public CgmWindowChange WindowAdd() => AddBlock();

    private CgmWindowChange AddBlock()
    {
        var change = CgmWindowChange.Added;
        _windowOffsetMs += WindowBlock * Cadence;
        for (var i = 0; i < WindowBlock; i++) change = _window.Add(_windowOffsetMs + _windowTimesMs[i], _windowMgDl[i]);
        return change;
    }

    /// <summary>The forecaster's 96 steps out of a warm window.</summary>
    [Benchmark]
    public bool WindowCopyLatest96() => _window.TryCopyLatest(_forecastInput.Length, _forecastInput, out _);

    /// <summary>The trend arrow of a warm window.</summary>
    [Benchmark]
    public CgmTrendArrow WindowTrendArrow() => _window.TrendArrow;

    /// <summary>What a state store pays per update around Add: write the window, read it back.</summary>
    [Benchmark]
    public int WindowWriteRead()
    {
        var length = _window.Write(_windowBytes);
        return CgmWindow.Read(_windowBytes.AsSpan(0, length), _options).Count;
    }
}
