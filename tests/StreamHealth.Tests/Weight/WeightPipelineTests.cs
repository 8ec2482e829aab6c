using System.Text;
using Confluent.Kafka;
using Google.Protobuf;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Pipeline;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Weight;

/// <summary>A running weights pipeline on real parts: Kafka, RocksDB state, PostgreSQL and Redis sinks; here on the embedded
/// Kafka and the test profile's servers, in tests/StreamHealth.ContainerTests on containers (<see cref="ITestStack"/>).</summary>
public class WeightPipelineFixture : IDisposable
{
    public ITestStack Stack { get; }
    public WeightPipelineNames Names { get; }
    public string ConnectionString { get; }
    public NpgsqlDataSource Postgres { get; }
    public ConnectionMultiplexer Redis { get; }
    public TestLogs Logs { get; } = new();
    public WeightPipeline Pipeline { get; }
    public string Database { get; }
    /// <summary>The registry (on this fixture's database) the pipeline and the tests serialise through.</summary>
    public TestRegistry Registry { get; }
    private readonly IDisposable? _ownedStack;
    private readonly string _stateDir = Directory.CreateTempSubdirectory("streamhealth-weights-").FullName;

    public WeightPipelineFixture() : this(new LocalStack(), ownsStack: true) { }

    protected WeightPipelineFixture(ITestStack stack, bool ownsStack)
    {
        Stack = stack;
        _ownedStack = ownsStack ? stack as IDisposable : null;
        var raw = Stack.NewTopic("wraw", 4);
        Names = new WeightPipelineNames(raw + "-app", raw, Stack.NewTopic("wfilt", 4));
        Stack.CreateTopic(raw + Topics.DeadLetterSuffix, 1);
        Database = LocalServices.NewDatabaseName("weights_pipeline");
        ConnectionString = Stack.PostgresConnectionString(Database);
        PostgresMigrator.MigrateAsync(ConnectionString).GetAwaiter().GetResult();
        Postgres = NpgsqlDataSource.Create(ConnectionString);
        Redis = ConnectionMultiplexer.Connect(Stack.RedisConfiguration);
        Registry = Stack.Registry(ConnectionString);
        Pipeline = new WeightPipeline(new StreamHostOptions { SchemaRegistry = Registry.Connection, BootstrapServers = Stack.BootstrapServers, CreateInternalTopic = Stack.CreateInternalTopic, StateDirectory = _stateDir, CommitIntervalMs = 200 },
            Postgres, Redis, Logs, names: Names).Start();
    }

    public void Dispose()
    {
        Pipeline.Dispose();
        Registry.Dispose();
        Redis.Dispose();
        Postgres.Dispose();
        _ownedStack?.Dispose();
        Directory.Delete(_stateDir, recursive: true);
    }
}

public sealed class WeightPipelineTests(WeightPipelineFixture f) : WeightPipelineScenarios(f), IClassFixture<WeightPipelineFixture>;

/// <summary>The weights pipeline's scenarios, run by <see cref="WeightPipelineTests"/> here and on containers by the container suite.</summary>
public abstract class WeightPipelineScenarios(WeightPipelineFixture f)
{
    private static readonly long Day = TimeSpan.FromDays(1).Ticks / TimeSpan.TicksPerMillisecond;
    private static readonly long T0 = DateTimeOffset.Parse("2026-03-01T07:00:00Z").ToUnixTimeMilliseconds();

    private static WeightMeasurement M(string user, string id, double days, double kg, WeightUnit unit = WeightUnit.Kg,
        WeightSource source = WeightSource.ConnectedScale) => new()
    {
        SchemaVersion = 1, EventTimeUnixMs = T0 + (long)(days * Day), MeasurementId = id, UserId = user,
        Value = kg, Unit = unit, Source = source,
    };

    private void Send(params WeightMeasurement[] measurements)
    {
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Stack.BootstrapServers, EnableIdempotence = true }).Build();
        foreach (var m in measurements)
            p.Produce(f.Names.RawTopic, new Message<byte[], byte[]>
            {
                Key = f.Registry.Key(f.Names.RawTopic, m.UserId), Value = f.Registry.Value(f.Names.RawTopic, m),
                Timestamp = new Timestamp(m.EventTimeUnixMs, TimestampType.CreateTime),
            });
        p.Flush(TimeSpan.FromSeconds(10));
    }

    private sealed record Row(string MeasurementId, bool Accepted, double FilteredWeightKg, bool NeedsInitialization,
        bool NeedsReinitialization, string[] Reasons, string Source, double RawWeightKg);

    private List<Row> Rows(string user)
    {
        using var cmd = f.Postgres.CreateCommand("""
            SELECT measurement_id, accepted, filtered_weight_kg, needs_initialization, needs_reinitialization, reasons, source, raw_weight_kg
            FROM weights.measurements WHERE user_id = $1 ORDER BY measured_at, measurement_id
            """);
        cmd.Parameters.AddWithValue(user);
        using var r = cmd.ExecuteReader();
        var rows = new List<Row>();
        while (r.Read())
            rows.Add(new Row(r.GetString(0), r.GetBoolean(1), r.GetDouble(2), r.GetBoolean(3), r.GetBoolean(4), r.GetFieldValue<string[]>(5), r.GetString(6), r.GetDouble(7)));
        return rows;
    }

    private List<Row> WaitForRows(string user, int count)
    {
        List<Row> rows = [];
        WaitFor(() => (rows = Rows(user)).Count >= count, TimeSpan.FromSeconds(60), () => $"{user}: {rows.Count}/{count} rows\n{f.Logs.Tail()}");
        Assert.Equal(count, rows.Count);
        return rows;
    }

    private static string U(string name) => $"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)];

    [Fact]
    public async Task A_new_user_is_initialised_after_three_measurements_and_the_latest_weight_reaches_redis()
    {
        var user = U("new");
        Send(M(user, user + "-1", 0, 80.4), M(user, user + "-2", 1, 80.0), M(user, user + "-3", 2, 175.5, WeightUnit.Lb));
        var rows = WaitForRows(user, 3);
        Assert.True(rows[0].NeedsInitialization && rows[1].NeedsInitialization);
        Assert.All(rows.Take(2), r => Assert.Contains("buffered_for_initialization", r.Reasons));
        Assert.False(rows[2].NeedsInitialization);
        Assert.Contains("initialized", rows[2].Reasons);
        Assert.InRange(rows[2].FilteredWeightKg, 79.0, 80.6);
        Assert.Equal("connected_scale", rows[2].Source);

        WeightLatest? latest = null;
        WaitFor(() => (latest = WeightLatestCache.ReadAsync(f.Redis.GetDatabase(), user).GetAwaiter().GetResult()) is not null,
            TimeSpan.FromSeconds(30), () => "no latest weight in Redis");
        Assert.Equal(user + "-3", latest!.MeasurementId);
        Assert.Equal(rows[2].FilteredWeightKg, latest.FilteredWeightKg, 6);
        Assert.True(await f.Redis.GetDatabase().KeyTimeToLiveAsync(WeightLatestCache.Key(user)) > TimeSpan.FromDays(29));
    }

    [Fact]
    public void Outliers_gaps_step_changes_duplicates_and_out_of_order_measurements_are_reported_and_stored()
    {
        var user = U("story");
        var ms = new List<WeightMeasurement>();
        for (var d = 0; d < 6; d++) ms.Add(M(user, $"{user}-base{d}", d, 100 + (d % 2 == 0 ? 0.3 : -0.3)));
        ms.Add(M(user, $"{user}-outlier", 6.5, 135));                                  // gross outlier
        ms.Add(M(user, $"{user}-dup-a", 7, 99.8));
        ms.Add(M(user, $"{user}-dup-b", 7, 99.8));                                     // same time, source, value: a duplicate
        ms.Add(M(user, $"{user}-late", 3.5, 100.1));                                   // older than the last processed
        // A real step change, declared as surgery on its first reading (issue 19: undeclared, 12 kg take
        // 15 independent days to prove); the declaration travels through the topology to the filter.
        for (var d = 0; d < 3; d++)
        {
            var step = M(user, $"{user}-step{d}", 8 + d, 88 + 0.2 * d);
            if (d == 0) step.DeclaredEvent = WeightEvent.Surgery;
            ms.Add(step);
        }
        ms.Add(M(user, $"{user}-after-gap", 60, 87.5));                                // > 30 days later
        Send([.. ms]);
        Send(M(user, $"{user}-base0", 0, 100.3));                                      // a replay of the same measurement id

        var rows = WaitForRows(user, ms.Count).ToDictionary(r => r.MeasurementId);
        Assert.Contains("initialized", rows[$"{user}-base2"].Reasons);
        var outlier = rows[$"{user}-outlier"];
        Assert.False(outlier.Accepted);
        Assert.Contains("outlier", outlier.Reasons);
        Assert.Equal(135, outlier.RawWeightKg);
        Assert.Contains("duplicate", rows[$"{user}-dup-b"].Reasons);
        Assert.False(rows[$"{user}-dup-b"].Accepted);
        Assert.Contains("out_of_order", rows[$"{user}-late"].Reasons);
        Assert.Contains(rows.Values.Where(r => r.MeasurementId.Contains("-step")), r => r.Reasons.Contains("reanchored_after_step_change"));
        Assert.InRange(rows[$"{user}-step2"].FilteredWeightKg, 86.5, 90.5);
        var afterGap = rows[$"{user}-after-gap"];
        Assert.True(afterGap.NeedsReinitialization);
        Assert.Contains("reinitialized_after_gap", afterGap.Reasons);
    }

    [Fact]
    public void Garbage_and_mismatched_records_go_to_the_dead_letter_topic_with_the_reason()
    {
        var user = U("bad");
        var key = f.Registry.Key(f.Names.RawTopic, user);
        var good = f.Registry.Value(f.Names.RawTopic, M(user, user + "-ok", 0, 70));
        var goodId = ConfluentWire.SchemaId(good)!.Value;
        // A valid Avro body under a schema id the registry never issued.
        var unknownId = good.ToArray();
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(unknownId.AsSpan(1), 987_654);
        // Protobuf, as weights.raw carried before the move to Avro: no magic byte.
        var protobuf = M(user, user + "-proto", 0, 70).ToByteArray();
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Stack.BootstrapServers }).Build())
        {
            p.Produce(f.Names.RawTopic, new Message<byte[], byte[]> { Key = key, Value = [0xff, 0xfe, 0x01] });
            p.Produce(f.Names.RawTopic, new Message<byte[], byte[]> { Key = key, Value = unknownId });
            p.Produce(f.Names.RawTopic, new Message<byte[], byte[]> { Key = key, Value = protobuf });
            p.Produce(f.Names.RawTopic, new Message<byte[], byte[]>
            {
                Key = key, Value = f.Registry.Value(f.Names.RawTopic, M("someone-else", user + "-x", 0, 70)),
            });
            p.Produce(f.Names.RawTopic, new Message<byte[], byte[]>
            {
                Key = key, Value = f.Registry.Value(f.Names.RawTopic, M(user, "", 0, 70)),
            });
            p.Flush(TimeSpan.FromSeconds(10));
        }
        var letters = new List<(string Error, string Type, string? SchemaId, byte[] Value)>();
        using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = f.Stack.BootstrapServers, GroupId = "dlq-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        c.Subscribe(f.Names.RawTopic + Topics.DeadLetterSuffix);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline && letters.Count < 5)
        {
            if (c.Consume(TimeSpan.FromMilliseconds(200)) is not { } r) continue;
            if (!r.Message.Key.AsSpan().SequenceEqual(key)) continue;
            letters.Add((Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes(StreamHeaders.Error)),
                Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes(StreamHeaders.ErrorType)),
                r.Message.Headers.TryGetLastBytes(StreamHeaders.SchemaId, out var id) ? Encoding.UTF8.GetString(id) : null, r.Message.Value));
        }
        Assert.True(letters.Count == 5, $"dead letters: {string.Join(" | ", letters.Select(l => $"{l.Type}: {l.Error}"))}\n{f.Logs.Tail()}");
        // Not the wire format: dead-lettered as they arrived, with no schema id to name.
        Assert.Contains(letters, l => l.Type == "deserialization" && l.SchemaId is null && l.Value.SequenceEqual(new byte[] { 0xff, 0xfe, 0x01 }));
        Assert.Contains(letters, l => l.Type == "deserialization" && l.SchemaId is null && l.Value.SequenceEqual(protobuf));
        // An id the registry does not know: named in the header and in the reason.
        Assert.Contains(letters, l => l.Type == "deserialization" && l.SchemaId == "987654" && l.Value.SequenceEqual(unknownId));
        // Decoded but refused: the header names the schema the record was written with.
        var goodIdText = goodId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Contains(letters, l => l.Type == nameof(WeightInputException) && l.Error.Contains("does not match the record key") && l.SchemaId == goodIdText);
        Assert.Contains(letters, l => l.Type == nameof(WeightInputException) && l.Error.Contains("measurement_id is required") && l.SchemaId == goodIdText);
        Assert.Empty(Rows(user));   // nothing partial reached the sink
    }
}
