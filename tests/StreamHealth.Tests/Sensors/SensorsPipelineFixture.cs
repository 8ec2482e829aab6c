using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Sensors.Districts;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Sensors;

/// <summary>The sensors pipeline on real parts for one test class: its own topics on an embedded Kafka (readings, metrics and the
/// district stage's, with the dead-letter topics of the two stages' inputs), its own migrated PostgreSQL database with the
/// stand-in schema registry on it, Redis, and <see cref="SensorsPipeline"/> (both topologies and every sink) started by the
/// class once it has what the pipeline needs (registered nodes, say).</summary>
public abstract class SensorsPipelineFixture : IDisposable
{
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public TestLogs Logs { get; } = new();
    public TestRegistry Registry { get; }
    public NpgsqlDataSource Postgres { get; }
    public ConnectionMultiplexer Redis { get; }
    public string Readings { get; }
    public string Metrics { get; }
    public DistrictTopics Districts { get; }
    public int Partitions { get; }
    public SensorsPipeline Pipeline { get; private set; } = null!;
    private readonly string _stateDir = Directory.CreateTempSubdirectory("streamhealth-sensors-").FullName;

    protected SensorsPipelineFixture(string database, int partitions)
    {
        Partitions = partitions;
        Readings = Kafka.NewTopic("sensr", partitions);
        Metrics = Kafka.NewTopic("sensm", partitions);
        Districts = new DistrictTopics(Kafka.NewTopic("sensd", partitions), Kafka.NewTopic("sensa", partitions), Kafka.NewTopic("sensq", partitions),
            Kafka.NewTopic("sense", partitions), Kafka.NewTopic("sensp", partitions));
        Kafka.Cluster.CreateTopic(Readings + Topics.DeadLetterSuffix, 1);
        Kafka.Cluster.CreateTopic(Districts.Windows + Topics.DeadLetterSuffix, 1);
        var connectionString = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName(database));
        StreamHealth.Runtime.Storage.PostgresMigrator.MigrateAsync(connectionString).GetAwaiter().GetResult();
        Registry = TestRegistry.Start(connectionString);
        Postgres = NpgsqlDataSource.Create(connectionString);
        Redis = ConnectionMultiplexer.Connect(LocalServices.RedisConfiguration);
    }

    /// <summary>Starts the pipeline: commits every 200 ms, the changelog topics created on the embedded broker.</summary>
    protected void StartPipeline(SensorsOptions options) =>
        Pipeline = new SensorsPipeline(new StreamHostOptions
        {
            SchemaRegistry = Registry.Connection, BootstrapServers = Kafka.BootstrapServers, StateDirectory = _stateDir, CommitIntervalMs = 200,
            CreateInternalTopic = (topic, partitions) => Kafka.Cluster.CreateTopic(topic, partitions),
        }, Postgres, Redis, Logs, options, new SensorsPipelineNames(Readings + "-app", Readings, Metrics, Districts)).Start();

    public void Dispose()
    {
        Pipeline?.Dispose();
        Registry.Dispose();
        Redis.Dispose();
        Postgres.Dispose();
        Kafka.Dispose();
        Directory.Delete(_stateDir, recursive: true);
    }
}
