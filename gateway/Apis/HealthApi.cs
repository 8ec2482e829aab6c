using System.Diagnostics;
using Npgsql;
using StackExchange.Redis;

namespace StreamHealth.Gateway.Apis;

/// <summary>GET /health: whether Kafka, PostgreSQL and Redis answer, with each probe's latency.</summary>
public static class HealthApi
{
    public sealed record Probe(bool Ok, double LatencyMs, string Detail);

    /// <summary>The gateway's in-process forecaster (plots). Not part of <c>Status</c>: without a model everything
    /// else still works, and the plot endpoints answer 503 with <see cref="Problem"/>.</summary>
    public sealed record ForecastHealth(bool Ready, string? ModelVersion, string? Problem, int CacheEntries, long Computed,
        int QueuedInteractive, int QueuedBackground);

    public sealed record HealthReport(string Status, Probe Kafka, Probe Postgres, Probe Redis, ForecastHealth? Forecast = null);

    public static void MapHealthApi(this IEndpointRouteBuilder app) =>
        app.MapGet("/health", GetHealthAsync).WithName("Health")
            .Produces<HealthReport>()
            .Produces<HealthReport>(StatusCodes.Status503ServiceUnavailable);

    private static async Task<IResult> GetHealthAsync(KafkaClients kafka, NpgsqlDataSource pg, IConnectionMultiplexer redis,
        Cgm.ForecastEngine forecasts, CancellationToken ct)
    {
        // Admin metadata calls block: run on the pool so the three probes overlap.
        var kafkaProbe = TimeAsync(() => Task.Run(() =>
        {
            if (!kafka.Configured) throw new InvalidOperationException("Kafka:BootstrapServers is not set");
            var md = kafka.Admin.GetMetadata(TimeSpan.FromSeconds(2));
            return $"{md.Brokers.Count} broker(s), {md.Topics.Count} topic(s) at {kafka.BootstrapServers}";
        }, ct));
        var pgProbe = TimeAsync(async () =>
        {
            await using var cmd = pg.CreateCommand("SELECT max(version) FROM public.streamhealth_migrations");
            return $"schema V{await cmd.ExecuteScalarAsync(ct):D4}";
        });
        var redisProbe = TimeAsync(async () => $"ping {(await redis.GetDatabase().PingAsync()).TotalMilliseconds:F1} ms");
        var problem = forecasts.Problem();
        var forecast = new ForecastHealth(problem is null, problem is null ? forecasts.ModelVersion : null, problem, forecasts.CacheEntries,
            forecasts.Computed, forecasts.QueuedInteractive, forecasts.QueuedBackground);
        var report = new HealthReport("", await kafkaProbe, await pgProbe, await redisProbe, forecast);
        var healthy = report.Kafka.Ok && report.Postgres.Ok && report.Redis.Ok;
        report = report with { Status = healthy ? "healthy" : "unhealthy" };
        return healthy ? TypedResults.Ok(report) : TypedResults.Json(report, statusCode: StatusCodes.Status503ServiceUnavailable);
    }

    private static async Task<Probe> TimeAsync(Func<Task<string>> probe)
    {
        var sw = Stopwatch.StartNew();
        try
        {
            var detail = await probe();
            return new Probe(true, sw.Elapsed.TotalMilliseconds, detail);
        }
        catch (Exception e) { return new Probe(false, sw.Elapsed.TotalMilliseconds, e.Message.ReplaceLineEndings(" ")); }
    }
}
