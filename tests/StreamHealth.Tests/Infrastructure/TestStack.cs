using StreamHealth.Runtime.Streams;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>The servers a pipeline or gateway test runs on. The main suite's are <see cref="LocalStack"/> (the embedded Kafka
/// and the `test` profile's PostgreSQL and Redis); tests/StreamHealth.ContainerTests runs the same scenarios on Kafka,
/// TimescaleDB, Redis and Confluent's Schema Registry in containers. A fixture written against this runs on either.</summary>
public interface ITestStack
{
    string BootstrapServers { get; }

    void CreateTopic(string name, int partitions);

    /// <summary>For <see cref="StreamHostOptions.CreateInternalTopic"/>: the embedded broker creates no topic on request, so
    /// the host creates changelogs itself; null on real Kafka, where Streamiz creates them.</summary>
    Action<string, int>? CreateInternalTopic { get; }

    /// <summary>A connection string for <paramref name="database"/>, which the migrator creates.</summary>
    string PostgresConnectionString(string database);

    string RedisConfiguration { get; }

    /// <summary>StreamHealthOptions settings (Kafka, PostgreSQL on <paramref name="database"/>, Redis) for a gateway or host
    /// on this stack; a <see cref="TestRegistry"/> adds its own (<see cref="TestRegistry.With"/>).</summary>
    Dictionary<string, string?> Settings(string database);

    /// <summary>The schema registry a test on the migrated database <paramref name="connectionString"/> serialises through:
    /// the stand-in on that database here, the stack's registry container there. The caller disposes it.</summary>
    TestRegistry Registry(string connectionString);
}

public static class TestStacks
{
    /// <summary>A topic no other test uses: <paramref name="prefix"/> and a random suffix.</summary>
    public static string NewTopic(this ITestStack stack, string prefix, int partitions = 4)
    {
        var name = UniqueTopicName(prefix);
        stack.CreateTopic(name, partitions);
        return name;
    }

    public static string UniqueTopicName(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];
}

/// <summary>The main suite's stack: an embedded Kafka of its own (<see cref="EmbeddedKafkaFixture"/>, every catalogue
/// topic) and the test profile's PostgreSQL and Redis (<see cref="LocalServices"/>).</summary>
public sealed class LocalStack : ITestStack, IDisposable
{
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public string BootstrapServers => Kafka.BootstrapServers;
    public void CreateTopic(string name, int partitions) => Kafka.Cluster.CreateTopic(name, partitions);
    public Action<string, int>? CreateInternalTopic => (topic, partitions) => Kafka.Cluster.CreateTopic(topic, partitions);
    public string PostgresConnectionString(string database) => LocalServices.PostgresConnectionString(database);
    public string RedisConfiguration => LocalServices.RedisConfiguration;
    public Dictionary<string, string?> Settings(string database) => LocalServices.Overrides(database, BootstrapServers);
    public TestRegistry Registry(string connectionString) => TestRegistry.Start(connectionString);
    public void Dispose() => Kafka.Dispose();
}
