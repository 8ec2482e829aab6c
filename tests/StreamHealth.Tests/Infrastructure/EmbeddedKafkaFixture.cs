using StreamHealth.Runtime.Kafka;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>One embedded Kafka (librdkafka mock cluster) per test class that asks for it, with every
/// catalogue topic; tests that need a clean topic create their own with a unique name.</summary>
public sealed class EmbeddedKafkaFixture : IDisposable
{
    public EmbeddedKafkaCluster Cluster { get; } = EmbeddedKafkaCluster.Start(brokerCount: 1);

    public string BootstrapServers => Cluster.BootstrapServers;

    public string NewTopic(string prefix, int partitions = 4)
    {
        var name = $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];
        Cluster.CreateTopic(name, partitions);
        return name;
    }

    public void Dispose() => Cluster.Dispose();
}
