using BenchmarkDotNet.Attributes;
using StreamHealth.Insights.Aggregates;

namespace StreamHealth.Benchmarks.Insights;

/// <summary>Cost of the insights topology's per-record maths (<see cref="DailyFold"/>): one record counted into its local day,
/// and the 7- and 30-day summaries the topology emits after it. Records/s = 1e9 / (ns per op); each op is one record, averaged over a
/// block of 1,024.</summary>
/// <remarks>The state is warm: a full 30-day window (heart rate every 15 minutes, 96 a day), and each record lands on the latest
/// day or one of the two before (late data inside the grace), so no day is created or dropped: the common path.</remarks>
[MemoryDiagnoser]
public class DailyFoldBenchmarks
{
    private const int Block = 1024;
    private readonly MetricDays _days = new(32);
    private readonly (int Date, long TimeUnixMs, double Bpm)[] _records = new (int, long, double)[Block];
    private readonly InsightsUserState _state = new();
    private int _latest;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(15);
        var first = DailyFold.FromDateOnly(new DateOnly(2026, 11, 1));
        _latest = first + DailyFold.MonthDays - 1;
        for (var d = first; d <= _latest; d++)
            for (var q = 0; q < 96; q++)
                DailyFold.Add(_days, d, 60, 55 + random.Next(60), DailyFold.DayStartUnixMs(d, 60) + q * 900_000L);
        for (var i = 0; i < Block; i++)
        {
            var date = _latest - random.Next(3);
            _records[i] = (date, DailyFold.DayStartUnixMs(date, 60) + random.Next(86_400_000), 55 + random.Next(60));
        }
        _state.StreamTimeUnixMs = DailyFold.DayStartUnixMs(_latest + 1, 60);
        foreach (var metric in new[] { "steps", "heart_rate", "sleep_hours", "weight", "water_ml", "calories" })
        {
            var days = _state.For(metric);
            for (var d = first; d <= _latest; d++) DailyFold.Add(days, d, 60, 100, DailyFold.DayStartUnixMs(d, 60));
        }
    }

    /// <summary><see cref="DailyFold.CheckLate"/> + <see cref="DailyFold.Add"/>: what the processor does to its state per record.</summary>
    [Benchmark(OperationsPerInvoke = Block)]
    public int CheckAndAdd()
    {
        var sum = 0;
        foreach (var (date, time, bpm) in _records)
        {
            if (DailyFold.CheckLate(_days, "heart_rate", date, 60, _state.StreamTimeUnixMs, 48 * 3_600_000L) is not null) throw new InvalidOperationException("late");
            sum += DailyFold.Add(_days, date, 60, bpm, time);
        }
        return sum;
    }

    /// <summary>The two rolling summaries emitted after each record, over the full 30-day window.</summary>
    [Benchmark(OperationsPerInvoke = Block)]
    public double Summaries()
    {
        var sum = 0.0;
        for (var i = 0; i < Block; i++) sum += DailyFold.Summarize(_days, DailyFold.WeekDays).Total + DailyFold.Summarize(_days, DailyFold.MonthDays).Max;
        return sum;
    }

    /// <summary>Decode + encode of a person's state with six types × 30 days (what the store costs per record when the person is
    /// not in the processor's decoded cache).</summary>
    [Benchmark]
    public int StateRoundTrip() =>
        InsightsUserStateSerDes.Instance.Decode(InsightsUserStateSerDes.Instance.Encode(_state, 8).AsSpan(8)).Metrics.Count;
}
