using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using StreamHealth.Gateway;
using StreamHealth.Gateway.CallLogs;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Schemas;
using StreamHealth.Schemas.Avro.CallLogs;
using StreamHealth.Schemas.Avro.Common;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.CallLogs;

/// <summary>The gateway on a real Kestrel port with the embedded Kafka, a migrated database, Redis and the registry, and
/// fake call providers that send it webhooks: one at a normal rate, one held to 1 webhook/s, one rotating its secret, one
/// switched off.</summary>
public sealed class CallWebhookStack : IAsyncLifetime
{
    public const int MaxBodyBytes = 2048;
    public GatewayServices Services { get; } = new();
    public FakeCallProvider Acme { get; private set; } = null!;
    public FakeCallProvider Tight { get; private set; } = null!;
    public FakeCallProvider Retired { get; private set; } = null!;
    public const string RotatingName = "rotating-calls";
    public const string OldSecret = "rotating-calls-old-secret-0123456789abcdef";
    public const string NewSecret = "rotating-calls-new-secret-0123456789abcdef";
    private WebApplicationFactory<Program> _app = null!;
    public string BaseUrl { get; private set; } = "";

    public async Task InitializeAsync()
    {
        await Services.InitializeAsync();
        Acme = await FakeCallProvider.StartAsync("acme-calls", "acme-calls-secret-" + Guid.NewGuid().ToString("N"));
        Tight = await FakeCallProvider.StartAsync("tight-calls", "tight-calls-secret-" + Guid.NewGuid().ToString("N"));
        Retired = await FakeCallProvider.StartAsync("retired-calls", "retired-calls-secret-" + Guid.NewGuid().ToString("N"));
        (_app, BaseUrl) = StartGateway(Services.Kafka.BootstrapServers);
    }

    /// <summary>A gateway on these services (Kafka at <paramref name="bootstrap"/>) listening on a free loopback port.</summary>
    public (WebApplicationFactory<Program> App, string BaseUrl) StartGateway(string bootstrap, string? redisPort = null)
    {
        var settings = Services.Registry.With(LocalServices.Overrides(Services.Database, bootstrap));
        if (redisPort is not null) settings["Redis:Port"] = redisPort;
        var providers = GatewayCallWebhookOptions.Section + ":Providers:";
        settings[providers + Acme.Name + ":Secret"] = Acme.Secret;
        settings[providers + Tight.Name + ":Secret"] = Tight.Secret;
        settings[providers + Tight.Name + ":RequestsPerSecond"] = "1";
        settings[providers + Tight.Name + ":Burst"] = "2";
        settings[providers + Retired.Name + ":Secret"] = Retired.Secret;
        settings[providers + Retired.Name + ":Enabled"] = "false";
        settings[providers + RotatingName + ":Secret"] = NewSecret;
        settings[providers + RotatingName + ":PreviousSecret"] = OldSecret;
        settings[GatewayCallWebhookOptions.Section + ":MaxBodyBytes"] = MaxBodyBytes.ToString();
        var app = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
        app.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
        app.StartServer();
        var addresses = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses;
        return (app, addresses.Single().TrimEnd('/'));
    }

    public HttpClient Client(string? baseUrl = null) => new() { BaseAddress = new Uri(baseUrl ?? BaseUrl), Timeout = TimeSpan.FromSeconds(60) };

    /// <summary>Every record on calllogs.raw now (up to the high watermarks) about <paramref name="callId"/>: no waiting, since a 202
    /// promises the record is already there.</summary>
    public List<(CallKey Key, CallCompleted Value)> Records(string callId)
    {
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = Services.Kafka.BootstrapServers, GroupId = "webhook-test-" + Guid.NewGuid().ToString("N"), EnableAutoCommit = false,
        }).Build();
        var partitions = Enumerable.Range(0, Topics.Get(Topics.CallLogsRaw).Partitions).Select(p => new TopicPartition(Topics.CallLogsRaw, p)).ToList();
        var ends = partitions.ToDictionary(tp => tp.Partition.Value, tp => consumer.QueryWatermarkOffsets(tp, TimeSpan.FromSeconds(10)).High.Value);
        var found = new List<(CallKey, CallCompleted)>();
        var remaining = ends.Values.Sum();
        if (remaining == 0) return found;
        consumer.Assign(partitions.Select(tp => new TopicPartitionOffset(tp, Offset.Beginning)));
        var keys = Services.Registry.Connection.SerDes<CallKey>();
        for (var deadline = DateTime.UtcNow.AddSeconds(30); remaining > 0 && DateTime.UtcNow < deadline;)
        {
            var record = consumer.Consume(TimeSpan.FromMilliseconds(500));
            if (record is null || record.Offset.Value >= ends[record.Partition.Value]) continue;
            remaining--;
            var key = keys.ReadKey(record.Message.Key, Topics.CallLogsRaw);
            if (key.call_id == callId) found.Add((key, Services.Registry.Read<CallCompleted>(Topics.CallLogsRaw, record.Message.Value)));
        }
        Assert.True(remaining == 0, $"{remaining} records of {Topics.CallLogsRaw} not read within 30 s");
        return found;
    }

    public async Task DisposeAsync()
    {
        await _app.DisposeAsync();
        await Acme.DisposeAsync();
        await Tight.DisposeAsync();
        await Retired.DisposeAsync();
        await Services.DisposeAsync();
    }
}

/// <summary>POST /webhooks/call-completed against the real gateway, Kafka and Redis, driven by fake providers: a signed notice
/// is on calllogs.raw before its 202; a notice that is unsigned, tampered, stale, from an unknown provider, oversized or over
/// the provider's rate changes nothing; a replayed or redelivered event id is acknowledged and produced once.</summary>
public sealed class CallWebhookTests(CallWebhookStack f) : IClassFixture<CallWebhookStack>
{
    private static string NewCall() => "call-" + Guid.NewGuid().ToString("N");

    private static async Task<JsonElement> ReadJsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private static async Task<JsonElement> ProblemAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{(int)response.StatusCode} {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(body).RootElement;
    }

    [Fact]
    public async Task A_signed_notice_is_on_calllogs_raw_keyed_by_call_id_when_the_202_arrives()
    {
        using var gateway = f.Client();
        var call = NewCall();
        var endedAt = DateTimeOffset.UtcNow.AddMinutes(-2);
        var body = f.Acme.CompleteCall(call, "patient-7", endedAt, eventId: "evt-" + call);
        var before = DateTime.UtcNow.AddSeconds(-1);
        using var response = await f.Acme.DeliverAsync(gateway, body);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, await response.Content.ReadAsStringAsync());
        var answer = await ReadJsonAsync(response);
        Assert.Equal("evt-" + call, answer.GetProperty("event_id").GetString());
        Assert.Equal(call, answer.GetProperty("call_id").GetString());
        Assert.Equal("acme-calls", answer.GetProperty("provider").GetString());
        Assert.False(answer.GetProperty("duplicate").GetBoolean());

        // Read at once, no waiting: the 202 promised the record is durable.
        var (key, notice) = Assert.Single(f.Records(call));
        Assert.Equal(call, key.call_id);
        Assert.Equal(call, notice.call_id);
        Assert.Equal("evt-" + call, notice.event_id);
        Assert.Equal("acme-calls", notice.provider);
        Assert.Equal("patient-7", notice.patient_id);
        Assert.Equal(endedAt.ToUnixTimeMilliseconds(), new DateTimeOffset(notice.event_time_unix_ms).ToUnixTimeMilliseconds());
        Assert.InRange(notice.received_at_unix_ms, before, DateTime.UtcNow.AddSeconds(1));
        Assert.Equal(answer.GetProperty("received_at").GetDateTime().ToUniversalTime(), notice.received_at_unix_ms);
        Assert.Equal(CallLogOrigin.CALL_LOG_ORIGIN_WEBHOOK, notice.origin);

        // The notice may leave the patient out.
        var anonymous = NewCall();
        Assert.Equal(HttpStatusCode.Accepted, (await f.Acme.DeliverAsync(gateway, f.Acme.CompleteCall(anonymous, null, endedAt))).StatusCode);
        Assert.Null(Assert.Single(f.Records(anonymous)).Value.patient_id);
    }

    [Fact]
    public async Task Unsigned_tampered_stale_and_unknown_provider_notices_are_401_and_change_nothing()
    {
        using var gateway = f.Client();
        var call = NewCall();
        var body = f.Acme.CompleteCall(call, "patient-1", DateTimeOffset.UtcNow.AddMinutes(-1));
        var good = f.Acme.Sign(body);
        var tampered = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(body).Replace("patient-1", "patient-2", StringComparison.Ordinal));
        var cases = new (string What, FakeCallProvider.Delivery Delivery, byte[]? Instead, string Header)[]
        {
            ("wrong secret", f.Acme.Sign(body, secret: "not-the-acme-secret-0123456789abcdef"), null, WebhookSignature.SignatureHeader),
            ("tampered body", good, tampered, WebhookSignature.SignatureHeader),
            ("signature of another timestamp", good with { Timestamp = (long.Parse(good.Timestamp) - 1).ToString() }, null, WebhookSignature.SignatureHeader),
            ("no sha256= prefix", good with { Signature = good.Signature["sha256=".Length..] }, null, WebhookSignature.SignatureHeader),
            ("not hex", good with { Signature = "sha256=" + new string('z', 64) }, null, WebhookSignature.SignatureHeader),
            ("truncated", good with { Signature = good.Signature[..^2] }, null, WebhookSignature.SignatureHeader),
            ("empty signature", good with { Signature = "" }, null, WebhookSignature.SignatureHeader),
            ("stale by 6 minutes", f.Acme.Sign(body, DateTimeOffset.UtcNow.AddMinutes(-6)), null, WebhookSignature.TimestampHeader),
            ("6 minutes ahead", f.Acme.Sign(body, DateTimeOffset.UtcNow.AddMinutes(6)), null, WebhookSignature.TimestampHeader),
            ("timestamp in ms", good with { Timestamp = good.Timestamp + "000" }, null, WebhookSignature.TimestampHeader),
            ("timestamp not a number", good with { Timestamp = "yesterday" }, null, WebhookSignature.TimestampHeader),
            ("signed timestamp with a sign", good with { Timestamp = "+" + good.Timestamp }, null, WebhookSignature.TimestampHeader),
            ("unknown provider", f.Acme.Sign(body, provider: "nobody-calls"), null, WebhookSignature.ProviderHeader),
            ("provider switched off", f.Retired.Sign(body), null, WebhookSignature.ProviderHeader),
            ("another provider's name on acme's signature", good with { Provider = f.Tight.Name }, null, WebhookSignature.SignatureHeader),
        };
        var failures = new List<string>();
        foreach (var (what, delivery, instead, header) in cases)
        {
            using var response = await FakeCallProvider.SendAsync(gateway, delivery, instead);
            var text = await response.Content.ReadAsStringAsync();
            if (response.StatusCode != HttpStatusCode.Unauthorized || response.Content.Headers.ContentType?.MediaType != "application/problem+json")
                failures.Add($"{what}: {(int)response.StatusCode} {text}");
            else if (!JsonDocument.Parse(text).RootElement.GetProperty("detail").GetString()!.Contains(header, StringComparison.Ordinal))
                failures.Add($"{what}: the problem does not name {header}: {text}");
            // Never the signature that would have passed, nor the secret.
            if (text.Contains(good.Signature[7..], StringComparison.OrdinalIgnoreCase) || text.Contains(f.Acme.Secret, StringComparison.Ordinal))
                failures.Add($"{what}: the answer leaks the expected signature or the secret: {text}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.Empty(f.Records(call));

        // The untouched delivery still goes through: each refusal above was about what was changed, and claimed nothing.
        Assert.Equal(HttpStatusCode.Accepted, (await FakeCallProvider.SendAsync(gateway, good)).StatusCode);
        Assert.Equal("patient-1", Assert.Single(f.Records(call)).Value.patient_id);
    }

    [Fact]
    public async Task While_a_secret_rotates_both_the_new_and_the_previous_one_verify()
    {
        using var gateway = f.Client();
        foreach (var secret in new[] { CallWebhookStack.NewSecret, CallWebhookStack.OldSecret })
        {
            var call = NewCall();
            var delivery = f.Acme.Sign(FakeCallProvider.Notice("evt-" + call, call, null, DateTimeOffset.UtcNow), secret: secret, provider: CallWebhookStack.RotatingName);
            Assert.Equal(HttpStatusCode.Accepted, (await FakeCallProvider.SendAsync(gateway, delivery)).StatusCode);
            Assert.Equal(CallWebhookStack.RotatingName, Assert.Single(f.Records(call)).Value.provider);
        }
    }

    [Fact]
    public async Task An_oversized_body_is_413_whether_announced_or_streamed_and_nothing_is_produced()
    {
        using var gateway = f.Client();
        var call = NewCall();
        // A valid, correctly signed notice padded past the limit: size is checked first, whatever the rest.
        var padded = JsonSerializer.SerializeToUtf8Bytes(new
        {
            event_id = "evt-" + call, call_id = call, occurred_at = DateTimeOffset.UtcNow.ToString("O"), padding = new string('x', CallWebhookStack.MaxBodyBytes),
        });
        var announced = await FakeCallProvider.SendAsync(gateway, f.Acme.Sign(padded));
        Assert.Contains("2048", (await ProblemAsync(announced, HttpStatusCode.RequestEntityTooLarge)).GetProperty("detail").GetString());

        // No Content-Length (chunked): the gateway reads at most the limit and one byte, then refuses.
        var delivery = f.Acme.Sign(padded);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/call-completed")
        {
            Content = new StreamContent(new NoLengthStream(padded)) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } },
        };
        request.Headers.Add(WebhookSignature.ProviderHeader, delivery.Provider);
        request.Headers.Add(WebhookSignature.TimestampHeader, delivery.Timestamp);
        request.Headers.Add(WebhookSignature.SignatureHeader, delivery.Signature);
        using (var streamed = await gateway.SendAsync(request))
        {
            Assert.Null(request.Content.Headers.ContentLength);
            await ProblemAsync(streamed, HttpStatusCode.RequestEntityTooLarge);
        }
        Assert.Empty(f.Records(call));
    }

    [Fact]
    public async Task Over_the_providers_rate_is_429_with_retry_after_and_other_providers_are_not_held_back()
    {
        using var gateway = f.Client();
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? limited = null;
        // tight-calls: 1 webhook/s, bursts of 2.
        for (var i = 0; i < 6; i++)
        {
            var response = await f.Tight.DeliverAsync(gateway, f.Tight.CompleteCall(NewCall(), null, DateTimeOffset.UtcNow));
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests) limited ??= response;
        }
        Assert.True(statuses.Count(s => s == HttpStatusCode.Accepted) is >= 2 and <= 4, string.Join(", ", statuses));
        Assert.NotNull(limited);
        var problem = await ProblemAsync(limited, HttpStatusCode.TooManyRequests);
        Assert.Equal("CallProvider", problem.GetProperty("limit").GetString());
        Assert.Contains("tight-calls", problem.GetProperty("detail").GetString());
        Assert.True(int.Parse(limited.Headers.GetValues("Retry-After").Single()) >= 1);

        // acme-calls has a bucket of its own.
        Assert.Equal(HttpStatusCode.Accepted, (await f.Acme.DeliverAsync(gateway, f.Acme.CompleteCall(NewCall(), null, DateTimeOffset.UtcNow))).StatusCode);
        // A refused webhook claimed nothing: after the wait it is processed.
        var call = NewCall();
        var body = f.Tight.CompleteCall(call, null, DateTimeOffset.UtcNow);
        HttpStatusCode status;
        var tries = 0;
        while ((status = (await f.Tight.DeliverAsync(gateway, body)).StatusCode) == HttpStatusCode.TooManyRequests && ++tries < 10)
            await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Equal(HttpStatusCode.Accepted, status);
        Assert.Single(f.Records(call));
    }

    [Fact]
    public async Task A_replayed_or_redelivered_event_id_is_acknowledged_and_produced_once_and_a_new_event_for_the_call_is_produced()
    {
        using var gateway = f.Client();
        var call = NewCall();
        var body = f.Acme.CompleteCall(call, "patient-3", DateTimeOffset.UtcNow.AddMinutes(-1));
        var delivery = f.Acme.Sign(body);
        using var first = await FakeCallProvider.SendAsync(gateway, delivery);
        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        var firstAnswer = await ReadJsonAsync(first);

        // The same bytes and headers again (an attacker's replay inside the window), then the provider's redelivery (fresh signature).
        foreach (var repeat in new[] { delivery, f.Acme.Sign(body) })
        {
            using var again = await FakeCallProvider.SendAsync(gateway, repeat);
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
            var answer = await ReadJsonAsync(again);
            Assert.True(answer.GetProperty("duplicate").GetBoolean());
            Assert.Equal(firstAnswer.GetProperty("received_at").GetString(), answer.GetProperty("received_at").GetString());
            Assert.Equal(call, answer.GetProperty("call_id").GetString());
        }
        Assert.Single(f.Records(call));

        // A new notice about the same call (a new event id) is produced again: consumers remove repeats by call id (the key).
        var second = FakeCallProvider.Notice("evt-second-" + call, call, "patient-3", DateTimeOffset.UtcNow);
        Assert.Equal(HttpStatusCode.Accepted, (await f.Acme.DeliverAsync(gateway, second)).StatusCode);
        Assert.Equal(new[] { "evt-second-" + call, delivery.EventId }.Order(StringComparer.Ordinal), f.Records(call).Select(r => r.Value.event_id).Order(StringComparer.Ordinal));

        // The same event id from another provider is another event.
        HttpStatusCode otherStatus;
        for (var tries = 0; (otherStatus = (await FakeCallProvider.SendAsync(gateway, f.Tight.Sign(body))).StatusCode) == HttpStatusCode.TooManyRequests && tries < 10; tries++)
            await Task.Delay(TimeSpan.FromSeconds(1));   // tight-calls' bucket may still be empty from another test
        Assert.Equal(HttpStatusCode.Accepted, otherStatus);
        Assert.Equal(["acme-calls", "acme-calls", "tight-calls"], f.Records(call).Select(r => r.Value.provider).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Twenty_concurrent_deliveries_of_one_event_produce_exactly_one_record()
    {
        using var gateway = f.Client();
        var call = NewCall();
        var body = f.Acme.CompleteCall(call, "patient-4", DateTimeOffset.UtcNow);
        // Each signed on its own (the provider's parallel retries), sent at once.
        var deliveries = Enumerable.Range(0, 20).Select(_ => f.Acme.Sign(body)).ToList();
        var responses = await Task.WhenAll(deliveries.Select(d => FakeCallProvider.SendAsync(gateway, d)));
        var statuses = responses.Select(r => r.StatusCode).ToList();
        Assert.Equal(1, statuses.Count(s => s == HttpStatusCode.Accepted));
        // The rest waited for the first delivery's outcome and were told it was a duplicate (never 2xx before it was durable).
        Assert.Equal(19, statuses.Count(s => s == HttpStatusCode.OK));
        foreach (var response in responses.Where(r => r.StatusCode == HttpStatusCode.OK))
            Assert.True((await ReadJsonAsync(response)).GetProperty("duplicate").GetBoolean());
        Assert.Single(f.Records(call));
    }

    public static TheoryData<string, string> MalformedBodies() => new()
    {
        { "body", "{\"event_id\": \"e\", " },
        { "body", "[1, 2, 3]" },
        { "body", "\"call\"" },
        { "event_id", """{"call_id":"c-$N","occurred_at":"$T"}""" },
        { "event_id", """{"event_id":42,"call_id":"c-$N","occurred_at":"$T"}""" },
        { "event_id", """{"event_id":"a b","call_id":"c-$N","occurred_at":"$T"}""" },
        { "call_id", """{"event_id":"e-$N","call_id":"bad\u0001id","occurred_at":"$T"}""" },
        { "call_id", """{"event_id":"e-$N","call_id":"$LONG","occurred_at":"$T"}""" },
        { "call_id", """{"event_id":"e-$N","call_id":"..","occurred_at":"$T"}""" },
        { "call_id", """{"event_id":"e-$N","call_id":"\ud800","occurred_at":"$T"}""" },
        { "call_id", """{"event_id":"e-$N","call_id":null,"occurred_at":"$T"}""" },
        { "patient_id", """{"event_id":"e-$N","call_id":"c-$N","patient_id":"x\ny","occurred_at":"$T"}""" },
        { "patient_id", """{"event_id":"e-$N","call_id":"c-$N","patient_id":{"id":1},"occurred_at":"$T"}""" },
        { "occurred_at", """{"event_id":"e-$N","call_id":"c-$N","occurred_at":"yesterday"}""" },
        { "occurred_at", """{"event_id":"e-$N","call_id":"c-$N","occurred_at":"2026-12-04T09:30:00"}""" },
        { "occurred_at", """{"event_id":"e-$N","call_id":"c-$N","occurred_at":"9999-12-31T23:59:59Z"}""" },
        { "occurred_at", """{"event_id":"e-$N","call_id":"c-$N","occurred_at":1764840600}""" },
    };

    [Theory]
    [MemberData(nameof(MalformedBodies))]
    public async Task A_signed_but_malformed_notice_is_400_naming_the_field_and_nothing_is_produced(string field, string template)
    {
        using var gateway = f.Client();
        var n = Guid.NewGuid().ToString("N");
        var json = template.Replace("$N", n, StringComparison.Ordinal).Replace("$T", DateTimeOffset.UtcNow.ToString("O"), StringComparison.Ordinal)
            .Replace("$LONG", new string('a', 500), StringComparison.Ordinal);
        using var response = await f.Acme.DeliverAsync(gateway, Encoding.UTF8.GetBytes(json));
        var problem = await ProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), problem.ToString());
        Assert.DoesNotContain("System.", problem.ToString(), StringComparison.Ordinal);
        Assert.Empty(f.Records("c-" + n));
    }

    [Fact]
    public async Task When_kafka_cannot_take_the_event_the_answer_is_503_and_the_providers_retry_is_processed()
    {
        // A gateway whose Kafka is unreachable, on the same Redis: its claim must not outlive its failure.
        var (down, downUrl) = f.StartGateway("127.0.0.1:1");
        await using var _ = down;
        using var broken = f.Client(downUrl);
        var call = NewCall();
        var body = f.Acme.CompleteCall(call, "patient-5", DateTimeOffset.UtcNow);
        // Two deliveries at once: the second waits on the first's claim, and must not be acknowledged when the first fails
        // (it then tries itself, and fails the same way).
        var refusals = await Task.WhenAll(f.Acme.DeliverAsync(broken, body), f.Acme.DeliverAsync(broken, body));
        foreach (var refused in refusals)
        {
            var problem = await ProblemAsync(refused, HttpStatusCode.ServiceUnavailable);
            Assert.Contains("retry", problem.GetProperty("detail").GetString());
            Assert.True(refused.Headers.Contains("Retry-After"));
        }
        // Released at once, not left to expire (a pending claim would hold the retry below for up to 30 s).
        var eventId = JsonDocument.Parse(body).RootElement.GetProperty("event_id").GetString()!;
        Assert.False(await f.Services.Redis.GetDatabase().KeyExistsAsync(CallEventClaims.Key(f.Acme.Name, eventId)));

        using var gateway = f.Client();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using var retried = await f.Acme.DeliverAsync(gateway, body);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"the retry waited {watch.Elapsed}");
        Assert.Equal(HttpStatusCode.Accepted, retried.StatusCode);
        Assert.False((await ReadJsonAsync(retried)).GetProperty("duplicate").GetBoolean());
        Assert.Single(f.Records(call));
    }

    [Fact]
    public async Task When_redis_cannot_hold_the_event_id_the_answer_is_503_and_nothing_is_produced()
    {
        var (down, downUrl) = f.StartGateway(f.Services.Kafka.BootstrapServers, redisPort: "1");   // nothing listens there
        await using var _ = down;
        using var broken = f.Client(downUrl);
        var call = NewCall();
        var body = f.Acme.CompleteCall(call, null, DateTimeOffset.UtcNow);
        using var refused = await f.Acme.DeliverAsync(broken, body);
        Assert.Contains("Redis", (await ProblemAsync(refused, HttpStatusCode.ServiceUnavailable)).GetProperty("title").GetString());
        Assert.True(refused.Headers.Contains("Retry-After"));
        // Without the replay guard nothing is produced unguarded.
        Assert.Empty(f.Records(call));
        using var gateway = f.Client();
        Assert.Equal(HttpStatusCode.Accepted, (await f.Acme.DeliverAsync(gateway, body)).StatusCode);
        Assert.Single(f.Records(call));
    }

    [Fact]
    public void The_signature_recipe_matches_the_readme_openssl_example()
    {
        // README "Call-log webhooks": printf '%s.%s' 1764840600 "$body" | openssl dgst -sha256 -hmac "$secret"
        const string body = """{"event_id":"evt-1","call_id":"call-1","occurred_at":"2026-12-04T09:30:00Z"}""";
        const string expected = "sha256=f67c5eddf7d410aa2f0b306ae08874ef68971ab2607202291f034cddc32efd2c";
        Assert.Equal(expected, WebhookSignature.Sign(GatewayCallWebhookOptions.DevelopmentSecret, "1764840600", Encoding.UTF8.GetBytes(body)));
        Assert.Equal(expected, FakeCallProvider.Signature(GatewayCallWebhookOptions.DevelopmentSecret, "1764840600", Encoding.UTF8.GetBytes(body)));
        byte[][] keys = [Encoding.UTF8.GetBytes(GatewayCallWebhookOptions.DevelopmentSecret)];
        Assert.True(WebhookSignature.Verify(keys, "1764840600", Encoding.UTF8.GetBytes(body), expected));
        Assert.True(WebhookSignature.Verify(keys, "1764840600", Encoding.UTF8.GetBytes(body), expected.ToUpperInvariant().Replace("SHA256=", "sha256=")));
        Assert.False(WebhookSignature.Verify(keys, "1764840601", Encoding.UTF8.GetBytes(body), expected));
        Assert.False(WebhookSignature.Verify(keys, "1764840600", Encoding.UTF8.GetBytes(body + " "), expected));
        Assert.False(WebhookSignature.Verify(keys, "1764840600", Encoding.UTF8.GetBytes(body), expected + "00"));
        Assert.False(WebhookSignature.Verify(keys, "1764840600", Encoding.UTF8.GetBytes(body), null));
    }

    [Fact]
    public void Provider_settings_are_validated_at_start_without_quoting_a_secret()
    {
        static string Refused(Dictionary<string, string?> settings, bool development = false) =>
            Assert.Throws<ConfigurationException>(() => GatewayOptions.Bind(Configuration(settings), development)).Message;
        var section = GatewayCallWebhookOptions.Section + ":Providers:";
        var shortSecret = Refused(new() { [section + "acme:Secret"] = "too-short-secret" });
        Assert.Contains(section + "acme:Secret is 16 characters", shortSecret);
        Assert.DoesNotContain("too-short-secret", shortSecret);
        Assert.Contains("is not set", Refused(new() { [section + "acme:RequestsPerSecond"] = "5" }));
        Assert.Contains("Burst = 2", Refused(new() { [section + "acme:Secret"] = new string('s', 40), [section + "acme:RequestsPerSecond"] = "5", [section + "acme:Burst"] = "2" }));
        Assert.Contains("trailing newline", Refused(new() { [section + "acme:Secret"] = new string('s', 40) + "\n" }));
        Assert.Contains("not a valid provider name", Refused(new() { [section + "a b:Secret"] = new string('s', 40) }));
        Assert.Contains("local development secret", Refused(new() { [section + "acme:Secret"] = GatewayCallWebhookOptions.DevelopmentSecret }));
        // Development accepts the shipped secret; a switched-off provider needs none.
        var options = GatewayOptions.Bind(Configuration(new() { [section + "local-dev:Secret"] = GatewayCallWebhookOptions.DevelopmentSecret, [section + "old:Enabled"] = "false" }), development: true);
        using var providers = new CallProviders(options);
        Assert.NotNull(providers.Find("local-dev"));
        Assert.Null(providers.Find("old"));

        static IConfiguration Configuration(Dictionary<string, string?> settings)
        {
            settings["Gateway:Identity:SigningKey"] = "a-signing-key-of-the-test-0123456789abcdef";
            settings["Gateway:Encryption:Keys:t"] = Convert.ToBase64String(new byte[32]);
            settings["Gateway:Encryption:ActiveKeyId"] = "t";
            return new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        }
    }

    [Fact]
    public async Task The_fake_provider_serves_transcripts_with_outages_and_latency()
    {
        var call = NewCall();
        f.Acme.CompleteCall(call, "patient-6", DateTimeOffset.UtcNow, transcript: "Blood sugar 7.2 this morning.");
        var (status, body) = await f.Acme.FetchAsync(call);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("Blood sugar 7.2 this morning.", JsonDocument.Parse(body).RootElement.GetProperty("transcript").GetString());
        Assert.Equal(HttpStatusCode.NotFound, (await f.Acme.FetchAsync("no-such-call")).Status);
        f.Retired.Outage = true;
        f.Retired.CompleteCall(call, null, DateTimeOffset.UtcNow);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await f.Retired.FetchAsync(call)).Status);
        f.Retired.Outage = false;
        f.Retired.Latency = TimeSpan.FromMilliseconds(300);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(HttpStatusCode.OK, (await f.Retired.FetchAsync(call)).Status);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(290), watch.Elapsed.ToString());
        f.Retired.Latency = TimeSpan.Zero;
    }

    /// <summary>A body stream of unknown length: HttpClient sends it chunked, without Content-Length.</summary>
    private sealed class NoLengthStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
    }
}
