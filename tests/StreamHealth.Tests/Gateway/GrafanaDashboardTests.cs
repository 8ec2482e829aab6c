using System.Text.Json;
using System.Text.RegularExpressions;
using StreamHealth.Gateway.Observability;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Streams.Reference;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway;

/// <summary>The Grafana dashboard Grafana provisions (compose/grafana/provisioning/dashboards) asks only for series that exist:
/// every metric name in its PromQL is served by a real gateway's or a real processors host's /metrics after they did some
/// work (requests answered; records processed, a sink reported, Kafka statistics emitted).</summary>
[Collection(SoloCollection.Name)]
public sealed partial class GrafanaDashboardTests(GatewayServices services) : IClassFixture<GatewayServices>
{
    private static readonly string DashboardPath = Path.Combine(Repo.Root, "compose", "grafana", "provisioning", "dashboards", "streamhealth.json");

    [Fact]
    public void Metric_names_are_read_from_each_expression_not_its_functions_labels_or_ranges()
    {
        Assert.Equal(["http_server_request_duration_seconds_bucket"],
            MetricNames("histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{job=\"gateway\", code=~\"5..\"}[$__rate_interval])))"));
        Assert.Equal(["a_total", "b"], MetricNames("sum without (host) (increase(a_total[1h])) / on(group) group_left(topic) max by (group) (b)"));
    }

    [Fact]
    public async Task Every_metric_the_dashboard_queries_is_served_by_the_gateway_or_a_processors_host()
    {
        var dashboard = JsonDocument.Parse(await File.ReadAllTextAsync(DashboardPath)).RootElement;
        var expressions = Expressions(dashboard).ToList();
        Assert.True(expressions.Count >= 10, $"the dashboard has {expressions.Count} queries");
        var wanted = expressions.SelectMany(MetricNames).ToHashSet(StringComparer.Ordinal);
        // The panels the issue asks for: gateway requests and latency, records per topology, consumer lag, sinks, dependencies.
        Assert.Superset(new HashSet<string>
        {
            "http_server_request_duration_seconds_count", "http_server_request_duration_seconds_bucket", StreamTelemetry.Processed,
            KafkaClientMetrics.ConsumedMessages, KafkaClientMetrics.ConsumerLag, StreamTelemetry.SinkLag, StreamTelemetry.SinkDeadLettered,
            "streamhealth_dependency_up",
        }, wanted);

        var source = services.Kafka.NewTopic("dashboard", 2);
        var appId = source + "-app";
        services.Kafka.Cluster.CreateTopic(KeySumTopology.OutputTopic(source), 2);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-dashboard-").FullName;
        var logs = new TestLogs();
        try
        {
            using var host = new StreamHost(new StreamHostOptions
            {
                BootstrapServers = services.Kafka.BootstrapServers, StateDirectory = stateDir, KafkaStatisticsIntervalMs = 500,
                CreateInternalTopic = (topic, partitions) => services.Kafka.Cluster.CreateTopic(topic, partitions),
            }, [KeySumTopology.Create(source, appId)], logs);
            host.Start();
            ProduceAmounts(services.Kafka.BootstrapServers, source, 500, 10, seed: 3, []);
            WaitFor(() => host.Metrics.Processed == 500, TimeSpan.FromSeconds(60), () => $"processed {host.Metrics.Processed}");
            await using var endpoint = await StoreQueryServer.StartAsync([host], "http://127.0.0.1:0", null, logs);
            // A sink beside the topology, as `run` reports its sinks' health with the host's.
            var sink = new SinkHealth("dashboard-sink", KeySumTopology.OutputTopic(source), "dashboard-sink-group", Lag: 0, Written: 500, DeadLettered: 1,
                Paused: false, LastProgressUnixMs: DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), LastError: null, LastErrorUnixMs: 0, Stalled: false);
            var key = GatewayServices.NewRegistryKey();
            using var reporter = new StreamMetricsReporter("dashboard-host", [appId], host, logs.CreateLogger("test"), services.Redis.GetDatabase(),
                TimeSpan.FromSeconds(1), () => [sink], key, endpoint.Url);
            reporter.Report();
            await using var app = services.Gateway(key);
            using var client = app.CreateClient();
            using var scraper = new HttpClient();

            HashSet<string> served = [];
            WaitFor(() =>
            {
                // Requests answered (one of them a 5xx-free /health) make the request histogram appear.
                _ = client.GetAsync("/health").Result;
                served = [.. PrometheusText.Parse(client.GetStringAsync("/metrics").Result, out _).Select(s => s.Name),
                    .. PrometheusText.Parse(scraper.GetStringAsync(endpoint.Url + "/metrics").Result, out _).Select(s => s.Name)];
                return wanted.IsSubsetOf(served);
            }, TimeSpan.FromSeconds(30), () => "not served: " + string.Join(", ", wanted.Except(served)));
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static IEnumerable<string> Expressions(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                    if (property.Name == "expr" && property.Value.ValueKind == JsonValueKind.String) yield return property.Value.GetString()!;
                    else foreach (var e in Expressions(property.Value)) yield return e;
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                    foreach (var e in Expressions(item)) yield return e;
                break;
        }
    }

    /// <summary>The metric names of a PromQL expression: identifiers left once label matchers ({...}), ranges ([...]), strings,
    /// grouping clauses (by/without/on/ignoring/group_left/group_right (...)) and function calls are taken out.</summary>
    private static List<string> MetricNames(string expr)
    {
        var bare = Matchers().Replace(expr, " ");
        bare = Grouping().Replace(bare, " ");
        return [.. Identifier().Matches(bare).Where(m => !m.Groups["call"].Success && !Keywords.Contains(m.Groups["name"].Value))
            .Select(m => m.Groups["name"].Value).Distinct()];
    }

    private static readonly HashSet<string> Keywords = new(StringComparer.Ordinal) { "and", "or", "unless", "bool", "offset" };

    [GeneratedRegex("""\{[^}]*\}|\[[^\]]*\]|"[^"]*"|\b\d+(\.\d+)?\b""")]
    private static partial Regex Matchers();

    [GeneratedRegex(@"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")]
    private static partial Regex Grouping();

    [GeneratedRegex(@"(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?<call>\s*\()?")]
    private static partial Regex Identifier();
}
