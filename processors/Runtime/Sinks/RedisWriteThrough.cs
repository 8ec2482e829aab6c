using Google.Protobuf;
using StackExchange.Redis;

namespace StreamHealth.Runtime.Sinks;

/// <summary>A result topic → Redis write-through sink: each record that decodes as <typeparamref name="T"/> and
/// passes <c>include</c> is written with <c>write</c> (a compare-and-set on event time, see
/// <see cref="RedisLatestHash"/>), all of a batch's writes pipelined and then awaited. Any failure or timeout throws,
/// so the runner retries the whole batch, which the compare-and-set makes harmless. A record that does not decode is
/// skipped: a cache has nothing to add, and the topic's PostgreSQL sink archives it in streamhealth.dead_letters.</summary>
public sealed class RedisWriteThrough<T>(string name, string what, IConnectionMultiplexer redis, MessageParser<T> parser,
    Func<T, bool> include, Func<IDatabaseAsync, T, Task> write) : ISinkWriter where T : IMessage<T>
{
    public static readonly TimeSpan AcknowledgeTimeout = TimeSpan.FromSeconds(10);

    public string Name => name;

    public void Write(IReadOnlyList<SinkRecord> batch)
    {
        var db = redis.GetDatabase();
        var writes = new List<Task>(batch.Count);
        foreach (var record in batch)
        {
            T value;
            try
            {
                value = parser.ParseFrom(record.Value ?? []);
            }
            catch (InvalidProtocolBufferException)
            {
                continue;
            }
            if (include(value)) writes.Add(write(db, value));
        }
        if (!Task.WaitAll([.. writes], AcknowledgeTimeout))
            throw new TimeoutException($"Redis did not acknowledge {writes.Count} {what} writes within {AcknowledgeTimeout.TotalSeconds:0} s");
    }
}
