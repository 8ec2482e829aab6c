using System.Diagnostics;
using System.Text;
using Confluent.Kafka;
using Npgsql;
using StreamHealth.Host.Verbs;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Tools;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Pipeline;
using Xunit.Abstractions;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Operations;

/// <summary>The embedded broker with the catalogue topics, a migrated database of its own and the registry stand-in over it.</summary>
public sealed class ReplayFixture : IDisposable
{
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public string ConnectionString { get; }
    public NpgsqlDataSource Postgres { get; }
    public TestRegistry Registry { get; }
    public TestLogs Logs { get; } = new(Microsoft.Extensions.Logging.LogLevel.Warning);

    public ReplayFixture()
    {
        ConnectionString = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("replay_ops"));
        PostgresMigrator.MigrateAsync(ConnectionString).GetAwaiter().GetResult();
        Postgres = NpgsqlDataSource.Create(ConnectionString);
        Registry = TestRegistry.Start(ConnectionString);
    }

    public string Bootstrap => Kafka.BootstrapServers;

    public void Dispose()
    {
        Registry.Dispose();
        Postgres.Dispose();
        Kafka.Dispose();
    }
}

/// <summary>`streamhealth replay`, `reset-sink`, `lag`, `dlq replay` and `sink` on real parts: the embedded Kafka, PostgreSQL,
/// the registry stand-in and the weights PostgreSQL sink.</summary>
public sealed class ReplayTests(ReplayFixture f, ITestOutputHelper output) : IClassFixture<ReplayFixture>
{
    private static readonly DateTimeOffset T0 = DateTimeOffset.Parse("2026-03-01T07:00:00Z");
    private static readonly TimeSpan Join = TimeSpan.FromSeconds(30);

    /// <summary>Issue 18's bar, at a test's size (STREAMHEALTH_REPLAY_WEIGHTS=100000 runs it at the benchmark's: RESULTS.md).</summary>
    [Fact]
    public void A_replay_of_weights_into_a_new_group_and_table_ends_with_the_same_rows_and_a_second_replay_changes_nothing()
    {
        var count = int.TryParse(Environment.GetEnvironmentVariable("STREAMHEALTH_REPLAY_WEIGHTS"), out var n) ? n : 3_000;
        // The embedded broker keeps ~5 MiB a partition: 100k results (~190 B each) need 8 for none to be dropped.
        var topic = f.Kafka.NewTopic("wfilt", Math.Max(4, count / 12_500));
        ProduceWeightResults(topic, count);
        var sink = SinkCatalog.Get(WeightPostgresWriter.Name);
        var live = "live-" + topic;

        // The live sink materialises weights.measurements (the original), then the replay points a new group at the start.
        var written = SinkCatalog.RunIntoTable(sink, live, WeightPostgresWriter.Table, f.Bootstrap, f.Postgres, f.Registry.Connection, f.Logs, null,
            CancellationToken.None, topic);
        Assert.Equal(count, written);
        Assert.Equal(count, Scalar("SELECT count(*) FROM weights.measurements WHERE measurement_id LIKE @p", topic));

        var table = "weights.replay_" + topic.Replace('-', '_');
        var replayGroup = "replay-" + topic;
        var clock = Stopwatch.StartNew();
        var range = TopicReplay.Resolve(f.Bootstrap, topic, new ReplaySpec(FromOffset: 0), BrokerCapabilities.Embedded);
        Assert.Equal(count, range.Total);
        TopicReplay.ResetGroup(f.Bootstrap, range, replayGroup, BrokerCapabilities.Embedded, Join);
        var progress = new List<(long Done, long Total)>();
        var replayed = SinkCatalog.RunIntoTable(sink, replayGroup, table, f.Bootstrap, f.Postgres, f.Registry.Connection, f.Logs,
            (done, total) => progress.Add((done, total)), CancellationToken.None, topic);
        clock.Stop();
        output.WriteLine($"replayed {replayed} weights into a new group and table in {clock.Elapsed.TotalSeconds:0.00} s: {replayed / clock.Elapsed.TotalSeconds:0} records/s");
        Assert.Equal(count, replayed);
        Assert.Equal((count, count), progress[^1]);
        AssertSameRows(topic, table, count);

        // Twice: the records are written again (the group was reset) and the table does not change.
        var claims = Scalar("SELECT count(*) FROM streamhealth.event_ids WHERE event_id LIKE @p", topic);
        TopicReplay.ResetGroup(f.Bootstrap, range, replayGroup, BrokerCapabilities.Embedded, Join);
        Assert.Equal(count, SinkCatalog.RunIntoTable(sink, replayGroup, table, f.Bootstrap, f.Postgres, f.Registry.Connection, f.Logs, null,
            CancellationToken.None, topic));
        AssertSameRows(topic, table, count);
        Assert.Equal(claims, Scalar("SELECT count(*) FROM streamhealth.event_ids WHERE event_id LIKE @p", topic));
        Assert.Equal(0, Scalar("SELECT count(*) FROM streamhealth.dead_letters WHERE source_topic LIKE @p", topic));
    }

    [Fact]
    public void A_group_with_a_running_consumer_is_not_reset_and_is_once_it_stopped()
    {
        var topic = f.Kafka.NewTopic("wactive", 4);
        ProduceWeightResults(topic, 40);
        var group = "active-" + topic;
        var range = TopicReplay.Resolve(f.Bootstrap, topic, new ReplaySpec(FromOffset: 0), BrokerCapabilities.Embedded);
        using (var running = SinkRunner.For(f.Bootstrap, topic, group,
                   WeightPostgresWriter.Create(f.Postgres, f.Registry.Connection), f.Postgres, f.Logs))
        {
            running.Start();
            WaitFor(() => TopicReplay.Lag(f.Bootstrap, group, topic).Sum(l => l.Lag) == 0, TimeSpan.FromSeconds(60), () => "the sink never caught up");
            var refused = Assert.Throws<ReplayException>(() => TopicReplay.ResetGroup(f.Bootstrap, range, group, BrokerCapabilities.Embedded, Join));
            Assert.Contains($"consumer group '{group}' is active", refused.Message);
            Assert.All(TopicReplay.Lag(f.Bootstrap, group, topic), l => Assert.Equal(l.End, l.Committed ?? 0));   // nothing moved
        }
        TopicReplay.ResetGroup(f.Bootstrap, range, group, BrokerCapabilities.Embedded, Join);
        Assert.Equal(40, TopicReplay.Lag(f.Bootstrap, group, topic).Sum(l => l.Lag));
    }

    [Fact]
    public void A_time_range_is_copied_onto_another_topic_record_for_record_and_a_dry_run_copies_nothing()
    {
        var source = f.Kafka.NewTopic("rsrc", 4);
        var target = f.Kafka.NewTopic("rdst", 4);
        ProduceNumbered(source, 200);

        // Dry run through the verb: prints the range, changes nothing.
        Assert.Equal(0, ReplayVerb.Replay([source, "--from-time", T0.AddSeconds(50).ToString("O"), "--to-time", T0.AddSeconds(150).ToString("O"),
            "--into", "topic:" + target, "--dry-run", "--bootstrap", f.Bootstrap]));
        Assert.Empty(ReadAll(target));

        // Records 50..149 by time (the embedded broker cannot look offsets up by time: a scan finds them), at up to 2000/s.
        var range = TopicReplay.Resolve(f.Bootstrap, source, new ReplaySpec(FromTime: T0.AddSeconds(50), ToTime: T0.AddSeconds(150)), BrokerCapabilities.Embedded);
        Assert.Equal(100, range.Total);
        Assert.Equal(100, TopicReplay.CopyToTopic(f.Bootstrap, range, target, 2_000, null, CancellationToken.None));
        var copied = ReadAll(target);
        var expected = ReadAll(source).Where(r => r.Timestamp >= T0.AddSeconds(50).ToUnixTimeMilliseconds() && r.Timestamp < T0.AddSeconds(150).ToUnixTimeMilliseconds());
        Assert.Equal(expected.Select(r => r with { Offset = 0 }).OrderBy(r => r.Value), copied.Select(r => r with { Offset = 0 }).OrderBy(r => r.Value));
    }

    [Fact]
    public void Bad_ranges_and_options_are_refused_with_a_line_that_names_them()
    {
        var topic = f.Kafka.NewTopic("rbad", 2);
        ProduceNumbered(topic, 20);
        var unknown = Assert.Throws<ReplayException>(() => TopicReplay.Resolve(f.Bootstrap, "no-such-topic-" + topic, new ReplaySpec(FromOffset: 0), BrokerCapabilities.Embedded));
        Assert.Contains("is not on the broker", unknown.Message);
        var past = Assert.Throws<ReplayException>(() => TopicReplay.Resolve(f.Bootstrap, topic, new ReplaySpec(FromOffset: 1_000), BrokerCapabilities.Embedded));
        Assert.Contains("nothing to replay", past.Message);
        var late = Assert.Throws<ReplayException>(() => TopicReplay.Resolve(f.Bootstrap, topic, new ReplaySpec(FromTime: T0.AddDays(1)), BrokerCapabilities.Embedded));
        Assert.Contains("nothing to replay", late.Message);
        Assert.Throws<ReplayException>(() => TopicReplay.Resolve(f.Bootstrap, topic, new ReplaySpec(FromOffset: 0, FromTime: T0), BrokerCapabilities.Embedded));
        Assert.Throws<ReplayException>(() => TopicReplay.Resolve(f.Bootstrap, topic, new ReplaySpec(FromOffset: 5, ToOffset: 5), BrokerCapabilities.Embedded));
        var into = Assert.Throws<UsageException>(() => ReplayVerb.Replay([topic, "--from-offset", "0", "--into", "table:x", "--bootstrap", f.Bootstrap]));
        Assert.Contains("--into = 'table:x'", into.Message);
        Assert.Throws<UsageException>(() => ReplayVerb.Replay([topic, "--from-offset", "0", "--into", "topic:x", "--rate", "-3", "--bootstrap", f.Bootstrap]));
        Assert.Throws<UsageException>(() => ReplayVerb.Replay([topic, "--from-offset", "0", "--into", "topic:" + topic, "--bootstrap", f.Bootstrap]));
        Assert.Throws<UsageException>(() => ReplayVerb.ResetSink(["no-such-sink", "--to-time", "2026-03-01", "--bootstrap", f.Bootstrap]));
        Assert.Throws<UsageException>(() => ReplayVerb.Sink([WeightPostgresWriter.Name, "--group", "g", "--table", WeightPostgresWriter.Table]));
        Assert.Throws<UsageException>(() => ReplayVerb.Sink([WeightPostgresWriter.Name, "--group", "g", "--table", "weights.x; DROP TABLE y"]));
        // Nothing was created by asking about a topic that does not exist.
        Assert.Throws<ReplayException>(() => TopicReplay.PartitionsOf(f.Bootstrap, "no-such-topic-" + topic));
    }

    [Fact]
    public void Reset_sink_restarts_a_sinks_group_at_a_time_and_lag_shows_it_per_partition()
    {
        // The catalogue's weights sink on the catalogue's weights.filtered (this fixture's broker has it, empty).
        var sink = SinkCatalog.Get(WeightPostgresWriter.Name);
        var empty = Assert.Throws<ReplayException>(() => ReplayVerb.ResetSink([sink.Name, "--to-time", T0.ToString("O"), "--bootstrap", f.Bootstrap]));
        Assert.Contains("nothing to replay", empty.Message);
        ProduceWeightResults(sink.Topic, 60);   // one a minute from T0
        Assert.Equal(0, ReplayVerb.ResetSink([sink.Name, "--to-time", T0.AddMinutes(20).ToString("O"), "--bootstrap", f.Bootstrap]));
        var lag = TopicReplay.Lag(f.Bootstrap, sink.GroupId, sink.Topic);
        Assert.Equal(Topics.DefaultPartitions, lag.Count);
        Assert.Equal(40, lag.Sum(l => l.Lag));
        Assert.All(lag, l => Assert.NotNull(l.Committed));
        // A group that never committed lags by the whole partition.
        Assert.Equal(60, TopicReplay.Lag(f.Bootstrap, "never-" + Guid.NewGuid().ToString("N"), sink.Topic).Sum(l => l.Lag));
        Assert.Equal(0, ReplayVerb.Lag(["--group", sink.GroupId, "--bootstrap", f.Bootstrap]));
        Assert.Throws<UsageException>(() => ReplayVerb.Lag(["--group", "unknown-group", "--bootstrap", f.Bootstrap]));
    }

    [Fact]
    public void Dead_letters_go_back_to_their_source_without_the_dead_letter_headers_and_one_naming_no_source_is_left()
    {
        var source = f.Kafka.NewTopic("dsrc", 4);
        var dlq = source + Topics.DeadLetterSuffix;
        f.Kafka.Cluster.CreateTopic(dlq, 1);
        var original = new Headers { { "trace", "t-1"u8.ToArray() } };
        using (var producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig { BootstrapServers = f.Bootstrap }).Build())
        {
            void Letter(int i, string error) => producer.ProduceBlocking(dlq, new Message<byte[]?, byte[]?>
            {
                Key = Encoding.UTF8.GetBytes($"k{i}"), Value = Encoding.UTF8.GetBytes($"v{i}"), Timestamp = new Timestamp(T0.AddSeconds(i)),
                Headers = StreamHeaders.DeadLetter(original, source, i % 4, i, error, StreamHeaders.DeserializationError, "weights-filter"),
            });
            Letter(0, "cannot decode WeightMeasurement: bad magic byte");
            Letter(1, "cannot decode WeightMeasurement: truncated");
            Letter(2, "measurement_id m-2 belongs to another user");
            // Bytes someone put on the dead-letter topic by hand: no headers, so no source to go back to.
            producer.ProduceBlocking(dlq, new Message<byte[]?, byte[]?> { Key = null, Value = [0xff, 0x00, 0x13] });
            producer.Flush(TimeSpan.FromSeconds(10));
        }

        var dry = TopicReplay.ReplayDeadLetters(f.Bootstrap, dlq, null, null, dryRun: true, null, CancellationToken.None);
        Assert.Equal(3, dry.Produced[source]);
        Assert.Contains("no streamhealth-source-topic header", Assert.Single(dry.Skipped));
        Assert.Empty(ReadAll(source));
        Assert.Equal(1, ReplayVerb.DeadLetters(["replay", dlq, "--dry-run", "--bootstrap", f.Bootstrap]));   // exit 1: one left

        var done = TopicReplay.ReplayDeadLetters(f.Bootstrap, dlq, null, "cannot decode", dryRun: false, null, CancellationToken.None);
        Assert.Equal(2, done.Total);
        Assert.Equal(2, done.FilteredOut);
        var back = ReadAll(source).OrderBy(r => r.Key).ToList();
        Assert.Equal(["k0", "k1"], back.Select(r => r.Key));
        Assert.Equal(["v0", "v1"], back.Select(r => r.Value));
        Assert.Equal([T0.ToUnixTimeMilliseconds(), T0.AddSeconds(1).ToUnixTimeMilliseconds()], back.Select(r => r.Timestamp));
        Assert.All(back, r => Assert.Equal("trace=t-1", r.Headers));
        Assert.Throws<UsageException>(() => ReplayVerb.DeadLetters(["replay", source, "--bootstrap", f.Bootstrap]));
    }

    private void ProduceWeightResults(string topic, int count)
    {
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Bootstrap, LingerMs = 5 }).Build();
        for (var i = 0; i < count; i++)
        {
            var user = $"u-{i % 97}";
            var result = new WeightResult
            {
                SchemaVersion = 1, EventTimeUnixMs = T0.AddMinutes(i).ToUnixTimeMilliseconds(), MeasurementId = $"{topic}-m{i}", UserId = user,
                Accepted = i % 7 != 0, Confidence = 0.5 + i % 50 / 100.0, RawWeightKg = 70 + i % 300 / 10.0, FilteredWeightKg = 70 + i % 290 / 10.0,
                TrendKgPerWeek = -0.1, PredictionErrorKg = 0.2, NormalizedInnovation = 0.3, Source = WeightSource.ConnectedScale,
                SourcePartition = i % 4, SourceOffset = i, MeasurementFingerprint = $"fp-{i:x8}",
                Reasons = { i % 7 != 0 ? WeightReason.Accepted : WeightReason.OtherPersonSuspected },
            };
            producer.ProduceBlocking(topic, new Message<byte[], byte[]>
            {
                Key = f.Registry.Key(topic, user), Value = f.Registry.Value(topic, result), Timestamp = new Timestamp(T0.AddMinutes(i)),
            });
        }
        producer.Flush(TimeSpan.FromSeconds(60));
    }

    private void ProduceNumbered(string topic, int count)
    {
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Bootstrap, LingerMs = 5 }).Build();
        for (var i = 0; i < count; i++)
            producer.ProduceBlocking(topic, new Message<byte[], byte[]>
            {
                Key = Encoding.UTF8.GetBytes($"k{i % 10}"), Value = Encoding.UTF8.GetBytes($"v{i:D4}"), Timestamp = new Timestamp(T0.AddSeconds(i)),
                Headers = [new Header("n", Encoding.UTF8.GetBytes(i.ToString()))],
            });
        producer.Flush(TimeSpan.FromSeconds(30));
    }

    private sealed record Read(int Partition, long Offset, string? Key, string? Value, long Timestamp, string Headers);

    private List<Read> ReadAll(string topic)
    {
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = f.Bootstrap, GroupId = "read-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = false,
        }).Build();
        var partitions = TopicReplay.PartitionsOf(f.Bootstrap, topic);
        var ends = partitions.ToDictionary(p => p, p => consumer.QueryWatermarkOffsets(new TopicPartition(topic, p), TimeSpan.FromSeconds(10)).High.Value);
        var result = new List<Read>();
        var open = partitions.Where(p => ends[p] > 0).ToHashSet();
        consumer.Assign(open.Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        while (open.Count > 0)
        {
            var r = consumer.Consume(TimeSpan.FromSeconds(10)) ?? throw new TimeoutException($"reading {topic}");
            result.Add(new Read(r.Partition.Value, r.Offset.Value, Text(r.Message.Key), Text(r.Message.Value), r.Message.Timestamp.UnixTimestampMs,
                string.Join(";", (r.Message.Headers ?? []).Select(h => h.Key + "=" + Encoding.UTF8.GetString(h.GetValueBytes())))));
            if (r.Offset.Value + 1 >= ends[r.Partition.Value]) open.Remove(r.Partition.Value);
        }
        return result;

        static string? Text(byte[]? b) => b is null ? null : Encoding.UTF8.GetString(b);
    }

    private long Scalar(string sql, string topic)
    {
        using var cmd = f.Postgres.CreateCommand(sql);
        cmd.Parameters.AddWithValue("p", topic + "%");
        return Convert.ToInt64(cmd.ExecuteScalar());
    }

    /// <summary>Every column of every row equal (EXCEPT both ways, so a missing, extra or changed row fails), and as many rows.</summary>
    private void AssertSameRows(string topic, string table, int count)
    {
        Assert.Equal(count, Scalar($"SELECT count(*) FROM {table} WHERE measurement_id LIKE @p", topic));
        Assert.Equal(0, Scalar($"SELECT count(*) FROM (SELECT * FROM weights.measurements WHERE measurement_id LIKE @p EXCEPT SELECT * FROM {table}) x", topic));
        Assert.Equal(0, Scalar($"SELECT count(*) FROM (SELECT * FROM {table} EXCEPT SELECT * FROM weights.measurements WHERE measurement_id LIKE @p) x", topic));
    }
}
