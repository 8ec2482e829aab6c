using System.Diagnostics;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>The real gateway (built in Release) as its own process on loopback, for the API load harnesses: what a
/// client meets, Kestrel included. Development environment: the local-only dev key (every scope) and signing key.</summary>
internal sealed class GatewayProcess : IDisposable
{
    private readonly Process _process;
    public string Url { get; }

    private GatewayProcess(Process process, string url)
    {
        _process = process;
        Url = url;
    }

    /// <summary>Starts the gateway with <paramref name="settings"/> as STREAMHEALTH_… variables (keys like
    /// <c>Kafka__BootstrapServers</c>) and waits until it answers /health.</summary>
    public static GatewayProcess Start(string url, IReadOnlyDictionary<string, string> settings)
    {
        var root = RepoPaths.Root;
        var gatewayDll = Path.Combine(root, "gateway", "bin", "Release", "net10.0", "StreamHealth.Gateway.dll");
        if (!File.Exists(gatewayDll)) throw new FileNotFoundException("build the gateway in Release first", gatewayDll);
        var psi = new ProcessStartInfo("dotnet", [gatewayDll, "--urls", url])
        {
            WorkingDirectory = Path.Combine(root, "gateway"), RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var (key, value) in settings) psi.Environment["STREAMHEALTH_" + key] = value;
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Development";
        var process = Process.Start(psi)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine("gateway: " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = new Uri(url) };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try
            {
                if (http.GetAsync("/health").Result is not null) break;
            }
            catch (AggregateException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                Thread.Sleep(250);
            }
        }
        return new GatewayProcess(process, url);
    }

    /// <summary>The settings of a load run against <paramref name="bootstrapServers"/> and the registry at
    /// <paramref name="registryUrl"/>: every request comes from one address and up to a few hundred callers, so the per-IP
    /// and global buckets (25k and 50k/s by default) are raised and what is measured is the gateway with its limiter, not
    /// the limit (the limiter still runs on every request). <paramref name="more"/> adds or overrides settings.</summary>
    public static Dictionary<string, string> LoadSettings(string bootstrapServers, string registryUrl, params (string Key, string Value)[] more)
    {
        var settings = new Dictionary<string, string>
        {
            ["Kafka__BootstrapServers"] = bootstrapServers,
            ["SchemaRegistry__Url"] = registryUrl,
            ["Gateway__RateLimit__Global__PermitsPerSecond"] = "1000000", ["Gateway__RateLimit__Global__Burst"] = "2000000",
            ["Gateway__RateLimit__PerIp__PermitsPerSecond"] = "1000000", ["Gateway__RateLimit__PerIp__Burst"] = "2000000",
        };
        foreach (var (key, value) in more) settings[key] = value;
        return settings;
    }

    public void Dispose()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
        _process.Dispose();
    }
}
