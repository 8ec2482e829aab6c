using Confluent.Kafka;
using StreamHealth.Runtime.Kafka;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>Shared moves of the stream runtime tests: keyed amounts in, a reference fold, progress checks.</summary>
public static class StreamTestKit
{
    /// <summary>Produces <paramref name="count"/> amounts over <paramref name="keys"/> keys (Int64 values,
    /// the key-sum topology's input) and adds them to <paramref name="reference"/>, the single-threaded fold.</summary>
    public static void ProduceAmounts(string bootstrap, string topic, int count, int keys, int seed, Dictionary<string, long> reference,
        int perSecond = 0)
    {
        var random = new Random(seed);
        using var p = new ProducerBuilder<string, long>(new ProducerConfig { BootstrapServers = bootstrap, LingerMs = 5 })
            .SetValueSerializer(BigEndianInt64.Instance).Build();
        var started = DateTime.UtcNow;
        for (var i = 0; i < count; i++)
        {
            var key = $"k{random.Next(keys)}";
            var amount = (long)random.Next(1, 1000);
            reference[key] = reference.GetValueOrDefault(key) + amount;
            p.ProduceBlocking(topic, new Message<string, long> { Key = key, Value = amount });
            if (perSecond > 0 && i % 1000 == 999)
            {
                var ahead = started.AddSeconds((i + 1.0) / perSecond) - DateTime.UtcNow;
                if (ahead > TimeSpan.Zero) Thread.Sleep(ahead);
            }
        }
        if (p.Flush(TimeSpan.FromSeconds(30)) > 0) throw new TimeoutException($"could not produce to {topic}");
    }

    /// <summary>Records the group has committed on <paramref name="topic"/> and the records in it.</summary>
    public static (long Committed, long End) Progress(string bootstrap, string groupId, string topic, int partitions)
    {
        using var c = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = bootstrap, GroupId = groupId }).Build();
        var tps = Enumerable.Range(0, partitions).Select(p => new TopicPartition(topic, p)).ToList();
        long committed = 0, end = 0;
        foreach (var tpo in c.Committed(tps, TimeSpan.FromSeconds(10)))
            committed += Math.Max(0, tpo.Offset.Value);
        foreach (var tp in tps)
            end += c.QueryWatermarkOffsets(tp, TimeSpan.FromSeconds(10)).High.Value;
        return (committed, end);
    }

    /// <summary>A loopback port that was free a moment ago (nothing listens on it when this returns).</summary>
    public static int FreeLoopbackPort()
    {
        var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        try { return ((System.Net.IPEndPoint)probe.LocalEndpoint).Port; }
        finally { probe.Stop(); }
    }

    public static void WaitFor(Func<bool> condition, TimeSpan timeout, Func<string> describe)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail("timed out: " + describe());
            Thread.Sleep(100);
        }
    }

    /// <summary>Kafka serializer for the runtime's Int64Serde format (the key-sum topology's input).</summary>
    public sealed class BigEndianInt64 : ISerializer<long>
    {
        public static readonly BigEndianInt64 Instance = new();

        public byte[] Serialize(long data, SerializationContext context) =>
            StreamHealth.Runtime.Streams.Reference.BigEndianInt64SerDes.Encode(data);
    }
}
