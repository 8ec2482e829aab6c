using StreamHealth.Sensors.Anomalies;

namespace StreamHealth.Tests.Sensors;

/// <summary>The sensors' streaming anomaly detector (issue 16): what it reports, when it stays quiet, bad input.</summary>
public sealed class ContextNoveltyDetectorTests
{
    private static readonly ContextNoveltyOptions Small = new() { ProbationReadings = 200, RestReadings = 20 };

    /// <summary>A daily-like cycle of 48 readings between 10 and 20.</summary>
    private static double Cycle(int i) => 15 + 5 * Math.Sin(2 * Math.PI * i / 48.0);

    [Fact]
    public void Probation_is_silent_and_a_learned_cycle_stays_quiet()
    {
        var d = new ContextNoveltyDetector(Small);
        for (var i = 0; i < 200; i++) Assert.Equal(0.0, d.Update(Cycle(i)));
        var scores = Enumerable.Range(200, 1800).Select(i => d.Update(Cycle(i))).ToList();
        // Rounding puts a reading on the other side of a bin edge now and then: a context or two of the 24 is new,
        // far below the level NAB's threshold sits at (≈ 0.6).
        Assert.True(scores.Max() < 0.25, $"a cycle seen four times over is not news, scored {scores.Max()}");
        Assert.True(scores.Average() < 0.01, $"mean score {scores.Average()}");
    }

    [Fact]
    public void A_spike_is_reported_once_and_the_rest_period_holds_the_echoes()
    {
        var d = new ContextNoveltyDetector(Small);
        for (var i = 0; i < 1000; i++) d.Update(Cycle(i));
        var spike = d.Update(40);                          // twice the learned range above its top
        Assert.True(spike > 0.9, $"a value in a never-seen bin with never-seen contexts scores near 1, got {spike}");
        var echoes = Enumerable.Range(1001, 20).Select(i => d.Update(i == 1001 ? 41 : Cycle(i))).ToList();
        Assert.All(echoes, e => Assert.Equal(0.0, e));     // suppressed for RestReadings
    }

    [Fact]
    public void A_series_that_keeps_producing_news_scores_each_new_context_lower()
    {
        // Same readings after the same history, but one detector has just seen a burst of novelty (a noisy stretch):
        // its recent novelty rate discounts the next new context.
        var calm = new ContextNoveltyDetector(Small with { RestReadings = 0 });
        var noisy = new ContextNoveltyDetector(Small with { RestReadings = 0 });
        var rng = new Random(5);
        for (var i = 0; i < 1000; i++) { calm.Update(Cycle(i)); noisy.Update(i < 900 ? Cycle(i) : 10 + 10 * rng.NextDouble() + (i % 7)); }
        for (var i = 1000; i < 1010; i++) { calm.Update(Cycle(i)); noisy.Update(Cycle(i)); }
        Assert.True(noisy.Update(27) < calm.Update(27));
    }

    [Fact]
    public void Same_readings_same_scores()
    {
        var a = new ContextNoveltyDetector(Small);
        var b = new ContextNoveltyDetector(Small);
        var rng = new Random(3);
        for (var i = 0; i < 3000; i++)
        {
            var v = Cycle(i) + rng.NextDouble() + (i == 2500 ? 30 : 0);
            Assert.Equal(a.Update(v), b.Update(v));
        }
    }

    [Fact]
    public void Bad_readings_and_settings_are_refused_naming_the_problem()
    {
        var d = new ContextNoveltyDetector(Small);
        Assert.Contains("finite", Assert.Throws<ArgumentOutOfRangeException>(() => d.Update(double.NaN)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Update(double.PositiveInfinity));
        for (var i = 0; i < 300; i++) d.Update(Cycle(i));
        Assert.InRange(d.Update(1e300), 0.0, 1.0);         // absurd but finite: one far bin, no overflow
        Assert.InRange(d.Update(-1e300), 0.0, 1.0);
        Assert.Equal("Grids", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { Grids = [(1, 0.0)] })).ParamName);
        Assert.Equal("ProbationReadings", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { ProbationReadings = 1 })).ParamName);
        Assert.Equal("SuppressAbove", Assert.Throws<ArgumentOutOfRangeException>(() => new ContextNoveltyDetector(Small with { SuppressAbove = 0 })).ParamName);
    }
}
