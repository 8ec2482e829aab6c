using System.Runtime.InteropServices;
using System.Text;
using StreamHealth.Schemas;

namespace StreamHealth.Runtime.Kafka;

/// <summary>librdkafka's mock cluster, started in this process: real Kafka wire protocol on loopback
/// TCP, reachable from other processes through <see cref="BootstrapServers"/>.</summary>
/// <remarks>What it cannot do (see README "Embedded Kafka limits"): CreateTopics/DeleteTopics,
/// compaction, offset lookup by timestamp, transactional isolation; it keeps ~5 MiB per partition.
/// Topics are therefore created here through <c>rd_kafka_mock_topic_create</c>, and the rest of the
/// code asks <see cref="BrokerCapabilities.Embedded"/> before using any of those features.</remarks>
public sealed class EmbeddedKafkaCluster : IDisposable
{
    private IntPtr _handle;
    private IntPtr _cluster;
    private readonly Lock _gate = new();

    public string BootstrapServers { get; }

    /// <summary>Version of the librdkafka the cluster runs on (the clients' is Confluent.Kafka's Library.VersionString).</summary>
    public static string LibrdkafkaVersion
    {
        get
        {
            Librdkafka.EnsureResolver();
            return Librdkafka.Version;
        }
    }

    /// <summary>Full path of the librdkafka file the cluster runs on: the patched broker build, or the clients' file
    /// when setup has not built it (see <see cref="Librdkafka"/>).</summary>
    public static string LibrdkafkaPath => Librdkafka.LoadedPath;

    /// <summary>Whether the cluster runs on its patched build (fetch finds an offset from the newest data).</summary>
    public static bool IsPatchedBroker => Librdkafka.IsPatchedBroker;

    public int BrokerCount { get; }

    private EmbeddedKafkaCluster(IntPtr handle, IntPtr cluster, int brokerCount)
    {
        _handle = handle;
        _cluster = cluster;
        BrokerCount = brokerCount;
        BootstrapServers = Marshal.PtrToStringUTF8(Librdkafka.rd_kafka_mock_cluster_bootstraps(cluster))
                           ?? throw new InvalidOperationException("mock cluster returned no bootstrap list");
    }

    /// <summary>Starts a cluster and creates <paramref name="topics"/> (all catalogue topics when null).</summary>
    /// <param name="partitionOverrides">topic name → partition count, from configuration.</param>
    public static EmbeddedKafkaCluster Start(int brokerCount = 1, IEnumerable<TopicSpec>? topics = null,
        IReadOnlyDictionary<string, int>? partitionOverrides = null)
    {
        if (brokerCount is < 1 or > 16)
            throw new ArgumentOutOfRangeException(nameof(brokerCount), brokerCount, "embedded Kafka supports 1-16 brokers");
        Librdkafka.EnsureResolver();
        var errstr = new byte[512];
        var conf = Librdkafka.rd_kafka_conf_new();
        // The owning handle only hosts the cluster; its connection chatter at shutdown is noise.
        Librdkafka.rd_kafka_conf_set(conf, "log_level", "2", errstr, (nuint)errstr.Length);
        Librdkafka.rd_kafka_conf_set(conf, "log.connection.close", "false", errstr, (nuint)errstr.Length);
        var rk = Librdkafka.rd_kafka_new(Librdkafka.ProducerType, conf, errstr, (nuint)errstr.Length);
        if (rk == IntPtr.Zero)
        {
            Librdkafka.rd_kafka_conf_destroy(conf);
            throw new InvalidOperationException("rd_kafka_new failed: " + CString(errstr));
        }
        var cluster = Librdkafka.rd_kafka_mock_cluster_new(rk, brokerCount);
        if (cluster == IntPtr.Zero)
        {
            Librdkafka.rd_kafka_destroy(rk);
            throw new InvalidOperationException("rd_kafka_mock_cluster_new failed");
        }
        // Kafka's default 3 s initial rebalance delay only slows every first group join down here.
        Librdkafka.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        var embedded = new EmbeddedKafkaCluster(rk, cluster, brokerCount);
        foreach (var topic in topics ?? Topics.All)
        {
            var partitions = partitionOverrides is not null && partitionOverrides.TryGetValue(topic.Name, out var p)
                ? p
                : topic.Partitions;
            embedded.CreateTopic(topic.Name, partitions);
        }
        return embedded;
    }

    /// <summary>Creates a topic (the mock answers the CreateTopics API with a timeout, so this is the only way).</summary>
    public void CreateTopic(string name, int partitions, int replicationFactor = 1)
    {
        lock (_gate)
        {
            var err = Librdkafka.rd_kafka_mock_topic_create(Cluster, name, partitions,
                Math.Min(replicationFactor, BrokerCount));
            if (err != 0)
                throw new InvalidOperationException($"creating topic '{name}' failed: {Librdkafka.ErrorText(err)}");
        }
    }

    /// <summary>Simulates a broker outage (ids start at 1).</summary>
    public void SetBrokerDown(int brokerId) => Check(Librdkafka.rd_kafka_mock_broker_set_down(Cluster, brokerId), "set_down");

    public void SetBrokerUp(int brokerId) => Check(Librdkafka.rd_kafka_mock_broker_set_up(Cluster, brokerId), "set_up");

    private IntPtr Cluster => _cluster != IntPtr.Zero ? _cluster : throw new ObjectDisposedException(nameof(EmbeddedKafkaCluster));

    private static void Check(int err, string what)
    {
        if (err != 0) throw new InvalidOperationException($"mock broker {what} failed: {Librdkafka.ErrorText(err)}");
    }

    private static string CString(byte[] bytes)
    {
        var end = Array.IndexOf(bytes, (byte)0);
        return Encoding.UTF8.GetString(bytes, 0, end < 0 ? bytes.Length : end);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_cluster != IntPtr.Zero) Librdkafka.rd_kafka_mock_cluster_destroy(_cluster);
            if (_handle != IntPtr.Zero) Librdkafka.rd_kafka_destroy(_handle);
            _cluster = IntPtr.Zero;
            _handle = IntPtr.Zero;
        }
    }
}
