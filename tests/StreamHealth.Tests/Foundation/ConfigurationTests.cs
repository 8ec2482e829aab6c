using StreamHealth.Runtime.Configuration;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Foundation;

public sealed class ConfigurationTests
{
    [Theory]
    [InlineData("Postgres:Port", "70000", "Postgres:Port = 70000: not a TCP port (1-65535)")]
    [InlineData("Redis:Port", "0", "Redis:Port = 0: not a TCP port (1-65535)")]
    [InlineData("Postgres:Port", "five", "'five' at 'Postgres:Port'")]
    [InlineData("State:Directory", "/no/such/parent/state", "State:Directory = /no/such/parent/state: parent directory /no/such/parent does not exist")]
    [InlineData("Samples:DataDirectory", "/no/such/samples", "Samples:DataDirectory = /no/such/samples: directory does not exist")]
    [InlineData("Kafka:Topics:weights.rawx:Partitions", "3", "Kafka:Topics:weights.rawx: unknown topic name; known topics: weights.raw,")]
    [InlineData("Kafka:BootstrapServers", "localhost:99999", "Kafka:BootstrapServers = localhost:99999: 'localhost:99999' is not host:port")]
    [InlineData("Streams:StallAfterMs", "0", "Streams:StallAfterMs = 0: must be 100-86400000")]
    [InlineData("Streams:RegistryKey", "a b", "Streams:RegistryKey = ")]
    public void A_bad_setting_gives_one_line_naming_it(string key, string value, string expected)
    {
        var e = Assert.Throws<ConfigurationException>(() =>
            StreamHealthOptions.Load(new Dictionary<string, string?> { [key] = value }));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Defaults_are_valid_and_overrides_apply()
    {
        var options = StreamHealthOptions.Load(new Dictionary<string, string?>
        {
            ["Postgres:Port"] = "6000",
            ["Kafka:Topics:weights.raw:Partitions"] = "8",
        });
        Assert.Equal(6000, options.Postgres.Port);
        Assert.Equal(8, options.Kafka.PartitionOverrides["weights.raw"]);
    }

    [Fact]
    public void The_cli_reports_a_bad_environment_setting_on_one_line_with_exit_code_2()
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "streamhealth.dll");
        var (code, stdout, stderr) = Repo.Run("dotnet", [cli, "migrate"],
            new Dictionary<string, string> { ["STREAMHEALTH_Postgres__Port"] = "123456" });
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("streamhealth: configuration error: Postgres:Port = 123456: not a TCP port (1-65535)", line);
    }

    [Fact]
    public void The_cli_names_an_unknown_topic()
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "streamhealth.dll");
        var (code, _, stderr) = Repo.Run("dotnet", [cli, "dump", "weights.raww", "--bootstrap", "127.0.0.1:9"]);
        Assert.Equal(2, code);
        Assert.StartsWith("streamhealth: 'weights.raww' is not a StreamHealth topic; known topics: weights.raw,", stderr.Trim());
    }

    [Fact]
    public void Schemas_register_against_a_registry_that_does_not_answer_is_one_line_naming_the_url()
    {
        // The Host's own build: its dependencies resolve as deployed (the copy in the test output resolves the registry
        // client's through the test project's graph).
        var (code, _, stderr) = Repo.Run("dotnet", [ChildHost.HostDll, "schemas", "register"],
            new Dictionary<string, string> { ["STREAMHEALTH_SchemaRegistry__Url"] = "http://127.0.0.1:9", ["STREAMHEALTH_SchemaRegistry__Embedded"] = "false" });
        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("streamhealth: SchemaRegistry:Url = http://127.0.0.1:9: the schema registry cannot be reached", line);
    }

    [Theory]
    [InlineData("run --topology weights")]
    [InlineData("forecast")]
    public void A_process_whose_registry_does_not_answer_at_start_up_stops_with_one_line_naming_the_url(string verb)
    {
        var (code, stdout, stderr) = Repo.Run("dotnet", [ChildHost.HostDll, .. verb.Split(' ')],
            new Dictionary<string, string>
            {
                ["STREAMHEALTH_SchemaRegistry__Url"] = "http://127.0.0.1:9", ["STREAMHEALTH_SchemaRegistry__Embedded"] = "false",
                ["STREAMHEALTH_Kafka__BootstrapServers"] = "127.0.0.1:9", ["STREAMHEALTH_State__Directory"] = Path.Combine(Path.GetTempPath(), "streamhealth-noregistry"),
            });
        Assert.True(code == 2, stdout + stderr);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("streamhealth: SchemaRegistry:Url = http://127.0.0.1:9: the schema registry cannot be reached", line);
    }

    [Fact]
    public void A_schema_registry_url_that_is_not_http_is_a_configuration_error()
    {
        var e = Assert.Throws<ConfigurationException>(() => StreamHealthOptions.Load(new Dictionary<string, string?> { ["SchemaRegistry:Url"] = "kafka-1:8081" }));
        Assert.Contains("SchemaRegistry:Url = kafka-1:8081: must be an absolute http(s) URL", e.Message);
    }
}
