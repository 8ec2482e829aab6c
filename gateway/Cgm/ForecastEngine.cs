using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Quantiles;

namespace StreamHealth.Gateway.Cgm;

/// <summary>A forecast of one 96-step window: median and quantile bands per horizon step (mg/dL).</summary>
public sealed record WindowForecast(float[] MedianMgDl, IReadOnlyList<FanBand> Bands, string ModelVersion, int McSamples);

/// <summary>The model is not there or not usable (answered 503 naming the reason).</summary>
public sealed class ForecastUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The gateway's own forecaster for interactive plots (GluRPC parity): the same ONNX model and Monte Carlo
/// dropout as the forecast consumer group, in-process, so a plot needs no broker round trip.
/// <list type="bullet">
/// <item>Single flight: concurrent requests for the same window (same model, same values) share one computation,
/// and the result is cached (bounded; <see cref="Flush"/>).</item>
/// <item>Two queues drained by one worker thread in batches: interactive requests (a plot someone waits for) are
/// always taken before background work (pre-computing a processed dataset's recent windows).</item>
/// </list>
/// The model is opened on first use, so a gateway without one still serves everything else and says why here.</summary>
public sealed class ForecastEngine : IDisposable
{
    public const int MaxCacheEntries = 20_000;
    private readonly ForecastOptions _options;
    private readonly ILogger _log;
    private readonly Lazy<OnnxGlucoseForecaster> _forecaster;
    private readonly ConcurrentDictionary<string, Task<WindowForecast>> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<Job> _interactive = new();
    private readonly ConcurrentQueue<Job> _background = new();
    private readonly SemaphoreSlim _work = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _worker;
    private readonly ManualResetEventSlim _running = new(true);
    private readonly double[] _levels;
    private long _computed;
    private long _batches;

    private sealed record Job(string Key, float[] Window, TaskCompletionSource<WindowForecast> Result, bool Interactive);

    public ForecastEngine(ForecastOptions options, ILogger<ForecastEngine> log)
    {
        _options = options;
        _log = log;
        _levels = [.. options.EffectiveQuantiles];
        _forecaster = new Lazy<OnnxGlucoseForecaster>(() => OnnxGlucoseForecaster.Open(options, log), LazyThreadSafetyMode.ExecutionAndPublication);
        _worker = new Thread(Work) { Name = "gateway-forecasts", IsBackground = true };
        _worker.Start();
    }

    public int InputSteps => _options.InputSteps;
    public int HorizonSteps => _options.HorizonSteps;
    public int StepMinutes => _options.StepMinutes;
    public int CacheEntries => _cache.Count;
    public long Computed => Interlocked.Read(ref _computed);
    public long Batches => Interlocked.Read(ref _batches);
    public int QueuedInteractive => _interactive.Count;
    public int QueuedBackground => _background.Count;
    public bool Loaded => _forecaster.IsValueCreated;

    /// <summary>The model's version, opening it if needed; throws <see cref="ForecastUnavailableException"/>.</summary>
    public string ModelVersion => Forecaster().ModelVersion;

    /// <summary>Null when the model can be used, else why not (for /health).</summary>
    public string? Problem()
    {
        try
        {
            _ = Forecaster();
            return null;
        }
        catch (ForecastUnavailableException e)
        {
            return e.Message;
        }
    }

    /// <summary>The forecast of <paramref name="window"/> (InputSteps values, oldest first).</summary>
    public Task<WindowForecast> ForecastAsync(float[] window, bool interactive = true)
    {
        if (window.Length != _options.InputSteps)
            throw new ArgumentException($"a forecast window has {_options.InputSteps} steps, not {window.Length}", nameof(window));
        var key = Key(window);
        if (_cache.TryGetValue(key, out var existing)) return existing;
        var job = new Job(key, window, new TaskCompletionSource<WindowForecast>(TaskCreationOptions.RunContinuationsAsynchronously), interactive);
        if (_cache.Count >= MaxCacheEntries) _cache.Clear();
        var task = _cache.GetOrAdd(key, job.Result.Task);
        if (task != job.Result.Task) return task;   // someone else is computing it: share theirs
        (interactive ? _interactive : _background).Enqueue(job);
        _work.Release();
        return task;
    }

    /// <summary>Empties the forecast cache; returns the number of entries dropped.</summary>
    public int Flush()
    {
        var n = _cache.Count;
        _cache.Clear();
        return n;
    }

    /// <summary>Drops the cached forecasts of these windows (a deleted dataset's).</summary>
    public int Forget(IEnumerable<float[]> windows) => windows.Count(w => _cache.TryRemove(Key(w), out _));

    private string Key(float[] window)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(MemoryMarshal.AsBytes(window.AsSpan()), hash);
        return Convert.ToHexString(hash[..16]);
    }

    private OnnxGlucoseForecaster Forecaster()
    {
        try
        {
            return _forecaster.Value;
        }
        catch (ForecastModelException e)
        {
            throw new ForecastUnavailableException(e.Message, e);
        }
    }

    /// <summary>Test hook: called by the worker with each job's priority (true = interactive) as it completes, in order.</summary>
    internal Action<bool>? Completed { get; set; }

    /// <summary>Test hook: holds the worker so queue order can be observed.</summary>
    internal void Pause() => _running.Reset();

    internal void Resume() => _running.Set();

    private void Work()
    {
        var batch = new List<Job>(_options.MaxBatchSize);
        var median = new float[_options.HorizonSteps];
        var bands = new float[_levels.Length * _options.HorizonSteps];
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                _work.Wait(_stop.Token);
                _running.Wait(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            batch.Clear();
            // Interactive first, always; background only fills what is left of the batch.
            do
            {
                if (_interactive.TryDequeue(out var job) || _background.TryDequeue(out job)) batch.Add(job);
                else break;
            }
            while (batch.Count < _options.MaxBatchSize && (batch.Count == 0 || _work.Wait(0)));
            if (batch.Count == 0) continue;
            try
            {
                var forecaster = Forecaster();
                for (var i = 0; i < batch.Count; i++) batch[i].Window.CopyTo(forecaster.Window(i));
                var samples = forecaster.Run(batch.Count);
                for (var i = 0; i < batch.Count; i++)
                {
                    if (!forecaster.Quantiles.Summarize(batch[i].Window[^1], samples.MeansOf(i), samples.StdsOf(i), samples.Samples, median, bands))
                    {
                        Fail(batch[i], new ForecastUnavailableException($"model {forecaster.ModelVersion} returned a non-finite forecast"));
                        continue;
                    }
                    var result = new WindowForecast([.. median],
                        [.. _levels.Select((q, k) => new FanBand(q, bands.AsSpan(k * median.Length, median.Length).ToArray()))],
                        forecaster.ModelVersion, samples.Samples);
                    Completed?.Invoke(batch[i].Interactive);
                    batch[i].Result.TrySetResult(result);
                }
                Interlocked.Add(ref _computed, batch.Count);
                Interlocked.Increment(ref _batches);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                if (e is not ForecastUnavailableException) _log.LogError(e, "forecast batch of {Count} failed", batch.Count);
                foreach (var job in batch) Fail(job, e);
            }
        }
    }

    private void Fail(Job job, Exception e)
    {
        _cache.TryRemove(job.Key, out _);   // a later request tries again
        job.Result.TrySetException(e);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _running.Set();
        _worker.Join(TimeSpan.FromSeconds(5));
        if (_forecaster.IsValueCreated) _forecaster.Value.Dispose();
        _stop.Dispose();
        _work.Dispose();
    }
}
