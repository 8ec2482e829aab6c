using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Crosscutting;
using Streamiz.Kafka.Net.Processors;
using Streamiz.Kafka.Net.State;
using Streamiz.Kafka.Net.State.Enumerator;
using Streamiz.Kafka.Net.State.Supplier;

namespace StreamHealth.Runtime.Streams.Reference;

/// <summary>Faults the reference topology can be asked for, to prove recovery at points a test cannot hit by timing.</summary>
public sealed class StoreFaults
{
    /// <summary>While true, every store flush (the first step of a commit) throws: the commit fails as on a disk that
    /// refuses writes.</summary>
    public Func<bool>? FailFlush { get; init; }

    /// <summary>The process kills itself (SIGKILL) in the Nth store flush that has writes, after RocksDB has them and
    /// before the changelog is flushed and the input offsets are committed: a crash in the middle of a commit.</summary>
    public int KillInFlush { get; init; }
}

/// <summary>A RocksDB store (Streamiz's own) with <see cref="StoreFaults"/> injected into Flush.</summary>
internal sealed class FaultInjectingStoreSupplier(string name, StoreFaults faults) : IKeyValueBytesStoreSupplier
{
    public string Name { get; set; } = name;
    public string MetricsScope => "rocksdb";
    public IKeyValueStore<Bytes, byte[]> Get() => new FaultInjectingStore(new RocksDbKeyValueStore(Name, MetricsScope), faults);
}

internal sealed class FaultInjectingStore(RocksDbKeyValueStore inner, StoreFaults faults) : IKeyValueStore<Bytes, byte[]>
{
    private int _flushesWithWrites;
    private bool _written;

    public string Name => inner.Name;
    public bool Persistent => inner.Persistent;
    public bool IsLocally => inner.IsLocally;
    public bool IsOpen => inner.IsOpen;
    public void Init(ProcessorContext context, IStateStore root) => inner.Init(context, root);

    public void Flush()
    {
        if (faults.FailFlush?.Invoke() == true) throw new IOException("store flush failed: disk says no");
        inner.Flush();
        if (_written && faults.KillInFlush > 0 && ++_flushesWithWrites == faults.KillInFlush)
        {
            // Said on stderr (unbuffered) first, so whoever started the process can tell this death from any other.
            Console.Error.WriteLine($"store {Name}: fault injected, killing the process (SIGKILL) in store flush {_flushesWithWrites} with writes");
            System.Diagnostics.Process.GetCurrentProcess().Kill();
        }
        _written = false;
    }

    public void Close() => inner.Close();
    public byte[] Get(Bytes key) => inner.Get(key);
    public IKeyValueEnumerator<Bytes, byte[]> Range(Bytes from, Bytes to) => inner.Range(from, to);
    public IKeyValueEnumerator<Bytes, byte[]> ReverseRange(Bytes from, Bytes to) => inner.ReverseRange(from, to);
    public IEnumerable<KeyValuePair<Bytes, byte[]>> All() => inner.All();
    public IEnumerable<KeyValuePair<Bytes, byte[]>> ReverseAll() => inner.ReverseAll();
    public long ApproximateNumEntries() => inner.ApproximateNumEntries();

    public void Put(Bytes key, byte[] value)
    {
        _written = true;
        inner.Put(key, value);
    }

    public byte[] PutIfAbsent(Bytes key, byte[] value)
    {
        _written = true;
        return inner.PutIfAbsent(key, value);
    }

    public void PutAll(IEnumerable<KeyValuePair<Bytes, byte[]>> entries)
    {
        _written = true;
        inner.PutAll(entries);
    }

    public byte[] Delete(Bytes key)
    {
        _written = true;
        return inner.Delete(key);
    }
}
