using System.Text.Json;
using StackExchange.Redis;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Gateway.Apis;

/// <summary>GET /api/v1/streams: the latest metrics of every live processing host (records in/out per
/// second, process latency, consumer lag, restore progress, dead letters), as each host publishes them
/// to Redis (StreamMetricsReporter); a host that stops reporting expires after three intervals.</summary>
public static class StreamsApi
{
    public static void MapStreamsApi(this IEndpointRouteBuilder app) =>
        app.MapGet("/api/v1/streams", GetStreams).WithName("Streams")
            .Produces<List<StreamMetricsReport>>()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

    private static async Task<IResult> GetStreams(IConnectionMultiplexer redis)
    {
        if (!redis.IsConnected)
            return TypedResults.Problem("Redis is not reachable; stream metrics are published there", statusCode: StatusCodes.Status503ServiceUnavailable);
        var reports = new List<StreamMetricsReport>();
        foreach (var endpoint in redis.GetEndPoints())
        {
            var keys = redis.GetServer(endpoint).Keys(pattern: StreamMetricsReporter.RedisKeyPrefix + "*", pageSize: 250).ToArray();
            if (keys.Length == 0) continue;
            var values = await redis.GetDatabase().StringGetAsync(keys);
            foreach (var v in values)
                if (v.HasValue && JsonSerializer.Deserialize<StreamMetricsReport>(v.ToString(), StreamMetricsReport.Json) is { } r)
                    reports.Add(r);
        }
        return TypedResults.Ok(reports.OrderBy(r => r.HostId, StringComparer.Ordinal).ToList());
    }
}
