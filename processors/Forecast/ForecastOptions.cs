using System.Globalization;
using Microsoft.Extensions.Configuration;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Forecast;

/// <summary>Where ONNX Runtime runs the model.</summary>
public enum ForecastExecutionProvider { Cpu, Cuda }

/// <summary>The forecaster (section <c>Forecast</c>): the model, how it is sampled, how requests are batched.
/// Glucose is mg/dL; windows and horizons count 5-minute steps.</summary>
public sealed class ForecastOptions
{
    public const string Section = "Forecast";
    public const string DefaultModelPath = "Model/glucose-forecaster.onnx";
    public static readonly IReadOnlyList<double> DefaultQuantiles = [0.05, 0.25, 0.75, 0.95];

    /// <summary>The ONNX model; a relative path is relative to the binary's directory, where the build copies
    /// <c>processors/Forecast/Model/</c>. Its metadata (model_version) is read from the same name with .json, if present.</summary>
    public string ModelPath { get; set; } = DefaultModelPath;

    /// <summary><c>Cpu</c> (default) or <c>Cuda</c>; Cuda needs a build with <c>-p:OnnxRuntimeFlavor=Gpu</c>, the NVIDIA driver,
    /// the CUDA 13 runtime and a GPU (README, "Glucose forecasting").</summary>
    public string ExecutionProvider { get; set; } = nameof(ForecastExecutionProvider.Cpu);

    /// <summary>Which CUDA device (of those the driver lists, after CUDA_VISIBLE_DEVICES) runs the model.</summary>
    public int CudaDeviceId { get; set; }

    /// <summary>Monte Carlo dropout samples per request: each request's window is repeated this many times in the batch.</summary>
    public int McSamples { get; set; } = 10;

    /// <summary>Seed of the Dropout masks. Set: the model's Dropout seeds are derived from it, so a fresh process given the
    /// same requests in the same batches produces the same samples. Null: a random seed per start, logged.</summary>
    public long? Seed { get; set; }

    /// <summary>The platform's event-time rule (section "Input", not this section): a request dated outside it is
    /// dead-lettered, so no forecast is made for, or stored at, a time in the future.</summary>
    public EventTimeRule TimeRule { get; set; } = EventTimeRule.Default;

    /// <summary>Most requests in one ONNX Runtime call (that call has MaxBatchSize × McSamples rows).</summary>
    public int MaxBatchSize { get; set; } = 256;

    /// <summary>Longest a request waits for its batch to fill; a full batch runs at once.</summary>
    public int MaxWaitMs { get; set; } = 10;

    /// <summary>Levels of the bands besides the median, strictly increasing in (0, 1). Null: 0.05, 0.25, 0.75, 0.95.</summary>
    public double[]? Quantiles { get; set; }

    /// <summary>Lowest glucose a forecast publishes (every quantile and the median are clamped to it), mg/dL. Null: the
    /// model metadata's <c>bounds_mg_dl.min</c>, else 39 (the sensors' reporting floor).</summary>
    public double? MinGlucoseMgDl { get; set; }

    /// <summary>Highest glucose a forecast publishes, mg/dL. Null: the metadata's <c>bounds_mg_dl.max</c>, else 401.</summary>
    public double? MaxGlucoseMgDl { get; set; }

    /// <summary>ONNX Runtime's threads for one call; 0 lets ONNX Runtime choose (one per core).</summary>
    public int IntraOpThreads { get; set; } = 1;

    /// <summary>Steps of input the model reads (96 × 5 min = 8 h); checked against the model at start-up.</summary>
    public int InputSteps { get; set; } = 96;

    /// <summary>Steps the model forecasts (12 × 5 min = 1 h); checked against the model at start-up.</summary>
    public int HorizonSteps { get; set; } = 12;

    /// <summary>Spacing of the input steps; a request with another step is dead-lettered.</summary>
    public int StepMinutes { get; set; } = 5;

    /// <summary>How often the consumer commits the offsets whose forecasts (or dead letters) are acknowledged.</summary>
    public int CommitIntervalMs { get; set; } = 500;

    public IReadOnlyList<double> EffectiveQuantiles => Quantiles is { Length: > 0 } q ? q : DefaultQuantiles;

    public ForecastExecutionProvider Provider =>
        Enum.TryParse<ForecastExecutionProvider>(ExecutionProvider, ignoreCase: true, out var p) && Enum.IsDefined(p)
            ? p
            : throw new ConfigurationException($"configuration error: {Section}:{nameof(ExecutionProvider)} = {ExecutionProvider}: must be Cpu or Cuda");

    /// <summary>The model file: <see cref="ModelPath"/> made absolute against the binary's directory.</summary>
    public string ResolvedModelPath => Path.GetFullPath(ModelPath, AppContext.BaseDirectory);

    /// <summary>Every problem, one line each naming the setting and its value; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        void Error(string name, object? value, string rule) => errors.Add($"{Section}:{name} = {Format(value)}: {rule}");

        if (string.IsNullOrWhiteSpace(ModelPath)) errors.Add($"{Section}:{nameof(ModelPath)} is empty");
        if (!Enum.TryParse<ForecastExecutionProvider>(ExecutionProvider, ignoreCase: true, out var provider) || !Enum.IsDefined(provider)
            || int.TryParse(ExecutionProvider, out _))
            Error(nameof(ExecutionProvider), ExecutionProvider, "must be Cpu or Cuda");
        if (CudaDeviceId is < 0 or > 63) Error(nameof(CudaDeviceId), CudaDeviceId, "must be 0-63");
        if (McSamples is < 1 or > 1_000) Error(nameof(McSamples), McSamples, "must be 1-1000");
        if (MaxBatchSize is < 1 or > 16_384) Error(nameof(MaxBatchSize), MaxBatchSize, "must be 1-16384");
        else if (McSamples is >= 1 and <= 1_000 && (long)MaxBatchSize * McSamples > MaxRowsPerCall)
            Error(nameof(MaxBatchSize), MaxBatchSize, $"× {nameof(McSamples)} ({McSamples}) = {(long)MaxBatchSize * McSamples} rows in one call; at most {MaxRowsPerCall}");
        if (MaxWaitMs is < 0 or > 10_000) Error(nameof(MaxWaitMs), MaxWaitMs, "must be 0-10000");
        if (Quantiles is { Length: > 32 }) Error(nameof(Quantiles), Quantiles, "at most 32 levels");
        var levels = EffectiveQuantiles;
        for (var i = 0; i < levels.Count; i++)
        {
            if (!(levels[i] > 0 && levels[i] < 1)) Error($"{nameof(Quantiles)}:{i}", levels[i], "must be a level strictly between 0 and 1");
            else if (i > 0 && !(levels[i] > levels[i - 1])) Error($"{nameof(Quantiles)}:{i}", levels[i], $"levels must increase (previous {Format(levels[i - 1])})");
        }
        if (MinGlucoseMgDl is { } min && !(min > 0 && min < 1_000)) Error(nameof(MinGlucoseMgDl), min, "must be above 0 and below 1000 mg/dL");
        if (MaxGlucoseMgDl is { } max && !(max > 0 && max <= 1_000)) Error(nameof(MaxGlucoseMgDl), max, "must be above 0 and at most 1000 mg/dL");
        else if (MinGlucoseMgDl is { } lower && MaxGlucoseMgDl is { } upper && !(lower < upper))
            Error(nameof(MaxGlucoseMgDl), upper, $"must be above {nameof(MinGlucoseMgDl)} ({Format(lower)})");
        if (IntraOpThreads is < 0 or > 256) Error(nameof(IntraOpThreads), IntraOpThreads, "must be 0 (ONNX Runtime's choice) to 256");
        if (InputSteps is < 1 or > 10_000) Error(nameof(InputSteps), InputSteps, "must be 1-10000");
        if (HorizonSteps is < 1 or > 1_000) Error(nameof(HorizonSteps), HorizonSteps, "must be 1-1000");
        if (StepMinutes is < 1 or > 60 || 60 % StepMinutes != 0) Error(nameof(StepMinutes), StepMinutes, "must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)");
        if (CommitIntervalMs is < 10 or > 60_000) Error(nameof(CommitIntervalMs), CommitIntervalMs, "must be 10-60000");
        return errors;
    }

    /// <exception cref="ConfigurationException">One line listing every invalid setting.</exception>
    public ForecastOptions ThrowIfInvalid()
    {
        if (Validate() is { Count: > 0 } errors) throw new ConfigurationException("configuration error: " + string.Join("; ", errors));
        return this;
    }

    /// <summary>Binds section <see cref="Section"/> and validates it.</summary>
    /// <exception cref="ConfigurationException">A value that does not bind or is invalid, named.</exception>
    public static ForecastOptions Load(IConfiguration configuration)
    {
        ForecastOptions options;
        try
        {
            options = configuration.GetSection(Section).Get<ForecastOptions>() ?? new ForecastOptions();
            options.TimeRule = InputOptions.TimeRuleOf(configuration);
        }
        catch (InvalidOperationException e)
        {
            // The binder's message names the key ("... value 'x' at 'Forecast:McSamples' to type ...").
            throw new ConfigurationException(e.Message.ReplaceLineEndings(" ").Trim());
        }
        return options.ThrowIfInvalid();
    }

    /// <summary>ONNX Runtime's input is rows × InputSteps floats; this bounds one call's memory (~100 MB at 96 steps).</summary>
    internal const int MaxRowsPerCall = 262_144;

    private static string Format(object? value) => value switch
    {
        null => "(null)",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        double[] a => "[" + string.Join(", ", a.Select(d => d.ToString("R", CultureInfo.InvariantCulture))) + "]",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };
}
