using System.Buffers.Binary;
using System.Text;
using Confluent.Kafka;
using Npgsql;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Sinks;

/// <summary>A real PostgreSQL writer, idempotent by output id: what every StreamHealth sink looks like.</summary>
internal sealed class AmountsWriter(string connectionString) : ISinkWriter
{
    public string Name => "amounts";

    public void Write(IReadOnlyList<SinkRecord> batch)
    {
        var ids = new string[batch.Count];
        var amounts = new long[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            ids[i] = batch[i].OutputId;
            amounts[i] = BinaryPrimitives.ReadInt64BigEndian(batch[i].Value);
        }
        using var connection = new NpgsqlConnection(connectionString);
        connection.Open();
        using var insert = new NpgsqlCommand(
            "INSERT INTO amounts (output_id, amount) SELECT * FROM unnest(@ids, @amounts) ON CONFLICT (output_id) DO NOTHING", connection);
        insert.Parameters.AddWithValue("ids", ids);
        insert.Parameters.AddWithValue("amounts", amounts);
        insert.ExecuteNonQuery();
    }
}

public sealed class SinkBackPressureTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public void A_sink_whose_database_goes_away_pauses_retries_and_loses_nothing()
    {
        var database = LocalServices.NewDatabaseName("sink_pressure");
        var direct = LocalServices.PostgresConnectionString(database);
        using (var admin = new NpgsqlConnection(LocalServices.PostgresConnectionString("postgres")))
        {
            admin.Open();
            using var create = new NpgsqlCommand($"CREATE DATABASE {database}", admin);
            create.ExecuteNonQuery();
        }
        Execute(direct, "CREATE TABLE amounts (output_id text PRIMARY KEY, amount bigint NOT NULL)");

        using var proxy = new TcpProxy(LocalServices.PostgresPort);
        var viaProxy = $"Host=127.0.0.1;Port={proxy.Port};Database={database};Username=postgres;Pooling=false;Timeout=2";
        var topic = kafka.NewTopic("sink", 2);
        var logs = new TestLogs();
        long expectedSum = 0;
        var produced = 0;
        void Produce(int count)
        {
            using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build();
            for (var i = 0; i < count; i++, produced++)
            {
                var amount = produced % 97 + 1;
                expectedSum += amount;
                var value = new byte[8];
                BinaryPrimitives.WriteInt64BigEndian(value, amount);
                var message = new Message<byte[], byte[]>
                {
                    Key = Encoding.UTF8.GetBytes($"k{produced % 10}"), Value = value,
                    Headers = new Headers { { StreamHeaders.OutputId, Encoding.UTF8.GetBytes($"out-{produced}") } },
                };
                p.Produce(topic, message);
                if (produced % 1000 == 0) p.Produce(topic, message);   // a replayed duplicate: same output id
            }
            p.Flush(TimeSpan.FromSeconds(10));
        }

        using var sink = new SinkRunner(new SinkOptions
        {
            BootstrapServers = kafka.BootstrapServers, Topic = topic, GroupId = topic + "-sink", BatchSize = 200,
            MaxBackoff = TimeSpan.FromMilliseconds(500),
        }, new AmountsWriter(viaProxy), logs);
        sink.Start();
        Produce(5_000);
        WaitFor(() => Count(direct) == 5_000, TimeSpan.FromSeconds(60), () => $"rows {Count(direct)}\n{logs.Tail()}");

        proxy.Cut();   // PostgreSQL unreachable for the sink
        Produce(5_000);
        WaitFor(() => sink.IsPaused && sink.FailedAttempts >= 3, TimeSpan.FromSeconds(30),
            () => $"paused {sink.IsPaused}, failed attempts {sink.FailedAttempts}\n{logs.Tail()}");
        Assert.Equal(5_000, Count(direct));   // nothing written, nothing committed meanwhile
        Assert.True(Progress(kafka.BootstrapServers, topic + "-sink", topic, 2).Committed <= 5_000 + 5);

        proxy.Open();
        WaitFor(() => Count(direct) == 10_000 && !sink.IsPaused, TimeSpan.FromSeconds(60),
            () => $"rows {Count(direct)}, paused {sink.IsPaused}\n{logs.Tail()}");
        Assert.Equal(expectedSum, Scalar(direct, "SELECT sum(amount) FROM amounts"));
        Assert.True(sink.Pauses >= 1);
        Assert.Contains("input paused", logs.Text);
        Assert.Contains("input resumed", logs.Text);
        WaitFor(() => Progress(kafka.BootstrapServers, topic + "-sink", topic, 2) is var p && p.Committed == p.End, TimeSpan.FromSeconds(30),
            () => $"offsets {Progress(kafka.BootstrapServers, topic + "-sink", topic, 2)}");
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
