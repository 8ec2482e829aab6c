using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace StreamHealth.Runtime.Streams;

/// <summary>The processing host's side of interactive queries across processes, as Kafka Streams applications do it
/// (Streamiz has no <c>application.server</c>/<c>queryMetadataForKey</c>, so routing is ours): each host serves
/// <c>GET /stores/{applicationId}/{store}?key=</c> for the stores its topologies declare (<see cref="StoreQuery"/>) and
/// publishes its URL, those stores and the partitions it owns in its metrics report; the gateway hashes the key to its
/// partition (<see cref="KeyPartitioner"/>) and asks the owner. Answers: 200 the view; 404 the key has no state; 421 this
/// host does not own the key's partition (the caller's routing is stale: it asks another host); 503 with Retry-After
/// while the store is restored or rebalanced for longer than <c>wait_ms</c>. Internal: no credentials, so it listens on
/// the pod network only (k8s NetworkPolicy lets only the gateway in).</summary>
public static class StoreQueryApi
{
    public const int MaxWaitMs = 10_000;

    public static void MapStoreQueryApi(this IEndpointRouteBuilder app, IReadOnlyList<StreamHost> hosts) =>
        // The key travels in the query string, not the path: a key such as ".." would be a dot segment there, which clients
        // and servers normalise away.
        app.MapGet("/stores/{applicationId}/{store}", (string applicationId, string store, string? key, int? wait_ms, HttpContext http) =>
        {
            if (string.IsNullOrEmpty(key)) return Results.Problem("the query parameter 'key' is required", statusCode: StatusCodes.Status400BadRequest);
            var wait = TimeSpan.FromMilliseconds(Math.Clamp(wait_ms ?? 2_000, 0, MaxWaitMs));
            // Reading a store blocks (Streamiz's API is synchronous, and it waits out a restore): a thread-pool thread per
            // query for at most wait_ms. The host that runs the topology answers; the others say they serve no such store.
            var answer = new StoreQueryAnswer(StoreQueryStatus.NoSuchStore, null, -1, "this process runs no topology");
            foreach (var host in hosts)
            {
                answer = host.Query(applicationId, store, key, wait);
                if (answer.Status != StoreQueryStatus.NoSuchStore) break;
            }
            http.Response.Headers["StreamHealth-Partition"] = answer.Partition.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return answer.Status switch
            {
                StoreQueryStatus.Found => Results.Json(answer.View, options: null, contentType: null, statusCode: null),
                StoreQueryStatus.NotFound => Results.Problem($"no state for key '{key}' in {store} of {applicationId}", statusCode: StatusCodes.Status404NotFound),
                StoreQueryStatus.Unavailable => RetryLater(http, answer.Detail!),
                _ => Results.Problem(answer.Detail, statusCode: StatusCodes.Status421MisdirectedRequest),
            };
        });

    private static IResult RetryLater(HttpContext http, string detail)
    {
        http.Response.Headers.RetryAfter = "1";
        return Results.Problem(detail, statusCode: StatusCodes.Status503ServiceUnavailable);
    }
}

/// <summary>The processing host's server for <see cref="StoreQueryApi"/>, over its stream hosts.</summary>
public sealed class StoreQueryServer : IAsyncDisposable
{
    private readonly Http.InternalHttpServer _server;

    /// <summary>The URL other processes reach this server at (registered for discovery: <see cref="StreamHostRegistry"/>).</summary>
    public string Url { get; }

    private StoreQueryServer(Http.InternalHttpServer server, string url)
    {
        _server = server;
        Url = url;
    }

    /// <param name="listenUrl">Where to listen, e.g. <c>http://0.0.0.0:7071</c>; port 0 takes a free one.</param>
    /// <param name="advertisedUrl">The URL to publish (a pod's address); null: the address bound.</param>
    /// <param name="meters">More meters to export beside the stream hosts' (e.g. the forecaster's in `up`).</param>
    public static async Task<StoreQueryServer> StartAsync(IReadOnlyList<StreamHost> hosts, string listenUrl, string? advertisedUrl, ILoggerFactory logs,
        params string[] meters)
    {
        var server = await Http.InternalHttpServer.StartAsync(listenUrl, app =>
        {
            app.MapStoreQueryApi(hosts);
            app.MapPrometheusScrapingEndpoint("/metrics");
        }, services: services => AddProcessorTelemetry(services, meters));
        var url = string.IsNullOrEmpty(advertisedUrl) ? server.Url : advertisedUrl.TrimEnd('/');
        logs.CreateLogger("StreamHealth.Streams.Queries").LogInformation("interactive queries served on {Bound}, advertised as {Url}", server.Url, url);
        return new StoreQueryServer(server, url);
    }

    /// <summary>A /metrics endpoint alone, for a process that serves no store (the forecaster): <see cref="AddProcessorTelemetry"/>.</summary>
    public static Task<Http.InternalHttpServer> StartMetricsAsync(string listenUrl, params string[] meters) =>
        Http.InternalHttpServer.StartAsync(listenUrl, app => app.MapPrometheusScrapingEndpoint("/metrics"),
            services: services => AddProcessorTelemetry(services, meters));

    /// <summary>What every processors endpoint exports (a stream host's port, the forecaster's): the stream and sink figures
    /// (<see cref="StreamTelemetry"/>, Kafka clients' statistics included), <paramref name="meters"/>, and the .NET runtime's, for
    /// the Prometheus scrape (/metrics). With OTEL_EXPORTER_OTLP_ENDPOINT set (the gateway's convention) the topologies' and sinks'
    /// spans (StreamTracing) and the metrics also go to that collector; without it no span is recorded at all, so the
    /// per-record paths stay as cheap as untraced ones.</summary>
    public static void AddProcessorTelemetry(IServiceCollection services, params string[] meters)
    {
        StreamTelemetry.EnsureInstruments();
        var otel = services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("streamhealth-processors"))
            .WithMetrics(m => m.AddRuntimeInstrumentation().AddMeter([StreamTelemetry.MeterName, .. meters]).AddPrometheusExporter());
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT"))) return;
        otel.WithTracing(t => t.AddSource(Observability.StreamTracing.StreamsSourceName, Observability.StreamTracing.SinksSourceName))
            .UseOtlpExporter();
    }

    public ValueTask DisposeAsync() => _server.DisposeAsync();
}
