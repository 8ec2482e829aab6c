using System.Security.Cryptography;
using System.Text.Json;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using StreamHealth.Forecast.Quantiles;

namespace StreamHealth.Forecast.Inference;

/// <summary>A model the forecaster cannot use, or an execution provider that is not there: found at start-up,
/// never at the first request. The message is one line naming the file or setting and the mismatch.</summary>
public sealed class ForecastModelException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The glucose model in ONNX Runtime, sampled with Monte Carlo dropout: each request's window is
/// repeated <see cref="McSamples"/> times in ONE batched <c>Run</c>, and every row gets its own dropout masks,
/// so row s of request r is sample s of that request's predictive distribution.
/// Contract (processors/Forecast/Model/glucose-forecaster.json): input <c>glucose_mg_dl</c> float [batch, InputSteps]
/// raw mg/dL oldest first; outputs <c>mean_mg_dl</c>, <c>std_mg_dl</c> float [batch, HorizonSteps], one Gaussian per
/// step and sample; Dropout nodes in training mode. Not thread-safe: one caller (the consumer loop) at a time.</summary>
public sealed class OnnxGlucoseForecaster : IDisposable
{
    public const string InputName = "glucose_mg_dl";
    public const string MeanOutputName = "mean_mg_dl";
    public const string StdOutputName = "std_mg_dl";

    /// <summary>ONNX Runtime's graph optimizer that deletes Dropout nodes, even those with training_mode = true;
    /// it must be off or every Monte Carlo sample is the same deterministic forecast.</summary>
    internal const string EliminateDropout = "EliminateDropout";

    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly string[] _inputNames = [InputName];
    private readonly string[] _outputNames = [MeanOutputName, StdOutputName];
    private float[] _input = [];
    private float[] _means = [];
    private float[] _stds = [];

    public string ModelPath { get; }
    /// <summary>From the model's .json metadata (<c>model_version</c>), else file name and content hash.</summary>
    public string ModelVersion { get; }
    public int InputSteps { get; }
    public int HorizonSteps { get; }
    public int McSamples { get; }
    /// <summary>The seed the Dropout seeds were derived from (configured, or drawn at start-up).</summary>
    public long Seed { get; }
    public ForecastExecutionProvider Provider { get; }
    public int DropoutNodes { get; }
    /// <summary>The model's calibration and bounds (metadata <c>calibration</c>, <c>bounds_mg_dl</c>; identity and 39/401 without).</summary>
    public ForecastCalibration Calibration { get; }
    /// <summary>Median and bands of a request at the configured levels and bounds: what every caller publishes.</summary>
    public CalibratedQuantiles Quantiles { get; }

    private OnnxGlucoseForecaster(InferenceSession session, string modelPath, string modelVersion, ForecastOptions options, long seed,
        ForecastExecutionProvider provider, int dropoutNodes, ForecastCalibration calibration, CalibratedQuantiles quantiles)
    {
        Calibration = calibration;
        Quantiles = quantiles;
        _session = session;
        ModelPath = modelPath;
        ModelVersion = modelVersion;
        InputSteps = options.InputSteps;
        HorizonSteps = options.HorizonSteps;
        McSamples = options.McSamples;
        Seed = seed;
        Provider = provider;
        DropoutNodes = dropoutNodes;
        EnsureCapacity(Math.Max(1, options.MaxBatchSize));
    }

    /// <summary>Loads and checks the model: file present, input/output names, types and shapes equal to the
    /// configured window and horizon, Monte Carlo samples that really differ.</summary>
    /// <exception cref="ForecastModelException">Anything that would otherwise fail at the first request.</exception>
    public static OnnxGlucoseForecaster Open(ForecastOptions options, ILogger? log = null) =>
        Open(options, log, disableEliminateDropout: true, checkSamplesDiffer: true);

    /// <param name="disableEliminateDropout">False only for the test that shows why it must be true.</param>
    /// <param name="checkSamplesDiffer">False only to build the session that test inspects.</param>
    internal static OnnxGlucoseForecaster Open(ForecastOptions options, ILogger? log, bool disableEliminateDropout, bool checkSamplesDiffer)
    {
        options.ThrowIfInvalid();
        var path = options.ResolvedModelPath;
        if (!File.Exists(path))
            throw new ForecastModelException(Directory.Exists(path)
                ? $"{ForecastOptions.Section}:ModelPath = {options.ModelPath}: {path} is a directory, not an ONNX model file"
                : $"{ForecastOptions.Section}:ModelPath = {options.ModelPath}: model file {path} does not exist");
        var bytes = File.ReadAllBytes(path);
        var seedConfigured = options.Seed.HasValue;
        var seed = options.Seed ?? Random.Shared.NextInt64(1, long.MaxValue);
        int dropoutNodes;
        try
        {
            bytes = DropoutSeeds.Rewrite(bytes, seed, out dropoutNodes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new ForecastModelException($"model {path} is not an ONNX model: {e.Message}", e);
        }
        if (dropoutNodes == 0 && options.McSamples > 1)
            throw new ForecastModelException($"model {path} has no Dropout node, so its {options.McSamples} Monte Carlo samples would all be " +
                                             $"equal: export it with Dropout in training mode, or set {ForecastOptions.Section}:McSamples = 1");

        var provider = options.Provider;
        var version = ReadModelVersion(path);
        var calibration = ForecastCalibration.Load(path, options.HorizonSteps);
        var quantiles = calibration.For(options.EffectiveQuantiles, options.MinGlucoseMgDl, options.MaxGlucoseMgDl, Path.ChangeExtension(path, ".json"));
        using var sessionOptions = new SessionOptions();
        sessionOptions.GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL;
        if (disableEliminateDropout) sessionOptions.AddSessionConfigEntry("optimization.disable_specified_optimizers", EliminateDropout);
        sessionOptions.IntraOpNumThreads = options.IntraOpThreads;
        sessionOptions.InterOpNumThreads = 1;
        sessionOptions.ExecutionMode = ExecutionMode.ORT_SEQUENTIAL;
        sessionOptions.LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR;
        if (provider == ForecastExecutionProvider.Cuda) CudaProvider.Append(sessionOptions, options);
        OnnxGlucoseForecaster Create()
        {
            InferenceSession session;
            try
            {
                session = new InferenceSession(bytes, sessionOptions);
            }
            catch (OnnxRuntimeException e)
            {
                throw new ForecastModelException($"model {path} cannot be loaded by ONNX Runtime: {OneLine(e.Message)}", e);
            }
            try
            {
                CheckSignature(session, path, options);
                return new OnnxGlucoseForecaster(session, path, version, options, seed, provider, dropoutNodes, calibration, quantiles);
            }
            catch
            {
                session.Dispose();
                throw;
            }
        }
        // The probe runs in a session of its own, so the serving session's mask stream starts at its first Run:
        // "the k-th call after start-up" is all a seed needs to reproduce.
        if (checkSamplesDiffer && options.McSamples > 1)
        {
            using var probe = Create();
            probe.CheckSamplesDiffer();
        }
        var forecaster = Create();
        log?.LogInformation("forecaster: model {Path} ({Version}) on {Provider}, {Samples} Monte Carlo samples per request, " +
                            "dropout seed {Seed} ({SeedSource}), {Threads} intra-op thread(s)",
            path, forecaster.ModelVersion, provider, options.McSamples, seed,
            seedConfigured ? "configured" : $"random: set {ForecastOptions.Section}:Seed to reproduce", options.IntraOpThreads);
        return forecaster;
    }

    /// <summary>Where request <paramref name="request"/>'s window goes before <see cref="Run"/> (InputSteps floats,
    /// oldest first). The other McSamples − 1 copies are made by Run.</summary>
    public Span<float> Window(int request)
    {
        EnsureCapacity(request + 1);
        return _input.AsSpan(request * McSamples * InputSteps, InputSteps);
    }

    /// <summary>One ONNX Runtime call over <paramref name="requests"/> × McSamples rows. The result's spans stay valid
    /// until the next call.</summary>
    public McDropoutSamples Run(int requests)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(requests);
        EnsureCapacity(requests);
        var n = McSamples;
        var w = InputSteps;
        for (var r = 0; r < requests; r++)
        {
            var window = _input.AsSpan(r * n * w, w);
            for (var s = 1; s < n; s++) window.CopyTo(_input.AsSpan((r * n + s) * w, w));
        }
        var rows = (long)requests * n;
        using var input = OrtValue.CreateTensorValueFromMemory(_input, [rows, w]);
        using var means = OrtValue.CreateTensorValueFromMemory(_means, [rows, HorizonSteps]);
        using var stds = OrtValue.CreateTensorValueFromMemory(_stds, [rows, HorizonSteps]);
        _session.Run(_runOptions, _inputNames, [input], _outputNames, [means, stds]);
        var size = requests * n * HorizonSteps;
        return new McDropoutSamples(_means.AsSpan(0, size), _stds.AsSpan(0, size), requests, n, HorizonSteps);
    }

    private void EnsureCapacity(int requests)
    {
        var rows = requests * McSamples;
        if (_input.Length >= rows * InputSteps) return;
        // Grow to the next power of two so a slowly growing caller resizes a handful of times, never per call.
        var capacity = (int)Math.Min(System.Numerics.BitOperations.RoundUpToPowerOf2((uint)rows), ForecastOptions.MaxRowsPerCall);
        if (capacity < rows) throw new ArgumentOutOfRangeException(nameof(requests), requests, $"more than {ForecastOptions.MaxRowsPerCall} rows in one call");
        Array.Resize(ref _input, capacity * InputSteps);
        _means = new float[capacity * HorizonSteps];
        _stds = new float[capacity * HorizonSteps];
    }

    private static void CheckSignature(InferenceSession session, string path, ForecastOptions options)
    {
        var inputs = session.InputMetadata;
        var outputs = session.OutputMetadata;
        if (!inputs.TryGetValue(InputName, out var input))
            throw new ForecastModelException($"model {path} has no input '{InputName}' (its inputs: {Describe(inputs)}); the forecaster feeds " +
                                             $"'{InputName}' float [batch, {ForecastOptions.Section}:InputSteps = {options.InputSteps}]");
        if (inputs.Count > 1)
            throw new ForecastModelException($"model {path} has {inputs.Count} inputs ({Describe(inputs)}); the forecaster feeds only '{InputName}'");
        CheckTensor(path, "input", InputName, input, options.InputSteps, $"{ForecastOptions.Section}:InputSteps");
        foreach (var name in new[] { MeanOutputName, StdOutputName })
        {
            if (!outputs.TryGetValue(name, out var output))
                throw new ForecastModelException($"model {path} has no output '{name}' (its outputs: {Describe(outputs)}); the forecaster reads " +
                                                 $"'{MeanOutputName}' and '{StdOutputName}' float [batch, {ForecastOptions.Section}:HorizonSteps = {options.HorizonSteps}]");
            CheckTensor(path, "output", name, output, options.HorizonSteps, $"{ForecastOptions.Section}:HorizonSteps");
        }
    }

    private static void CheckTensor(string path, string kind, string name, NodeMetadata metadata, int steps, string setting)
    {
        if (!metadata.IsTensor || metadata.ElementDataType != TensorElementType.Float)
            throw new ForecastModelException($"model {path}: {kind} '{name}' is {Describe(metadata)}; expected float [batch, {steps}]");
        var dims = metadata.Dimensions;
        if (dims.Length != 2)
            throw new ForecastModelException($"model {path}: {kind} '{name}' has shape {Describe(metadata)}; expected [batch, {steps}] ({setting} = {steps})");
        if (dims[1] != steps)
            throw new ForecastModelException($"model {path}: {kind} '{name}' has shape {Describe(metadata)}, but {setting} = {steps}: " +
                                             $"the model {(kind == "input" ? "reads" : "forecasts")} {(dims[1] < 0 ? "a variable number of" : dims[1].ToString())} steps");
        if (dims[0] >= 0)
            throw new ForecastModelException($"model {path}: {kind} '{name}' has a fixed batch size ({Describe(metadata)}); export it with a dynamic " +
                                             "batch axis, because the forecaster batches requests × Monte Carlo samples");
    }

    /// <summary>Two copies of one window must come back different, or MC dropout is not happening: Dropout in eval
    /// mode, or removed by an optimizer (what this check caught when EliminateDropout was left on).</summary>
    private void CheckSamplesDiffer()
    {
        var window = Window(0);
        for (var i = 0; i < window.Length; i++) window[i] = 120f + 10f * MathF.Sin(i / 8f);   // an ordinary day, mg/dL
        var samples = Run(1);
        var differ = false;
        for (var i = 0; i < samples.Means.Length; i++)
        {
            if (!float.IsFinite(samples.Means[i]) || !float.IsFinite(samples.Stds[i]) || samples.Stds[i] <= 0)
                throw new ForecastModelException($"model {ModelPath} returned mean {samples.Means[i]}, std {samples.Stds[i]} mg/dL for an ordinary " +
                                                 "glucose window; a forecast needs finite means and positive standard deviations");
            differ |= samples.Means[i] != samples.Means[i % HorizonSteps] || samples.Stds[i] != samples.Stds[i % HorizonSteps];
        }
        if (!differ)
            throw new ForecastModelException($"model {ModelPath}: its {McSamples} Monte Carlo samples of one window are identical, so Dropout is not " +
                                             "active: export the Dropout nodes in training mode (torch.onnx.export(..., training=TrainingMode.PRESERVE) " +
                                             $"on a train()-mode module), and keep ONNX Runtime's {EliminateDropout} optimizer disabled");
    }

    private static string ReadModelVersion(string path)
    {
        var metadata = Path.ChangeExtension(path, ".json");
        if (File.Exists(metadata))
        {
            try
            {
                using var json = JsonDocument.Parse(File.ReadAllBytes(metadata));
                if (json.RootElement.TryGetProperty("model_version", out var v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } version)
                    return version;
            }
            catch (JsonException e)
            {
                throw new ForecastModelException($"model metadata {metadata} is not valid JSON: {OneLine(e.Message)}", e);
            }
        }
        // No metadata: name the exact file, so forecasts still say which model made them.
        return $"{Path.GetFileNameWithoutExtension(path)}@sha256:{Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)))[..12]}";
    }

    private static string Describe(IReadOnlyDictionary<string, NodeMetadata> values) =>
        values.Count == 0 ? "none" : string.Join(", ", values.Select(v => $"'{v.Key}' {Describe(v.Value)}"));

    private static string Describe(NodeMetadata m) => !m.IsTensor
        ? m.OnnxValueType.ToString()
        : $"{m.ElementDataType.ToString().ToLowerInvariant()} [{string.Join(", ", m.Dimensions.Select((d, i) => d >= 0 ? d.ToString() : m.SymbolicDimensions[i] is { Length: > 0 } s ? s : "?"))}]";

    internal static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    public void Dispose()
    {
        _runOptions.Dispose();
        _session.Dispose();
    }
}

/// <summary>One call's output: for request r, sample s, step h, the Gaussian N(mean, std²) in mg/dL at
/// <c>[(r × Samples + s) × Horizon + h]</c>.</summary>
public readonly ref struct McDropoutSamples(ReadOnlySpan<float> means, ReadOnlySpan<float> stds, int requests, int samples, int horizon)
{
    public ReadOnlySpan<float> Means { get; } = means;
    public ReadOnlySpan<float> Stds { get; } = stds;
    public int Requests { get; } = requests;
    public int Samples { get; } = samples;
    public int Horizon { get; } = horizon;

    /// <summary>Request r's samples × horizon means, sample-major.</summary>
    public ReadOnlySpan<float> MeansOf(int request) => Means.Slice(request * Samples * Horizon, Samples * Horizon);

    public ReadOnlySpan<float> StdsOf(int request) => Stds.Slice(request * Samples * Horizon, Samples * Horizon);
}
