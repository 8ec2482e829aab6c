using StreamHealth.Gateway.Identity;
namespace StreamHealth.Gateway.Apis;

/// <summary>GET /api/v1/topics: every catalogue topic with its record count (sum of high − low watermarks), for the
/// dashboard and for data engineers deciding what to replay. Served from <see cref="OperationsMonitor"/>'s background
/// reading (refreshed every second): a request makes no blocking librdkafka call.</summary>
public static class TopicsApi
{
    public sealed record TopicInfo(string Name, string? ValueSchema, int Partitions, long Records, long EndOffsetSum);

    public static void MapTopicsApi(this IEndpointRouteBuilder app) =>
        app.MapGet("/api/v1/topics", GetTopics).WithName("Topics")
            .Produces<List<TopicInfo>>()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Public);

    private static IResult GetTopics(OperationsMonitor monitor)
    {
        var topics = monitor.Topics;
        if (topics.Topics is null || !OperationsMonitor.IsFresh(topics.ReadAtUnixMs))
            return TypedResults.Problem($"topic counts cannot be read from Kafka now ({topics.Error ?? "no reading yet"})",
                statusCode: StatusCodes.Status503ServiceUnavailable);
        return TypedResults.Ok(topics.Topics);
    }
}
