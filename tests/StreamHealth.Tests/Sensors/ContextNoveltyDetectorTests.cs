using StreamHealth.Sensors.Anomalies;

namespace StreamHealth.Tests.Sensors;

/// <summary>The sensors' streaming anomaly detector (issue 16): what it reports, when it stays quiet, bad input.</summary>
public sealed class ContextNoveltyDetectorTests
{
    private static readonly ContextNoveltyOptions Small = new() { Minimum = 10, Maximum = 20, RestReadings = 10 };

    /// <summary>A daily-like cycle of 48 readings between 10 and 20.</summary>
    private static double Cycle(int i) => 15 + 5 * Math.Sin(2 * Math.PI * i / 48.0);

    private static ContextNoveltyDetector Learned(int readings = 2000)
    {
        var d = new ContextNoveltyDetector(Small);
        for (var i = 0; i < readings; i++) d.Update(Cycle(i));
        return d;
    }

    [Fact]
    public void The_start_is_silent_and_a_learned_cycle_stays_below_the_suppression_level()
    {
        var d = new ContextNoveltyDetector(Small);
        // The memory starts empty: everything is new, so the first RestReadings are held back.
        for (var i = 0; i < 10; i++) Assert.Equal(0.0, d.Update(Cycle(i)));
        var scores = Enumerable.Range(10, 1990).Select(i => d.Update(Cycle(i))).ToList();
        // While the first cycles are learned the scores are high; once learned, only the generalised contexts that
        // predict another level keep the score above 0 (CAD's baseline is the same), far below SuppressAbove (0.7).
        Assert.True(scores.Take(96).Max() >= 0.7, $"the first cycles are news, scored at most {scores.Take(96).Max()}");
        Assert.True(scores.Skip(990).Max() < 0.45, $"a cycle seen 20 times over is not news, scored {scores.Skip(990).Max()}");
    }

    [Fact]
    public void A_new_pattern_scores_high_and_the_rest_period_holds_the_echoes()
    {
        var d = Learned();
        // Reading 2000 falls at the cycle's trough (level 0); the top of the range there was never seen.
        var spike = d.Update(19.9);
        Assert.True(spike > 0.9, $"the top level after the trough: a new pair and no prediction confirmed, got {spike}");
        // Another spike, above the range this time, inside the rest period: one event, reported once.
        var echoes = Enumerable.Range(2001, 10).Select(i => d.Update(i == 2001 ? 25 : Cycle(i))).ToList();
        Assert.All(echoes, e => Assert.Equal(0.0, e));
    }

    [Fact]
    public void A_stall_where_the_cycle_moves_is_reported()
    {
        var d = Learned();
        // 15 is a level the cycle passes twice a period, but never stays on: the contexts predict a move.
        var stall = Enumerable.Range(0, 30).Select(_ => d.Update(15)).ToList();
        Assert.True(stall[0] >= 0.7, $"the first stalled reading, got {stall[0]}");
        Assert.All(stall.Skip(1).Take(10), s => Assert.Equal(0.0, s));
    }

    [Fact]
    public void Readings_outside_the_expected_range_are_facts_of_their_own()
    {
        // Below the range at the trough: as digits it would be level 0, exactly what the cycle predicts there.
        Assert.True(Learned().Update(0) > 0.9);
        Assert.True(Learned().Update(1e300) > 0.9);        // absurd but finite: above the range, no overflow
        var d = Learned();
        Assert.InRange(d.Update(-1e300), 0.0, 1.0);
        Assert.InRange(d.Update(double.MaxValue), 0.0, 1.0);
    }

    [Fact]
    public void Same_readings_same_scores()
    {
        var a = new ContextNoveltyDetector(Small);
        var b = new ContextNoveltyDetector(Small);
        var rng = new Random(3);
        var reported = 0;
        for (var i = 0; i < 3000; i++)
        {
            var v = Cycle(i) + rng.NextDouble() + (i == 2500 ? 30 : 0);
            var s = a.Update(v);
            Assert.Equal(s, b.Update(v));
            if (s > 0) reported++;
        }
        Assert.True(reported > 0);
    }

    [Fact]
    public void A_constant_series_is_learned_without_a_range()
    {
        var d = new ContextNoveltyDetector(new ContextNoveltyOptions { Minimum = 5, Maximum = 5, RestReadings = 10 });
        var scores = Enumerable.Range(0, 200).Select(_ => d.Update(5)).ToList();
        // A reading at which no remembered context predicted anything scores 0.5 (nothing confirmed, nothing new):
        // on a flat line every other reading is such, still below the suppression level.
        Assert.All(scores.Skip(20), s => Assert.True(s <= 0.5, $"scored {s}"));
        Assert.True(d.Update(6) > 0.9);
    }

    [Fact]
    public void Bad_readings_and_settings_are_refused_naming_the_problem()
    {
        var d = new ContextNoveltyDetector(Small);
        Assert.Contains("finite", Assert.Throws<ArgumentOutOfRangeException>(() => d.Update(double.NaN)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Update(double.PositiveInfinity));
        Assert.Equal("Maximum", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { Maximum = 9 })).ParamName);
        Assert.Equal("Minimum", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { Minimum = double.NaN })).ParamName);
        Assert.Equal("Maximum", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { Minimum = -double.MaxValue, Maximum = double.MaxValue })).ParamName);
        Assert.Equal("LevelBits", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { LevelBits = 0 })).ParamName);
        Assert.Equal("MaxActiveContexts", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { MaxActiveContexts = 0 })).ParamName);
        Assert.Equal("MaxLeftFacts", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { MaxLeftFacts = 0 })).ParamName);
        Assert.Equal("RestReadings", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { RestReadings = -1 })).ParamName);
        Assert.Equal("SuppressAbove", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { SuppressAbove = 0 })).ParamName);
    }
}
