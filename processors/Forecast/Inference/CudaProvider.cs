using Microsoft.ML.OnnxRuntime;

namespace StreamHealth.Forecast.Inference;

/// <summary>The CUDA execution provider, loaded as an ONNX Runtime plugin: the CPU build of libonnxruntime.so that
/// setup installs can register <c>libonnxruntime_providers_cuda.so</c> (npm com.github.asus4.onnxruntime.linux-x64-gpu,
/// not installed by default) and place the model on a GPU it reports. Each missing piece is a start-up error naming it.</summary>
internal static class CudaProvider
{
    public const string LibraryName = "libonnxruntime_providers_cuda.so";
    private const string RegistrationName = "streamhealth-cuda";
    private static readonly Lock Gate = new();
    private static string? _registeredPath;

    public static void Append(SessionOptions sessionOptions, ForecastOptions options)
    {
        var setting = $"{ForecastOptions.Section}:ExecutionProvider = Cuda";
        var library = Locate(options, out var looked)
            ?? throw new ForecastModelException($"{setting}, but the CUDA provider library {LibraryName} is not installed (looked in {looked}); " +
                                                "add it as README.md \"Glucose forecasting\" describes, or set Forecast:ExecutionProvider = Cpu");
        var env = OrtEnv.Instance();
        lock (Gate)
        {
            if (_registeredPath is null)
            {
                try
                {
                    env.RegisterExecutionProviderLibrary(RegistrationName, library);
                }
                catch (OnnxRuntimeException e)
                {
                    throw new ForecastModelException($"{setting}: ONNX Runtime could not load {library}: {OnnxGlucoseForecaster.OneLine(e.Message)} " +
                                                     "(it needs an NVIDIA driver (libcuda.so.1) and the CUDA 13 runtime: libcudart.so.13, libcublas.so.13, " +
                                                     "libcublasLt.so.13, libcurand.so.10 on the library path)", e);
                }
                _registeredPath = library;
            }
        }
        var devices = env.GetEpDevices()
            .Where(d => d.EpName.Contains("CUDA", StringComparison.OrdinalIgnoreCase) && d.HardwareDevice.Type == OrtHardwareDeviceType.GPU)
            .ToList();
        if (devices.Count <= options.CudaDeviceId)
            throw new ForecastModelException($"{setting}: ONNX Runtime sees {devices.Count} CUDA GPU(s), so {ForecastOptions.Section}:CudaDeviceId = " +
                                             $"{options.CudaDeviceId} does not exist (is the GPU visible to this process? nvidia-smi)");
        sessionOptions.AppendExecutionProvider(env, [devices[options.CudaDeviceId]], null);
    }

    private static string? Locate(ForecastOptions options, out string looked)
    {
        if (options.CudaProviderPath.Length > 0)
        {
            var configured = Path.GetFullPath(options.CudaProviderPath, AppContext.BaseDirectory);
            looked = $"{ForecastOptions.Section}:CudaProviderPath = {configured}";
            return File.Exists(configured) ? configured : null;
        }
        // Beside libonnxruntime.so: where the package puts it (runtimes/linux-x64/native) or a flat publish.
        string[] candidates =
        [
            Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", LibraryName),
            Path.Combine(AppContext.BaseDirectory, LibraryName),
        ];
        looked = string.Join(", ", candidates);
        return candidates.FirstOrDefault(File.Exists);
    }
}
