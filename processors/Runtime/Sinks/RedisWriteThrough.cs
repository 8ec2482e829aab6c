using Google.Protobuf;
using StackExchange.Redis;

namespace StreamHealth.Runtime.Sinks;

/// <summary>A result topic → Redis write-through sink: each record that decodes as <typeparamref name="T"/> and
/// passes <c>include</c> is written with <c>write</c> (a compare-and-set on event time, see
/// <see cref="RedisLatestHash"/>), all of a batch's writes pipelined and then awaited. Any failure or timeout throws,
/// so the runner retries (an outage) or splits the batch to archive the records Redis refuses (an error reply such as
/// WRONGTYPE, see <see cref="SinkErrors"/>); writing a record again is harmless, the compare-and-set sees to that. A
/// record that does not decode is refused before anything is written (<see cref="SinkRecordException"/>), so the runner
/// archives it under this sink's name too: nothing is skipped silently.</summary>
public sealed class RedisWriteThrough<T>(string name, string what, IConnectionMultiplexer redis, Func<SinkRecord, T> decode,
    Func<T, bool> include, Func<IDatabaseAsync, T, Task> write) : ISinkWriter
{
    /// <summary>For a topic of Protobuf <typeparamref name="T"/> values.</summary>
    public RedisWriteThrough(string name, string what, IConnectionMultiplexer redis, MessageParser parser,
        Func<T, bool> include, Func<IDatabaseAsync, T, Task> write)
        : this(name, what, redis, record => (T)parser.ParseFrom(record.Value ?? []), include, write) { }

    public static readonly TimeSpan AcknowledgeTimeout = TimeSpan.FromSeconds(10);

    public string Name => name;

    public void Write(IReadOnlyList<SinkRecord> batch)
    {
        var values = new List<T>(batch.Count);
        foreach (var record in batch)
        {
            try
            {
                var value = decode(record);
                if (include(value)) values.Add(value);
            }
            catch (Exception e) when (e is InvalidProtocolBufferException or FormatException)
            {
                throw new SinkRecordException(record, $"cannot decode {typeof(T).Name}: {e.Message}");
            }
        }
        var db = redis.GetDatabase();
        var writes = new Task[values.Count];
        for (var i = 0; i < writes.Length; i++) writes[i] = write(db, values[i]);
        if (!Task.WaitAll(writes, AcknowledgeTimeout))
            throw new TimeoutException($"Redis did not acknowledge {writes.Length} {what} writes within {AcknowledgeTimeout.TotalSeconds:0} s");
    }
}
