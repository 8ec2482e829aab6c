using System.Text;
using Avro.Generic;
using Confluent.Kafka;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using Google.Protobuf;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Service;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Forecast.ForecastFixtures;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using CgmForecast = StreamHealth.Schemas.Avro.Cgm.CgmForecast;
using CgmForecastRequest = StreamHealth.Schemas.Avro.Cgm.CgmForecastRequest;

namespace StreamHealth.Tests.Forecast;

/// <summary>A running forecaster on real parts: embedded Kafka, the fixture model in ONNX Runtime, PostgreSQL and Redis sinks,
/// and the stand-in schema registry on the test's database (both topics are Avro in the Confluent wire format).</summary>
public sealed class ForecastServiceFixture : IDisposable
{
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public ForecastNames Names { get; }
    public NpgsqlDataSource Postgres { get; }
    public ConnectionMultiplexer Redis { get; }
    public TestLogs Logs { get; } = new();
    public TestRegistry Registry { get; }
    public string ConnectionString { get; }
    public ForecastOptions Options { get; } = ForecastFixtures.Options(seed: 7, maxBatchSize: 32);
    public ForecastService Service { get; private set; }
    private readonly ForecastConsumerSettings _settings;

    public ForecastServiceFixture()
    {
        var requests = Kafka.NewTopic("fcq", 4);
        Names = new ForecastNames(requests, Kafka.NewTopic("fcf", 4), requests + "-forecaster");
        Kafka.Cluster.CreateTopic(Names.DeadLetterTopic, 1);
        ConnectionString = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("forecasts"));
        PostgresMigrator.MigrateAsync(ConnectionString).GetAwaiter().GetResult();
        Postgres = NpgsqlDataSource.Create(ConnectionString);
        Redis = ConnectionMultiplexer.Connect(LocalServices.RedisConfiguration);
        Registry = TestRegistry.Start(ConnectionString);
        _settings = new ForecastConsumerSettings(Kafka.BootstrapServers, SessionTimeoutMs: 6_000, FetchWaitMaxMs: 2);
        Service = new ForecastService(Options, _settings, Registry.Connection, Postgres, Redis, Logs, Names).Start();
    }

    /// <summary>Stops the service gracefully and starts a new one in the same groups (a deploy, or a crash's restart).</summary>
    public void Restart()
    {
        Service.Dispose();
        Service = new ForecastService(Options, _settings, Registry.Connection, Postgres, Redis, Logs, Names).Start();
    }

    /// <summary>A request as every producer of cgm.forecast-requests writes it (Avro, Confluent wire format).</summary>
    public byte[] Encode(CgmForecastRequest request) => Registry.Value(Names.RequestsTopic, request);

    public CgmForecast Forecast(byte[] value) => Registry.Read<CgmForecast>(Names.ForecastsTopic, value);

    /// <summary>Values as they are, keyed by user as producers key the topic (Avro UserKey), onto <paramref name="topic"/>
    /// (default the requests topic).</summary>
    public void Send(IEnumerable<(string User, byte[] Value)> records, string? topic = null)
    {
        topic ??= Names.RequestsTopic;
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = Kafka.BootstrapServers, LingerMs = 1 }).Build();
        foreach (var (user, value) in records)
            p.Produce(topic, new Message<byte[], byte[]> { Key = Registry.Key(topic, user), Value = value });
        if (p.Flush(TimeSpan.FromSeconds(10)) > 0) throw new TimeoutException("requests not acknowledged");
    }

    /// <summary>Every record of <paramref name="topic"/> whose key is one of <paramref name="users"/>, until <paramref name="enough"/>.</summary>
    public List<Message<byte[], byte[]>> Drain(string topic, IReadOnlySet<string> users, TimeSpan wait, Func<List<Message<byte[], byte[]>>, bool> enough)
    {
        var found = new List<Message<byte[], byte[]>>();
        using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = Kafka.BootstrapServers, GroupId = "drain-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        c.Subscribe(topic);
        var deadline = DateTime.UtcNow + wait;
        while (DateTime.UtcNow < deadline && !enough(found))
        {
            if (c.Consume(TimeSpan.FromMilliseconds(100)) is not { } r) continue;
            if (r.Message.Key is { } key && users.Contains(Registry.UserOf(topic, key))) found.Add(r.Message);
        }
        return found;
    }

    public void Dispose()
    {
        Service.Dispose();
        Registry.Dispose();
        Redis.Dispose();
        Postgres.Dispose();
        Kafka.Dispose();
    }
}

public sealed class ForecastConsumerTests(ForecastServiceFixture f) : IClassFixture<ForecastServiceFixture>
{
    private static readonly long T0 = DateTimeOffset.Parse("2026-11-23T08:00:00Z").ToUnixTimeMilliseconds();

    private static string U(string name) => $"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)];

    private static CgmForecastRequest Request(string user, float[] window, string? requestId = null, bool interactive = false) => new()
    {
        event_time_unix_ms = AvroTime.FromUnixMs(T0), request_id = requestId ?? $"{user}:{T0}:1", user_id = user, step_minutes = 5,
        interactive = interactive, glucose_mg_dl = window,
    };

    private long StoredForecasts(IEnumerable<string> requestIds)
    {
        using var cmd = f.Postgres.CreateCommand("SELECT count(*) FROM cgm.forecasts WHERE request_id = ANY($1)");
        cmd.Parameters.AddWithValue(requestIds.ToArray());
        return (long)cmd.ExecuteScalar()!;
    }

    [Fact]
    public async Task Two_hundred_users_in_bursts_each_get_exactly_their_own_forecast_in_kafka_postgresql_and_redis()
    {
        // Flat windows at 200 levels 1.8 mg/dL apart, produced in a shuffled order: the fixture forecasts a flat window
        // within 3 mg/dL of its level, so a forecast that went to the wrong request (a neighbour in its batch, an
        // off-by-one slice of the samples) lands far from its own level.
        var random = new Random(11);
        var levels = Enumerable.Range(0, 200).Select(i => 45 + 1.8 * i).OrderBy(_ => random.Next()).ToArray();
        var users = levels.Select((_, i) => U($"u{i}")).ToArray();
        var requests = users.Select((u, i) => Request(u, Flat(levels[i]), interactive: i % 10 == 0)).ToArray();
        for (var burst = 0; burst < 4; burst++)
        {
            f.Send(requests.Skip(burst * 50).Take(50).Select(r => (r.user_id, f.Encode(r))));
            Thread.Sleep(150);
        }
        var byUser = users.ToHashSet();
        var forecasts = f.Drain(f.Names.ForecastsTopic, byUser, TimeSpan.FromSeconds(60), m => m.Count >= 200);
        Assert.True(forecasts.Count == 200, $"{forecasts.Count} forecasts for 200 requests\n{f.Logs.Tail()}");
        // Exactly one each: a second full read a moment later finds no more.
        forecasts = f.Drain(f.Names.ForecastsTopic, byUser, TimeSpan.FromSeconds(3), m => m.Count > 200);
        Assert.Equal(200, forecasts.Count);

        var decoded = forecasts.Select(m => (Key: f.Registry.UserOf(f.Names.ForecastsTopic, m.Key), Value: f.Forecast(m.Value), Message: m)).ToList();
        Assert.Equal(200, decoded.Select(d => d.Value.request_id).Distinct().Count());
        foreach (var (key, forecast, message) in decoded)
        {
            var i = Array.IndexOf(users, key);
            Assert.True(i >= 0, $"forecast keyed by unknown user {key}");
            Assert.Equal(requests[i].request_id, forecast.request_id);
            Assert.Equal(key, forecast.user_id);
            Assert.Equal(T0, AvroTime.ToUnixMs(forecast.event_time_unix_ms));
            Assert.Equal(5, forecast.step_minutes);
            Assert.Equal(10, forecast.mc_samples);
            Assert.StartsWith("tiny-forecaster@sha256:", forecast.model_version);
            Assert.Equal("forecast:" + forecast.request_id, Encoding.UTF8.GetString(message.Headers.GetLastBytes(StreamHeaders.OutputId)));
            Assert.Equal(12, forecast.median_mg_dl.Count);
            Assert.Equal([0.05f, 0.25f, 0.75f, 0.95f], forecast.bands.Select(b => b.quantile));
            for (var h = 0; h < 12; h++)
            {
                Assert.InRange(forecast.median_mg_dl[h], levels[i] - TinyModelMaxOffsetMgDl, levels[i] + TinyModelMaxOffsetMgDl);
                // Strictly ordered, except where the bounds (39 and 401 mg/dL; the levels run from 45 to 403) clamp quantiles together.
                float[] ordered = [forecast.bands[0].glucose_mg_dl[h], forecast.bands[1].glucose_mg_dl[h], forecast.median_mg_dl[h],
                    forecast.bands[2].glucose_mg_dl[h], forecast.bands[3].glucose_mg_dl[h]];
                for (var k = 1; k < ordered.Length; k++)
                    Assert.True(ordered[k - 1] < ordered[k] || (ordered[k - 1] == ordered[k] && ordered[k] is 39f or 401f),
                        $"bands of {key} not ordered at step {h}: {string.Join(", ", ordered)}");
            }
        }
        Assert.True(f.Service.Consumer.Batches > 1, "the requests were batched");

        WaitFor(() => StoredForecasts(requests.Select(r => r.request_id)) >= 200, TimeSpan.FromSeconds(30),
            () => $"{StoredForecasts(requests.Select(r => r.request_id))}/200 rows\n{f.Logs.Tail()}");
        using (var cmd = f.Postgres.CreateCommand(
                   "SELECT user_id, median_mg_dl, quantiles, bands_mg_dl, horizon_steps, mc_samples FROM cgm.forecasts WHERE request_id = $1"))
        {
            cmd.Parameters.AddWithValue(requests[0].request_id);
            using var row = cmd.ExecuteReader();
            Assert.True(row.Read());
            var kafka = decoded.Single(d => d.Key == users[0]).Value;
            Assert.Equal(users[0], row.GetString(0));
            Assert.Equal(kafka.median_mg_dl, row.GetFieldValue<float[]>(1));
            Assert.Equal([0.05f, 0.25f, 0.75f, 0.95f], row.GetFieldValue<float[]>(2));
            Assert.Equal(kafka.bands.SelectMany(b => b.glucose_mg_dl), row.GetFieldValue<float[]>(3));
            Assert.Equal(12, row.GetInt32(4));
            Assert.Equal(10, row.GetInt32(5));
        }

        var db = f.Redis.GetDatabase();
        WaitFor(() => users.All(u => ForecastCache.ReadAsync(db, u).GetAwaiter().GetResult() is not null), TimeSpan.FromSeconds(30),
            () => $"{users.Count(u => ForecastCache.ReadAsync(db, u).GetAwaiter().GetResult() is not null)}/200 users in Redis");
        var cached = (await ForecastCache.ReadAsync(db, users[7]))!;
        var expected = decoded.Single(d => d.Key == users[7]).Value;
        Assert.Equal(expected.request_id, cached.RequestId);
        Assert.Equal(expected.median_mg_dl, cached.MedianMgDl);
        Assert.Equal(expected.bands[3].glucose_mg_dl, cached.Bands[3].GlucoseMgDl);
        Assert.Equal(0.95f, cached.Bands[3].Quantile);
    }

    [Fact]
    public void Malformed_requests_go_to_the_dead_letter_topic_with_the_reason_and_the_requests_beside_them_are_forecast()
    {
        var user = U("bad");
        var other = U("other");
        var nan = Flat(120);
        nan[17] = float.NaN;
        var requests = new (string User, byte[] Value)[]
        {
            (user, f.Encode(Request(user, Flat(110), "good-1"))),
            (user, f.Encode(Request(user, Flat(110).Take(95).ToArray(), "short"))),
            (user, f.Encode(Request(user, nan, "nan"))),
            (user, [0xff, 0x01, 0x02]),
            (user, f.Encode(Request(other, Flat(110), "mismatch"))),
            (user, Request(user, Flat(110), "ten-minute") is var t ? WithStep(t, 10) : []),
            (user, f.Encode(Request(user, Wave(150), "good-2"))),
        };
        f.Send(requests);

        var users = new HashSet<string> { user };
        var letters = f.Drain(f.Names.DeadLetterTopic, users, TimeSpan.FromSeconds(60), m => m.Count >= 5)
            .Select(m => (Error: Header(m, StreamHeaders.Error), Type: Header(m, StreamHeaders.ErrorType), Message: m)).ToList();
        Assert.Equal(5, letters.Count);
        Assert.Contains(letters, l => l.Type == nameof(ForecastRequestException) && l.Error.StartsWith("glucose_mg_dl has 95 values; the model reads exactly 96"));
        Assert.Contains(letters, l => l.Type == nameof(ForecastRequestException) && l.Error.StartsWith("glucose_mg_dl[17] = NaN: every value must be a finite number"));
        Assert.Contains(letters, l => l.Type == StreamHeaders.DeserializationError && l.Error.StartsWith($"cannot decode record at {f.Names.RequestsTopic}["));
        Assert.Contains(letters, l => l.Type == nameof(ForecastRequestException) && l.Error == $"user_id '{other}' does not match the record key '{user}'");
        Assert.Contains(letters, l => l.Type == nameof(ForecastRequestException) && l.Error == "step_minutes = 10: the model reads 5-minute steps");
        foreach (var (_, _, m) in letters)
        {
            // The stream runtime's dead-letter headers: the processor, the source position, a position-derived output id.
            Assert.Equal(ForecastConsumer.ProcessorName, Header(m, StreamHeaders.Processor));
            Assert.Equal(f.Names.RequestsTopic, Header(m, StreamHeaders.SourceTopic));
            var position = $"{Header(m, StreamHeaders.SourcePartition)}:{Header(m, StreamHeaders.SourceOffset)}";
            Assert.Equal($"dlq:{f.Names.RequestsTopic}:{position}", Header(m, StreamHeaders.OutputId));
        }
        Assert.Contains(letters, l => l.Message.Value.SequenceEqual(new byte[] { 0xff, 0x01, 0x02 }));   // the record as it arrived

        var forecasts = f.Drain(f.Names.ForecastsTopic, users, TimeSpan.FromSeconds(30), m => m.Count >= 2)
            .Select(m => f.Forecast(m.Value).request_id).ToList();
        Assert.Equal(["good-1", "good-2"], forecasts.Order());
    }

    /// <summary>Issue 11, defects 1 and 4 on the forecast topic: a request that reached cgm.forecast-requests without the
    /// gateway, with a NUL or control character in its ids or an event time outside the one time rule, is dead-lettered with
    /// the reason naming the field; its neighbours are forecast; nothing of it reaches PostgreSQL or Redis.</summary>
    [Fact]
    public void Requests_with_control_characters_or_times_outside_the_rule_are_dead_lettered_naming_the_field()
    {
        var user = U("hostile");
        var yearAhead = Request(user, Flat(120), "year-ahead");
        yearAhead.event_time_unix_ms = AvroTime.FromUnixMs(DateTimeOffset.UtcNow.AddDays(365).ToUnixTimeMilliseconds());
        var ancient = Request(user, Flat(120), "ancient");
        ancient.event_time_unix_ms = AvroTime.FromUnixMs(new DateTimeOffset(1985, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds());
        f.Send(
        [
            (user, f.Encode(Request(user, Flat(120), "nul\u0000id"))),
            (user, f.Encode(Request(user, Flat(120), "bell\u0007"))),
            (user, f.Encode(yearAhead)),
            (user, f.Encode(ancient)),
            (user, f.Encode(Request(user, Flat(130), "fine"))),
        ]);

        var users = new HashSet<string> { user };
        var errors = f.Drain(f.Names.DeadLetterTopic, users, TimeSpan.FromSeconds(60), m => m.Count >= 4)
            .Select(m => Header(m, StreamHeaders.Error)).ToList();
        Assert.Equal(4, errors.Count);
        Assert.Equal(2, errors.Count(e => e.StartsWith("request_id = ", StringComparison.Ordinal) && e.Contains("must be 1-128 characters")));
        Assert.Contains(errors, e => e.StartsWith("event_time_unix_ms = ", StringComparison.Ordinal) && e.Contains("ahead of the receiving clock"));
        Assert.Contains(errors, e => e.StartsWith("event_time_unix_ms = 1985-01-01", StringComparison.Ordinal) && e.Contains("earliest accepted"));
        var forecasts = f.Drain(f.Names.ForecastsTopic, users, TimeSpan.FromSeconds(30), m => m.Count >= 1)
            .Select(m => f.Forecast(m.Value).request_id).ToList();
        Assert.Equal(["fine"], forecasts);
    }

    [Fact]
    public void Offsets_are_committed_once_outputs_land_and_a_restarted_forecaster_stores_each_forecast_once()
    {
        var users = Enumerable.Range(0, 120).Select(i => U($"r{i}")).ToArray();
        var requests = users.Select((u, i) => Request(u, Wave(100 + i, phase: i))).ToArray();
        f.Send(requests.Take(60).Select(r => (r.user_id, f.Encode(r))));
        WaitFor(() => StoredForecasts(requests.Take(60).Select(r => r.request_id)) >= 60, TimeSpan.FromSeconds(60), () => f.Logs.Tail());
        f.Restart();
        f.Send(requests.Skip(60).Select(r => (r.user_id, f.Encode(r))));
        f.Send(requests.Take(10).Select(r => (r.user_id, f.Encode(r))));   // a producer retrying: the same request ids again
        WaitFor(() => StoredForecasts(requests.Select(r => r.request_id)) >= 120, TimeSpan.FromSeconds(60),
            () => $"{StoredForecasts(requests.Select(r => r.request_id))}/120\n{f.Logs.Tail()}");
        Thread.Sleep(1_000);
        Assert.Equal(120, StoredForecasts(requests.Select(r => r.request_id)));
        // Everything read is committed: nothing would be forecast again by a new member of the group.
        WaitFor(() => Progress(f.Kafka.BootstrapServers, f.Names.GroupId, f.Names.RequestsTopic, 4) is var p && p.Committed == p.End,
            TimeSpan.FromSeconds(20), () => $"{Progress(f.Kafka.BootstrapServers, f.Names.GroupId, f.Names.RequestsTopic, 4)}");
    }

    /// <summary>The bytes an old Protobuf producer of cgm.forecast-requests sent before the move to Avro (cgm.proto's
    /// CgmForecastRequest: schema_version 1, event time, request id, user, step minutes, packed glucose): no wire header.</summary>
    private static byte[] OldProtobufRequest(string user, string requestId, float[] window)
    {
        using var buffer = new MemoryStream();
        var output = new CodedOutputStream(buffer);
        output.WriteTag(1, WireFormat.WireType.Varint);
        output.WriteUInt32(1);
        output.WriteTag(2, WireFormat.WireType.Varint);
        output.WriteInt64(T0);
        output.WriteTag(3, WireFormat.WireType.LengthDelimited);
        output.WriteString(requestId);
        output.WriteTag(4, WireFormat.WireType.LengthDelimited);
        output.WriteString(user);
        output.WriteTag(5, WireFormat.WireType.Varint);
        output.WriteInt32(5);
        output.WriteTag(6, WireFormat.WireType.LengthDelimited);
        output.WriteLength(window.Length * sizeof(float));
        foreach (var v in window) output.WriteFloat(v);
        output.Flush();
        return buffer.ToArray();
    }

    /// <summary>Requests that are not Avro CgmForecastRequests in the Confluent wire format (garbage, an old Protobuf request,
    /// a well-formed Avro request under a schema id the registry never issued) are dead-lettered as deserialization failures
    /// with the reason and the schema-id header naming the id the value claims (none without the wire header); an invalid
    /// Avro request's letter carries its real schema id; the valid request beside them is forecast.</summary>
    [Fact]
    public void Undecodable_requests_are_dead_lettered_with_the_schema_id_they_claim()
    {
        var user = U("undecodable");
        var good = f.Encode(Request(user, Flat(125), "decodable"));
        var goodId = ConfluentWire.SchemaId(good)!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        byte[] garbage = [0xff, 0xfe, 0x01];
        var protobuf = OldProtobufRequest(user, "protobuf", Flat(125));
        var unknownId = f.Registry.WithUnknownSchemaId(f.Names.RequestsTopic, Request(user, Flat(125), "unknown-id"));
        var shortWindow = f.Encode(Request(user, Flat(125).Take(90).ToArray(), "short-avro"));
        f.Send([(user, garbage), (user, protobuf), (user, unknownId), (user, shortWindow), (user, good)]);

        var users = new HashSet<string> { user };
        var letters = f.Drain(f.Names.DeadLetterTopic, users, TimeSpan.FromSeconds(60), m => m.Count >= 4)
            .Select(m => (Error: Header(m, StreamHeaders.Error), Type: Header(m, StreamHeaders.ErrorType),
                          SchemaId: m.Headers.TryGetLastBytes(StreamHeaders.SchemaId, out var id) ? Encoding.UTF8.GetString(id) : null, m.Value)).ToList();
        Assert.True(letters.Count == 4, $"{letters.Count} letters: {string.Join(" | ", letters.Select(l => l.Error))}\n{f.Logs.Tail()}");
        var prefix = $"cannot decode record at {f.Names.RequestsTopic}[";
        Assert.Contains(letters, l => l.Type == StreamHeaders.DeserializationError && l.SchemaId is null && l.Value.SequenceEqual(garbage)
                                      && l.Error.StartsWith(prefix) && l.Error.Contains("no Confluent wire header"));
        Assert.Contains(letters, l => l.Type == StreamHeaders.DeserializationError && l.SchemaId is null && l.Value.SequenceEqual(protobuf)
                                      && l.Error.StartsWith(prefix));
        Assert.Contains(letters, l => l.Type == StreamHeaders.DeserializationError && l.SchemaId == "987654" && l.Value.SequenceEqual(unknownId)
                                      && l.Error.StartsWith(prefix) && l.Error.Contains("schema id 987654"));
        Assert.Contains(letters, l => l.Type == nameof(ForecastRequestException) && l.SchemaId == goodId
                                      && l.Error.StartsWith("glucose_mg_dl has 90 values; the model reads exactly 96"));
        var forecasts = f.Drain(f.Names.ForecastsTopic, users, TimeSpan.FromSeconds(30), m => m.Count >= 1)
            .Select(m => f.Forecast(m.Value).request_id).ToList();
        Assert.Equal(["decodable"], forecasts);
    }

    /// <summary>Outside the project: a plain Confluent <see cref="AvroDeserializer{T}"/> of generic records with its own
    /// registry client (empty caches) reads a forecast the consumer wrote on cgm.forecasts, key and value.</summary>
    [Fact]
    public async Task A_plain_confluent_consumer_reads_a_forecast_the_consumer_wrote()
    {
        var user = U("outside");
        f.Send([(user, f.Encode(Request(user, Flat(140), "outside-1")))]);
        var message = Assert.Single(f.Drain(f.Names.ForecastsTopic, new HashSet<string> { user }, TimeSpan.FromSeconds(30), m => m.Count >= 1));

        using var outside = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = f.Registry.Url });
        var deserializer = new AvroDeserializer<GenericRecord>(outside);
        var key = await deserializer.DeserializeAsync(message.Key, false, new SerializationContext(MessageComponentType.Key, f.Names.ForecastsTopic));
        var value = await deserializer.DeserializeAsync(message.Value, false, new SerializationContext(MessageComponentType.Value, f.Names.ForecastsTopic));
        Assert.Equal(user, (string)key["user_id"]);
        Assert.Equal("StreamHealth.Schemas.Avro.Cgm.CgmForecast", value.Schema.Fullname);
        Assert.Equal("outside-1", (string)value["request_id"]);
        Assert.Equal(user, (string)value["user_id"]);
        Assert.Equal(DateTime.UnixEpoch.AddMilliseconds(T0), (DateTime)value["event_time_unix_ms"]);
        Assert.Equal(5, (int)value["step_minutes"]);
        Assert.Equal(10, (int)value["mc_samples"]);
        Assert.StartsWith("tiny-forecaster@sha256:", (string)value["model_version"]);
        var median = ((System.Collections.IEnumerable)value["median_mg_dl"]).Cast<float>().ToList();
        Assert.Equal(12, median.Count);
        Assert.All(median, m => Assert.InRange(m, 140 - TinyModelMaxOffsetMgDl, 140 + TinyModelMaxOffsetMgDl));
        var bands = ((System.Collections.IEnumerable)value["bands"]).Cast<GenericRecord>().ToList();
        Assert.Equal([0.05f, 0.25f, 0.75f, 0.95f], bands.Select(b => (float)b["quantile"]));
        Assert.All(bands, b => Assert.Equal(12, ((System.Collections.IEnumerable)b["glucose_mg_dl"]).Cast<float>().Count()));
    }

    private byte[] WithStep(CgmForecastRequest r, int stepMinutes)
    {
        r.step_minutes = stepMinutes;
        return f.Encode(r);
    }

    private static string Header(Message<byte[], byte[]> m, string name) => Encoding.UTF8.GetString(m.Headers.GetLastBytes(name));
}
