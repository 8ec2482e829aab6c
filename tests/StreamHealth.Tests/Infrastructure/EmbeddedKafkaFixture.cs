using StreamHealth.Runtime.Kafka;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>One embedded Kafka (librdkafka mock cluster) per test class that asks for it, with every
/// catalogue topic; tests that need a clean topic create their own with a unique name.</summary>
public sealed class EmbeddedKafkaFixture : IDisposable
{
    public EmbeddedKafkaCluster Cluster { get; } = Start();

    /// <summary>The catalogue topics plus the changelogs of the default weights and CGM topologies, as `streamhealth kafka`
    /// creates them: a `run` child process against this broker cannot create topics on it.</summary>
    private static EmbeddedKafkaCluster Start()
    {
        var cluster = EmbeddedKafkaCluster.Start(brokerCount: 1);
        foreach (var topology in new[] { StreamHealth.Weight.Pipeline.WeightTopology.Create(), StreamHealth.Cgm.Pipeline.CgmTopology.Create() })
            foreach (var changelog in topology.ChangelogTopics()) cluster.CreateTopic(changelog, StreamHealth.Schemas.Topics.DefaultPartitions);
        return cluster;
    }

    public string BootstrapServers => Cluster.BootstrapServers;

    public string NewTopic(string prefix, int partitions = 4)
    {
        var name = TestStacks.UniqueTopicName(prefix);
        Cluster.CreateTopic(name, partitions);
        return name;
    }

    public void Dispose() => Cluster.Dispose();
}
