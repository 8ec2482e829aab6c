using System.Diagnostics;
using Confluent.Kafka;
using StreamHealth.Forecast.Service;
using CgmForecastRequest = StreamHealth.Schemas.Avro.Cgm.CgmForecastRequest;

namespace StreamHealth.Tests.Forecast;

public sealed class ForecastQueueTests
{
    private static QueuedRequest Q(string id, bool interactive, int partition = 0, long offset = 0, long arrived = 0) =>
        new(new CgmForecastRequest { request_id = id, interactive = interactive },
            new ConsumeResult<byte[]?, byte[]?> { Topic = "requests", Partition = new Partition(partition), Offset = new Offset(offset), Message = new Message<byte[]?, byte[]?>() },
            arrived == 0 ? Stopwatch.GetTimestamp() : arrived);

    [Fact]
    public void Interactive_requests_leave_before_background_ones_each_lane_in_arrival_order()
    {
        var queue = new ForecastQueue();
        foreach (var r in new[] { Q("b1", false), Q("b2", false), Q("i1", true), Q("b3", false), Q("i2", true) }) queue.Enqueue(r);
        var batch = new List<QueuedRequest>();
        queue.TakeBatch(3, batch);
        Assert.Equal(["i1", "i2", "b1"], batch.Select(b => b.Request.request_id));
        batch.Clear();
        queue.TakeBatch(3, batch);
        Assert.Equal(["b2", "b3"], batch.Select(b => b.Request.request_id));
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public void Queued_requests_hold_their_partitions_commit_back_and_leave_with_a_revoked_partition()
    {
        var queue = new ForecastQueue();
        queue.Enqueue(Q("a", false, partition: 0, offset: 12));
        queue.Enqueue(Q("b", true, partition: 0, offset: 15));
        queue.Enqueue(Q("c", false, partition: 1, offset: 40));
        var frontier = new Dictionary<int, long> { [0] = 20, [1] = 41, [2] = 7 };
        queue.LowerFrontier(frontier);
        Assert.Equal(new Dictionary<int, long> { [0] = 12, [1] = 40, [2] = 7 }, frontier);
        queue.Drop(new HashSet<int> { 0 });
        Assert.Equal(1, queue.Count);
    }

    [Fact]
    public void A_batch_is_due_when_its_oldest_request_has_waited_max_wait()
    {
        var queue = new ForecastQueue();
        Assert.Equal(TimeSpan.FromMilliseconds(10), queue.TimeUntilDue(TimeSpan.FromMilliseconds(10)));
        queue.Enqueue(Q("old", false, arrived: Stopwatch.GetTimestamp() - Stopwatch.Frequency));   // a second ago
        queue.Enqueue(Q("new", true));
        Assert.Equal(TimeSpan.Zero, queue.TimeUntilDue(TimeSpan.FromMilliseconds(10)));
    }
}
