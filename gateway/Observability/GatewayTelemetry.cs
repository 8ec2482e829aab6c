using System.Diagnostics.Metrics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using StreamHealth.Gateway.Apis;
using StreamHealth.Gateway.Identity;
using StreamHealth.Gateway.Insights;

namespace StreamHealth.Gateway.Observability;

/// <summary>OpenTelemetry for the gateway: ASP.NET Core and runtime metrics, the gateway's own meters (the personal-data cache,
/// the pipeline gauges below), a Prometheus scrape endpoint at <c>/metrics</c>, and traces of every request. With
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> set (the standard OpenTelemetry variable), metrics and traces also go to that collector
/// over OTLP; without it nothing is sent anywhere.</summary>
public static class GatewayTelemetry
{
    public const string ServiceName = "streamhealth-gateway";

    public static void Add(WebApplicationBuilder builder)
    {
        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(ServiceName))
            .WithMetrics(m => m
                .AddAspNetCoreInstrumentation()
                .AddRuntimeInstrumentation()
                .AddMeter(PersonalCache.MeterName, PipelineMetrics.MeterName)
                .AddPrometheusExporter())
            .WithTracing(t => t.AddAspNetCoreInstrumentation());
        if (!string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"])) otel.UseOtlpExporter();
        builder.Services.AddSingleton<PipelineMetrics>();
    }

    /// <summary>GET /metrics in the Prometheus text format: open like /health (counts and rates, no one's data); production
    /// keeps it inside the cluster (k8s NetworkPolicy, compose's internal network).</summary>
    public static void Map(WebApplication app)
    {
        // The gauges read the operations monitor when scraped; resolving them here registers them.
        app.Services.GetRequiredService<PipelineMetrics>();
        app.MapPrometheusScrapingEndpoint("/metrics").RequireAccess(Access.Public).ExcludeFromDescription();
    }
}

/// <summary>What /health and /api/v1/streams report, as gauges for Prometheus: the dependencies' probes, and every stream
/// host's and sink's figures from the hosts' metrics reports (the monitor's latest reading; observed only when scraped).</summary>
public sealed class PipelineMetrics : IDisposable
{
    public const string MeterName = "StreamHealth.Gateway.Pipeline";
    private readonly Meter _meter = new(MeterName);

    public PipelineMetrics(OperationsMonitor monitor)
    {
        _meter.CreateObservableGauge("streamhealth.dependency.up", () => new[]
        {
            new Measurement<int>(monitor.Kafka.Ok ? 1 : 0, new KeyValuePair<string, object?>("dependency", "kafka")),
            new Measurement<int>(monitor.Postgres.Ok ? 1 : 0, new KeyValuePair<string, object?>("dependency", "postgres")),
            new Measurement<int>(monitor.Redis.Ok ? 1 : 0, new KeyValuePair<string, object?>("dependency", "redis")),
        }, description: "1 when the gateway's last probe of the dependency succeeded");
        _meter.CreateObservableGauge("streamhealth.stream.records_in", () => Hosts(monitor, h => h.RecordsInPerSecond), unit: "{record}/s",
            description: "records a stream host read per second, over its last report interval");
        _meter.CreateObservableGauge("streamhealth.stream.consumer_lag", () => Hosts(monitor, h => (double)h.ConsumerLag), unit: "{record}",
            description: "records a stream host's tasks have not read yet");
        _meter.CreateObservableCounter("streamhealth.stream.dead_lettered", () => Hosts(monitor, h => (double)h.DeadLettered), unit: "{record}",
            description: "records a stream host dead-lettered since it started");
        _meter.CreateObservableGauge("streamhealth.sink.lag", () => Sinks(monitor, s => s.Lag), unit: "{record}",
            description: "records a sink (or a worker reporting as one) has not written yet");
        _meter.CreateObservableCounter("streamhealth.sink.written", () => Sinks(monitor, s => s.Written), unit: "{record}",
            description: "records a sink wrote since its host started");
        _meter.CreateObservableCounter("streamhealth.sink.dead_lettered", () => Sinks(monitor, s => s.DeadLettered), unit: "{record}",
            description: "records a sink dead-lettered since its host started");
        _meter.CreateObservableGauge("streamhealth.sink.stalled", () => Sinks(monitor, s => s.Stalled ? 1L : 0L),
            description: "1 while a sink's input waits and nothing has advanced for Streams:StallAfterMs");
    }

    private static IEnumerable<Measurement<double>> Hosts(OperationsMonitor monitor, Func<StreamHealth.Runtime.Streams.StreamMetricsReport, double> value) =>
        monitor.Streams.Hosts.Select(h => new Measurement<double>(value(h), new KeyValuePair<string, object?>("host", h.HostId)));

    private static IEnumerable<Measurement<long>> Sinks(OperationsMonitor monitor, Func<StreamHealth.Runtime.Sinks.SinkHealth, long> value) =>
        monitor.Streams.Hosts.SelectMany(h => h.Sinks.Select(s => new Measurement<long>(value(s),
            new KeyValuePair<string, object?>("host", h.HostId), new KeyValuePair<string, object?>("sink", s.Name),
            new KeyValuePair<string, object?>("topic", s.Topic))));

    public void Dispose() => _meter.Dispose();
}
