using System.Diagnostics;
using Confluent.Kafka;
using CgmForecastRequest = StreamHealth.Schemas.Avro.Cgm.CgmForecastRequest;

namespace StreamHealth.Forecast.Service;

/// <summary>A valid request waiting for a batch: the decoded request, the record it came in (key, position, timestamp
/// — copied to the forecast — and the bytes a dead letter would carry) and when it arrived here (Stopwatch ticks, for MaxWaitMs).</summary>
internal readonly record struct QueuedRequest(CgmForecastRequest Request, ConsumeResult<byte[]?, byte[]?> Record, long ArrivedTicks)
{
    public int Partition => Record.Partition.Value;
    public long Offset => Record.Offset.Value;
}

/// <summary>Requests read but not yet forecast, in two FIFO lanes: interactive requests (a person is looking at the
/// screen) leave before background ones (the CGM topology's periodic requests). Within a lane, arrival order.</summary>
internal sealed class ForecastQueue
{
    private readonly Queue<QueuedRequest> _interactive = new();
    private readonly Queue<QueuedRequest> _background = new();

    public int Count => _interactive.Count + _background.Count;

    public void Enqueue(in QueuedRequest request) => (request.Request.interactive ? _interactive : _background).Enqueue(request);

    /// <summary>Moves up to <paramref name="max"/> requests into <paramref name="batch"/>: interactive first.</summary>
    public void TakeBatch(int max, List<QueuedRequest> batch)
    {
        while (batch.Count < max && _interactive.TryDequeue(out var r)) batch.Add(r);
        while (batch.Count < max && _background.TryDequeue(out var r)) batch.Add(r);
    }

    /// <summary>How long until the longest-waiting request has waited <paramref name="maxWait"/>; zero when it has.</summary>
    public TimeSpan TimeUntilDue(TimeSpan maxWait)
    {
        var oldest = long.MaxValue;
        if (_interactive.TryPeek(out var i)) oldest = i.ArrivedTicks;
        if (_background.TryPeek(out var b)) oldest = Math.Min(oldest, b.ArrivedTicks);
        if (oldest == long.MaxValue) return maxWait;
        var left = maxWait - Stopwatch.GetElapsedTime(oldest);
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    /// <summary>Lowers <paramref name="frontier"/>[partition] to the offset of every queued request: those are not done.</summary>
    public void LowerFrontier(Dictionary<int, long> frontier)
    {
        foreach (var r in _interactive) Lower(frontier, r.Partition, r.Offset);
        foreach (var r in _background) Lower(frontier, r.Partition, r.Offset);
    }

    /// <summary>Forgets the requests of partitions this member no longer owns (their next owner reads them again).</summary>
    public void Drop(IReadOnlySet<int> partitions)
    {
        Drop(_interactive, partitions);
        Drop(_background, partitions);
    }

    internal static void Lower(Dictionary<int, long> frontier, int partition, long offset)
    {
        if (frontier.TryGetValue(partition, out var current) && offset < current) frontier[partition] = offset;
    }

    private static void Drop(Queue<QueuedRequest> queue, IReadOnlySet<int> partitions)
    {
        var keep = queue.Where(r => !partitions.Contains(r.Partition)).ToList();
        queue.Clear();
        foreach (var r in keep) queue.Enqueue(r);
    }
}
