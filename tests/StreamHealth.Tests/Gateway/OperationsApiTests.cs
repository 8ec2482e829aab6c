using System.Net;
using System.Text.Json;
using Confluent.Kafka;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Streams.Reference;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway;

/// <summary>/health, /api/v1/streams and /api/v1/topics over the real embedded Kafka, PostgreSQL and Redis: they
/// answer many concurrent callers without a 5xx, and a stalled sink or stream task that a host's /metrics shows makes /health
/// "degraded" (503) naming it, its lag and its last error, until it advances again. Each test registers its hosts in a
/// registry of its own (<see cref="GatewayServices"/>) so a stall it injects is never seen by another test's gateway.</summary>
public sealed class OperationsApiTests(GatewayServices services) : IClassFixture<GatewayServices>
{
    private static readonly TimeSpan Eventually = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Two_hundred_concurrent_callers_of_streams_health_and_topics_get_no_5xx()
    {
        var key = GatewayServices.NewRegistryKey();
        using var host = new StreamHost(new StreamHostOptions { BootstrapServers = services.Kafka.BootstrapServers, StateDirectory = Path.GetTempPath() }, []);
        // Five hosts of one process, as `up` runs them: one endpoint, told apart by the host label.
        await using var endpoint = await StoreQueryServer.StartAsync([host], "http://127.0.0.1:0", null, new TestLogs());
        var reporters = Enumerable.Range(0, 5).Select(i => new StreamMetricsReporter($"load-host-{i}", ["load-app"], host, new TestLogs().CreateLogger("test"),
            services.Redis.GetDatabase(), TimeSpan.FromMinutes(1), registryKey: key, url: endpoint.Url)).ToList();
        try
        {
            foreach (var r in reporters) r.Report();
            await using var app = services.Gateway(key);
            using var client = app.CreateClient();
            var paths = new[] { "/api/v1/streams", "/health", "/api/v1/topics" };
            var responses = await Task.WhenAll(Enumerable.Range(0, 600).Select(async i =>
            {
                var path = paths[i % paths.Length];
                using var response = await client.GetAsync(path);
                return (Path: path, response.StatusCode, Body: await response.Content.ReadAsStringAsync());
            }));

            var failures = responses.Where(r => (int)r.StatusCode >= 500).ToList();
            Assert.True(failures.Count == 0,
                $"{failures.Count} of {responses.Length} answered 5xx, e.g. {failures.FirstOrDefault().Path} {failures.FirstOrDefault().StatusCode}: {failures.FirstOrDefault().Body}");
            foreach (var streams in responses.Where(r => r.Path == "/api/v1/streams"))
            {
                var hosts = JsonDocument.Parse(streams.Body).RootElement.GetProperty("hosts").EnumerateArray().Select(h => h.GetProperty("hostId").GetString());
                Assert.Equal(Enumerable.Range(0, 5).Select(i => $"load-host-{i}"), hosts);
            }
            Assert.All(responses.Where(r => r.Path == "/health"), r => Assert.Contains("\"status\":\"healthy\"", r.Body));
        }
        finally
        {
            foreach (var r in reporters) r.Dispose();
        }
    }

    [Fact]
    public async Task A_published_stalled_sink_makes_health_degraded_naming_it_its_lag_and_error_until_it_advances()
    {
        var key = GatewayServices.NewRegistryKey();
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        const string error = "22021: invalid byte sequence for encoding \"UTF8\": 0x00";
        var sink = new SinkHealth("weights-postgres", "weights.filtered", "weights-postgres-sink", Lag: 42, Written: 10, DeadLettered: 0,
            Paused: true, LastProgressUnixMs: now - 60_000, LastError: error, LastErrorUnixMs: now - 1_000, Stalled: true);
        using var host = new StreamHost(new StreamHostOptions { BootstrapServers = services.Kafka.BootstrapServers, StateDirectory = Path.GetTempPath() }, []);
        await using var endpoint = await StoreQueryServer.StartAsync([host], "http://127.0.0.1:0", null, new TestLogs());
        using var reporter = new StreamMetricsReporter("sink-host", ["weights"], host, new TestLogs().CreateLogger("test"), services.Redis.GetDatabase(),
            TimeSpan.FromMinutes(1), () => [sink], key, endpoint.Url);
        reporter.Report();
        await using var app = services.Gateway(key);
        using var client = app.CreateClient();

        var health = await PollAsync(client, "/health", r => r.StatusCode == HttpStatusCode.ServiceUnavailable);
        Assert.Equal("degraded", health.Body.GetProperty("status").GetString());
        Assert.True(health.Body.GetProperty("kafka").GetProperty("ok").GetBoolean(), "the dependencies themselves are up");
        var stalled = Assert.Single(health.Body.GetProperty("stalled").EnumerateArray());
        AssertNamesTheSink(stalled, error);

        var streams = (await PollAsync(client, "/api/v1/streams", r => r.StatusCode == HttpStatusCode.OK)).Body;
        Assert.Equal("degraded", streams.GetProperty("status").GetString());
        AssertNamesTheSink(Assert.Single(streams.GetProperty("stalled").EnumerateArray()), error);
        var published = Assert.Single(Assert.Single(streams.GetProperty("hosts").EnumerateArray()).GetProperty("sinks").EnumerateArray());
        Assert.True(published.GetProperty("stalled").GetBoolean());
        // The gateway itself stays ready and alive: a stalled sink must not take it out of its Service.
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
        // The dashboard shows the same reading: its bundled script reads /api/v1/streams and the event stream and marks
        // stalled rows degraded (tests/StreamHealth.Tests/Dashboard draws them in a browser).
        var page = await client.GetStringAsync("/");
        var script = System.Text.RegularExpressions.Regex.Match(page, "src=\"(/assets/[^\"]+\\.js)\"");
        Assert.True(script.Success, "the dashboard page names no bundled script (run compose/local/setup.sh): " + page);
        var dashboard = await client.GetStringAsync(script.Groups[1].Value);
        Assert.Contains("/api/v1/streams", dashboard);
        Assert.Contains("/api/v1/events/stream", dashboard);
        Assert.Matches(@"\.stalled\s*\?\s*[`""']degraded", dashboard);

        // The sink writes again: healthy as soon as its next figures say so.
        sink = sink with { Lag = 0, Written = 52, Paused = false, LastProgressUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Stalled = false };
        reporter.Report();
        health = await PollAsync(client, "/health", r => r.StatusCode == HttpStatusCode.OK);
        Assert.Equal("healthy", health.Body.GetProperty("status").GetString());
        Assert.Equal(0, health.Body.GetProperty("stalled").GetArrayLength());
        streams = (await PollAsync(client, "/api/v1/streams", r => r.Body.GetProperty("status").GetString() == "healthy")).Body;
        Assert.Equal(0, streams.GetProperty("stalled").GetArrayLength());
    }

    /// <summary>A host whose heartbeat stops without it deregistering (killed, hung, or unable to reach Redis) is a stall nobody
    /// would otherwise see: /health is degraded naming the host until it beats again, and so is a live host whose /metrics does not
    /// answer; an entry silent for longer than the retention is forgotten (deleted), like one of a host long gone. Hosts are found
    /// through the registry and read from their /metrics only: no private report is written anywhere.</summary>
    [Fact]
    public async Task Streams_lists_live_hosts_from_their_metrics_and_names_a_silent_host_until_it_beats_again()
    {
        var key = GatewayServices.NewRegistryKey();
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var db = services.Redis.GetDatabase();
        using var host = new StreamHost(new StreamHostOptions { BootstrapServers = services.Kafka.BootstrapServers, StateDirectory = Path.GetTempPath() }, []);
        await using var endpoint = await StoreQueryServer.StartAsync([host], "http://127.0.0.1:0", null, new TestLogs());
        using var first = new StreamMetricsReporter("live-host-1", ["weights"], host, new TestLogs().CreateLogger("test"), db, TimeSpan.FromMinutes(1),
            registryKey: key, url: endpoint.Url);
        using var second = new StreamMetricsReporter("live-host-2", ["cgm"], host, new TestLogs().CreateLogger("test"), db, TimeSpan.FromMinutes(1),
            registryKey: key, url: endpoint.Url);
        first.Report();
        second.Report();
        // Silent for 20 s (past three intervals and the 10 s floor), one silent for longer than the retention, one that beats
        // but whose endpoint does not answer, and one whose URL is no URL.
        StreamHostRegistry.Heartbeat(db, key, new HostRegistration("crashed-host", "http://127.0.0.1:9", now - 20_000, 1_000));
        StreamHostRegistry.Heartbeat(db, key, new HostRegistration("long-gone", "http://127.0.0.1:9", now - HostRegistration.SilentHostRetentionMs - 60_000, 1_000));
        StreamHostRegistry.Heartbeat(db, key, new HostRegistration("deaf-host", "http://127.0.0.1:9", now + 60_000, 1_000));
        StreamHostRegistry.Heartbeat(db, key, new HostRegistration("bad-url-host", "not a url", now + 60_000, 1_000));
        await using var app = services.Gateway(key);
        using var client = app.CreateClient();

        var streams = (await PollAsync(client, "/api/v1/streams", r => r.StatusCode == HttpStatusCode.OK && r.Body.GetProperty("stalled").GetArrayLength() == 3)).Body;
        Assert.Equal("degraded", streams.GetProperty("status").GetString());
        var hosts = streams.GetProperty("hosts").EnumerateArray().ToList();
        Assert.Equal(["live-host-1", "live-host-2"], hosts.Select(h => h.GetProperty("hostId").GetString()));
        Assert.Equal(["weights"], hosts[0].GetProperty("topologies").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal(["cgm"], hosts[1].GetProperty("topologies").EnumerateArray().Select(t => t.GetString()));
        Assert.All(hosts, h => Assert.Equal(JsonValueKind.Null, h.GetProperty("queryUrl").ValueKind));
        var stalled = streams.GetProperty("stalled").EnumerateArray().OrderBy(s => s.GetProperty("name").GetString()).ToList();
        Assert.All(stalled, s => Assert.Equal("host", s.GetProperty("kind").GetString()));
        Assert.Equal(["bad-url-host", "crashed-host", "deaf-host"], stalled.Select(s => s.GetProperty("name").GetString()));
        Assert.Contains("metrics cannot be read", stalled[0].GetProperty("summary").GetString());
        Assert.Contains("has not reported for", stalled[1].GetProperty("summary").GetString());
        Assert.Contains("metrics cannot be read", stalled[2].GetProperty("summary").GetString());
        var health = await PollAsync(client, "/health", r => r.StatusCode == HttpStatusCode.ServiceUnavailable);
        Assert.Equal(3, health.Body.GetProperty("stalled").GetArrayLength());
        Assert.False(await db.HashExistsAsync(key, "long-gone"), "an entry silent past the retention is deleted");
        // The registry is discovery only: where a host is and when it last beat, no figures.
        var entry = JsonDocument.Parse((string)(await db.HashGetAsync(key, "live-host-1"))!).RootElement;
        Assert.Equal(["hostId", "url", "heartbeatUnixMs", "intervalMs"], entry.EnumerateObject().Select(p => p.Name));
        Assert.False(await db.KeyExistsAsync("streamhealth:streams"), "the private JSON report of the hosts is gone");

        // The silent host beats again (here: its endpoint is the live one) and the deaf one leaves: healthy.
        StreamHostRegistry.Deregister(db, key, "deaf-host");
        StreamHostRegistry.Deregister(db, key, "bad-url-host");
        using var back = new StreamMetricsReporter("crashed-host", ["weights"], host, new TestLogs().CreateLogger("test"), db, TimeSpan.FromMinutes(1),
            registryKey: key, url: endpoint.Url);
        back.Report();
        health = await PollAsync(client, "/health", r => r.StatusCode == HttpStatusCode.OK);
        Assert.Equal(0, health.Body.GetProperty("stalled").GetArrayLength());
        streams = (await PollAsync(client, "/api/v1/streams", r => r.Body.GetProperty("hosts").GetArrayLength() == 3)).Body;
        Assert.Equal("healthy", streams.GetProperty("status").GetString());
    }

    [Fact]
    public async Task A_host_whose_endpoint_stops_answering_keeps_its_last_figures_for_its_heartbeat_window_then_is_reported()
    {
        var key = GatewayServices.NewRegistryKey();
        var db = services.Redis.GetDatabase();
        using var host = new StreamHost(new StreamHostOptions { BootstrapServers = services.Kafka.BootstrapServers, StateDirectory = Path.GetTempPath() }, []);
        var endpoint = await StoreQueryServer.StartAsync([host], "http://127.0.0.1:0", null, new TestLogs());
        using var reporter = new StreamMetricsReporter("slow-host", ["weights"], host, new TestLogs().CreateLogger("test"), db, TimeSpan.FromMinutes(1),
            registryKey: key, url: endpoint.Url);
        reporter.Report();
        // It keeps beating (every second, the latest beat in the future) while its endpoint goes away: the window is the 10 s floor.
        StreamHostRegistry.Heartbeat(db, key, new HostRegistration("slow-host", endpoint.Url, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 120_000, 1_000));
        await using var app = services.Gateway(key);
        using var client = app.CreateClient();
        await PollAsync(client, "/api/v1/streams", r => r.StatusCode == HttpStatusCode.OK && r.Body.GetProperty("hosts").GetArrayLength() == 1);

        // A scrape that misses (here: nothing listens any more) is not an outage yet: the host is shown as last read.
        await endpoint.DisposeAsync();
        var lostAt = DateTime.UtcNow;
        await Task.Delay(2_500);
        var soon = (await PollAsync(client, "/api/v1/streams", r => r.StatusCode == HttpStatusCode.OK)).Body;
        if (DateTime.UtcNow - lostAt < TimeSpan.FromSeconds(8))
        {
            Assert.Equal(["slow-host"], soon.GetProperty("hosts").EnumerateArray().Select(h => h.GetProperty("hostId").GetString()));
            Assert.Equal(0, soon.GetProperty("stalled").GetArrayLength());
        }
        // Unreadable for longer than its heartbeat window: reported, naming why.
        var late = (await PollAsync(client, "/api/v1/streams", r => r.Body.GetProperty("stalled").GetArrayLength() == 1)).Body;
        Assert.Equal(0, late.GetProperty("hosts").GetArrayLength());
        Assert.Contains("metrics cannot be read", late.GetProperty("stalled")[0].GetProperty("summary").GetString());
        // The last good read came at most one read interval (a second) before the loss: never reported before ~9 s.
        Assert.True(DateTime.UtcNow - lostAt >= TimeSpan.FromSeconds(8), "reported before its window ended");
    }

    [Fact]
    public async Task A_stream_task_whose_commits_keep_failing_is_reported_stalled_with_its_error_and_clears_when_it_commits()
    {
        var key = GatewayServices.NewRegistryKey();
        var source = services.Kafka.NewTopic("stall", 1);
        var appId = source + "-app";
        services.Kafka.Cluster.CreateTopic(KeySumTopology.OutputTopic(source), 1);
        services.Kafka.Cluster.CreateTopic(source + ".dlq", 1);
        var flush = new FlakyFlush();
        var topology = KeySumTopology.Create(source, appId, new StoreFaults { FailFlush = () => flush.Failing });
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-stall-").FullName;
        var stallLogs = new TestLogs();
        try
        {
            using var host = new StreamHost(new StreamHostOptions
            {
                BootstrapServers = services.Kafka.BootstrapServers, StateDirectory = stateDir, CommitIntervalMs = 200, StallAfterMs = 1_500,
                CreateInternalTopic = (topic, partitions) => services.Kafka.Cluster.CreateTopic(topic, partitions),
            }, [topology], stallLogs);
            host.Start();
            WaitFor(() => host.Metrics.ActiveTasks == 1, Eventually, () => "task not assigned");
            Produce(source, 5);
            WaitFor(() => host.Metrics.Processed == 5, Eventually, () => $"processed {host.Metrics.Processed}");
            await using var endpoint = await StoreQueryServer.StartAsync([host], "http://127.0.0.1:0", null, new TestLogs());
            using var reporter = new StreamMetricsReporter("stall-host", [appId], host, new TestLogs().CreateLogger("test"), services.Redis.GetDatabase(),
                TimeSpan.FromMilliseconds(200), registryKey: key, url: endpoint.Url);
            await using var app = services.Gateway(key);
            using var client = app.CreateClient();
            Assert.Equal(HttpStatusCode.OK, (await PollAsync(client, "/health", r => r.StatusCode == HttpStatusCode.OK)).StatusCode);

            // Its state can no longer be committed: the stream fails, is restarted, fails again, and its input waits.
            flush.Failing = true;
            Produce(source, 5);
            WaitFor(() => host.ThreadRestarts > 0, Eventually, () => $"the stream was not restarted: {host.DescribeThreads()}");
            Produce(source, 15);
            // (A restart loop on two loaded cores can make the gateway's Kafka probe time out for a moment: "unhealthy"
            // is then the honest answer, so wait for the stalled task rather than for the first 503.)
            var health = await PollAsync(client, "/health", r => r.Body.GetProperty("status").GetString() == "degraded");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
            var stalled = Assert.Single(health.Body.GetProperty("stalled").EnumerateArray());
            Assert.Equal("task", stalled.GetProperty("kind").GetString());
            Assert.Equal($"{appId}/0-0", stalled.GetProperty("name").GetString());
            Assert.Equal("stall-host", stalled.GetProperty("host").GetString());
            Assert.True(stalled.GetProperty("lag").GetInt64() > 0, stalled.ToString());
            Assert.Contains("disk says no", stalled.GetProperty("lastError").GetString());
            var streams = (await PollAsync(client, "/api/v1/streams", r => r.Body.GetProperty("status").GetString() == "degraded")).Body;
            Assert.Equal($"{appId}/0-0", Assert.Single(streams.GetProperty("stalled").EnumerateArray()).GetProperty("name").GetString());

            // The commit succeeds again: the task catches up and is healthy again.
            flush.Failing = false;
            health = await PollAsync(client, "/health", r => r.StatusCode == HttpStatusCode.OK);
            Assert.Equal("healthy", health.Body.GetProperty("status").GetString());
            WaitFor(() => KeySumTopology.TryQuery(host, appId, "k0", out var k0) && k0 == 9, Eventually, () => $"processed {host.Metrics.Processed}");
        }
        catch
        {
            stallLogs.Dump("stall");
            throw;
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static void AssertNamesTheSink(JsonElement stalled, string error)
    {
        Assert.Equal("sink", stalled.GetProperty("kind").GetString());
        Assert.Equal("weights-postgres", stalled.GetProperty("name").GetString());
        Assert.Equal("sink-host", stalled.GetProperty("host").GetString());
        Assert.Equal(42, stalled.GetProperty("lag").GetInt64());
        Assert.Equal(error, stalled.GetProperty("lastError").GetString());
        Assert.Contains("weights-postgres", stalled.GetProperty("summary").GetString());
    }

    private void Produce(string topic, int count)
    {
        using var p = new ProducerBuilder<string, long>(new ProducerConfig { BootstrapServers = services.Kafka.BootstrapServers })
            .SetValueSerializer(BigEndianInt64.Instance).Build();
        for (var i = 0; i < count; i++) p.Produce(topic, new Message<string, long> { Key = $"k{i % 3}", Value = 1 });
        Assert.Equal(0, p.Flush(TimeSpan.FromSeconds(10)));
    }

    private static async Task<(HttpStatusCode StatusCode, JsonElement Body)> PollAsync(HttpClient client, string path,
        Func<(HttpStatusCode StatusCode, JsonElement Body), bool> until)
    {
        var deadline = DateTime.UtcNow + Eventually;
        while (true)
        {
            using var response = await client.GetAsync(path);
            var answer = (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
            if (until(answer)) return answer;
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out waiting on {path}; last answer {(int)answer.StatusCode}: {answer.Item2}");
            await Task.Delay(200);
        }
    }

    private sealed class FlakyFlush
    {
        public volatile bool Failing;
    }
}
