using System.Net.Sockets;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>Finds the Docker engine the container suite (tests/StreamHealth.ContainerTests) needs, where Testcontainers looks
/// for one: DOCKER_HOST (or docker.host in ~/.testcontainers.properties), else the usual sockets. The suite asks before it
/// starts anything, so on a machine without an engine it fails at once, saying so, instead of in Testcontainers' discovery.</summary>
public static class DockerEngine
{
    public const string DefaultSocket = "/var/run/docker.sock";
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(3);

    /// <summary>The endpoint of this machine's engine.</summary>
    public static string Require()
    {
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var runtime = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        string?[] sockets =
        [
            DefaultSocket,
            string.IsNullOrEmpty(runtime) ? null : Path.Combine(runtime, "docker.sock"),        // rootless Docker
            Path.Combine(home, ".docker", "run", "docker.sock"),                                  // Docker Desktop
        ];
        return Require(Environment.GetEnvironmentVariable("DOCKER_HOST") ?? PropertiesDockerHost(home), sockets.OfType<string>().ToArray());
    }

    /// <summary>The endpoint of the engine at <paramref name="dockerHost"/> (unix:// or tcp://) or, when that is empty, at the
    /// first of <paramref name="sockets"/> that answers; an <see cref="InvalidOperationException"/> naming what was tried
    /// and what to run instead when none does.</summary>
    public static string Require(string? dockerHost, params string[] sockets)
    {
        var candidates = !string.IsNullOrWhiteSpace(dockerHost) ? [dockerHost.Trim()] : sockets.Select(socket => "unix://" + socket).ToArray();
        var tried = new List<string>();
        foreach (var endpoint in candidates)
        {
            var problem = Probe(endpoint);
            if (problem is null) return endpoint;
            tried.Add($"{endpoint}: {problem}");
        }
        throw new InvalidOperationException(
            $"The container suite needs a Docker engine (DOCKER_HOST or {DefaultSocket}): none found ({string.Join("; ", tried)}). " +
            "Run the main suite with `bash compose/local/test.sh` instead.");
    }

    /// <summary>docker.host in ~/.testcontainers.properties, which Testcontainers reads when DOCKER_HOST is not set.</summary>
    private static string? PropertiesDockerHost(string home)
    {
        var file = Path.Combine(home, ".testcontainers.properties");
        if (!File.Exists(file)) return null;
        return File.ReadLines(file).Select(line => line.Trim())
            .Where(line => line.StartsWith("docker.host", StringComparison.Ordinal) && line.Contains('='))
            .Select(line => line[(line.IndexOf('=') + 1)..].Trim())
            .LastOrDefault();
    }

    /// <summary>Null when something accepts a connection at <paramref name="endpoint"/>, else why not.</summary>
    private static string? Probe(string endpoint)
    {
        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri))
            return "not a unix:// or tcp:// address";
        try
        {
            switch (uri.Scheme)
            {
                case "unix":
                    if (!File.Exists(uri.AbsolutePath)) return "no such socket";
                    using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
                        return Connect(socket, new UnixDomainSocketEndPoint(uri.AbsolutePath));
                case "tcp":
                    using (var socket = new Socket(SocketType.Stream, ProtocolType.Tcp))
                        return Connect(socket, new System.Net.DnsEndPoint(uri.Host, uri.Port));
                default:
                    return $"scheme {uri.Scheme} is not supported here (unix:// or tcp://)";
            }
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode.ToString();
        }
    }

    private static string? Connect(Socket socket, System.Net.EndPoint at)
    {
        using var timeout = new CancellationTokenSource(ConnectTimeout);
        try
        {
            socket.ConnectAsync(at, timeout.Token).AsTask().GetAwaiter().GetResult();
            return null;
        }
        catch (OperationCanceledException)
        {
            return $"no answer within {ConnectTimeout.TotalSeconds:0} s";
        }
    }
}
