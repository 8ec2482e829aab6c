using Confluent.Kafka;
using Google.Protobuf;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Pipeline;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Sinks;

/// <summary>Issue 11, defect 1: one record a store refuses must not stop its sink. The real weights sinks (the same
/// <see cref="SinkRunner"/> every workload uses) over an embedded Kafka topic, real PostgreSQL and real Redis; the
/// refused record goes to streamhealth.dead_letters and everything around and after it is stored.</summary>
public sealed class SinkPermanentErrorTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>, IDisposable
{
    private static readonly long T0 = DateTimeOffset.Parse("2026-03-01T07:00:00Z").ToUnixTimeMilliseconds();
    private readonly TestLogs _logs = new();
    private readonly List<IDisposable> _owned = [];
    /// <summary>The registry of the stack the test started (on its database): weights.filtered is Avro.</summary>
    private TestRegistry _registry = null!;

    private sealed record Stack(WeightPipelineNames Names, string ConnectionString, SinkRunner Postgres, SinkRunner Redis);

    private Stack Start(string prefix)
    {
        var filtered = kafka.NewTopic(prefix, 2);
        var names = new WeightPipelineNames(filtered + "-app", filtered + "-raw", filtered);
        var cs = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("sink_" + prefix));
        PostgresMigrator.MigrateAsync(cs).GetAwaiter().GetResult();
        var postgres = NpgsqlDataSource.Create(cs);
        var redis = ConnectionMultiplexer.Connect(LocalServices.RedisConfiguration);
        _registry = TestRegistry.Start(cs);
        var (pg, cache) = WeightPipeline.CreateSinks(names, kafka.BootstrapServers, postgres, redis, _registry.Connection, _logs);
        // Disposed in reverse: sinks first, then their stores.
        _owned.Add(_registry);
        _owned.Add(redis);
        _owned.Add(postgres);
        _owned.Add(pg);
        _owned.Add(cache);
        pg.Start();
        cache.Start();
        return new Stack(names, cs, pg, cache);
    }

    public void Dispose()
    {
        for (var i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
    }

    private static WeightResult Result(string user, string id, int n) => new()
    {
        SchemaVersion = 1, EventTimeUnixMs = T0 + n * 60_000L, MeasurementId = id, UserId = user, Accepted = true,
        Confidence = 0.9, RawWeightKg = 80 + n * 0.01, FilteredWeightKg = 80, TrendKgPerWeek = 0, Source = WeightSource.ConnectedScale,
        SourcePartition = 0, SourceOffset = n, Reasons = { WeightReason.Accepted },
    };

    private void Produce(string topic, IEnumerable<(string User, byte[] Value)> records)
    {
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers, LingerMs = 50 }).Build();
        foreach (var (user, value) in records)
            p.Produce(topic, new Message<byte[], byte[]> { Key = _registry.Key(topic, user), Value = value });
        if (p.Flush(TimeSpan.FromSeconds(10)) > 0) throw new TimeoutException("produce");
    }

    /// <summary>A weights.filtered value as the topology writes it (Avro, Confluent wire format).</summary>
    private byte[] Encoded(string topic, WeightResult r) => _registry.Value(topic, r);

    private IEnumerable<(string, byte[])> Good(string topic, int from, int count, int users = 5)
    {
        for (var n = from; n < from + count; n++)
        {
            var user = $"sink-user-{n % users}";
            yield return (user, Encoded(topic, Result(user, $"m-{n}", n)));
        }
    }

    private static long Scalar(string cs, string sql, params (string Name, object Value)[] parameters)
    {
        using var c = new NpgsqlConnection(cs);
        c.Open();
        using var cmd = new NpgsqlCommand(sql, c);
        foreach (var (name, value) in parameters) cmd.Parameters.AddWithValue(name, value);
        return Convert.ToInt64(cmd.ExecuteScalar());
    }

    private static List<(string Processor, long Offset, string Error)> DeadLetters(string cs, string topic)
    {
        using var c = new NpgsqlConnection(cs);
        c.Open();
        using var cmd = new NpgsqlCommand(
            "SELECT processor, source_offset, error FROM streamhealth.dead_letters WHERE source_topic = @t ORDER BY processor, source_offset", c);
        cmd.Parameters.AddWithValue("t", topic);
        using var r = cmd.ExecuteReader();
        var rows = new List<(string, long, string)>();
        while (r.Read()) rows.Add((r.GetString(0), r.GetInt64(1), r.GetString(2)));
        return rows;
    }

    private static long Rows(string cs) => Scalar(cs, "SELECT count(*) FROM weights.measurements");

    [Fact]
    public void A_record_PostgreSQL_refuses_is_dead_lettered_and_its_batch_and_everything_after_it_are_stored()
    {
        var s = Start("sinkpg");
        // A NUL in a text column: PostgreSQL answers 22021 for the whole batch it arrives in.
        var bad = Encoded(s.Names.FilteredTopic, Result("sink-user-bad", "a\u0000b", 1000));
        Produce(s.Names.FilteredTopic, [.. Good(s.Names.FilteredTopic, 0, 40), ("sink-user-bad", bad), .. Good(s.Names.FilteredTopic, 40, 40)]);
        WaitFor(() => Rows(s.ConnectionString) == 80, TimeSpan.FromSeconds(60),
            () => $"rows {Rows(s.ConnectionString)}, dead letters {DeadLetters(s.ConnectionString, s.Names.FilteredTopic).Count}\n{_logs.Tail()}");

        Produce(s.Names.FilteredTopic, Good(s.Names.FilteredTopic, 80, 30));   // after the bad record: must not be stuck behind it
        WaitFor(() => Rows(s.ConnectionString) == 110, TimeSpan.FromSeconds(60),
            () => $"rows {Rows(s.ConnectionString)}\n{_logs.Tail()}");

        var letters = DeadLetters(s.ConnectionString, s.Names.FilteredTopic).Where(l => l.Processor == "weights-postgres").ToList();
        var letter = Assert.Single(letters);
        Assert.Contains("22021", letter.Error);
        Assert.DoesNotContain('\0', letter.Error);
        Assert.Equal(0, Scalar(s.ConnectionString, "SELECT count(*) FROM weights.measurements WHERE user_id = 'sink-user-bad'"));
        // The archived record is the refused one, byte for byte, so it can be repaired and replayed.
        Assert.Equal(1, Scalar(s.ConnectionString,
            "SELECT count(*) FROM streamhealth.dead_letters WHERE processor = 'weights-postgres' AND record_value = @v", ("v", bad)));
        WaitFor(() => Progress(kafka.BootstrapServers, s.Names.PostgresSinkGroup, s.Names.FilteredTopic, 2) is var p && p.Committed == p.End,
            TimeSpan.FromSeconds(30), () => $"offsets {Progress(kafka.BootstrapServers, s.Names.PostgresSinkGroup, s.Names.FilteredTopic, 2)}");
    }

    [Fact]
    public void A_value_Redis_refuses_is_dead_lettered_and_the_rest_is_written()
    {
        var s = Start("sinkredis");
        var wrongType = "sink-user-wrongtype-" + Guid.NewGuid().ToString("N")[..8];
        using var redis = ConnectionMultiplexer.Connect(LocalServices.RedisConfiguration);
        var db = redis.GetDatabase();
        // The user's latest-weight key holds a plain string: HSET in the compare-and-set answers WRONGTYPE.
        db.StringSet(WeightLatestCache.Key(wrongType), "not a hash", TimeSpan.FromMinutes(10));
        var users = Enumerable.Range(0, 5).Select(i => $"sink-user-r{i}-{Guid.NewGuid():N}"[..30]).ToArray();
        var records = new List<(string, byte[])>();
        for (var n = 0; n < 50; n++)
        {
            var user = users[n % users.Length];
            records.Add((user, Encoded(s.Names.FilteredTopic, Result(user, $"r-{n}", n))));
            if (n == 25) records.Add((wrongType, Encoded(s.Names.FilteredTopic, Result(wrongType, "r-wrongtype", n))));
        }
        Produce(s.Names.FilteredTopic, records);
        Produce(s.Names.FilteredTopic, users.Select(u => (u, Encoded(s.Names.FilteredTopic, Result(u, "after-" + u, 500)))));

        WaitFor(() => users.All(u => (string?)db.HashGet(WeightLatestCache.Key(u), "measurement_id") == "after-" + u), TimeSpan.FromSeconds(60),
            () => $"latest {string.Join(", ", users.Select(u => (string?)db.HashGet(WeightLatestCache.Key(u), "measurement_id")))}\n{_logs.Tail()}");
        WaitFor(() => DeadLetters(s.ConnectionString, s.Names.FilteredTopic).Any(l => l.Processor == "weights-redis"), TimeSpan.FromSeconds(30),
            () => _logs.Tail());
        var letter = Assert.Single(DeadLetters(s.ConnectionString, s.Names.FilteredTopic));
        Assert.Equal("weights-redis", letter.Processor);
        Assert.Contains("WRONGTYPE", letter.Error);
        Assert.Equal("not a hash", (string?)db.StringGet(WeightLatestCache.Key(wrongType)));
        // PostgreSQL has no quarrel with that record: its sink stores it.
        WaitFor(() => Rows(s.ConnectionString) == 56, TimeSpan.FromSeconds(60), () => $"rows {Rows(s.ConnectionString)}\n{_logs.Tail()}");
    }

    [Fact]
    public void A_record_that_does_not_decode_is_archived_by_each_sink_that_reads_it()
    {
        var s = Start("sinkgarbage");
        byte[] garbage = [0xff, 0xff, 0xff, 0xff, 0xff];
        // A well-formed Avro result under a schema id the registry never issued.
        var unknownId = Encoded(s.Names.FilteredTopic, Result("sink-user-0", "unknown-id", 5));
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(unknownId.AsSpan(1), 987_654);
        var topic = s.Names.FilteredTopic;
        Produce(topic, [.. Good(topic, 0, 10), ("sink-user-0", garbage), .. Good(topic, 10, 10), ("sink-user-0", unknownId), .. Good(topic, 20, 5)]);
        WaitFor(() => DeadLetters(s.ConnectionString, topic).Count == 4 && Rows(s.ConnectionString) == 25,
            TimeSpan.FromSeconds(60), () => $"rows {Rows(s.ConnectionString)}, letters {DeadLetters(s.ConnectionString, topic).Count}\n{_logs.Tail()}");
        var letters = DeadLetters(s.ConnectionString, topic);
        Assert.All(letters, l => Assert.Contains("WeightResult", l.Error));
        var byOffset = letters.GroupBy(l => l.Offset).OrderBy(g => g.Key).ToList();
        Assert.Equal(2, byOffset.Count);
        Assert.All(byOffset, g => Assert.Equal(["weights-postgres", "weights-redis"], g.Select(l => l.Processor).Order()));
        Assert.All(byOffset[0], l => Assert.Contains("no Confluent wire header", l.Error));
        Assert.All(byOffset[1], l => Assert.Contains("schema id 987654", l.Error));
    }
}
