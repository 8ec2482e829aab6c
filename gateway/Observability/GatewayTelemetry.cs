using System.Diagnostics.Metrics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using StreamHealth.Gateway.Apis;
using StreamHealth.Gateway.Identity;
using StreamHealth.Gateway.Insights;
using StreamHealth.Runtime.Observability;

namespace StreamHealth.Gateway.Observability;

/// <summary>OpenTelemetry for the gateway: ASP.NET Core and runtime metrics, the gateway's own meters (the personal-data cache,
/// the pipeline gauges below), a Prometheus scrape endpoint at <c>/metrics</c>, and traces of every request and of every record it
/// produces to Kafka. With
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
                .AddMeter(PersonalCache.MeterName, DependencyMetrics.MeterName)
                .AddPrometheusExporter())
            // The request spans, and under them the publish spans whose context every record the gateway produces carries
            // (StreamTracing): the topologies and sinks continue the same trace.
            .WithTracing(t => t.AddAspNetCoreInstrumentation().AddSource(StreamTracing.GatewaySourceName));
        if (!string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"])) otel.UseOtlpExporter();
        builder.Services.AddSingleton<DependencyMetrics>();
    }

    /// <summary>GET /metrics in the Prometheus text format: open like /health (counts and rates, no one's data); production
    /// keeps it inside the cluster (k8s NetworkPolicy, compose's internal network).</summary>
    public static void Map(WebApplication app)
    {
        // The gauges read the operations monitor when scraped; resolving them here registers them.
        app.Services.GetRequiredService<DependencyMetrics>();
        app.MapPrometheusScrapingEndpoint("/metrics").RequireAccess(Access.Public).ExcludeFromDescription();
    }
}

/// <summary>The gateway's probes of its dependencies (what /health reports), as gauges for Prometheus, observed when scraped. The
/// stream hosts' and sinks' figures are each processors host's own, at its /metrics (StreamTelemetry).</summary>
public sealed class DependencyMetrics : IDisposable
{
    public const string MeterName = "StreamHealth.Gateway.Pipeline";
    private readonly Meter _meter = new(MeterName);

    public DependencyMetrics(OperationsMonitor monitor)
    {
        _meter.CreateObservableGauge("streamhealth.dependency.up", () => new[]
        {
            new Measurement<int>(monitor.Kafka.Ok ? 1 : 0, new KeyValuePair<string, object?>("dependency", "kafka")),
            new Measurement<int>(monitor.Postgres.Ok ? 1 : 0, new KeyValuePair<string, object?>("dependency", "postgres")),
            new Measurement<int>(monitor.Redis.Ok ? 1 : 0, new KeyValuePair<string, object?>("dependency", "redis")),
        }, description: "1 when the gateway's last probe of the dependency succeeded");
    }

    public void Dispose() => _meter.Dispose();
}
