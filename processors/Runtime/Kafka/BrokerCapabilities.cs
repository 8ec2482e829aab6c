namespace StreamHealth.Runtime.Kafka;

/// <summary>What the connected broker can do. Every code path that needs one of these features asks
/// here first and has a fallback, so the same code runs on real Kafka and on the embedded mock.</summary>
/// <param name="CreateTopics">Admin CreateTopics works (else: topics pre-created by the embedded host, or auto-created).</param>
/// <param name="Compaction">cleanup.policy=compact is honoured (else: changelog readers keep the last value per key themselves).</param>
/// <param name="TimestampLookup">OffsetsForTimes works (else: scan from the beginning and filter by timestamp).</param>
/// <param name="TransactionalIsolation">read_committed hides aborted data (else: at-least-once plus idempotent state and sinks).</param>
/// <param name="GroupAdmin">ListGroups and DescribeGroups work (else: known group ids come from configuration, and whether a
/// group is active is learnt by joining it).</param>
public sealed record BrokerCapabilities(bool CreateTopics, bool Compaction, bool TimestampLookup, bool TransactionalIsolation, bool GroupAdmin)
{
    public static readonly BrokerCapabilities Kafka = new(true, true, true, true, true);

    /// <summary>librdkafka's mock cluster, as measured on this machine kind (../shared/ENVIRONMENT.md).</summary>
    public static readonly BrokerCapabilities Embedded = new(false, false, false, false, false);

    public static BrokerCapabilities For(KafkaFlavor flavor) => flavor == KafkaFlavor.Embedded ? Embedded : Kafka;
}

public enum KafkaFlavor
{
    /// <summary>librdkafka's mock cluster (the local default).</summary>
    Embedded,
    /// <summary>A real Kafka cluster (production: KRaft, see compose/ and k8s/).</summary>
    Kafka,
}
