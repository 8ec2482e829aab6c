using System.Net.Sockets;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Foundation;

/// <summary>The container suite's first step (tests/StreamHealth.ContainerTests): without a Docker engine it must fail at
/// once, naming what it looked for and what to run instead; with one it must go on.</summary>
public sealed class DockerEngineTests
{
    [Fact]
    public void A_missing_engine_fails_with_a_message_naming_docker_host_and_the_main_suite()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"no-docker-{Guid.NewGuid():N}.sock");
        var e = Assert.Throws<InvalidOperationException>(() => DockerEngine.Require("unix://" + missing, DockerEngine.DefaultSocket));
        Assert.StartsWith("The container suite needs a Docker engine (DOCKER_HOST or /var/run/docker.sock): none found", e.Message);
        Assert.Contains($"unix://{missing}: no such socket", e.Message);
        Assert.EndsWith("Run the main suite with `bash compose/local/test.sh` instead.", e.Message);
    }

    [Fact]
    public void Without_docker_host_every_usual_socket_is_tried_and_named()
    {
        var dir = Directory.CreateTempSubdirectory("no-docker-").FullName;
        try
        {
            var e = Assert.Throws<InvalidOperationException>(() => DockerEngine.Require(null, Path.Combine(dir, "docker.sock"), Path.Combine(dir, "run", "docker.sock")));
            Assert.Contains($"unix://{dir}/docker.sock: no such socket", e.Message);
            Assert.Contains($"unix://{dir}/run/docker.sock: no such socket", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_tcp_docker_host_where_nothing_listens_is_refused()
    {
        // A loopback port that was free a moment ago and has no listener now.
        var port = StreamTestKit.FreeLoopbackPort();
        var e = Assert.Throws<InvalidOperationException>(() => DockerEngine.Require($"tcp://127.0.0.1:{port}", DockerEngine.DefaultSocket));
        Assert.Contains($"tcp://127.0.0.1:{port}: ConnectionRefused", e.Message);
    }

    [Fact]
    public void A_socket_that_answers_is_the_engine()
    {
        var path = Path.Combine(Path.GetTempPath(), $"docker-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        try
        {
            Assert.Equal("unix://" + path, DockerEngine.Require("unix://" + path, DockerEngine.DefaultSocket));
            Assert.Equal("unix://" + path, DockerEngine.Require(null, path));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
