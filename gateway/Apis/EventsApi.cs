using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using StreamHealth.Gateway.Identity;

namespace StreamHealth.Gateway.Apis;

/// <summary>GET /api/v1/events/stream: the dashboard's live updates as Server-Sent Events. Every
/// <see cref="IntervalMs"/> an event <c>streams</c> carries what GET /api/v1/streams answers (every host, task and sink
/// with lag, rates, dead letters and degraded state), or an event <c>streams-unavailable</c> with why when the
/// reading is too old. Open like /api/v1/streams: it carries no person's data, so an EventSource (which cannot send
/// headers) needs no credentials. Each event is built from <see cref="OperationsMonitor"/>'s background reading,
/// so a connection costs no I/O beyond its own writes.</summary>
public static class EventsApi
{
    public const int IntervalMs = 2000;

    public static void MapEventsApi(this IEndpointRouteBuilder app) =>
        app.MapGet("/api/v1/events/stream", (OperationsMonitor monitor, CancellationToken ct) =>
                TypedResults.ServerSentEvents(PipelineEventsAsync(monitor, ct)))
            .WithName("EventStream")
            // OpenAPI cannot describe an endless text/event-stream's events; README "Gateway" does.
            .ExcludeFromDescription()
            .RequireAccess(Access.Public);

    private static async IAsyncEnumerable<SseItem<object>> PipelineEventsAsync(OperationsMonitor monitor,
        [EnumeratorCancellation] CancellationToken ct)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(IntervalMs));
        do
        {
            yield return StreamsApi.View(monitor, out var unavailable) is { } view
                ? new SseItem<object>(view, "streams") { ReconnectionInterval = TimeSpan.FromMilliseconds(IntervalMs) }
                : new SseItem<object>(new { detail = unavailable }, "streams-unavailable");
        } while (await WaitAsync(timer, ct));
    }

    // A client that goes away ends the stream quietly, not with an exception logged per closed tab.
    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken ct)
    {
        try { return await timer.WaitForNextTickAsync(ct); }
        catch (OperationCanceledException) { return false; }
    }
}
