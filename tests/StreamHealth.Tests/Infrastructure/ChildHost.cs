using System.Collections.Concurrent;
using System.Diagnostics;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>A `streamhealth` process started by a test, so it can be killed for real (SIGKILL), not disposed.</summary>
public sealed class ChildHost : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private ChildHost(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) _output.Enqueue(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _output.Enqueue("stderr: " + e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The Host project's own build output, in the configuration the tests were built in.</summary>
    public static string HostDll
    {
        get => Path.Combine(Repo.Root, "processors", "Host", "bin", Configuration, "net10.0", "streamhealth.dll");
    }

    /// <summary>The settings of a `run` child against the test's broker, its own database on the test PostgreSQL, the test Redis
    /// and a schema registry: what every crash test passes.</summary>
    public static Dictionary<string, string> RunEnvironment(string bootstrapServers, string stateDirectory, string database, string registryUrl) => new()
    {
        ["STREAMHEALTH_Kafka__BootstrapServers"] = bootstrapServers,
        ["STREAMHEALTH_State__Directory"] = stateDirectory,
        ["STREAMHEALTH_Postgres__Port"] = LocalServices.PostgresPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["STREAMHEALTH_Postgres__Database"] = database,
        ["STREAMHEALTH_Redis__Port"] = LocalServices.RedisPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["STREAMHEALTH_Streams__SessionTimeoutMs"] = "3000",
        ["STREAMHEALTH_SchemaRegistry__Url"] = registryUrl,
        ["STREAMHEALTH_SchemaRegistry__AutoRegister"] = "true",
    };

    public static ChildHost Start(IEnumerable<string> args, IDictionary<string, string> env)
    {
        var psi = DotnetStartInfo(HostDll, args, Repo.Root);
        // A child host a test kills stays reported as silent for minutes: keep its reports out of every gateway's key.
        psi.Environment["STREAMHEALTH_Streams__RegistryKey"] = $"streamhealth:hosts:test:child:{Guid.NewGuid():N}";
        foreach (var (k, v) in env) psi.Environment[k] = v;
        return new ChildHost(Process.Start(psi)!);
    }

    /// <summary>Another .NET program of the repository's build (e.g. the gateway), run and kept like a `streamhealth` child.</summary>
    public static ChildHost StartDll(string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string> env, string workingDirectory)
    {
        var psi = DotnetStartInfo(dll, args, workingDirectory);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        return new ChildHost(Process.Start(psi)!);
    }

    private static ProcessStartInfo DotnetStartInfo(string dll, IEnumerable<string> args, string workingDirectory)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }

    /// <summary>The build configuration the tests were built in (a child runs the same one).</summary>
    public static string Configuration =>
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}") ? "Debug" : "Release";

    public string Output => string.Join('\n', _output);

    public bool HasExited => _process.HasExited;

    /// <summary>The exit code of a process that has exited (waits for its output to be read to the end).</summary>
    public int ExitCode
    {
        get
        {
            _process.WaitForExit();
            return _process.ExitCode;
        }
    }

    /// <summary>SIGKILL: no shutdown code runs, nothing is flushed or committed.</summary>
    public void KillHard()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    /// <summary>SIGTERM, the way Kubernetes stops a pod: the host finishes its cycle and commits.</summary>
    public int Terminate(int timeoutMs = 30_000)
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString()])) kill.WaitForExit();
        if (!_process.WaitForExit(timeoutMs))
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"streamhealth did not stop within {timeoutMs} ms after SIGTERM:\n{Output}");
        }
        _process.WaitForExit();
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
