using System.Buffers.Binary;
using System.Text;
using Confluent.Kafka;
using Npgsql;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Sinks;

/// <summary>Issue 11, defect 1: a sink that cannot advance while input waits says so (<see cref="SinkRunner.Health"/>),
/// and an archive that is down is an outage like the store being down: nothing is dropped, nothing committed early.</summary>
public sealed class SinkHealthTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    private static string NewDatabase()
    {
        var cs = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("sink_health"));
        PostgresMigrator.MigrateAsync(cs).GetAwaiter().GetResult();   // streamhealth.dead_letters
        Execute(cs, "CREATE TABLE amounts (output_id text PRIMARY KEY, amount bigint NOT NULL)");
        return cs;
    }

    private void Produce(string topic, int from, int count, Func<int, byte[]>? value = null)
    {
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build();
        for (var i = from; i < from + count; i++)
        {
            var bytes = value?.Invoke(i) ?? Amount(i % 97 + 1);
            p.Produce(topic, new Message<byte[], byte[]>
            {
                Key = Encoding.UTF8.GetBytes($"k{i % 10}"), Value = bytes,
                Headers = new Headers { { StreamHeaders.OutputId, Encoding.UTF8.GetBytes($"out-{i}") } },
            });
        }
        if (p.Flush(TimeSpan.FromSeconds(10)) > 0) throw new TimeoutException("produce");
    }

    private static byte[] Amount(long amount)
    {
        var value = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(value, amount);
        return value;
    }

    [Fact]
    public void A_sink_whose_store_is_down_with_input_waiting_is_reported_stalled_until_it_recovers()
    {
        var direct = NewDatabase();
        using var proxy = new TcpProxy(LocalServices.PostgresPort);
        var viaProxy = new NpgsqlConnectionStringBuilder(direct) { Port = proxy.Port, Timeout = 2 }.ConnectionString;
        var topic = kafka.NewTopic("sinkhealth", 2);
        var logs = new TestLogs();
        using var archive = NpgsqlDataSource.Create(direct);
        using var sink = new SinkRunner(new SinkOptions
        {
            BootstrapServers = kafka.BootstrapServers, Topic = topic, GroupId = topic + "-sink", BatchSize = 100,
            MaxBackoff = TimeSpan.FromMilliseconds(500), StallAfter = TimeSpan.FromSeconds(2),
        }, new AmountsWriter(viaProxy), logs, new PostgresSinkDeadLetters(archive));
        sink.Start();

        Produce(topic, 0, 500);
        WaitFor(() => Count(direct) == 500 && sink.Health() is { Lag: 0, Stalled: false }, TimeSpan.FromSeconds(60),
            () => $"rows {Count(direct)}, health {sink.Health()}\n{logs.Tail()}");

        proxy.Cut();   // the store is gone; input keeps arriving
        Produce(topic, 500, 300);
        WaitFor(() => sink.Health() is { Stalled: true, Paused: true, LastError: not null }, TimeSpan.FromSeconds(60),
            () => $"health {sink.Health()}\n{logs.Tail()}");
        var stalled = sink.Health();
        Assert.Equal(topic, stalled.Topic);
        Assert.Equal("amounts", stalled.Name);
        Assert.True(stalled.Lag > 0, $"lag {stalled.Lag}");
        Assert.Equal(500, stalled.Written);
        Assert.DoesNotContain("Exception", stalled.LastError);   // what operators read names the problem, not a .NET type
        Assert.Equal(500, Count(direct));

        proxy.Open();
        WaitFor(() => Count(direct) == 800 && sink.Health() is { Lag: 0, Stalled: false, Paused: false }, TimeSpan.FromSeconds(60),
            () => $"rows {Count(direct)}, health {sink.Health()}\n{logs.Tail()}");
        Assert.Equal(800, sink.Health().Written);
        Assert.Equal(0, sink.Health().DeadLettered);
    }

    [Fact]
    public void A_sink_whose_write_hangs_on_a_locked_table_is_reported_stalled()
    {
        var direct = NewDatabase();
        var topic = kafka.NewTopic("sinkhang", 2);
        var logs = new TestLogs();
        using var archive = NpgsqlDataSource.Create(direct);
        using var sink = new SinkRunner(new SinkOptions
        {
            BootstrapServers = kafka.BootstrapServers, Topic = topic, GroupId = topic + "-sink", StallAfter = TimeSpan.FromSeconds(1),
        }, new AmountsWriter(direct), logs, new PostgresSinkDeadLetters(archive));
        sink.Start();
        Produce(topic, 0, 100);
        WaitFor(() => Count(direct) == 100 && sink.Health() is { Lag: 0, Stalled: false }, TimeSpan.FromSeconds(60),
            () => $"rows {Count(direct)}, health {sink.Health()}\n{logs.Tail()}");
        Thread.Sleep(1_500);   // idle and caught up for longer than StallAfter: still not stalled
        Assert.False(sink.Health().Stalled, $"{sink.Health()}");

        using (var locker = new NpgsqlConnection(direct))
        {
            locker.Open();
            using var tx = locker.BeginTransaction();
            using (var lockTable = new NpgsqlCommand("LOCK TABLE amounts IN ACCESS EXCLUSIVE MODE", locker, tx)) lockTable.ExecuteNonQuery();
            // The sink's insert now waits on the lock: no error, no progress, records waiting.
            Produce(topic, 100, 50);
            WaitFor(() => sink.Health() is { Stalled: true, Lag: > 0 }, TimeSpan.FromSeconds(20), () => $"health {sink.Health()}\n{logs.Tail()}");
            tx.Rollback();
        }
        WaitFor(() => Count(direct) == 150 && sink.Health() is { Lag: 0, Stalled: false }, TimeSpan.FromSeconds(60),
            () => $"rows {Count(direct)}, health {sink.Health()}\n{logs.Tail()}");
    }

    [Fact]
    public void A_refused_record_whose_archive_is_down_holds_the_sink_until_it_can_be_archived()
    {
        var direct = NewDatabase();
        using var proxy = new TcpProxy(LocalServices.PostgresPort);
        var viaProxy = new NpgsqlConnectionStringBuilder(direct) { Port = proxy.Port, Timeout = 2 }.ConnectionString;
        var topic = kafka.NewTopic("sinkarchive", 1);
        var logs = new TestLogs();
        using var archive = NpgsqlDataSource.Create(viaProxy);
        proxy.Cut();
        using var sink = new SinkRunner(new SinkOptions
        {
            BootstrapServers = kafka.BootstrapServers, Topic = topic, GroupId = topic + "-sink", MaxBackoff = TimeSpan.FromMilliseconds(500),
        }, new AmountsWriter(direct), logs, new PostgresSinkDeadLetters(archive));
        sink.Start();

        // Offset 20 carries 3 bytes where the writer needs 8: that record can never be written.
        Produce(topic, 0, 41, i => i == 20 ? [1, 2, 3] : Amount(i % 97 + 1));
        WaitFor(() => sink.IsPaused && sink.FailedAttempts >= 3, TimeSpan.FromSeconds(60),
            () => $"paused {sink.IsPaused}, failed {sink.FailedAttempts}\n{logs.Tail()}");
        Assert.Equal(0, Scalar(direct, "SELECT count(*) FROM streamhealth.dead_letters"));
        Assert.Equal(0, Progress(kafka.BootstrapServers, topic + "-sink", topic, 1).Committed);
        Assert.Contains("dead-letter archive", sink.Health().LastError);

        proxy.Open();
        WaitFor(() => Count(direct) == 40 && Progress(kafka.BootstrapServers, topic + "-sink", topic, 1) is { Committed: 41 }, TimeSpan.FromSeconds(60),
            () => $"rows {Count(direct)}, offsets {Progress(kafka.BootstrapServers, topic + "-sink", topic, 1)}\n{logs.Tail()}");
        Assert.Equal(1, Scalar(direct, "SELECT count(*) FROM streamhealth.dead_letters WHERE source_offset = 20 AND processor = 'amounts'"));
        Assert.Equal(1, sink.DeadLettered);
        Assert.False(sink.IsPaused);
    }

    private static long Count(string cs) => Scalar(cs, "SELECT count(*) FROM amounts");

    private static long Scalar(string cs, string sql)
    {
        using var c = new NpgsqlConnection(cs);
        c.Open();
        using var cmd = new NpgsqlCommand(sql, c);
        return Convert.ToInt64(cmd.ExecuteScalar());
    }

    private static void Execute(string cs, string sql)
    {
        using var c = new NpgsqlConnection(cs);
        c.Open();
        using var cmd = new NpgsqlCommand(sql, c);
        cmd.ExecuteNonQuery();
    }
}
