using System.Globalization;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Networks;
using Npgsql;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using Testcontainers.Kafka;
using Testcontainers.PostgreSql;
using Testcontainers.Redis;

namespace StreamHealth.ContainerTests;

/// <summary>The collection fixture of the container suite: Kafka (KRaft), TimescaleDB, Redis and Confluent's Schema Registry
/// in containers, from the images and versions production runs (compose/docker-compose.yml), with every catalogue topic.
/// The main suite's fixtures run on it through <see cref="ITestStack"/>. Without a Docker engine it fails at once, saying
/// so (<see cref="DockerEngine.Require()"/>), and so does every test of the collection.</summary>
public sealed class ContainerStack : ITestStack, IAsyncLifetime
{
    public const string KafkaImage = "apache/kafka:3.9.0";
    public const string TimescaleImage = "timescale/timescaledb:2.17.2-pg15";
    public const string RedisImage = "redis:7.2-alpine";
    public const string SchemaRegistryImage = "confluentinc/cp-schema-registry:7.7.1";

    private const int KafkaPort = 9092;
    private const int PostgresPort = 5432;
    private const int RedisPort = 6379;
    private const int RegistryPort = 8081;
    private const string PostgresUser = "postgres";
    private const string PostgresPassword = "postgres";
    // The listener the registry container reaches the broker on (the host's listener is advertised as the host's address).
    private const string KafkaAlias = "kafka";
    private const int KafkaNetworkPort = 19092;

    private INetwork? _network;
    private KafkaContainer? _kafka;
    private PostgreSqlContainer? _postgres;
    private RedisContainer? _redis;
    private IContainer? _registry;
    private Exception? _unavailable;

    public async Task InitializeAsync()
    {
        try
        {
            DockerEngine.Require();
        }
        catch (InvalidOperationException e)
        {
            _unavailable = e;
            throw;
        }
        _network = new NetworkBuilder().Build();
        _kafka = new KafkaBuilder(KafkaImage).WithKRaft().WithNetwork(_network).WithListener($"{KafkaAlias}:{KafkaNetworkPort}").Build();
        _postgres = new PostgreSqlBuilder(TimescaleImage).WithUsername(PostgresUser).WithPassword(PostgresPassword)
            .WithEnvironment("TIMESCALEDB_TELEMETRY", "off").Build();
        _redis = new RedisBuilder(RedisImage).Build();
        // As compose/docker-compose.yml's schema-registry, on one broker: its _schemas topic cannot have 3 replicas here.
        _registry = new ContainerBuilder(SchemaRegistryImage)
            .WithNetwork(_network)
            .WithEnvironment("SCHEMA_REGISTRY_HOST_NAME", "schema-registry")
            .WithEnvironment("SCHEMA_REGISTRY_LISTENERS", $"http://0.0.0.0:{RegistryPort}")
            .WithEnvironment("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", $"PLAINTEXT://{KafkaAlias}:{KafkaNetworkPort}")
            .WithEnvironment("SCHEMA_REGISTRY_KAFKASTORE_TOPIC", "_schemas")
            .WithEnvironment("SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR", "1")
            .WithEnvironment("SCHEMA_REGISTRY_SCHEMA_COMPATIBILITY_LEVEL", "backward")
            .WithPortBinding(RegistryPort, assignRandomHostPort: true)
            .WithWaitStrategy(Wait.ForUnixContainer().UntilHttpRequestIsSucceeded(request => request.ForPort(RegistryPort).ForPath("/subjects")))
            .Build();
        await _network.CreateAsync();
        await Task.WhenAll(_kafka.StartAsync(), _postgres.StartAsync(), _redis.StartAsync());
        await _registry.StartAsync();
        RegistryUrl = $"http://{_registry.Hostname}:{_registry.GetMappedPublicPort(RegistryPort)}";
        // The catalogue topics, as the deployment's kafka-init step creates them: the gateway's and the default topologies' topics.
        await CreateTopicsAsync(Topics.All.Select(t => (t.Name, t.Partitions)));
    }

    public string BootstrapServers => $"{Started(_kafka).Hostname}:{Started(_kafka).GetMappedPublicPort(KafkaPort)}";

    /// <summary>Confluent's registry (schemas are auto-registered by the tests' serialisers, as the stand-in does locally).</summary>
    public string RegistryUrl { get; private set; } = "";

    public void CreateTopic(string name, int partitions) => CreateTopicsAsync([(name, partitions)]).GetAwaiter().GetResult();

    /// <summary>Null: on real Kafka, Streamiz creates the changelog and repartition topics itself.</summary>
    public Action<string, int>? CreateInternalTopic => null;

    public string PostgresConnectionString(string database) =>
        new NpgsqlConnectionStringBuilder(Started(_postgres).GetConnectionString()) { Database = database }.ConnectionString;

    public string RedisConfiguration => $"{Started(_redis).Hostname}:{Started(_redis).GetMappedPublicPort(RedisPort)},abortConnect=false";

    public Dictionary<string, string?> Settings(string database) => new()
    {
        ["Kafka:BootstrapServers"] = BootstrapServers,
        ["Kafka:Flavor"] = "Kafka",
        ["Postgres:Host"] = Started(_postgres).Hostname,
        ["Postgres:Port"] = Started(_postgres).GetMappedPublicPort(PostgresPort).ToString(CultureInfo.InvariantCulture),
        ["Postgres:Database"] = database,
        ["Postgres:Username"] = PostgresUser,
        ["Postgres:Password"] = PostgresPassword,
        ["Redis:Host"] = Started(_redis).Hostname,
        ["Redis:Port"] = Started(_redis).GetMappedPublicPort(RedisPort).ToString(CultureInfo.InvariantCulture),
        ["State:Directory"] = Path.Combine(Path.GetTempPath(), "streamhealth-container-tests-state"),
        ["Streams:RegistryKey"] = "streamhealth:hosts:test:" + database,
    };

    public TestRegistry Registry(string connectionString) => TestRegistry.Connect(RegistryUrl);

    private async Task CreateTopicsAsync(IEnumerable<(string Name, int Partitions)> topics)
    {
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = BootstrapServers }).Build();
        var specifications = topics.Select(t => new TopicSpecification { Name = t.Name, NumPartitions = t.Partitions, ReplicationFactor = 1 }).ToList();
        try
        {
            await admin.CreateTopicsAsync(specifications);
        }
        catch (CreateTopicsException e) when (e.Results.All(r => r.Error.Code is ErrorCode.NoError or ErrorCode.TopicAlreadyExists))
        {
            // Created by an earlier call: nothing to do.
        }
    }

    /// <summary>A container of the stack; before InitializeAsync finished (a class fixture built after it failed), the
    /// reason it did not.</summary>
    private T Started<T>(T? container) where T : class =>
        container ?? throw new InvalidOperationException(_unavailable?.Message ?? "the container stack has not started");

    public async Task DisposeAsync()
    {
        foreach (var container in new IContainer?[] { _registry, _kafka, _postgres, _redis })
            if (container is not null) await container.DisposeAsync();
        if (_network is not null) await _network.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class ContainerCollection : ICollectionFixture<ContainerStack>
{
    public const string Name = "containers";
}
