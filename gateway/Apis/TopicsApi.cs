using Confluent.Kafka;
using StreamHealth.Schemas;

namespace StreamHealth.Gateway.Apis;

/// <summary>GET /api/v1/topics: every catalogue topic with its record count (sum of high − low
/// watermarks), for the dashboard and for data engineers deciding what to replay.</summary>
public static class TopicsApi
{
    public sealed record TopicInfo(string Name, string? ValueSchema, int Partitions, long Records, long EndOffsetSum);

    public static void MapTopicsApi(this IEndpointRouteBuilder app) =>
        app.MapGet("/api/v1/topics", GetTopics).WithName("Topics")
            .Produces<List<TopicInfo>>()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

    private static IResult GetTopics(KafkaClients kafka)
    {
        if (!kafka.Configured)
            return TypedResults.Problem("Kafka:BootstrapServers is not set", statusCode: StatusCodes.Status503ServiceUnavailable);
        var metadata = kafka.Admin.GetMetadata(TimeSpan.FromSeconds(3));
        var byName = metadata.Topics.ToDictionary(t => t.Topic);
        var result = new List<TopicInfo>(Topics.All.Count);
        foreach (var spec in Topics.All)
        {
            if (!byName.TryGetValue(spec.Name, out var topic)) continue;
            long records = 0, end = 0;
            foreach (var p in topic.Partitions)
            {
                var marks = kafka.WatermarkReader.QueryWatermarkOffsets(new TopicPartition(spec.Name, p.PartitionId), TimeSpan.FromSeconds(3));
                records += marks.High.Value - marks.Low.Value;
                end += marks.High.Value;
            }
            result.Add(new TopicInfo(spec.Name, spec.Value?.FullName, topic.Partitions.Count, records, end));
        }
        return TypedResults.Ok(result);
    }
}
