using System.Net;
using System.Text.Json;
using Confluent.Kafka;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Pipeline;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway;

/// <summary>`GET /api/weight/{userId}/state` across processes: two processing hosts split weights.raw, each serves its
/// stores over HTTP (StoreQueryServer) and registers where (the host registry), its /metrics tells which partitions; the gateway asks the owner
/// of each user's partition. When one host leaves, the survivor restores its partitions from the changelog and the same
/// queries answer from it with the same state; with no host left the gateway answers 503 with Retry-After.</summary>
public sealed class InteractiveQueryTests(GatewayServices services) : IClassFixture<GatewayServices>
{
    private static readonly TimeSpan Eventually = TimeSpan.FromSeconds(90);
    private static readonly long T0 = DateTimeOffset.UtcNow.AddDays(-30).ToUnixTimeMilliseconds();

    /// <summary>A processing host as `streamhealth run --topology weights` runs it: stream host, query server, reporter.</summary>
    private sealed class Host : IAsyncDisposable
    {
        public required StreamHost Streams { get; init; }
        public required StoreQueryServer Queries { get; init; }
        public required StreamMetricsReporter Reporter { get; init; }
        public required string StateDirectory { get; init; }

        public async ValueTask DisposeAsync()
        {
            Reporter.Dispose();
            await Queries.DisposeAsync();
            Streams.Dispose();
            Directory.Delete(StateDirectory, recursive: true);
        }
    }

    private async Task<Host> StartHostAsync(string name, string registryKey, TestLogs logs)
    {
        var state = Directory.CreateTempSubdirectory("streamhealth-iq-").FullName;
        var streams = new StreamHost(new StreamHostOptions
        {
            SchemaRegistry = services.Registry.Connection,
            BootstrapServers = services.Kafka.BootstrapServers, StateDirectory = state, CommitIntervalMs = 200, HostId = name,
            CreateInternalTopic = (topic, partitions) => services.Kafka.Cluster.CreateTopic(topic, partitions),
        }, [WeightTopology.Create()], logs);
        streams.Start();
        var queries = await StoreQueryServer.StartAsync([streams], "http://127.0.0.1:0", null, logs);
        var reporter = new StreamMetricsReporter(name, [WeightTopology.ApplicationId], streams, logs.CreateLogger(name), services.Redis.GetDatabase(),
            TimeSpan.FromMilliseconds(200), registryKey: registryKey, url: queries.Url);
        return new Host { Streams = streams, Queries = queries, Reporter = reporter, StateDirectory = state };
    }

    [Fact]
    public async Task The_gateway_reads_each_users_state_from_its_owner_and_from_the_survivor_after_a_host_leaves()
    {
        var registryKey = GatewayServices.NewRegistryKey();
        var logs = new TestLogs();
        var partitions = Topics.DefaultPartitions;
        // The key bytes the topology's queries route by are what a producer with its own registry client sends (Avro, with
        // the key schema's id in the 5-byte header), from a fresh client as from the hosts'.
        using (var fresh = Runtime.SchemaRegistry.SchemaRegistryConnection.Connect(services.Registry.Url, autoRegister: false))
        {
            var sent = services.Registry.Key(Topics.WeightsRaw, "iq-probe");
            Assert.NotNull(ConfluentWire.SchemaId(sent));
            Assert.Equal(sent, WeightTopology.SourceKey(fresh, "iq-probe"));
            Assert.Equal(sent, WeightTopology.SourceKey(services.Registry.Connection, "iq-probe"));
        }
        // Three users on every partition of weights.raw, so that both hosts own some of them.
        var users = Enumerable.Range(0, 10_000).Select(i => $"iq-{Guid.NewGuid():N}"[..12])
            .GroupBy(u => KeyPartitioner.PartitionOf(services.Registry.Key(Topics.WeightsRaw, u), partitions))
            .OrderBy(g => g.Key).SelectMany(g => g.Take(3)).ToList();
        Assert.Equal(3 * partitions, users.Count);
        // Ids with the punctuation the id rule allows reach the store as they are.
        users.AddRange(["x:y.z", "a..b", "-_.:"]);
        var a = await StartHostAsync("iq-host-a", registryKey, logs);
        var b = await StartHostAsync("iq-host-b", registryKey, logs);
        try
        {
            WaitFor(() => a.Streams.Metrics.ActiveTasks > 0 && b.Streams.Metrics.ActiveTasks > 0
                          && a.Streams.Metrics.ActiveTasks + b.Streams.Metrics.ActiveTasks == partitions, Eventually,
                () => $"tasks not split: a {a.Streams.DescribeThreads()}; b {b.Streams.DescribeThreads()}");
            // Five weigh-ins a day apart per user: enough to initialise the filter.
            using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = services.Kafka.BootstrapServers }).Build())
            {
                foreach (var (user, u) in users.Select((user, u) => (user, u)))
                    for (var day = 0; day < 5; day++)
                        producer.Produce(Topics.WeightsRaw, new Message<byte[], byte[]>
                        {
                            Key = services.Registry.Key(Topics.WeightsRaw, user),
                            Value = services.Registry.Value(Topics.WeightsRaw, new WeightMeasurement
                            {
                                SchemaVersion = 1, UserId = user, MeasurementId = $"{user}-{day}", EventTimeUnixMs = T0 + day * 86_400_000L,
                                Value = 60 + u + 0.1 * day, Unit = WeightUnit.Kg, Source = WeightSource.ConnectedScale,
                            }),
                        });
                Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(10)));
            }
            WaitFor(() => a.Streams.Metrics.Processed + b.Streams.Metrics.Processed == 5 * users.Count, Eventually,
                () => $"processed a {a.Streams.Metrics.Processed}, b {b.Streams.Metrics.Processed}");

            // Each host's own Prometheus scrape (its query port, /metrics) counts what it processed, tagged by host.
            using (var scraper = new HttpClient())
            {
                long Processed(Host h, string name)
                {
                    var text = scraper.GetStringAsync(h.Queries.Url + "/metrics").Result;
                    var m = System.Text.RegularExpressions.Regex.Match(text, "streamhealth_stream_processed(?:_total)?\\{[^}]*host=\"" + name + "\"[^}]*\\} (\\d+)");
                    return m.Success ? long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : -1;
                }
                WaitFor(() => Processed(a, "iq-host-a") + Processed(b, "iq-host-b") == 5 * users.Count, Eventually,
                    () => $"scraped processed: a {Processed(a, "iq-host-a")}, b {Processed(b, "iq-host-b")}");
                Assert.Matches("streamhealth_task_lag\\{[^}]*application=\"weights\"", await scraper.GetStringAsync(a.Queries.Url + "/metrics"));
            }

            // What each host's store holds, read in-process: the reference the gateway's answers must equal.
            var expected = users.ToDictionary(u => u, u => InProcess(u, a, b));
            Assert.All(expected.Values, e => Assert.NotNull(e.State));
            Assert.Contains(expected.Values, e => e.Owner == "a");
            Assert.Contains(expected.Values, e => e.Owner == "b");

            await using var gateway = services.Gateway(registryKey);
            using var client = gateway.CreateClient();
            client.DefaultRequestHeaders.Add("X-Api-Key", "dev-key-change-me");
            foreach (var user in users)
                AssertState(expected[user].State!, await GetStateEventuallyAsync(client, user));

            // The open operations view lists the hosts, as read from their /metrics, but not where their (credential-less) query
            // ports are: both hosts, what they processed adding up, and every partition's task on exactly one of them.
            var streamsView = await client.GetStringAsync("/api/v1/streams");
            Assert.DoesNotContain(a.Queries.Url, streamsView);
            var listed = JsonDocument.Parse(streamsView).RootElement.GetProperty("hosts").EnumerateArray().ToList();
            Assert.Equal(["iq-host-a", "iq-host-b"], listed.Select(h => h.GetProperty("hostId").GetString()));
            Assert.Equal(5 * users.Count, listed.Sum(h => h.GetProperty("processed").GetInt64()));
            Assert.Equal(Enumerable.Range(0, partitions), listed.SelectMany(h => h.GetProperty("tasks").EnumerateArray())
                .Select(t => t.GetProperty("partition").GetInt32()).Order());

            using (var unknown = await client.GetAsync("/api/weight/iq-nobody-here/state"))
            {
                Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
                Assert.Contains("iq-nobody-here", await unknown.Content.ReadAsStringAsync());
            }
            using (var bad = await client.GetAsync("/api/weight/bad%01user/state"))
                Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);

            // Host b leaves: a takes its partitions, restores them from the changelog, and answers for every user.
            await b.DisposeAsync();
            b = null;
            WaitFor(() => a.Streams.Metrics.ActiveTasks == partitions, Eventually, () => $"a owns {a.Streams.DescribeThreads()}");
            foreach (var user in users)
                AssertState(expected[user].State!, await GetStateEventuallyAsync(client, user));

            // No host left: the gateway says so, with Retry-After, rather than failing or answering 404.
            await a.DisposeAsync();
            a = null;
            using var none = await client.GetAsync($"/api/weight/{users[0]}/state");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, none.StatusCode);
            Assert.Equal("1", none.Headers.RetryAfter?.ToString());
            Assert.Contains("no live processing host", await none.Content.ReadAsStringAsync());
        }
        catch
        {
            logs.Dump("interactive-queries");
            throw;
        }
        finally
        {
            if (b is not null) await b.DisposeAsync();
            if (a is not null) await a.DisposeAsync();
        }
    }

    private static (string Owner, WeightStateView? State) InProcess(string user, Host a, Host b)
    {
        var answers = new List<string>();
        foreach (var (name, host) in new[] { ("a", a), ("b", b) })
        {
            var answer = host.Streams.Query(WeightTopology.ApplicationId, WeightTopology.StateStore, user, TimeSpan.FromSeconds(10));
            if (answer.Status == StoreQueryStatus.Found) return (name, (WeightStateView)answer.View!);
            answers.Add($"{name}: {answer.Status} partition {answer.Partition} {answer.Detail}");
        }
        Assert.Fail($"{user}: no host has its state ({string.Join("; ", answers)}); a {a.Streams.DescribeThreads()}; b {b.Streams.DescribeThreads()}");
        return default;
    }

    /// <summary>A 503 (with Retry-After) is allowed while the store moves; a 404 or another status is not.</summary>
    private static async Task<JsonElement> GetStateEventuallyAsync(HttpClient client, string user)
    {
        var deadline = DateTime.UtcNow + Eventually;
        while (true)
        {
            using var response = await client.GetAsync($"/api/weight/{user}/state");
            var body = await response.Content.ReadAsStringAsync();
            if (response.StatusCode == HttpStatusCode.OK) return JsonDocument.Parse(body).RootElement.Clone();
            Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable, $"{user}: {(int)response.StatusCode} {body}");
            Assert.Equal("1", response.Headers.RetryAfter?.ToString());
            if (DateTime.UtcNow > deadline) Assert.Fail($"{user}: still 503 after {Eventually}: {body}");
            await Task.Delay(200);
        }
    }

    private static void AssertState(WeightStateView expected, JsonElement actual)
    {
        Assert.Equal(expected.UserId, actual.GetProperty("user_id").GetString());
        Assert.True(expected.Initialized, $"{expected.UserId} not initialised after five weigh-ins");
        Assert.True(actual.GetProperty("initialized").GetBoolean());
        Assert.Equal(expected.WeightKg!.Value, actual.GetProperty("weight_kg").GetDouble(), 9);
        Assert.Equal(expected.TrendKgPerWeek!.Value, actual.GetProperty("trend_kg_per_week").GetDouble(), 9);
        Assert.Equal(expected.UpdateCount, actual.GetProperty("update_count").GetInt32());
        Assert.Equal(expected.AppliedOffset, actual.GetProperty("applied_offset").GetInt64());
        Assert.Equal(expected.LastEventTime, actual.GetProperty("last_event_time").GetDateTime().ToUniversalTime());
    }
}
