using System.Text;
using Confluent.Kafka;
using Google.Protobuf;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Service;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Forecast.ForecastFixtures;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Forecast;

/// <summary>A running forecaster on real parts: embedded Kafka, the fixture model in ONNX Runtime, PostgreSQL and Redis sinks.</summary>
public sealed class ForecastServiceFixture : IDisposable
{
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public ForecastNames Names { get; }
    public NpgsqlDataSource Postgres { get; }
    public ConnectionMultiplexer Redis { get; }
    public TestLogs Logs { get; } = new();
    public ForecastOptions Options { get; } = ForecastFixtures.Options(seed: 7, maxBatchSize: 32);
    public ForecastService Service { get; private set; }
    private readonly ForecastConsumerSettings _settings;

    public ForecastServiceFixture()
    {
        var requests = Kafka.NewTopic("fcq", 4);
        Names = new ForecastNames(requests, Kafka.NewTopic("fcf", 4), requests + "-forecaster");
        Kafka.Cluster.CreateTopic(Names.DeadLetterTopic, 1);
        var connectionString = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("forecasts"));
        PostgresMigrator.MigrateAsync(connectionString).GetAwaiter().GetResult();
        Postgres = NpgsqlDataSource.Create(connectionString);
        Redis = ConnectionMultiplexer.Connect(LocalServices.RedisConfiguration);
        _settings = new ForecastConsumerSettings(Kafka.BootstrapServers, SessionTimeoutMs: 6_000, FetchWaitMaxMs: 2);
        Service = new ForecastService(Options, _settings, Postgres, Redis, Logs, Names).Start();
    }

    /// <summary>Stops the service gracefully and starts a new one in the same groups (a deploy, or a crash's restart).</summary>
    public void Restart()
    {
        Service.Dispose();
        Service = new ForecastService(Options, _settings, Postgres, Redis, Logs, Names).Start();
    }

    public void Send(IEnumerable<(string User, byte[] Value)> records)
    {
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = Kafka.BootstrapServers, LingerMs = 1 }).Build();
        foreach (var (user, value) in records)
            p.Produce(Names.RequestsTopic, new Message<byte[], byte[]> { Key = new UserKey { UserId = user }.ToByteArray(), Value = value });
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
            if (r.Message.Key is { } key && users.Contains(UserKey.Parser.ParseFrom(key).UserId)) found.Add(r.Message);
        }
        return found;
    }

    public void Dispose()
    {
        Service.Dispose();
        Redis.Dispose();
        Postgres.Dispose();
        Kafka.Dispose();
    }
}

public sealed class ForecastConsumerTests(ForecastServiceFixture f) : IClassFixture<ForecastServiceFixture>
{
    private static readonly long T0 = DateTimeOffset.Parse("2026-11-23T08:00:00Z").ToUnixTimeMilliseconds();

    private static string U(string name) => $"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)];

    private static CgmForecastRequest Request(string user, float[] window, string? requestId = null, bool interactive = false)
    {
        var r = new CgmForecastRequest
        {
            SchemaVersion = 1, EventTimeUnixMs = T0, RequestId = requestId ?? $"{user}:{T0}:1", UserId = user, StepMinutes = 5, Interactive = interactive,
        };
        r.GlucoseMgDl.AddRange(window);
        return r;
    }

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
            f.Send(requests.Skip(burst * 50).Take(50).Select(r => (r.UserId, r.ToByteArray())));
            Thread.Sleep(150);
        }
        var byUser = users.ToHashSet();
        var forecasts = f.Drain(f.Names.ForecastsTopic, byUser, TimeSpan.FromSeconds(60), m => m.Count >= 200);
        Assert.True(forecasts.Count == 200, $"{forecasts.Count} forecasts for 200 requests\n{f.Logs.Tail()}");
        // Exactly one each: a second full read a moment later finds no more.
        forecasts = f.Drain(f.Names.ForecastsTopic, byUser, TimeSpan.FromSeconds(3), m => m.Count > 200);
        Assert.Equal(200, forecasts.Count);

        var decoded = forecasts.Select(m => (Key: UserKey.Parser.ParseFrom(m.Key).UserId, Value: CgmForecast.Parser.ParseFrom(m.Value), Message: m)).ToList();
        Assert.Equal(200, decoded.Select(d => d.Value.RequestId).Distinct().Count());
        foreach (var (key, forecast, message) in decoded)
        {
            var i = Array.IndexOf(users, key);
            Assert.True(i >= 0, $"forecast keyed by unknown user {key}");
            Assert.Equal(requests[i].RequestId, forecast.RequestId);
            Assert.Equal(key, forecast.UserId);
            Assert.Equal(T0, forecast.EventTimeUnixMs);
            Assert.Equal(5, forecast.StepMinutes);
            Assert.Equal(10, forecast.McSamples);
            Assert.StartsWith("tiny-forecaster@sha256:", forecast.ModelVersion);
            Assert.Equal("forecast:" + forecast.RequestId, Encoding.UTF8.GetString(message.Headers.GetLastBytes(StreamHeaders.OutputId)));
            Assert.Equal(12, forecast.MedianMgDl.Count);
            Assert.Equal([0.05f, 0.25f, 0.75f, 0.95f], forecast.Bands.Select(b => b.Quantile));
            for (var h = 0; h < 12; h++)
            {
                Assert.InRange(forecast.MedianMgDl[h], levels[i] - TinyModelMaxOffsetMgDl, levels[i] + TinyModelMaxOffsetMgDl);
                Assert.True(forecast.Bands[0].GlucoseMgDl[h] < forecast.Bands[1].GlucoseMgDl[h]
                            && forecast.Bands[1].GlucoseMgDl[h] < forecast.MedianMgDl[h]
                            && forecast.MedianMgDl[h] < forecast.Bands[2].GlucoseMgDl[h]
                            && forecast.Bands[2].GlucoseMgDl[h] < forecast.Bands[3].GlucoseMgDl[h], $"bands of {key} not ordered at step {h}");
            }
        }
        Assert.True(f.Service.Consumer.Batches > 1, "the requests were batched");

        WaitFor(() => StoredForecasts(requests.Select(r => r.RequestId)) >= 200, TimeSpan.FromSeconds(30),
            () => $"{StoredForecasts(requests.Select(r => r.RequestId))}/200 rows\n{f.Logs.Tail()}");
        using (var cmd = f.Postgres.CreateCommand(
                   "SELECT user_id, median_mg_dl, quantiles, bands_mg_dl, horizon_steps, mc_samples FROM cgm.forecasts WHERE request_id = $1"))
        {
            cmd.Parameters.AddWithValue(requests[0].RequestId);
            using var row = cmd.ExecuteReader();
            Assert.True(row.Read());
            var kafka = decoded.Single(d => d.Key == users[0]).Value;
            Assert.Equal(users[0], row.GetString(0));
            Assert.Equal(kafka.MedianMgDl, row.GetFieldValue<float[]>(1));
            Assert.Equal([0.05f, 0.25f, 0.75f, 0.95f], row.GetFieldValue<float[]>(2));
            Assert.Equal(kafka.Bands.SelectMany(b => b.GlucoseMgDl), row.GetFieldValue<float[]>(3));
            Assert.Equal(12, row.GetInt32(4));
            Assert.Equal(10, row.GetInt32(5));
        }

        var db = f.Redis.GetDatabase();
        WaitFor(() => users.All(u => ForecastCache.ReadAsync(db, u).GetAwaiter().GetResult() is not null), TimeSpan.FromSeconds(30),
            () => $"{users.Count(u => ForecastCache.ReadAsync(db, u).GetAwaiter().GetResult() is not null)}/200 users in Redis");
        var cached = (await ForecastCache.ReadAsync(db, users[7]))!;
        var expected = decoded.Single(d => d.Key == users[7]).Value;
        Assert.Equal(expected.RequestId, cached.RequestId);
        Assert.Equal(expected.MedianMgDl, cached.MedianMgDl);
        Assert.Equal(expected.Bands[3].GlucoseMgDl, cached.Bands[3].GlucoseMgDl);
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
            (user, Request(user, Flat(110), "good-1").ToByteArray()),
            (user, Request(user, Flat(110).Take(95).ToArray(), "short").ToByteArray()),
            (user, Request(user, nan, "nan").ToByteArray()),
            (user, [0xff, 0x01, 0x02]),
            (user, Request(other, Flat(110), "mismatch").ToByteArray()),
            (user, Request(user, Flat(110), "ten-minute") is var t ? WithStep(t, 10) : []),
            (user, Request(user, Wave(150), "good-2").ToByteArray()),
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
            .Select(m => CgmForecast.Parser.ParseFrom(m.Value).RequestId).ToList();
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
        yearAhead.EventTimeUnixMs = DateTimeOffset.UtcNow.AddDays(365).ToUnixTimeMilliseconds();
        var ancient = Request(user, Flat(120), "ancient");
        ancient.EventTimeUnixMs = new DateTimeOffset(1985, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        f.Send(
        [
            (user, Request(user, Flat(120), "nul\u0000id").ToByteArray()),
            (user, Request(user, Flat(120), "bell\u0007").ToByteArray()),
            (user, yearAhead.ToByteArray()),
            (user, ancient.ToByteArray()),
            (user, Request(user, Flat(130), "fine").ToByteArray()),
        ]);

        var users = new HashSet<string> { user };
        var errors = f.Drain(f.Names.DeadLetterTopic, users, TimeSpan.FromSeconds(60), m => m.Count >= 4)
            .Select(m => Header(m, StreamHeaders.Error)).ToList();
        Assert.Equal(4, errors.Count);
        Assert.Equal(2, errors.Count(e => e.StartsWith("request_id = ", StringComparison.Ordinal) && e.Contains("must be 1-128 characters")));
        Assert.Contains(errors, e => e.StartsWith("event_time_unix_ms = ", StringComparison.Ordinal) && e.Contains("ahead of the receiving clock"));
        Assert.Contains(errors, e => e.StartsWith("event_time_unix_ms = 1985-01-01", StringComparison.Ordinal) && e.Contains("earliest accepted"));
        var forecasts = f.Drain(f.Names.ForecastsTopic, users, TimeSpan.FromSeconds(30), m => m.Count >= 1)
            .Select(m => CgmForecast.Parser.ParseFrom(m.Value).RequestId).ToList();
        Assert.Equal(["fine"], forecasts);
    }

    [Fact]
    public void Offsets_are_committed_once_outputs_land_and_a_restarted_forecaster_stores_each_forecast_once()
    {
        var users = Enumerable.Range(0, 120).Select(i => U($"r{i}")).ToArray();
        var requests = users.Select((u, i) => Request(u, Wave(100 + i, phase: i))).ToArray();
        f.Send(requests.Take(60).Select(r => (r.UserId, r.ToByteArray())));
        WaitFor(() => StoredForecasts(requests.Take(60).Select(r => r.RequestId)) >= 60, TimeSpan.FromSeconds(60), () => f.Logs.Tail());
        f.Restart();
        f.Send(requests.Skip(60).Select(r => (r.UserId, r.ToByteArray())));
        f.Send(requests.Take(10).Select(r => (r.UserId, r.ToByteArray())));   // a producer retrying: the same request ids again
        WaitFor(() => StoredForecasts(requests.Select(r => r.RequestId)) >= 120, TimeSpan.FromSeconds(60),
            () => $"{StoredForecasts(requests.Select(r => r.RequestId))}/120\n{f.Logs.Tail()}");
        Thread.Sleep(1_000);
        Assert.Equal(120, StoredForecasts(requests.Select(r => r.RequestId)));
        // Everything read is committed: nothing would be forecast again by a new member of the group.
        WaitFor(() => Progress(f.Kafka.BootstrapServers, f.Names.GroupId, f.Names.RequestsTopic, 4) is var p && p.Committed == p.End,
            TimeSpan.FromSeconds(20), () => $"{Progress(f.Kafka.BootstrapServers, f.Names.GroupId, f.Names.RequestsTopic, 4)}");
    }

    private static byte[] WithStep(CgmForecastRequest r, int stepMinutes)
    {
        r.StepMinutes = stepMinutes;
        return r.ToByteArray();
    }

    private static string Header(Message<byte[], byte[]> m, string name) => Encoding.UTF8.GetString(m.Headers.GetLastBytes(name));
}
