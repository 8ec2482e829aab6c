using System.Text;
using Avro.Generic;
using Confluent.Kafka;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using Google.Protobuf;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using CgmForecastRequest = StreamHealth.Schemas.Avro.Cgm.CgmForecastRequest;
using CgmReading = StreamHealth.Schemas.Avro.Cgm.CgmReading;

namespace StreamHealth.Tests.Cgm.Pipeline;

/// <summary>A running CGM pipeline on real parts: Kafka, RocksDB windows, PostgreSQL and Redis sinks, and a schema registry
/// (every CGM topic is Avro in the Confluent wire format); here the embedded Kafka, the test profile's servers and the
/// stand-in registry on the test's database, in tests/StreamHealth.ContainerTests containers (<see cref="ITestStack"/>).</summary>
public class CgmPipelineFixture : IDisposable
{
    public ITestStack Stack { get; }
    public CgmPipelineNames Names { get; }
    public NpgsqlDataSource Postgres { get; }
    public ConnectionMultiplexer Redis { get; }
    public TestLogs Logs { get; } = new();
    public TestRegistry Registry { get; }
    public CgmPipeline Pipeline { get; }
    public CgmPipelineOptions Options { get; } = new() { EmitIntervalMs = 100, MinForecastRequestIntervalMs = 1_500 };
    private readonly IDisposable? _ownedStack;
    private readonly string _stateDir = Directory.CreateTempSubdirectory("streamhealth-cgm-").FullName;

    public CgmPipelineFixture() : this(new LocalStack(), ownsStack: true) { }

    protected CgmPipelineFixture(ITestStack stack, bool ownsStack)
    {
        Stack = stack;
        _ownedStack = ownsStack ? stack as IDisposable : null;
        var readings = Stack.NewTopic("cgmr", 4);
        Names = new CgmPipelineNames(readings + "-app", readings, Stack.NewTopic("cgml", 4), Stack.NewTopic("cgmq", 4));
        Stack.CreateTopic(readings + Topics.DeadLetterSuffix, 1);
        var connectionString = Stack.PostgresConnectionString(LocalServices.NewDatabaseName("cgm_pipeline"));
        PostgresMigrator.MigrateAsync(connectionString).GetAwaiter().GetResult();
        Postgres = NpgsqlDataSource.Create(connectionString);
        Redis = ConnectionMultiplexer.Connect(Stack.RedisConfiguration);
        Registry = Stack.Registry(connectionString);
        Pipeline = new CgmPipeline(new StreamHostOptions { SchemaRegistry = Registry.Connection, BootstrapServers = Stack.BootstrapServers, CreateInternalTopic = Stack.CreateInternalTopic, StateDirectory = _stateDir, CommitIntervalMs = 200 },
            Postgres, Redis, Logs, Options, Names).Start();
    }

    public void Send(IEnumerable<CgmReading> readings)
    {
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = Stack.BootstrapServers, EnableIdempotence = true }).Build();
        CgmReadingProducer.ProduceAsync(p, Registry.Connection, Names.ReadingsTopic, readings.ToList()).GetAwaiter().GetResult();
    }

    /// <summary>Records as they are (key and value bytes), keyed by <paramref name="user"/> as producers key cgm.readings.</summary>
    public void SendRaw(string user, IEnumerable<byte[]> values)
    {
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = Stack.BootstrapServers }).Build();
        var key = Registry.Key(Names.ReadingsTopic, user);
        foreach (var value in values) p.Produce(Names.ReadingsTopic, new Message<byte[], byte[]> { Key = key, Value = value });
        if (p.Flush(TimeSpan.FromSeconds(10)) > 0) throw new TimeoutException("readings not acknowledged");
    }

    /// <summary>Every record of <paramref name="topic"/> keyed by <paramref name="user"/> seen within <paramref name="wait"/>.</summary>
    public List<Message<byte[], byte[]>> Drain(string topic, string user, TimeSpan wait, Func<List<Message<byte[], byte[]>>, bool>? enough = null)
    {
        var found = new List<Message<byte[], byte[]>>();
        using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = Stack.BootstrapServers, GroupId = "drain-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        c.Subscribe(topic);
        var deadline = DateTime.UtcNow + wait;
        while (DateTime.UtcNow < deadline)
        {
            if (c.Consume(TimeSpan.FromMilliseconds(100)) is not { } r) continue;
            if (Registry.UserOf(topic, r.Message.Key) == user) found.Add(r.Message);
            if (enough?.Invoke(found) == true) break;
        }
        return found;
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

public sealed class CgmPipelineTests(CgmPipelineFixture f) : CgmPipelineScenarios(f), IClassFixture<CgmPipelineFixture>;

/// <summary>The CGM pipeline's scenarios, run by <see cref="CgmPipelineTests"/> here and on containers by the container suite.</summary>
public abstract class CgmPipelineScenarios(CgmPipelineFixture f)
{
    private static readonly long T0 = DateTimeOffset.Parse("2026-05-01T00:00:00Z").ToUnixTimeMilliseconds();
    private const long Step = 5 * 60_000;

    private static readonly long Years64Ms = (long)(new DateTime(2025, 1, 1) - new DateTime(1961, 1, 1)).TotalMilliseconds;

    private static string U(string name) => $"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)];

    private static CgmReading Egv(string user, long timeMs, double mgDl) =>
        CgmReadings.FromRow(user, CgmFormat.Unified, CgmRow.Glucose(timeMs, mgDl))!;

    /// <summary>A regular series: one reading per step with a few seconds of jitter, as sensors send them.</summary>
    private static List<CgmReading> Series(string user, int steps, Func<int, double> mgDl, long start = 0)
    {
        var rng = new Random(user.GetHashCode());
        return Enumerable.Range(0, steps).Select(i => Egv(user, T0 + start + i * Step + rng.Next(-20_000, 20_000), mgDl(i))).ToList();
    }

    private long CountRows(string user)
    {
        using var cmd = f.Postgres.CreateCommand("SELECT count(*) FROM cgm.readings WHERE user_id = $1");
        cmd.Parameters.AddWithValue(user);
        return (long)cmd.ExecuteScalar()!;
    }

    [Fact]
    public void Nine_hours_of_readings_are_stored_once_each_the_latest_and_trend_reach_redis_and_one_forecast_request_carries_the_last_96_steps()
    {
        var user = U("nine");
        var readings = Series(user, 108, i => 100 + 1.5 * i);   // rising 1.5 mg/dL per step = 0.3 mg/dL/min: Flat
        f.Send(readings);
        f.Send(readings.Take(10));                              // a duplicate delivery stores nothing new
        WaitFor(() => CountRows(user) >= 108, TimeSpan.FromSeconds(60), () => $"{CountRows(user)}/108 rows\n{f.Logs.Tail()}");
        Assert.Equal(108, CountRows(user));

        CgmLatestValue? latest = null;
        WaitFor(() => (latest = CgmLatestCache.ReadAsync(f.Redis.GetDatabase(), user).GetAwaiter().GetResult()) is { GlucoseMgDl: > 260 },
            TimeSpan.FromSeconds(30), () => $"latest = {latest}");
        Assert.Equal(100 + 1.5 * 107, latest!.GlucoseMgDl, 3);
        Assert.Equal("Flat", latest.TrendArrow);
        Assert.InRange(latest.RateMgDlPerMin, 0.2, 0.4);
        Assert.True(latest.ForecastWindowComplete);

        var requests = f.Drain(f.Names.RequestsTopic, user, TimeSpan.FromSeconds(20),
                m => m.Any(x => f.Registry.Read<CgmForecastRequest>(f.Names.RequestsTopic, x.Value).glucose_mg_dl[^1] > 260))
            .Select(m => f.Registry.Read<CgmForecastRequest>(f.Names.RequestsTopic, m.Value)).ToList();
        var last = requests[^1];
        Assert.Equal(96, last.glucose_mg_dl.Count);
        Assert.Equal(5, last.step_minutes);
        Assert.Equal(user, last.user_id);
        for (var i = 0; i < 96; i++) Assert.Equal(100 + 1.5 * (12 + i), last.glucose_mg_dl[i], 2);   // steps 12..107, oldest first
        Assert.True(requests.Count <= 3, $"{requests.Count} requests for one burst of readings (rate limited per user)");

        Assert.True(CgmTopology.TryQueryWindow(f.Pipeline.Host, user, out var state, f.Names.ApplicationId));
        Assert.Equal(100 + 1.5 * 107, state.Window.LatestGlucoseMgDl, 2);
    }

    [Fact]
    public void A_window_with_a_long_gap_makes_no_forecast_request_but_still_reports_the_latest_value()
    {
        var user = U("gap");
        // 4 h, then a 2-hour gap (longer than the 15-minute interpolation limit), then 4 h.
        f.Send(Series(user, 48, _ => 120).Concat(Series(user, 48, _ => 140, start: 72 * Step)));
        CgmLatestValue? latest = null;
        WaitFor(() => (latest = CgmLatestCache.ReadAsync(f.Redis.GetDatabase(), user).GetAwaiter().GetResult()) is { GlucoseMgDl: 140 },
            TimeSpan.FromSeconds(30), () => $"latest = {latest}\n{f.Logs.Tail()}");
        Assert.False(latest!.ForecastWindowComplete);
        Assert.Empty(f.Drain(f.Names.RequestsTopic, user, TimeSpan.FromSeconds(3)));
    }

    [Fact]
    public void A_real_dexcom_export_streams_through_and_a_second_upload_of_it_stores_nothing_twice()
    {
        var user = U("clarity");
        using var file = File.OpenRead(Path.Combine(Repo.SharedData, "cgm", "Clarity_Export_synthetic.csv"));
        var rows = CgmConverter.ReadAll(file, out var format);
        // The synthetic export is dated 1961, before the event-time rule's 1990: moved 64 years on, as the local sample is.
        var readings = CgmReadingProducer.ToReadings(user, format, rows, shiftMs: Years64Ms);
        Assert.Equal(3969, readings.Count);   // 3,922 sensor readings + 47 insulin doses (alerts and device rows are not readings)
        f.Send(readings);
        f.Send(readings);
        WaitFor(() => CountRows(user) >= readings.Count, TimeSpan.FromSeconds(90), () => $"{CountRows(user)}/{readings.Count}\n{f.Logs.Tail()}");
        Thread.Sleep(1_000);
        Assert.Equal(readings.Count, CountRows(user));
        using var cmd = f.Postgres.CreateCommand("SELECT count(*) FILTER (WHERE event_type = 'insulin'), count(*) FILTER (WHERE quality_flags & 1 = 1) FROM cgm.readings WHERE user_id = $1");
        cmd.Parameters.AddWithValue(user);
        using var r = cmd.ExecuteReader();
        r.Read();
        Assert.Equal(47, r.GetInt64(0));
        Assert.Equal(5, r.GetInt64(1));        // the five "Low" readings, flagged out of range
    }

    [Fact]
    public void Bad_readings_go_to_the_dead_letter_topic_with_the_reason_and_good_ones_beside_them_are_stored()
    {
        var user = U("bad");
        var good = Egv(user, T0, 110);
        var mmol = Egv(user, T0 + Step, 6.1);
        var mismatch = Egv("someone-else", T0 + 2 * Step, 100);
        var noId = Egv(user, T0 + 3 * Step, 100);
        noId.reading_id = "";
        f.SendRaw(user, [.. new[] { good, mmol, mismatch, noId }.Select(r => f.Registry.Value(f.Names.ReadingsTopic, r)), [0xff, 0x01]]);
        var letters = f.Drain(f.Names.ReadingsTopic + Topics.DeadLetterSuffix, user, TimeSpan.FromSeconds(60), m => m.Count >= 4)
            .Select(m => (Error: Encoding.UTF8.GetString(m.Headers.GetLastBytes(StreamHeaders.Error)),
                          Type: Encoding.UTF8.GetString(m.Headers.GetLastBytes(StreamHeaders.ErrorType)))).ToList();
        Assert.Equal(4, letters.Count);
        Assert.Contains(letters, l => l.Type == nameof(CgmInputException) && l.Error.Contains("looks like mmol/L"));
        Assert.Contains(letters, l => l.Type == nameof(CgmInputException) && l.Error.Contains("does not match the record key"));
        Assert.Contains(letters, l => l.Type == nameof(CgmInputException) && l.Error.Contains("reading_id is required"));
        Assert.Contains(letters, l => l.Type == "deserialization");
        WaitFor(() => CountRows(user) >= 1, TimeSpan.FromSeconds(30), () => "the good reading was not stored");
        Thread.Sleep(500);
        Assert.Equal(1, CountRows(user));
        // The undecodable record is also archived by the sink, inside its batch's transaction.
        using var cmd = f.Postgres.CreateCommand("SELECT count(*) FROM streamhealth.dead_letters WHERE source_topic = $1 AND processor = 'cgm-readings-postgres'");
        cmd.Parameters.AddWithValue(f.Names.ReadingsTopic);
        WaitFor(() => (long)cmd.ExecuteScalar()! >= 1, TimeSpan.FromSeconds(30), () => "undecodable record not archived by the sink");
    }

    /// <summary>The bytes an old Protobuf producer of cgm.readings sent before the move to Avro (cgm.proto's CgmReading:
    /// schema_version 1, event time, user, reading id, glucose, event type EGV): no Confluent wire header.</summary>
    private static byte[] OldProtobufReading(string user, long timeMs, double mgDl)
    {
        using var buffer = new MemoryStream();
        var output = new CodedOutputStream(buffer);
        output.WriteTag(1, WireFormat.WireType.Varint);
        output.WriteUInt32(1);
        output.WriteTag(2, WireFormat.WireType.Varint);
        output.WriteInt64(timeMs);
        output.WriteTag(3, WireFormat.WireType.LengthDelimited);
        output.WriteString(user);
        output.WriteTag(4, WireFormat.WireType.LengthDelimited);
        output.WriteString("proto-" + timeMs);
        output.WriteTag(5, WireFormat.WireType.Fixed64);
        output.WriteDouble(mgDl);
        output.WriteTag(7, WireFormat.WireType.Varint);
        output.WriteEnum(1);
        output.Flush();
        return buffer.ToArray();
    }

    /// <summary>Records that are not Avro CgmReadings in the Confluent wire format (garbage, an old Protobuf reading, a
    /// well-formed Avro reading under a schema id the registry never issued) are dead-lettered as deserialization failures
    /// with the reason, the schema-id header naming the id the value claims (none without the wire header); a valid
    /// reading's own rejection carries its real schema id; a good reading beside them is stored.</summary>
    [Fact]
    public void Undecodable_records_are_dead_lettered_with_the_schema_id_they_claim()
    {
        var user = U("undecodable");
        var good = f.Registry.Value(f.Names.ReadingsTopic, Egv(user, T0 + 20 * Step, 130));
        var goodId = ConfluentWire.SchemaId(good)!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        byte[] garbage = [0xff, 0xfe, 0x01];
        var protobuf = OldProtobufReading(user, T0 + 21 * Step, 131);
        var unknownId = f.Registry.WithUnknownSchemaId(f.Names.ReadingsTopic, Egv(user, T0 + 22 * Step, 132));
        var mmol = f.Registry.Value(f.Names.ReadingsTopic, Egv(user, T0 + 23 * Step, 7.2));
        f.SendRaw(user, [garbage, protobuf, unknownId, mmol, good]);

        var letters = f.Drain(f.Names.ReadingsTopic + Topics.DeadLetterSuffix, user, TimeSpan.FromSeconds(60), m => m.Count >= 4)
            .Select(m => (Error: Encoding.UTF8.GetString(m.Headers.GetLastBytes(StreamHeaders.Error)),
                          Type: Encoding.UTF8.GetString(m.Headers.GetLastBytes(StreamHeaders.ErrorType)),
                          SchemaId: m.Headers.TryGetLastBytes(StreamHeaders.SchemaId, out var id) ? Encoding.UTF8.GetString(id) : null,
                          m.Value)).ToList();
        Assert.True(letters.Count == 4, $"{letters.Count} letters: {string.Join(" | ", letters.Select(l => l.Error))}\n{f.Logs.Tail()}");
        Assert.Contains(letters, l => l.Type == StreamHeaders.DeserializationError && l.SchemaId is null && l.Value.SequenceEqual(garbage)
                                      && l.Error.Contains("not in the Confluent wire format"));
        Assert.Contains(letters, l => l.Type == StreamHeaders.DeserializationError && l.SchemaId is null && l.Value.SequenceEqual(protobuf));
        Assert.Contains(letters, l => l.Type == StreamHeaders.DeserializationError && l.SchemaId == "987654" && l.Value.SequenceEqual(unknownId)
                                      && l.Error.Contains("987654"));
        Assert.Contains(letters, l => l.Type == nameof(CgmInputException) && l.Error.Contains("looks like mmol/L") && l.SchemaId == goodId);
        WaitFor(() => CountRows(user) >= 1, TimeSpan.FromSeconds(30), () => "the good reading was not stored");
        Thread.Sleep(500);
        Assert.Equal(1, CountRows(user));
    }

    /// <summary>Outside the project: a plain Confluent consumer with its own registry client (empty caches) and
    /// <see cref="AvroDeserializer{T}"/> of generic records reads what the topology wrote on cgm.latest (key and value).</summary>
    [Fact]
    public async Task A_plain_confluent_consumer_reads_what_the_topology_wrote_on_cgm_latest()
    {
        var user = U("outside");
        f.Send(Series(user, 6, i => 140 + i));
        var written = f.Drain(f.Names.LatestTopic, user, TimeSpan.FromSeconds(30),
            m => m.Any(x => f.Registry.Read<StreamHealth.Schemas.Avro.Cgm.CgmLatest>(f.Names.LatestTopic, x.Value).glucose_mg_dl >= 145));
        var message = written.Last();

        using var outside = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = f.Registry.Url });
        var deserializer = new AvroDeserializer<GenericRecord>(outside);
        var key = await deserializer.DeserializeAsync(message.Key, false, new SerializationContext(MessageComponentType.Key, f.Names.LatestTopic));
        var value = await deserializer.DeserializeAsync(message.Value, false, new SerializationContext(MessageComponentType.Value, f.Names.LatestTopic));
        Assert.Equal("StreamHealth.Schemas.Avro.Common.UserKey", key.Schema.Fullname);
        Assert.Equal(user, (string)key["user_id"]);
        Assert.Equal("StreamHealth.Schemas.Avro.Cgm.CgmLatest", value.Schema.Fullname);
        Assert.Equal(user, (string)value["user_id"]);
        Assert.Equal(145.0, (double)value["glucose_mg_dl"], 3);
        Assert.Equal(6, (int)value["window_steps"]);
        Assert.False((bool)value["forecast_window_complete"]);
        Assert.False(string.IsNullOrEmpty((string)value["trend_arrow"]));
        CgmLatestValue? latest = null;
        WaitFor(() => (latest = CgmLatestCache.ReadAsync(f.Redis.GetDatabase(), user).GetAwaiter().GetResult()) is { GlucoseMgDl: 145 },
            TimeSpan.FromSeconds(30), () => $"latest = {latest}");
        Assert.Equal(DateTime.UnixEpoch.AddMilliseconds(latest!.EventTimeUnixMs), (DateTime)value["event_time_unix_ms"]);
    }

    private List<string> DeadLetterErrors(string user, int atLeast) =>
        f.Drain(f.Names.ReadingsTopic + Topics.DeadLetterSuffix, user, TimeSpan.FromSeconds(60), m => m.Count >= atLeast)
            .Select(m => Encoding.UTF8.GetString(m.Headers.GetLastBytes(StreamHeaders.Error))).ToList();

    /// <summary>Issue 11, defect 4: a reading dated a year ahead, produced straight onto cgm.readings (no gateway), is
    /// dead-lettered with the reason; it is not stored and latest stays on the newest reading inside the rule.</summary>
    [Fact]
    public async Task A_reading_dated_a_year_ahead_is_dead_lettered_and_does_not_take_latest()
    {
        var user = U("ahead");
        var nowMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var recent = Enumerable.Range(0, 4).Select(i => Egv(user, nowMs - (4 - i) * Step, 120 + i)).ToList();
        f.Send(recent);
        WaitFor(() => CgmLatestCache.ReadAsync(f.Redis.GetDatabase(), user).GetAwaiter().GetResult() is not null, TimeSpan.FromSeconds(30),
            () => "no latest for the recent readings");
        var before = (await CgmLatestCache.ReadAsync(f.Redis.GetDatabase(), user))!;

        var future = Egv(user, nowMs + 365L * 86_400_000, 180);
        var nul = Egv(user, nowMs - 10 * Step, 130);
        nul.source_format = "dex\0com";
        nul.reading_id = "abc\0def";
        f.Send([future, nul]);
        var letters = DeadLetterErrors(user, 2);
        Assert.Contains(letters, e => e.Contains("event_time_unix_ms") && e.Contains("ahead of the receiving clock"));
        Assert.Contains(letters, e => e.Contains("reading_id") && e.Contains("\\u0000"));

        // A later valid reading still moves latest: nothing is stuck. One whole step after the last recent reading, so it
        // is on a step of its own whatever the grid's phase (half a step could snap back onto the previous one).
        f.Send([Egv(user, nowMs, 125)]);
        CgmLatestValue? after = null;
        WaitFor(() => (after = CgmLatestCache.ReadAsync(f.Redis.GetDatabase(), user).GetAwaiter().GetResult())!.GlucoseMgDl == 125,
            TimeSpan.FromSeconds(30), () => $"latest = {after}");
        Assert.True(after!.EventTimeUnixMs <= DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 300_000);
        Assert.True(after.EventTimeUnixMs >= before.EventTimeUnixMs);
        WaitFor(() => CountRows(user) >= 5, TimeSpan.FromSeconds(30), () => $"{CountRows(user)}/5 rows");
        using var cmd = f.Postgres.CreateCommand("SELECT count(*) FROM cgm.readings WHERE user_id = $1 AND reading_time > now() + interval '1 day'");
        cmd.Parameters.AddWithValue(user);
        Assert.Equal(0L, (long)cmd.ExecuteScalar()!);
        Assert.Equal(5, CountRows(user));
    }

    /// <summary>Issue 11, defect 3 for CGM: a reading id is unique whatever its time. The same id again with another
    /// time stores nothing new and is dead-lettered in PostgreSQL with the reason; a retry of the same reading is silent.</summary>
    [Fact]
    public void The_same_reading_id_with_another_time_is_stored_once_and_dead_lettered()
    {
        var user = U("reuse");
        var original = Egv(user, T0, 110);
        var retry = CgmReadings.Copy(original);
        var moved = CgmReadings.Copy(original);
        moved.event_time_unix_ms = AvroTime.FromUnixMs(T0 + 7 * Step);
        var stolen = CgmReadings.Copy(original);
        stolen.user_id = "";
        f.Send([original]);
        WaitFor(() => CountRows(user) >= 1, TimeSpan.FromSeconds(30), () => "the original reading was not stored");
        f.Send([retry, moved]);
        var other = U("thief");
        f.SendRaw(other, [f.Registry.Value(f.Names.ReadingsTopic, stolen)]);
        using var letters = f.Postgres.CreateCommand("""
            SELECT error FROM streamhealth.dead_letters WHERE source_topic = $1 AND processor = 'cgm-readings-postgres' AND error LIKE $2
            """);
        letters.Parameters.AddWithValue(f.Names.ReadingsTopic);
        letters.Parameters.AddWithValue("%" + original.reading_id + "%");
        var errors = new List<string>();
        WaitFor(() =>
        {
            errors.Clear();
            using var r = letters.ExecuteReader();
            while (r.Read()) errors.Add(r.GetString(0));
            return errors.Count >= 2;
        }, TimeSpan.FromSeconds(30), () => $"dead letters: {string.Join(" | ", errors)}\n{f.Logs.Tail()}");
        Assert.Contains(errors, e => e.Contains("another reading"));
        Assert.Contains(errors, e => e.Contains("another user"));
        Assert.Equal(1, CountRows(user));
        Assert.Equal(0, CountRows(other));
    }
}
