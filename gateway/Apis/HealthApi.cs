using StreamHealth.Gateway.Identity;
namespace StreamHealth.Gateway.Apis;

/// <summary>GET /health: whether Kafka, PostgreSQL and Redis answer (each probe's latency and time), and whether every
/// published stream task and sink advances. "unhealthy" (503) names the part that is down; "degraded" (503) names
/// each task or sink that has input waiting and has not advanced for Streams:StallAfterMs, with its lag and last
/// error; "healthy" (200) otherwise. Served from <see cref="OperationsMonitor"/>'s background readings: a request
/// does no I/O.</summary>
public static class HealthApi
{
    /// <summary>The gateway's in-process forecaster (plots). Not part of <c>Status</c>: without a model everything
    /// else still works, and the plot endpoints answer 503 with <see cref="Problem"/>.</summary>
    public sealed record ForecastHealth(bool Ready, string? ModelVersion, string? Problem, int CacheEntries, long Computed,
        int QueuedInteractive, int QueuedBackground);

    public sealed record HealthReport(string Status, Probe Kafka, Probe Postgres, Probe Redis, IReadOnlyList<StalledPart> Stalled,
        ForecastHealth? Forecast = null);

    public sealed record Readiness(string Status, Probe Kafka, Probe Postgres, Probe Redis);

    public sealed record Liveness(string Status);

    public static void MapHealthApi(this IEndpointRouteBuilder app)
    {
        // Probes are exempt from the rate limits: an orchestrator or a monitor must see the gateway's health most of all
        // when traffic has used up a limit, and a probe does no I/O (it reads the background readings).
        var probes = app.MapGroup("").DisableRateLimiting();
        probes.MapGet("/health", GetHealth).WithName("Health")
            .Produces<HealthReport>()
            .Produces<HealthReport>(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Public);
        // For orchestrator probes. A stalled sink is the processors' problem: were readiness /health, one stall would
        // take every gateway replica out of its Service (and liveness would restart them), stopping ingest as well.
        probes.MapGet("/health/ready", GetReadiness).WithName("HealthReady")
            .Produces<Readiness>()
            .Produces<Readiness>(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Public);
        probes.MapGet("/health/live", () => TypedResults.Ok(new Liveness("alive"))).WithName("HealthLive").RequireAccess(Access.Public);
    }

    /// <summary>200 while Kafka, PostgreSQL and Redis answer (whatever the pipelines' progress), else 503.</summary>
    private static IResult GetReadiness(OperationsMonitor monitor)
    {
        var ready = new Readiness("", monitor.Kafka, monitor.Postgres, monitor.Redis);
        var ok = ready.Kafka.Ok && ready.Postgres.Ok && ready.Redis.Ok;
        ready = ready with { Status = ok ? "ready" : "unhealthy" };
        return ok ? TypedResults.Ok(ready) : TypedResults.Json(ready, statusCode: StatusCodes.Status503ServiceUnavailable);
    }

    private static IResult GetHealth(OperationsMonitor monitor, Cgm.ForecastEngine forecasts)
    {
        var problem = forecasts.Problem();
        var forecast = new ForecastHealth(problem is null, problem is null ? forecasts.ModelVersion : null, problem, forecasts.CacheEntries,
            forecasts.Computed, forecasts.QueuedInteractive, forecasts.QueuedBackground);
        var streams = monitor.Streams;
        // Stalls published before Redis went away are not repeated as current: Redis down is reported instead.
        IReadOnlyList<StalledPart> stalled = OperationsMonitor.IsFresh(streams.ReadAtUnixMs) ? streams.Stalled : [];
        var report = new HealthReport("", monitor.Kafka, monitor.Postgres, monitor.Redis, stalled, forecast);
        var status = !(report.Kafka.Ok && report.Postgres.Ok && report.Redis.Ok) ? "unhealthy" : stalled.Count > 0 ? "degraded" : "healthy";
        report = report with { Status = status };
        return status == "healthy" ? TypedResults.Ok(report) : TypedResults.Json(report, statusCode: StatusCodes.Status503ServiceUnavailable);
    }
}
