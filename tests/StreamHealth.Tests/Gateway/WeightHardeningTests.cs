using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Confluent.Kafka;
using Google.Protobuf;
using Npgsql;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Weight.Pipeline;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway;

/// <summary>Issue 11 for the weights workload, through the gateway and straight onto weights.raw, over the real
/// embedded Kafka, PostgreSQL and Redis: replies reach only their caller, a measurement id is one measurement of one
/// user whatever its time, hostile or lenient input is a 400 naming the field (or a dead letter), and `latest` shows
/// the caller's own write.</summary>
public sealed class WeightHardeningTests(WeightGatewayFixture f) : IClassFixture<WeightGatewayFixture>
{
    private static string U(string name) => $"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)];

    private static object Measurement(string user, double kg, string day, string? id = null) =>
        new { user_id = user, weight = kg, unit = "kg", timestamp = $"2026-04-{day}T07:30:00Z", source = "connected_scale", measurement_id = id };

    private static async Task<(HttpStatusCode Status, JsonElement Body, string Text)> Post(HttpClient client, object body)
    {
        using var response = await client.PostAsJsonAsync("/api/weight/process", body);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length > 0 ? JsonDocument.Parse(text).RootElement.Clone() : default, text);
    }

    private int Rows(string measurementId)
    {
        using var db = NpgsqlDataSource.Create(f.ConnectionString);
        using var cmd = db.CreateCommand("SELECT count(*) FROM weights.measurements WHERE measurement_id = $1");
        cmd.Parameters.AddWithValue(measurementId);
        return (int)(long)cmd.ExecuteScalar()!;
    }

    /// <summary>Waits until <paramref name="measurementId"/> is stored: a later measurement of the same user is a
    /// barrier, since the sink writes one partition (one user) in order.</summary>
    private void WaitStored(string measurementId) =>
        WaitFor(() => Rows(measurementId) > 0, TimeSpan.FromSeconds(60), () => $"{measurementId} never stored\n{f.Logs.Tail()}");

    [Fact]
    public async Task Forty_concurrent_callers_reusing_measurement_ids_never_receive_another_users_result_and_reuse_across_users_is_409()
    {
        using var client = f.Client();
        var run = Guid.NewGuid().ToString("N")[..8];
        // 40 users, 10 shared ids (4 users each), plus an own id per user: 80 requests in flight at once.
        var requests = Enumerable.Range(0, 40).SelectMany(i =>
        {
            var user = $"conc-{run}-{i}";
            var kg = 60 + i * 0.5;
            return new[] { (User: user, Kg: kg, Id: $"shared-{run}-{i % 10}"), (User: user, Kg: kg + 0.1, Id: $"own-{run}-{i}") };
        }).ToArray();
        var answers = await Task.WhenAll(requests.Select(r => Post(client, Measurement(r.User, r.Kg, "01", r.Id))));

        var wrong = new List<string>();
        for (var i = 0; i < requests.Length; i++)
        {
            var (status, body, text) = answers[i];
            if (status != HttpStatusCode.OK) continue;
            if (body.GetProperty("user_id").GetString() != requests[i].User || body.GetProperty("measurement_id").GetString() != requests[i].Id
                || Math.Abs(body.GetProperty("raw_weight").GetDouble() - requests[i].Kg) > 1e-9)
                wrong.Add($"{requests[i]} got {text}");
        }
        Assert.True(wrong.Count == 0, $"{wrong.Count} responses held another request's result:\n{string.Join('\n', wrong.Take(5))}");

        for (var k = 0; k < 10; k++)
        {
            var id = $"shared-{run}-{k}";
            var forId = requests.Select((r, i) => (r, a: answers[i])).Where(x => x.r.Id == id).ToList();
            Assert.Equal(1, forId.Count(x => x.a.Status == HttpStatusCode.OK));
            Assert.Equal(3, forId.Count(x => x.a.Status == HttpStatusCode.Conflict));
            var conflict = forId.First(x => x.a.Status == HttpStatusCode.Conflict).a;
            Assert.Contains("measurement_id", conflict.Body.GetProperty("detail").GetString());
            // The problem never says who owns the id.
            var owner = forId.Single(x => x.a.Status == HttpStatusCode.OK).r.User;
            Assert.DoesNotContain(owner, conflict.Text);
        }
        Assert.All(requests.Select((r, i) => (r, a: answers[i])).Where(x => x.r.Id.StartsWith("own-")), x => Assert.Equal(HttpStatusCode.OK, x.a.Status));
    }

    [Fact]
    public async Task The_same_measurement_id_with_another_timestamp_is_409_and_stored_once()
    {
        using var client = f.Client();
        var user = U("retime");
        var id = user + "-m";
        Assert.Equal(HttpStatusCode.OK, (await Post(client, Measurement(user, 80, "01", id))).Status);
        var again = await Post(client, Measurement(user, 80, "02", id));
        Assert.Equal(HttpStatusCode.Conflict, again.Status);
        Assert.Equal(HttpStatusCode.Conflict, (await Post(client, Measurement(user, 81, "01", id))).Status);

        Assert.Equal(HttpStatusCode.OK, (await Post(client, Measurement(user, 80, "03", user + "-barrier"))).Status);
        WaitStored(user + "-barrier");
        Assert.Equal(1, Rows(id));
    }

    [Fact]
    public async Task A_retry_of_the_same_measurement_returns_the_original_result_is_stored_once_and_filtered_once()
    {
        using var client = f.Client();
        var user = U("retry");
        foreach (var (kg, day) in new[] { (81.0, "01"), (80.6, "02"), (80.2, "03") })
            Assert.Equal(HttpStatusCode.OK, (await Post(client, Measurement(user, kg, day, $"{user}-{day}"))).Status);
        var id = user + "-r";
        var first = await Post(client, Measurement(user, 80.1, "04", id));
        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.Contains("accepted", first.Body.GetProperty("reasons").EnumerateArray().Select(r => r.GetString()));
        Assert.True(WeightTopology.TryQueryState(f.Pipeline.Host, user, out var before));

        var retry = await Post(client, Measurement(user, 80.1, "04", id));
        Assert.Equal(HttpStatusCode.OK, retry.Status);
        Assert.Equal(first.Text, retry.Text);   // the original result, not a "duplicate" verdict on it

        Assert.Equal(HttpStatusCode.OK, (await Post(client, Measurement(user, 80.0, "05", user + "-barrier"))).Status);
        WaitStored(user + "-barrier");
        Assert.Equal(1, Rows(id));
        // The barrier is the only update after the first: the retry never reached the filter.
        WaitFor(() => WeightTopology.TryQueryState(f.Pipeline.Host, user, out var s) && s.EventTimeUnixMs > before.EventTimeUnixMs,
            TimeSpan.FromSeconds(30), () => "state never showed the barrier");
        WeightTopology.TryQueryState(f.Pipeline.Host, user, out var after);
        Assert.Equal(before.UpdateCount + 1, after.UpdateCount);
    }

    private static readonly Regex DotNetTypeName = new(@"System\.|Nullable|\b(Double|String|Int32|Int64|DateTime|DateTimeOffset|JsonElement)\b");

    [Theory]
    [InlineData("unit", """{"user_id":"USER","weight":80,"timestamp":"2026-04-01T07:00:00Z","source":"connected_scale"}""")]
    [InlineData("source", """{"user_id":"USER","weight":80,"unit":"kg","timestamp":"2026-04-01T07:00:00Z"}""")]
    [InlineData("weight", """{"user_id":"USER","weight":"80","unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale"}""")]
    [InlineData("weight", """{"user_id":"USER","weight":1e308,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale"}""")]
    [InlineData("weight", """{"user_id":"USER","weight":1e400,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale"}""")]
    [InlineData("weight", """{"user_id":"USER","weight":0.001,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale"}""")]
    [InlineData("measurement_id", """{"user_id":"USER","weight":80,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale","measurement_id":"LONG"}""")]
    [InlineData("measurement_id", """{"user_id":"USER","weight":80,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale","measurement_id":"a\u0000b"}""")]
    [InlineData("measurement_id", """{"user_id":"USER","weight":80,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale","measurement_id":true}""")]
    [InlineData("user_id", """{"user_id":"a\u0001b","weight":80,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale"}""")]
    [InlineData("user_id", """{"user_id":"..","weight":80,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale"}""")]
    [InlineData("user_id", """{"user_id":42,"weight":80,"unit":"kg","timestamp":"2026-04-01T07:00:00Z","source":"connected_scale"}""")]
    [InlineData("timestamp", """{"user_id":"USER","weight":80,"unit":"kg","timestamp":"0001-01-01T00:00:00Z","source":"connected_scale"}""")]
    [InlineData("timestamp", """{"user_id":"USER","weight":80,"unit":"kg","timestamp":"AHEAD","source":"connected_scale"}""")]
    [InlineData("timestamp", """{"user_id":"USER","weight":80,"unit":"kg","timestamp":12345,"source":"connected_scale"}""")]
    public async Task Lenient_or_hostile_input_is_a_400_naming_the_field_without_dotnet_type_names(string field, string json)
    {
        using var client = f.Client();
        var user = U("lenient");
        json = json.Replace("USER", user).Replace("LONG", new string('m', 10_000))
            .Replace("AHEAD", DateTimeOffset.UtcNow.AddYears(1).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'"));
        using var response = await client.PostAsync("/api/weight/process", new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{response.StatusCode}: {text}");
        var errors = JsonDocument.Parse(text).RootElement.GetProperty("errors");
        Assert.True(errors.TryGetProperty(field, out var messages), text);
        Assert.Contains(field, messages[0].GetString());
        Assert.DoesNotMatch(DotNetTypeName, text);
        if (json.Contains("1e308")) Assert.Contains("20-400 kg", text);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/weight/{user}/latest")).StatusCode);
    }

    [Fact]
    public async Task An_initialisation_batch_obeys_the_same_field_rules()
    {
        using var client = f.Client();
        var user = U("initbad");
        using var response = await client.PostAsJsonAsync("/api/weight/initialize", new
        {
            user_id = user,
            measurements = new object[] { Measurement(user, 70, "01"), new { weight = "70", timestamp = "2026-04-02T07:00:00Z" } },
        });
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var errors = JsonDocument.Parse(text).RootElement.GetProperty("errors");
        foreach (var field in new[] { "measurements[1].weight", "measurements[1].unit", "measurements[1].source" })
            Assert.True(errors.TryGetProperty(field, out _), field + ": " + text);
        Assert.DoesNotMatch(DotNetTypeName, text);
    }

    [Fact]
    public void Records_straight_onto_weights_raw_with_control_characters_bad_numbers_bad_times_or_a_reused_id_are_dead_lettered_with_the_reason()
    {
        var user = U("rawbad");
        var other = U("rawother");
        var t0 = DateTimeOffset.Parse("2026-04-01T07:00:00Z").ToUnixTimeMilliseconds();
        WeightMeasurement M(string u, string id, long time, double kg) => new()
        {
            SchemaVersion = 1, UserId = u, MeasurementId = id, EventTimeUnixMs = time, Value = kg, Unit = WeightUnit.Kg, Source = WeightSource.ConnectedScale,
        };
        void Produce(params WeightMeasurement[] records)
        {
            using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Kafka.BootstrapServers, EnableIdempotence = true }).Build();
            foreach (var m in records)
                p.Produce(Topics.WeightsRaw, new Message<byte[], byte[]>
                {
                    Key = f.Registry.Key(Topics.WeightsRaw, m.UserId), Value = f.Registry.Value(Topics.WeightsRaw, m),
                    Timestamp = new Timestamp(Math.Max(0, m.EventTimeUnixMs), TimestampType.CreateTime),
                });
            p.Flush(TimeSpan.FromSeconds(10));
        }
        Produce(
            M(user, user + "-ok", t0, 80),
            M(user, "a\0b", t0 + 1, 80),
            M(user, user + "-nan", t0 + 2, double.NaN),
            M(user, user + "-year1", DateTimeOffset.Parse("0001-01-01T00:00:00Z").ToUnixTimeMilliseconds(), 80),
            M(user, user + "-ok", t0 + 86_400_000, 80),           // the user's id again, for another time
            new WeightMeasurement(M(user, user + "-detail", t0 + 3, 80)) { SourceDetail = "scale\0x" });
        WaitStored(user + "-ok");
        Produce(M(other, user + "-ok", t0, 75), M(other, other + "-barrier", t0 + 5, 75));   // another user's id, straight onto the topic

        var letters = new List<string>();
        using (var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = f.Kafka.BootstrapServers, GroupId = "dlq-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build())
        {
            c.Subscribe(Topics.WeightsRaw + Topics.DeadLetterSuffix);
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (DateTime.UtcNow < deadline && letters.Count < 5)
            {
                if (c.Consume(TimeSpan.FromMilliseconds(200)) is not { } r) continue;
                if (f.Registry.UserOf(Topics.WeightsRaw, r.Message.Key) != user) continue;
                letters.Add(Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes(StreamHeaders.Error)));
            }
        }
        Assert.True(letters.Count == 5, $"dead letters: {string.Join(" | ", letters)}\n{f.Logs.Tail()}");
        Assert.Contains(letters, l => l.StartsWith("measurement_id") && l.Contains("\\u0000"));
        Assert.Contains(letters, l => l.StartsWith("value") && l.Contains("finite"));
        Assert.Contains(letters, l => l.StartsWith("event_time_unix_ms") && l.Contains("1990"));
        Assert.Contains(letters, l => l.StartsWith("source_detail") && l.Contains("U+0000"));
        Assert.Contains(letters, l => l.Contains("already used by this user for another measurement"));

        // The other user's reuse passes the topology (it only knows its own users) and is stopped by the sink's claim.
        WaitStored(other + "-barrier");
        Assert.Equal(1, Rows(user + "-ok"));
        using var db = NpgsqlDataSource.Create(f.ConnectionString);
        using var cmd = db.CreateCommand("SELECT count(*) FROM streamhealth.dead_letters WHERE processor = 'weights-postgres' AND error LIKE $1");
        cmd.Parameters.AddWithValue($"%'{user}-ok' is already used by another user%");
        Assert.Equal(1L, (long)cmd.ExecuteScalar()!);
    }

    [Fact]
    public async Task Latest_right_after_a_200_from_process_returns_that_result()
    {
        using var client = f.Client();
        var user = U("ryw");
        var day = 1;
        foreach (var kg in new[] { 81.0, 80.6, 80.2, 80.4, 80.1, 79.9, 80.0, 79.8 })
        {
            var posted = await Post(client, Measurement(user, kg, $"{day++:00}"));
            Assert.Equal(HttpStatusCode.OK, posted.Status);
            if (posted.Body.GetProperty("needs_initialization").GetBoolean()) continue;
            using var latest = await client.GetAsync($"/api/weight/{user}/latest");
            var text = await latest.Content.ReadAsStringAsync();
            Assert.True(latest.StatusCode == HttpStatusCode.OK, $"{latest.StatusCode}: {text}");
            var body = JsonDocument.Parse(text).RootElement;
            Assert.Equal(posted.Body.GetProperty("measurement_id").GetString(), body.GetProperty("measurement_id").GetString());
            Assert.Equal(posted.Body.GetProperty("filtered_weight").GetDouble(), body.GetProperty("filtered_weight").GetDouble(), 9);
            Assert.EndsWith("Z", body.GetProperty("timestamp").GetString());
        }
    }
    /// <summary>A measurement the topology dead-letters answers its waiting caller at once with the topology's reason (the
    /// dead letter keeps the request-id header), not with a 504 after the reply timeout. The gateway's own checks make this
    /// rare, so the request is sent through the request/reply service directly, with no measurement id (the topology's rule).</summary>
    [Fact]
    public async Task A_measurement_the_topology_dead_letters_answers_its_caller_with_the_reason_not_a_timeout()
    {
        var reply = Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<StreamHealth.Gateway.Weights.WeightRequestReply>(f.App.Services);
        var user = U("refused");
        var measurement = new StreamHealth.Schemas.WeightMeasurement
        {
            SchemaVersion = 1, UserId = user, Value = 80, Unit = StreamHealth.Schemas.WeightUnit.Kg,
            Source = StreamHealth.Schemas.WeightSource.ConnectedScale,
            EventTimeUnixMs = DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeMilliseconds(),
        };
        // A timeout would return null; the exception carries the topology's reason, so the dead letter answered.
        var refused = await Assert.ThrowsAsync<StreamHealth.Gateway.Weights.WeightRejectedException>(() => reply.SendAsync(measurement, CancellationToken.None));
        Assert.Contains("measurement_id", refused.Message);
    }
    /// <summary>Issue 19 through the API: surgery can be declared with a measurement (`declared_event`), which lets the
    /// filter take a 15 kg step at once; the same step undeclared is rejected; an unknown event is a 400 naming the field.</summary>
    [Fact]
    public async Task A_declared_surgery_is_taken_at_once_and_the_same_step_undeclared_is_not()
    {
        using var client = f.Client();
        var bad = await Post(client, new { user_id = U("event"), weight = 80.0, unit = "kg", timestamp = "2026-04-01T07:30:00Z", source = "connected_scale", declared_event = "magic" });
        Assert.Equal(HttpStatusCode.BadRequest, bad.Status);
        Assert.True(bad.Body.GetProperty("errors").TryGetProperty("declared_event", out _), bad.Text);

        foreach (var declared in new[] { true, false })
        {
            var user = U(declared ? "surgery" : "nosurgery");
            for (var day = 1; day <= 8; day++)
                Assert.Equal(HttpStatusCode.OK, (await Post(client, Measurement(user, 120 + day % 2 * 0.3, $"{day:00}"))).Status);
            object step = declared
                ? new { user_id = user, weight = 105.0, unit = "kg", timestamp = "2026-04-10T07:30:00Z", source = "patient_reported", declared_event = "surgery" }
                : new { user_id = user, weight = 105.0, unit = "kg", timestamp = "2026-04-10T07:30:00Z", source = "patient_reported" };
            var result = await Post(client, step);
            Assert.Equal(HttpStatusCode.OK, result.Status);
            Assert.True(result.Body.GetProperty("accepted").GetBoolean() == declared, result.Text);
        }
    }
}
