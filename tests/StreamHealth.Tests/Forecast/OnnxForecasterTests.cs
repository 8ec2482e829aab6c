using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.Extensions.Configuration;
using Microsoft.ML.OnnxRuntime;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Inference.Onnx;
using StreamHealth.Runtime.Configuration;
using static StreamHealth.Tests.Forecast.ForecastFixtures;

namespace StreamHealth.Tests.Forecast;

/// <summary>ONNX Runtime with Monte Carlo dropout on the fixture model: samples that differ, seeds that reproduce,
/// the optimizer that must stay off, and the start-up checks that turn a wrong model into one clear line.</summary>
public sealed class OnnxForecasterTests
{
    /// <summary>Fills request r's window with <paramref name="windows"/>[r] and runs; returns a copy of the means and stds.</summary>
    private static (float[] Means, float[] Stds) Run(OnnxGlucoseForecaster forecaster, params float[][] windows)
    {
        for (var r = 0; r < windows.Length; r++) windows[r].CopyTo(forecaster.Window(r));
        var samples = forecaster.Run(windows.Length);
        return (samples.Means.ToArray(), samples.Stds.ToArray());
    }

    private static float[] Row(float[] values, int request, int sample, int samples = 10, int horizon = 12) =>
        values.AsSpan((request * samples + sample) * horizon, horizon).ToArray();

    [Fact]
    public void Every_monte_carlo_sample_of_a_request_differs_and_each_request_keeps_its_own_rows()
    {
        using var forecaster = OnnxGlucoseForecaster.Open(Options());
        float[][] windows = [Flat(80), Wave(150), Flat(240), Wave(320, amplitude: 40, phase: 2)];
        var (means, stds) = Run(forecaster, windows);
        for (var r = 0; r < windows.Length; r++)
        {
            // Each row draws its own masks. Two rows can still agree when their masks differ only on units the ReLUs had
            // already zeroed, which in this 32-unit fixture happens for a pair now and then; a collapsed sampler gives 1.
            var distinct = Enumerable.Range(0, 10).Select(s => string.Join(",", Row(means, r, s))).Distinct().Count();
            Assert.True(distinct >= 8, $"request {r}: only {distinct} distinct samples of 10");
            // The fixture forecasts the window's average ± 3 mg/dL: rows came back to the request that owns them.
            var average = windows[r].Average();
            for (var s = 0; s < 10; s++)
                Assert.All(Row(means, r, s), m => Assert.InRange(m, average - TinyModelMaxOffsetMgDl - 0.01, average + TinyModelMaxOffsetMgDl + 0.01));
        }
        Assert.All(stds, s => Assert.True(s > 0));
    }

    [Fact]
    public void The_same_seed_reproduces_every_sample_in_a_fresh_session_and_another_seed_does_not()
    {
        (float[], float[]) Session(long seed, int threads)
        {
            var options = Options(seed);
            options.IntraOpThreads = threads;
            using var forecaster = OnnxGlucoseForecaster.Open(options);
            Run(forecaster, Wave(140), Flat(100), Wave(200, phase: 1));   // the sequence of calls matters, not just the last
            return Run(forecaster, Flat(90), Wave(180, amplitude: 35));
        }
        var (means1, stds1) = Session(seed: 1234, threads: 1);
        var (means2, stds2) = Session(seed: 1234, threads: 2);
        Assert.Equal(means1, means2);
        Assert.Equal(stds1, stds2);
        var (means3, _) = Session(seed: 1235, threads: 1);
        Assert.NotEqual(means1, means3);
    }

    [Fact]
    public void Seeds_are_written_into_every_dropout_node_and_nothing_else_changes()
    {
        var original = File.ReadAllBytes(TinyModel);
        var rewritten = DropoutSeeds.Rewrite(original, 99, out var nodes);
        Assert.Equal(2, nodes);
        var model = ModelProto.Parser.ParseFrom(rewritten);
        var seeds = model.Graph.Node.Where(n => n.OpType == "Dropout").Select(n => n.Attribute.Single(a => a.Name == "seed").I).ToList();
        Assert.Equal([DropoutSeeds.NodeSeed(99, 0), DropoutSeeds.NodeSeed(99, 1)], seeds);
        Assert.NotEqual(seeds[0], seeds[1]);
        // Writing the fixture's own seeds back gives the file byte for byte: the unknown fields round-trip untouched.
        var back = ModelProto.Parser.ParseFrom(rewritten);
        var k = 0;
        foreach (var node in back.Graph.Node.Where(n => n.OpType == "Dropout")) node.Attribute.Single(a => a.Name == "seed").I = 7001 + k++;
        Assert.Equal(ModelProto.Parser.ParseFrom(original).ToByteArray(), back.ToByteArray());
        Assert.Equal(original.Length, back.ToByteArray().Length);
    }

    /// <summary>Why the forecaster sets <c>optimization.disable_specified_optimizers = EliminateDropout</c>: ONNX
    /// Runtime's default optimizations delete Dropout nodes even when they are in training mode, so the N copies of a
    /// window come back identical — N "samples" of a deterministic network, and bands of zero MC spread.</summary>
    [Fact]
    public void With_default_optimizations_the_samples_collapse_into_one_which_is_why_EliminateDropout_is_disabled()
    {
        float[] Rows(bool disable)
        {
            using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
            if (disable) options.AddSessionConfigEntry("optimization.disable_specified_optimizers", "EliminateDropout");
            using var session = new InferenceSession(TinyModel, options);
            var input = Enumerable.Range(0, 5).SelectMany(_ => Wave(130)).ToArray();
            using var value = OrtValue.CreateTensorValueFromMemory(input, [5, 96]);
            using var run = new RunOptions();
            using var outputs = session.Run(run, [OnnxGlucoseForecaster.InputName], [value], [OnnxGlucoseForecaster.MeanOutputName]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        var collapsed = Rows(disable: false);
        for (var s = 1; s < 5; s++) Assert.Equal(collapsed.AsSpan(0, 12).ToArray(), collapsed.AsSpan(s * 12, 12).ToArray());
        var sampled = Rows(disable: true);
        Assert.NotEqual(sampled.AsSpan(0, 12).ToArray(), sampled.AsSpan(12, 12).ToArray());

        // The forecaster's start-up check catches a session in that state instead of serving zero-spread bands.
        var e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(Options(), null, disableEliminateDropout: false, checkSamplesDiffer: true));
        Assert.Contains("Monte Carlo samples of one window are identical", e.Message);
        Assert.Contains("EliminateDropout", e.Message);
    }

    [Fact]
    public void A_missing_model_file_fails_at_start_up_naming_the_setting_and_the_path()
    {
        var options = Options();
        options.ModelPath = "/nonexistent/glucose-forecaster.onnx";
        var e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
        Assert.Equal("Forecast:ModelPath = /nonexistent/glucose-forecaster.onnx: model file /nonexistent/glucose-forecaster.onnx does not exist", e.Message);
    }

    [Fact]
    public void A_model_whose_input_does_not_match_the_configured_window_fails_at_start_up()
    {
        var options = Options();
        options.InputSteps = 48;
        var e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
        Assert.Equal($"model {TinyModel}: input 'glucose_mg_dl' has shape float [batch, 96], but Forecast:InputSteps = 48: the model reads 96 steps", e.Message);

        options = Options();
        options.HorizonSteps = 6;
        e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
        Assert.Contains("output 'mean_mg_dl' has shape float [batch, 12], but Forecast:HorizonSteps = 6", e.Message);
    }

    [Fact]
    public void A_model_with_other_input_or_output_names_fails_at_start_up_listing_what_it_has()
    {
        var dir = Directory.CreateTempSubdirectory("streamhealth-forecast-model-");
        try
        {
            var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(TinyModel));
            Rename(model, "glucose_mg_dl", "x");
            var renamedInput = Path.Combine(dir.FullName, "renamed-input.onnx");
            File.WriteAllBytes(renamedInput, model.ToByteArray());
            var options = Options();
            options.ModelPath = renamedInput;
            var e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
            Assert.Contains($"model {renamedInput} has no input 'glucose_mg_dl' (its inputs: 'x' float [batch, 96])", e.Message);

            model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(TinyModel));
            Rename(model, "std_mg_dl", "sigma");
            var renamedOutput = Path.Combine(dir.FullName, "renamed-output.onnx");
            File.WriteAllBytes(renamedOutput, model.ToByteArray());
            options.ModelPath = renamedOutput;
            e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
            Assert.Contains("has no output 'std_mg_dl' (its outputs: 'mean_mg_dl' float [batch, 12], 'sigma' float [batch, 12])", e.Message);

            var garbage = Path.Combine(dir.FullName, "garbage.onnx");
            File.WriteAllText(garbage, "this is not a model");
            options.ModelPath = garbage;
            e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
            Assert.StartsWith($"model {garbage} ", e.Message);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Asking_for_cuda_fails_at_start_up_naming_the_missing_piece_or_runs_on_the_gpu()
    {
        var options = Options(seed: 5);
        options.ExecutionProvider = "cuda";
        if (!CudaProvider.InThisBuild)
        {
            // The default build: Microsoft.ML.OnnxRuntime, CPU only.
            var e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
            Assert.StartsWith("Forecast:ExecutionProvider = Cuda, but this build's ONNX Runtime is the CPU package, without the CUDA provider " +
                              "library libonnxruntime_providers_cuda.so: build with -p:OnnxRuntimeFlavor=Gpu", e.Message);
            Assert.Contains("Forecast:ExecutionProvider = Cpu", e.Message);
            return;
        }
        // Built with -p:OnnxRuntimeFlavor=Gpu.
        if (!NativeLibrary.TryLoad("libcuda.so.1", out _))
        {
            var e = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
            Assert.StartsWith("Forecast:ExecutionProvider = Cuda, but there is no NVIDIA driver: libcuda.so.1 cannot be loaded", e.Message);
            return;
        }
        options.CudaDeviceId = 63;
        var noSuchGpu = Assert.Throws<ForecastModelException>(() => OnnxGlucoseForecaster.Open(options));
        Assert.Contains("Forecast:CudaDeviceId = 63 does not exist", noSuchGpu.Message);
        // A GPU machine: the model runs there, every sample where the fixture puts it.
        options.CudaDeviceId = 0;
        using var forecaster = OnnxGlucoseForecaster.Open(options);
        Assert.Equal(ForecastExecutionProvider.Cuda, forecaster.Provider);
        var (means, stds) = Run(forecaster, Flat(150));
        Assert.All(means, m => Assert.InRange(m, 150 - TinyModelMaxOffsetMgDl - 0.01, 150 + TinyModelMaxOffsetMgDl + 0.01));
        Assert.All(stds, s => Assert.True(s > 0));
    }

    [Fact]
    public void Invalid_options_are_one_line_naming_each_setting()
    {
        var options = Options();
        options.McSamples = 0;
        options.ExecutionProvider = "Gpu";
        options.Quantiles = [0.05, 0.5, 0.25];
        options.MaxWaitMs = -1;
        var e = Assert.Throws<ConfigurationException>(() => options.ThrowIfInvalid());
        Assert.Equal("configuration error: Forecast:ExecutionProvider = Gpu: must be Cpu or Cuda; Forecast:McSamples = 0: must be 1-1000; " +
                     "Forecast:MaxWaitMs = -1: must be 0-10000; Forecast:Quantiles:2 = 0.25: levels must increase (previous 0.5)", e.Message);

        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Forecast:McSamples"] = "ten",
        }).Build();
        var bind = Assert.Throws<ConfigurationException>(() => ForecastOptions.Load(config));
        Assert.Contains("Forecast:McSamples", bind.Message);
    }

    [Fact]
    public void Options_bind_from_configuration_with_the_default_quantiles_when_none_are_given()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Forecast:McSamples"] = "20",
            ["Forecast:Seed"] = "7",
            ["Forecast:ExecutionProvider"] = "Cpu",
        }).Build();
        var options = ForecastOptions.Load(config);
        Assert.Equal(20, options.McSamples);
        Assert.Equal(7, options.Seed);
        Assert.Equal([0.05, 0.25, 0.75, 0.95], options.EffectiveQuantiles);
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "Model", "glucose-forecaster.onnx"), options.ResolvedModelPath);

        config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Forecast:Quantiles:0"] = "0.1",
            ["Forecast:Quantiles:1"] = "0.9",
        }).Build();
        Assert.Equal([0.1, 0.9], ForecastOptions.Load(config).EffectiveQuantiles);
    }

    private static void Rename(ModelProto model, string from, string to)
    {
        foreach (var v in model.Graph.Input.Concat(model.Graph.Output).Where(v => v.Name == from)) v.Name = to;
        foreach (var node in model.Graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++) if (node.Input[i] == from) node.Input[i] = to;
            for (var i = 0; i < node.Output.Count; i++) if (node.Output[i] == from) node.Output[i] = to;
        }
    }
}
