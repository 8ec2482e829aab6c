using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Configuration;
using Npgsql;
using StreamHealth.CallLogs.Ingest;
using StreamHealth.CallLogs.Pipeline;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using CallCompleted = StreamHealth.Schemas.Avro.CallLogs.CallCompleted;
using CallKey = StreamHealth.Schemas.Avro.Common.CallKey;
using CallLog = StreamHealth.Schemas.Avro.CallLogs.CallLog;
using CallLogOrigin = StreamHealth.Schemas.Avro.CallLogs.CallLogOrigin;

namespace StreamHealth.Tests.CallLogs;

/// <summary>The fetch worker on real parts: its own raw, calls and raw.dlq topics (one partition each, so a later notice's call
/// proves an earlier notice was handled) on an embedded Kafka, the stand-in registry on its own migrated PostgreSQL database,
/// and <see cref="FakeCallProvider"/> serving the transcripts over HTTP with a bearer token it checks.</summary>
public sealed class CallFetchWorkerFixture : IDisposable
{
    public const string ProviderName = "acme-voice";
    public const string Token = "fetch-test-token-0123456789";
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public TestLogs Logs { get; } = new();
    public TestRegistry Registry { get; }
    public FakeCallProvider Provider { get; }
    public CallFetchNames Names { get; }
    public CallFetchOptions Options { get; }
    public NpgsqlDataSource Postgres { get; }
    public CallLedger Ledger { get; }
    public CallFetchWorker Worker { get; }

    public CallFetchWorkerFixture()
    {
        Names = new CallFetchNames(Kafka.NewTopic("raw", 1), Kafka.NewTopic("calls", 1), "fetch-" + Guid.NewGuid().ToString("N"));
        Kafka.Cluster.CreateTopic(Names.DeadLetterTopic, 1);
        var connectionString = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("calllogs_fetch"));
        StreamHealth.Runtime.Storage.PostgresMigrator.MigrateAsync(connectionString).GetAwaiter().GetResult();
        Registry = TestRegistry.Start(connectionString);
        Postgres = NpgsqlDataSource.Create(connectionString);
        Ledger = new CallLedger(Postgres);
        Provider = FakeCallProvider.StartAsync(ProviderName, "unused-webhook-secret-0123456789abcdef").GetAwaiter().GetResult();
        Provider.ApiToken = Token;
        Options = new CallFetchOptions
        {
            Providers = { [ProviderName] = new CallProviderEndpoint { BaseUrl = Provider.BaseUrl, ApiToken = Token } },
            // 2 s per request: a refused answer that took longer than a short timeout on a loaded machine would be fetched
            // again (rightly), and the refusal test counts fetches.
            RequestTimeoutMs = 2_000, MaxAttempts = 3, InitialBackoffMs = 50, MaxBackoffMs = 200, RetryBudgetMs = 8_000, OutagePauseMs = 500,
        };
        Worker = new CallFetchWorker(Options, Names, Kafka.BootstrapServers, Ledger, Registry.Connection, Logs).Start();
    }

    public byte[] Key(string topic, string callId) => Registry.Connection.SerDes<CallKey>().Serialize(new CallKey { call_id = callId },
        new SerializationContext(MessageComponentType.Key, topic));

    /// <summary>Puts notices on the raw topic as the gateway does.</summary>
    public void Send(params CallCompleted[] notices) => SendTo(Names.RawTopic, notices);

    public void SendTo(string rawTopic, params CallCompleted[] notices)
    {
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = Kafka.BootstrapServers, EnableIdempotence = true }).Build();
        foreach (var n in notices)
            p.Produce(rawTopic, new Message<byte[], byte[]> { Key = Key(rawTopic, n.call_id), Value = Registry.Value(rawTopic, n) });
        if (p.Flush(TimeSpan.FromSeconds(10)) > 0) throw new TimeoutException("notices not acknowledged");
    }

    /// <summary>Every record of <paramref name="topic"/> from the start whose key is one of <paramref name="callIds"/>', read until
    /// <paramref name="ready"/> holds and nothing more came for 2 s, or <paramref name="seconds"/> pass.</summary>
    public List<Message<byte[], byte[]>> Drain(string topic, IEnumerable<string> callIds, Func<List<Message<byte[], byte[]>>, bool> ready, int seconds = 60)
    {
        var keys = callIds.Select(id => Key(topic == Names.DeadLetterTopic ? Names.RawTopic : topic, id)).ToList();
        var found = new List<Message<byte[], byte[]>>();
        using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = Kafka.BootstrapServers, GroupId = "drain-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        c.Subscribe(topic);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        var quietSince = DateTime.UtcNow;
        while (DateTime.UtcNow < deadline && !(ready(found) && DateTime.UtcNow - quietSince > TimeSpan.FromSeconds(2)))
            if (c.Consume(TimeSpan.FromMilliseconds(100)) is { } r && keys.Any(k => k.AsSpan().SequenceEqual(r.Message.Key)))
            {
                found.Add(r.Message);
                quietSince = DateTime.UtcNow;
            }
        return found;
    }

    public CallLog Read(Message<byte[], byte[]> m) => Registry.Read<CallLog>(Names.CallsTopic, m.Value);

    public void Dispose()
    {
        Worker.Dispose();
        Provider.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Registry.Dispose();
        Postgres.Dispose();
        Kafka.Dispose();
    }
}

public sealed class CallFetchWorkerTests(CallFetchWorkerFixture f) : IClassFixture<CallFetchWorkerFixture>
{
    private static readonly DateTimeOffset EndedAt = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeSeconds());

    private static string Id(string name) => $"{name}-{Guid.NewGuid():N}"[..(name.Length + 13)];

    private static CallCompleted Notice(string callId, string? patientId, string provider = CallFetchWorkerFixture.ProviderName) => new()
    {
        event_time_unix_ms = AvroTime.FromUnixMs(EndedAt.ToUnixTimeMilliseconds()), event_id = "evt-" + Guid.NewGuid().ToString("N"), call_id = callId,
        provider = provider, patient_id = patientId, received_at_unix_ms = AvroTime.FromUnixMs(EndedAt.AddSeconds(2).ToUnixTimeMilliseconds()),
        origin = CallLogOrigin.CALL_LOG_ORIGIN_WEBHOOK,
    };

    private CallLog WaitForCall(string callId, int seconds = 60) =>
        f.Read(Assert.Single(f.Drain(f.Names.CallsTopic, [callId], found => found.Count >= 1, seconds)));

    private static string Header(Message<byte[], byte[]> m, string name) => Encoding.UTF8.GetString(m.Headers.GetLastBytes(name));

    [Fact]
    public void A_notice_becomes_a_call_log_with_the_providers_transcript()
    {
        var (callId, patient) = (Id("call"), Id("patient"));
        const string transcript = "Nurse: Any medication today?\nPatient: I took my metformin 500 mg at 8.";
        f.Provider.CompleteCall(callId, patient, EndedAt, transcript: transcript);
        // The notice names no patient: the provider's answer does.
        f.Send(Notice(callId, patientId: null));

        var call = WaitForCall(callId);
        Assert.Equal((callId, patient, transcript, 240, CallFetchWorkerFixture.ProviderName, CallLogOrigin.CALL_LOG_ORIGIN_WEBHOOK),
            (call.call_id, call.patient_id, call.transcript, call.duration_s, call.provider, call.origin));
        // The fake's call started 4 minutes before it ended.
        Assert.Equal(EndedAt.AddMinutes(-4).ToUnixTimeMilliseconds(), AvroTime.ToUnixMs(call.event_time_unix_ms));
        Assert.Empty(f.Drain(f.Names.DeadLetterTopic, [callId], _ => true, seconds: 3));
    }

    [Fact]
    public void A_provider_outage_delays_the_call_and_dead_letters_nothing()
    {
        var (callId, patient) = (Id("outage"), Id("patient"));
        f.Provider.CompleteCall(callId, patient, EndedAt, transcript: "Patient: I feel fine.");
        var (pauses, fetches) = (f.Worker.Pauses, f.Provider.Fetches);
        f.Provider.Outage = true;
        try
        {
            f.Send(Notice(callId, patient));
            // Two whole rounds of tries failed (each pausing the partition), far past one round's tries: the worker keeps coming back.
            WaitFor(() => f.Worker.Pauses >= pauses + 2, TimeSpan.FromSeconds(60), () => $"the worker never paused twice; logs:\n{f.Logs}");
            Assert.True(f.Provider.Fetches - fetches > f.Options.MaxAttempts, $"{f.Provider.Fetches - fetches} fetches during the outage");
            // /health sees it: the partition paused, the notice waiting, the provider's answer as the last error.
            WaitFor(() => f.Worker.Health() is { Paused: true, Lag: >= 1 }, TimeSpan.FromSeconds(30), () => $"health: {f.Worker.Health()}");
            Assert.Contains("answered HTTP 503", f.Worker.Health().LastError);
            Assert.Empty(f.Drain(f.Names.CallsTopic, [callId], _ => true, seconds: 3));
        }
        finally
        {
            f.Provider.Outage = false;
        }
        var call = WaitForCall(callId);
        Assert.Equal("Patient: I feel fine.", call.transcript);
        WaitFor(() => f.Worker.Health() is { Paused: false, Lag: 0, Stalled: false }, TimeSpan.FromSeconds(30), () => $"health: {f.Worker.Health()}");
        Assert.Empty(f.Drain(f.Names.DeadLetterTopic, [callId], _ => true, seconds: 3));
        Assert.Contains("answered HTTP 503", f.Logs.Text);
    }

    [Fact]
    public void An_unknown_call_is_dead_lettered_with_the_reason_and_the_next_notice_goes_on()
    {
        var (unknown, malformed, badPatient, good, patient) = (Id("unknown"), Id("broken"), Id("badpat"), Id("good"), Id("patient"));
        f.Provider.AnswerRaw(malformed, """{"call_id": "someone-else", "transcript": "x", "duration_s": 5}""");
        f.Provider.AnswerRaw(badPatient, $$"""{"call_id": "{{badPatient}}", "patient_id": "bad id!", "transcript": "x", "duration_s": 5}""");
        f.Provider.CompleteCall(good, patient, EndedAt);
        var huge = Id("huge");
        f.Provider.AnswerRaw(huge, $$"""{"call_id": "{{huge}}", "transcript": "{{new string('a', CallProviderClient.MaxAnswerBytes)}}", "duration_s": 5}""");
        f.Send(Notice(unknown, patient), Notice(malformed, patient), Notice(badPatient, null), Notice(huge, patient), Notice(good, patient));

        Assert.Equal(good, WaitForCall(good).call_id);
        var dead = f.Drain(f.Names.DeadLetterTopic, [unknown, malformed, badPatient, huge, good], found => found.Count >= 4);
        Assert.Equal(4, dead.Count);
        Assert.Contains($"answered call {huge} with more than {CallProviderClient.MaxAnswerBytes} bytes",
            Header(Assert.Single(dead, d => d.Key.AsSpan().SequenceEqual(f.Key(f.Names.RawTopic, huge))), StreamHeaders.Error));
        var unknownLetter = Assert.Single(dead, d => d.Key.AsSpan().SequenceEqual(f.Key(f.Names.RawTopic, unknown)));
        Assert.Equal($"provider {CallFetchWorkerFixture.ProviderName} does not know call {unknown} (HTTP 404)", Header(unknownLetter, StreamHeaders.Error));
        Assert.Equal(CallFetchWorker.ProcessorName, Header(unknownLetter, StreamHeaders.Processor));
        Assert.Equal(f.Names.RawTopic, Header(unknownLetter, StreamHeaders.SourceTopic));
        // As it arrived: the notice itself, readable.
        Assert.Equal(unknown, f.Registry.Read<CallCompleted>(f.Names.RawTopic, unknownLetter.Value).call_id);
        var malformedLetter = Assert.Single(dead, d => d.Key.AsSpan().SequenceEqual(f.Key(f.Names.RawTopic, malformed)));
        Assert.Contains("malformed call: call_id = 'someone-else', not the call asked for", Header(malformedLetter, StreamHeaders.Error));
        var badPatientLetter = Assert.Single(dead, d => d.Key.AsSpan().SequenceEqual(f.Key(f.Names.RawTopic, badPatient)));
        Assert.Contains($"answer for call {badPatient}: patient_id = 'bad id!'", Header(badPatientLetter, StreamHeaders.Error));
        // A refusal is not retried: one fetch each.
        Assert.Equal((1, 1, 1, 1), (f.Provider.FetchesOf(unknown), f.Provider.FetchesOf(malformed), f.Provider.FetchesOf(badPatient), f.Provider.FetchesOf(huge)));
        Assert.Empty(f.Drain(f.Names.CallsTopic, [unknown, malformed, badPatient, huge], _ => true, seconds: 3));
    }

    [Fact]
    public void A_worker_stopped_during_an_outage_leaves_the_notice_to_the_next_one()
    {
        // Its own topics and group: the class's worker must not take the notice.
        var names = new CallFetchNames(f.Kafka.NewTopic("raw", 1), f.Kafka.NewTopic("calls", 1), "fetch-" + Guid.NewGuid().ToString("N"));
        f.Kafka.Cluster.CreateTopic(names.DeadLetterTopic, 1);
        var (callId, patient) = (Id("restart"), Id("patient"));
        f.Provider.CompleteCall(callId, patient, EndedAt, transcript: "Patient: after the restart.");
        f.Provider.Outage = true;
        try
        {
            using var first = new CallFetchWorker(f.Options, names, f.Kafka.BootstrapServers, f.Ledger, f.Registry.Connection, f.Logs).Start();
            f.SendTo(names.RawTopic, Notice(callId, patient));
            WaitFor(() => first.Pauses >= 1, TimeSpan.FromSeconds(60), () => $"the first worker never paused; logs:\n{f.Logs}");
        }
        finally
        {
            f.Provider.Outage = false;
        }
        // The first worker is gone without committing the notice: the next one in the group starts at it.
        using var second = new CallFetchWorker(f.Options, names, f.Kafka.BootstrapServers, f.Ledger, f.Registry.Connection, f.Logs).Start();
        var call = f.Registry.Read<CallLog>(names.CallsTopic, Assert.Single(f.Drain(names.CallsTopic, [callId], found => found.Count >= 1)).Value);
        Assert.Equal("Patient: after the restart.", call.transcript);
        Assert.Equal(1, second.Fetched);
        Assert.Empty(f.Drain(names.DeadLetterTopic, [callId], _ => true, seconds: 3));
    }

    [Fact]
    public void A_provider_slower_than_the_timeout_is_tried_again()
    {
        var (callId, patient) = (Id("slow"), Id("patient"));
        f.Provider.CompleteCall(callId, patient, EndedAt, transcript: "Patient: slow line today.");
        var retries = f.Worker.Retries;
        f.Provider.Latency = TimeSpan.FromSeconds(5);
        try
        {
            f.Send(Notice(callId, patient));
            WaitFor(() => f.Worker.Retries > retries, TimeSpan.FromSeconds(30), () => $"no retry after a timeout; logs:\n{f.Logs}");
        }
        finally
        {
            f.Provider.Latency = TimeSpan.Zero;
        }
        Assert.Equal("Patient: slow line today.", WaitForCall(callId).transcript);
        Assert.Contains($"did not answer for call {callId} within 2000 ms", f.Logs.Text);
        Assert.Empty(f.Drain(f.Names.DeadLetterTopic, [callId], _ => true, seconds: 3));
    }
}

/// <summary>The provider's answer and the options, checked without a network.</summary>
public sealed class CallFetchParsingTests
{
    private static readonly CallProviderClient Client = new("acme", new CallProviderEndpoint { BaseUrl = "http://127.0.0.1:9", ApiToken = "t" },
        TimeSpan.FromSeconds(1));

    [Theory]
    [InlineData("not json", "not JSON")]
    [InlineData("[1]", "a JSON Array, not an object")]
    [InlineData("""{"call_id":"c1","duration_s":5}""", "transcript is missing or not a string")]
    [InlineData("""{"call_id":"c1","transcript":"x","duration_s":"5"}""", "duration_s is missing or not an integer")]
    [InlineData("""{"call_id":"c1","transcript":"x","duration_s":5,"started_at":"yesterday"}""", "started_at = 'yesterday' is not an ISO 8601 time")]
    public void A_malformed_answer_is_refused_naming_the_field(string body, string reason)
    {
        var result = Client.Parse("c1", Encoding.UTF8.GetBytes(body));
        Assert.Equal(FetchOutcome.Refused, result.Outcome);
        Assert.Contains(reason, result.Reason);
    }

    [Fact]
    public void A_good_answer_is_read()
    {
        var result = Client.Parse("c1", """{"call_id":"c1","patient_id":"p1","transcript":"hi","duration_s":61,"started_at":"2026-12-01T10:00:00Z"}"""u8);
        Assert.Equal(new ProviderCall("c1", "p1", DateTimeOffset.Parse("2026-12-01T10:00:00Z").ToUnixTimeMilliseconds(), 61, "hi"), result.Call);
    }

    [Theory]
    [InlineData("ftp://x", "t", "BaseUrl = 'ftp://x': must be an absolute http(s) URL")]
    [InlineData("https://x", "", "ApiToken is empty")]
    public void Options_name_the_bad_provider_setting(string baseUrl, string token, string message)
    {
        var options = new CallFetchOptions { Providers = { ["acme"] = new CallProviderEndpoint { BaseUrl = baseUrl, ApiToken = token } } };
        Assert.Contains("CallLogs:Fetch:Providers:acme:" + message, Assert.Throws<ArgumentException>(options.Validate).Message);
    }
}

/// <summary>Notice to rows: the fetch worker feeding the call-log extraction (<see cref="CallLogsPipeline"/>: topology and sinks).</summary>
public sealed class CallFetchEndToEndTests(CallLogsPipelineFixture f) : IClassFixture<CallLogsPipelineFixture>
{
    [Fact]
    public async Task A_notice_becomes_a_checkin_row_and_its_entries()
    {
        var raw = f.Kafka.NewTopic("raw", 1);
        f.Kafka.Cluster.CreateTopic(Topics.DeadLetterOf(raw), 1);
        await using var provider = await FakeCallProvider.StartAsync("acme-voice", "unused-webhook-secret-0123456789abcdef");
        var options = new CallFetchOptions
        {
            Providers = { ["acme-voice"] = new CallProviderEndpoint { BaseUrl = provider.BaseUrl, ApiToken = "t0k3n" } },
            RequestTimeoutMs = 2_000, RetryBudgetMs = 5_000, OutagePauseMs = 500,
        };
        using var worker = new CallFetchWorker(options, new CallFetchNames(raw, f.Topics.Calls, "fetch-" + Guid.NewGuid().ToString("N")),
            f.Kafka.BootstrapServers, new CallLedger(f.Postgres), f.Registry.Connection, f.Logs).Start();

        var (callId, patient) = ($"e2e-{Guid.NewGuid():N}"[..17], $"patient-{Guid.NewGuid():N}"[..17]);
        var endedAt = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.AddMinutes(-30).ToUnixTimeSeconds());
        provider.CompleteCall(callId, patient, endedAt, transcript: "Patient: I took my metformin 500 mg this morning.");
        var notice = new CallCompleted
        {
            event_time_unix_ms = AvroTime.FromUnixMs(endedAt.ToUnixTimeMilliseconds()), event_id = "evt-1", call_id = callId, provider = "acme-voice",
            patient_id = patient, received_at_unix_ms = AvroTime.FromUnixMs(endedAt.ToUnixTimeMilliseconds()), origin = CallLogOrigin.CALL_LOG_ORIGIN_WEBHOOK,
        };
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Kafka.BootstrapServers }).Build())
        {
            p.Produce(raw, new Message<byte[], byte[]>
            {
                Key = f.Registry.Connection.SerDes<CallKey>().Serialize(new CallKey { call_id = callId }, new SerializationContext(MessageComponentType.Key, raw)),
                Value = f.Registry.Value(raw, notice),
            });
            p.Flush(TimeSpan.FromSeconds(10));
        }

        f.WaitForCheckin(callId);
        Assert.Equal(1, f.Count("SELECT count(*) FROM calllogs.checkins WHERE call_id = @call AND provider = 'acme-voice' AND duration_s = 240", callId));
        Assert.Equal(1, f.Count($"SELECT count(*) FROM calllogs.checkins WHERE call_id = @call AND patient_id = '{patient}'", callId));
        WaitFor(() => f.Count("SELECT count(*) FROM calllogs.medication_entries WHERE call_id = @call AND generic_name = 'metformin'", callId) == 1,
            TimeSpan.FromSeconds(60), () => $"no metformin entry for {callId}; logs:\n{f.Logs}");
        Assert.Equal(1, worker.Fetched);
    }
}

public sealed class CallFetchOptionsTests
{
    [Fact]
    public void Providers_bind_from_the_environment_shape_and_a_bad_one_is_a_configuration_error()
    {
        var good = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["CallLogs:Fetch:Providers:acme:BaseUrl"] = "https://api.acme.example/v1", ["CallLogs:Fetch:Providers:acme:ApiToken"] = "secret",
            ["CallLogs:Fetch:MaxAttempts"] = "7",
        }).Build();
        var options = CallFetchOptions.Load(good);
        Assert.Equal(("https://api.acme.example/v1", "secret", 7), (options.Providers["acme"].BaseUrl, options.Providers["acme"].ApiToken, options.MaxAttempts));

        var bad = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["CallLogs:Fetch:Providers:acme:BaseUrl"] = "https://api.acme.example", ["CallLogs:Fetch:RequestTimeoutMs"] = "5",
            ["CallLogs:Fetch:Providers:acme:ApiToken"] = "secret",
        }).Build();
        Assert.Equal("CallLogs:Fetch:RequestTimeoutMs = 5: must be 100-300000 ms",
            Assert.Throws<StreamHealth.Runtime.Configuration.ConfigurationException>(() => CallFetchOptions.Load(bad)).Message);
    }
}
