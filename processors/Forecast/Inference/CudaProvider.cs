using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace StreamHealth.Forecast.Inference;

/// <summary>ONNX Runtime's CUDA execution provider. It ships only in the Microsoft.ML.OnnxRuntime.Gpu package (build with
/// <c>-p:OnnxRuntimeFlavor=Gpu</c>): <c>libonnxruntime_providers_cuda.so</c> beside <c>libonnxruntime.so</c>, which ORT
/// loads when the provider is appended. Each missing piece is a start-up error naming it, in the order a deployer meets
/// them: a CPU-only build, no NVIDIA driver, no such GPU, a provider library that cannot load (CUDA runtime missing).</summary>
internal static partial class CudaProvider
{
    public const string LibraryName = "libonnxruntime_providers_cuda.so";
    private const string OrtProviderName = "CUDAExecutionProvider";
    /// <summary>What libonnxruntime_providers_cuda.so 1.31.0 links against (its ELF NEEDED entries), besides the driver.</summary>
    private static readonly string[] CudaRuntimeLibraries = ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10"];
    private const string DriverLibrary = "libcuda.so.1";

    /// <summary>True when this build's ONNX Runtime has the CUDA provider (the Gpu flavor), whether or not a GPU is there.</summary>
    public static bool InThisBuild => OrtEnv.Instance().GetAvailableProviders().Contains(OrtProviderName);

    public static void Append(SessionOptions sessionOptions, ForecastOptions options)
    {
        var setting = $"{ForecastOptions.Section}:ExecutionProvider = Cuda";
        if (!InThisBuild)
            throw new ForecastModelException($"{setting}, but this build's ONNX Runtime is the CPU package, without the CUDA provider library {LibraryName}: " +
                                             "build with -p:OnnxRuntimeFlavor=Gpu as README.md \"Glucose forecasting\" describes, " +
                                             $"or set {ForecastOptions.Section}:ExecutionProvider = Cpu");
        // Asked of the driver first: ORT would report a missing driver or GPU only at session creation, as a model load failure.
        var gpus = CountGpus(setting);
        if (gpus <= options.CudaDeviceId)
            throw new ForecastModelException($"{setting}: the NVIDIA driver sees {gpus} GPU(s), so {ForecastOptions.Section}:CudaDeviceId = " +
                                             $"{options.CudaDeviceId} does not exist (is the GPU visible to this process? nvidia-smi, CUDA_VISIBLE_DEVICES)");
        try
        {
            sessionOptions.AppendExecutionProvider_CUDA(options.CudaDeviceId);
        }
        catch (OnnxRuntimeException e)
        {
            // ORT's exception says only "Failed to load shared library" (the loader's reason goes to its log): name what is missing.
            var missing = CudaRuntimeLibraries.Where(library => !NativeLibrary.TryLoad(library, out _)).ToList();
            throw new ForecastModelException($"{setting}: ONNX Runtime could not load {LibraryName}: {OnnxGlucoseForecaster.OneLine(e.Message)}; " +
                                             (missing.Count > 0
                                                 ? $"not on the library path: {string.Join(", ", missing)} (install the CUDA 13 runtime)"
                                                 : $"the CUDA 13 runtime it needs ({string.Join(", ", CudaRuntimeLibraries)}) loads, so ONNX Runtime's log line above has the reason"), e);
        }
    }

    /// <summary>GPUs the CUDA driver API reports (it honours CUDA_VISIBLE_DEVICES, as ORT's device ids do).</summary>
    private static int CountGpus(string setting)
    {
        if (!NativeLibrary.TryLoad(DriverLibrary, out _))
            throw new ForecastModelException($"{setting}, but there is no NVIDIA driver: {DriverLibrary} cannot be loaded " +
                                             "(install the driver, or in a container run with the NVIDIA container toolkit)");
        const int cudaErrorNoDevice = 100;
        var init = CuInit(0);
        if (init == cudaErrorNoDevice) return 0;
        if (init != 0)
            throw new ForecastModelException($"{setting}: the NVIDIA driver failed to start (cuInit returned CUresult {init}; nvidia-smi says why)");
        var count = CuDeviceGetCount(out var gpus);
        if (count != 0)
            throw new ForecastModelException($"{setting}: the NVIDIA driver could not count GPUs (cuDeviceGetCount returned CUresult {count})");
        return gpus;
    }

    [LibraryImport(DriverLibrary, EntryPoint = "cuInit")]
    private static partial int CuInit(uint flags);

    [LibraryImport(DriverLibrary, EntryPoint = "cuDeviceGetCount")]
    private static partial int CuDeviceGetCount(out int count);
}
