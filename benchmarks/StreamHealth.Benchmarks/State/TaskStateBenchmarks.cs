using BenchmarkDotNet.Attributes;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Benchmarks.State;

/// <summary>State updates in the store alone, the way a task makes them: typed get → modify → put of a
/// count per key (10,000 string keys), the record accepted into the write cache, and one commit (RocksDB
/// write batch with the input offset) every <see cref="UpdatesPerCommit"/> records — 1,000 is a commit per
/// 10 ms at 100k records/s, 10,000 per 100 ms, 100,000 the runtime's 1 s default. No Kafka. Issue target: ≥ 300k updates/s.</summary>
[MemoryDiagnoser]
[WarmupCount(3)]
[IterationCount(10)]
public class TaskStateBenchmarks
{
    private const int Keys = 10_000;
    private const int Batch = 1_000;

    [Params(1_000, 10_000, 100_000)]
    public int UpdatesPerCommit { get; set; }

    private string _directory = "";
    private TaskState _state = null!;
    private KeyValueStore<string, long> _counts = null!;
    private string[] _keys = [];
    private long _offset;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Path.Combine(Path.GetTempPath(), "streamhealth-taskstate-bench-" + Guid.NewGuid().ToString("N"));
        _state = new TaskState(_directory);
        _counts = new KeyValueStore<string, long>(_state, "counts", Utf8Serde.Instance, Int64Serde.Instance);
        var random = new Random(42);
        _keys = Enumerable.Range(0, Batch * 64).Select(_ => $"user-{random.Next(Keys)}").ToArray();
        for (var i = 0; i < 10; i++) Count();   // every key exists, so gets hit RocksDB or the cache like in steady state
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _state.Dispose();
        if (Environment.GetEnvironmentVariable("STREAMHEALTH_KEEP_BENCH_DB") is null) Directory.Delete(_directory, recursive: true);
    }

    /// <summary>1,000 reads of committed keys (RocksDB through the task's caches), no writes.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public long Read()
    {
        var start = (int)(_offset++ % (_keys.Length - Batch));
        long sum = 0;
        for (var i = 0; i < Batch; i++)
            if (_counts.TryGet(_keys[start + i], out var n)) sum += n;
        return sum;
    }

    /// <summary>1,000 count updates into the write cache only (the commit priced separately above).</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void CountUncommitted() => Update1000();

    /// <summary>1,000 count updates, committing every <see cref="UpdatesPerCommit"/>.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void Count()
    {
        Update1000();
        if (_offset % UpdatesPerCommit == 0) _state.Commit(_offset);
    }

    private void Update1000()
    {
        var start = (int)(_offset % (_keys.Length - Batch));
        for (var i = 0; i < Batch; i++)
        {
            var key = _keys[start + i];
            _counts.TryGet(key, out var n);
            _counts.Put(key, n + 1);
            _state.AcceptRecord(_offset++);
        }
    }
}
