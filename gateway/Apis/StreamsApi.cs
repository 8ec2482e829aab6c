using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Gateway.Apis;

/// <summary>GET /api/v1/streams: the latest metrics of every live processing host (records in/out per second,
/// process latency, consumer lag, restore progress, dead letters, and the progress of each of its stream tasks and
/// sinks), as each host exports them at its <c>/metrics</c> (<see cref="StreamTelemetry"/>), found through the host registry
/// (<see cref="StreamHostRegistry"/>); a host whose heartbeat stops for three intervals (at least 10 s) is listed in
/// <c>stalled</c> as a silent host until it beats again, for ten minutes at most, and so is a live host whose metrics cannot be
/// read. <c>status</c> is "degraded" and <c>stalled</c> also names each task or sink that has input waiting and has
/// not advanced for Streams:StallAfterMs. Served from <see cref="OperationsMonitor"/>'s background reading (the registry
/// and one scrape per host endpoint a second, for all callers): a request does no I/O.</summary>
public static class StreamsApi
{
    public sealed record StreamsView(string Status, long ReadAtUnixMs, IReadOnlyList<StalledPart> Stalled, IReadOnlyList<StreamMetricsReport> Hosts);

    public static void MapStreamsApi(this IEndpointRouteBuilder app) =>
        app.MapGet("/api/v1/streams", GetStreams).WithName("Streams")
            .Produces<StreamsView>()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Public);

    private static IResult GetStreams(OperationsMonitor monitor) =>
        View(monitor, out var unavailable) is { } view
            ? TypedResults.Ok(view)
            : TypedResults.Problem(unavailable, statusCode: StatusCodes.Status503ServiceUnavailable);

    /// <summary>The open view of the latest reading (this endpoint's and the dashboard's event stream's), or null with
    /// why when the reading is too old to show.</summary>
    public static StreamsView? View(OperationsMonitor monitor, out string unavailable)
    {
        var streams = monitor.Streams;
        unavailable = $"the processing hosts' metrics cannot be read now ({streams.Error ?? "no reading yet"})";
        if (!OperationsMonitor.IsFresh(streams.ReadAtUnixMs)) return null;
        // Hosts' query URLs stay internal: the endpoint is open, and the query port has no credentials of its own.
        return new StreamsView(streams.Stalled.Count > 0 ? "degraded" : "healthy", streams.ReadAtUnixMs, streams.Stalled,
            [.. streams.Hosts.Select(h => h with { QueryUrl = null })]);
    }
}
