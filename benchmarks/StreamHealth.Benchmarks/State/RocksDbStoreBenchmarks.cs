using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using StreamHealth.Runtime.State;

namespace StreamHealth.Benchmarks.State;

/// <summary>The state-store hot paths a stream task pays per record: point reads, batched writes
/// (one batch per poll, offsets included) and the bounded scans windowed aggregates make.</summary>
/// <remarks>100,000 keys of 8 bytes (big-endian index, so key order = index order) with 100-byte
/// values: about 10 MiB, flushed to SST files so reads go through the bloom filter and block cache
/// rather than the memtable. Short warmup and 10 iterations keep the whole class near a minute.</remarks>
[MemoryDiagnoser]
[WarmupCount(3)]
[IterationCount(10)]
public class RocksDbStoreBenchmarks
{
    private const int KeyCount = 100_000;
    private const int ValueBytes = 100;
    private const int GetsPerInvoke = 1_000;
    private const int BatchRecords = 1_000;
    private const int ScanRows = 1_000;

    private string _directory = "";
    private RocksDbStore _store = null!;
    private RocksDbWriteBatch _batch = null!;
    private readonly byte[] _value = new byte[ValueBytes];
    private readonly byte[] _readBuffer = new byte[256];
    private ulong[] _randomIndices = [];
    private int _batchStart;
    private int _scanStart;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Path.Combine(Path.GetTempPath(), "streamhealth-rocksdb-bench-" + Guid.NewGuid().ToString("N"));
        _store = RocksDbStore.Open(_directory);
        _batch = new RocksDbWriteBatch();
        Random.Shared.NextBytes(_value);
        Span<byte> key = stackalloc byte[8];
        for (var i = 0; i < KeyCount; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(key, (ulong)i);
            _batch.Put(key, _value);
            if (_batch.Count == 10_000)
            {
                _store.Write(_batch);
                _batch.Clear();
            }
        }
        _store.Write(_batch);
        _batch.Clear();
        _store.Flush();

        var random = new Random(42);
        _randomIndices = new ulong[GetsPerInvoke];
        for (var i = 0; i < _randomIndices.Length; i++) _randomIndices[i] = (ulong)random.Next(KeyCount);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _batch.Dispose();
        _store.Dispose();
        RocksDbStore.Destroy(_directory);
    }

    /// <summary>Per get: an existing key into a reused buffer.</summary>
    [Benchmark(OperationsPerInvoke = GetsPerInvoke)]
    public int RandomGet()
    {
        Span<byte> key = stackalloc byte[8];
        var total = 0;
        foreach (var index in _randomIndices)
        {
            BinaryPrimitives.WriteUInt64BigEndian(key, index);
            total += _store.Get(key, _readBuffer);
        }
        return total;
    }

    /// <summary>Per get: the allocating convenience API, for comparison.</summary>
    [Benchmark(OperationsPerInvoke = GetsPerInvoke)]
    public int RandomTryGet()
    {
        Span<byte> key = stackalloc byte[8];
        var total = 0;
        foreach (var index in _randomIndices)
        {
            BinaryPrimitives.WriteUInt64BigEndian(key, index);
            if (_store.TryGet(key, out var value)) total += value.Length;
        }
        return total;
    }

    /// <summary>Per get: keys above the loaded range, which the bloom filter should answer.</summary>
    [Benchmark(OperationsPerInvoke = GetsPerInvoke)]
    public int RandomGetMissing()
    {
        Span<byte> key = stackalloc byte[8];
        var total = 0;
        foreach (var index in _randomIndices)
        {
            BinaryPrimitives.WriteUInt64BigEndian(key, index + KeyCount);
            total += _store.Get(key, _readBuffer);
        }
        return total;
    }

    /// <summary>Per batch of 1,000 overwrites, written atomically; the window moves so each batch
    /// touches different keys.</summary>
    [Benchmark]
    public void BatchedPut1000()
    {
        Span<byte> key = stackalloc byte[8];
        for (var i = 0; i < BatchRecords; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(key, (ulong)(_batchStart + i));
            _batch.Put(key, _value);
        }
        _store.Write(_batch);
        _batch.Clear();
        _batchStart = (_batchStart + BatchRecords) % (KeyCount - BatchRecords);
    }

    /// <summary>Per scan of 1,000 consecutive rows, reading every key and value.</summary>
    [Benchmark]
    public long RangeScan1000()
    {
        Span<byte> from = stackalloc byte[8];
        Span<byte> to = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(from, (ulong)_scanStart);
        BinaryPrimitives.WriteUInt64BigEndian(to, (ulong)(_scanStart + ScanRows));
        _scanStart = (_scanStart + 7_919) % (KeyCount - ScanRows);

        long bytes = 0;
        using var scan = _store.Range(from, to);
        while (scan.MoveNext()) bytes += scan.Key.Length + scan.Value.Length;
        return bytes;
    }
}
