using System.Diagnostics;
using Confluent.Kafka;
using StreamHealth.Runtime.Kafka;

namespace StreamHealth.Benchmarks.Kafka;

/// <summary>Load harness: produce N 200-byte records to the embedded Kafka, then consume them all
/// with a consumer group; prints records/s for each phase. The ceiling every topology works under.</summary>
public static class EmbeddedKafkaThroughput
{
    private const int Partitions = 8;

    public static int Run(int messages)
    {
        using var cluster = EmbeddedKafkaCluster.Start(1, topics: []);
        // 8 partitions and ≤150k records: the mock keeps only ~5 MiB per partition and drops older data.
        cluster.CreateTopic("bench", Partitions);
        var payload = new byte[200];
        Random.Shared.NextBytes(payload);
        var keys = Enumerable.Range(0, 1000).Select(i => BitConverter.GetBytes(i)).ToArray();

        var sw = Stopwatch.StartNew();
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
               {
                   BootstrapServers = cluster.BootstrapServers, LingerMs = 5, BatchSize = 1_000_000,
                   QueueBufferingMaxMessages = 1_000_000, EnableIdempotence = true,
               }).Build())
        {
            for (var i = 0; i < messages; i++)
            {
                producer.ProduceBlocking("bench", new Message<byte[], byte[]> { Key = keys[i % keys.Length], Value = payload });
            }
            producer.Flush(TimeSpan.FromMinutes(2));
        }
        var produceSeconds = sw.Elapsed.TotalSeconds;

        sw.Restart();
        var consumed = 0;
        using (var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
               {
                   BootstrapServers = cluster.BootstrapServers, GroupId = "bench", AutoOffsetReset = AutoOffsetReset.Earliest,
                   EnableAutoCommit = true, FetchMaxBytes = 50_000_000,
               }).Build())
        {
            consumer.Subscribe("bench");
            var deadline = DateTime.UtcNow.AddMinutes(3);
            while (consumed < messages && DateTime.UtcNow < deadline)
                if (consumer.Consume(TimeSpan.FromMilliseconds(100)) is not null) consumed++;
            consumer.Close();
        }
        var consumeSeconds = sw.Elapsed.TotalSeconds;
        Console.WriteLine($"embedded Kafka, {messages:N0} x 200 B, {Partitions} partitions:");
        Console.WriteLine($"  produce (idempotent, acks=all): {messages / produceSeconds,12:N0} records/s ({produceSeconds:F2} s)");
        Console.WriteLine($"  consume (group, incl. ~join):   {consumed / consumeSeconds,12:N0} records/s ({consumeSeconds:F2} s, {consumed:N0} records)");
        return consumed == messages ? 0 : 1;
    }
}
