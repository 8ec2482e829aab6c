using Microsoft.Extensions.Logging.Abstractions;
using StreamHealth.Forecast;
using StreamHealth.Gateway.Cgm;

namespace StreamHealth.Tests.Gateway;

public sealed class ForecastEngineTests
{
    private static ForecastEngine Engine(int maxBatchSize = 4) =>
        new(new ForecastOptions { Seed = 11, MaxBatchSize = maxBatchSize }, NullLogger<ForecastEngine>.Instance);

    private static float[] Window(float level) => Enumerable.Range(0, 96).Select(i => level + 0.1f * i).ToArray();

    [Fact]
    public async Task Concurrent_requests_for_the_same_window_are_computed_once()
    {
        using var engine = Engine();
        engine.Pause();
        // 20 callers at once, while the worker is held: every one gets the same in-flight computation.
        var tasks = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Task.Factory.StartNew(() => engine.ForecastAsync(Window(120)))));
        Assert.All(tasks, t => Assert.Same(tasks[0], t));
        engine.Resume();
        var forecasts = await Task.WhenAll(tasks);
        Assert.Equal(1, engine.Computed);
        Assert.Equal(12, forecasts[0].MedianMgDl.Length);
        // A second request later is a cache hit.
        Assert.Same(forecasts[0], await engine.ForecastAsync(Window(120)));
        Assert.Equal(1, engine.Computed);
    }

    [Fact]
    public async Task An_interactive_request_is_served_before_queued_background_work()
    {
        using var engine = Engine(maxBatchSize: 4);
        var order = new List<bool>();
        engine.Completed = interactive => { lock (order) order.Add(interactive); };
        engine.Pause();
        var background = Enumerable.Range(0, 40).Select(i => engine.ForecastAsync(Window(100 + i), interactive: false)).ToList();
        var interactive = engine.ForecastAsync(Window(250), interactive: true);
        engine.Resume();
        await interactive;
        await Task.WhenAll(background);
        Assert.Equal(41, order.Count);
        // Batches of 4: the interactive request is in the first batch, ahead of the 40 queued before it.
        Assert.True(order[0], $"first completed was background; order: {string.Join(',', order.Take(8))}");
    }

    [Fact]
    public async Task A_missing_model_is_reported_not_thrown_at_start_up_and_plots_get_a_clear_reason()
    {
        using var engine = new ForecastEngine(new ForecastOptions { ModelPath = "/no/such/model.onnx" }, NullLogger<ForecastEngine>.Instance);
        Assert.Contains("/no/such/model.onnx", engine.Problem());
        var e = await Assert.ThrowsAsync<ForecastUnavailableException>(() => engine.ForecastAsync(Window(100)));
        Assert.Contains("does not exist", e.Message);
    }
}
