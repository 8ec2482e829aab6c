namespace StreamHealth.Runtime.State;

/// <summary>Tuning for one <see cref="RocksDbStore"/>. The defaults suit a per-partition state store:
/// small enough that a host with dozens of partitions stays within a few hundred MiB.</summary>
public sealed class RocksDbStoreOptions
{
    /// <summary>LRU cache for uncompressed data blocks, in MiB; 0 turns caching of data blocks off
    /// in practice (every read decodes from the OS page cache).</summary>
    public int BlockCacheSizeMiB { get; init; } = 32;

    /// <summary>Bloom filter bits per key; 10 gives about a 1 % false-positive rate, so a lookup of a
    /// missing key rarely touches a data block. 0 disables the filter.</summary>
    public double BloomBitsPerKey { get; init; } = 10;

    /// <summary>fsync the WAL on every write. Off by default: the changelog topic and the committed
    /// input offset make state recoverable after a machine crash, and a process crash loses nothing
    /// because the WAL is already in the OS page cache.</summary>
    public bool Sync { get; init; }

    /// <summary>Memtable budget handed to RocksDB's level-style compaction preset, in MiB (a quarter of
    /// it is one write buffer).</summary>
    public int MemtableBudgetMiB { get; init; } = 64;

    internal void Validate()
    {
        if (BlockCacheSizeMiB < 0)
            throw new ArgumentOutOfRangeException(nameof(BlockCacheSizeMiB), BlockCacheSizeMiB, "BlockCacheSizeMiB must be 0 or more.");
        if (!(BloomBitsPerKey >= 0 && BloomBitsPerKey <= 100))
            throw new ArgumentOutOfRangeException(nameof(BloomBitsPerKey), BloomBitsPerKey, "BloomBitsPerKey must be between 0 and 100.");
        if (MemtableBudgetMiB < 1)
            throw new ArgumentOutOfRangeException(nameof(MemtableBudgetMiB), MemtableBudgetMiB, "MemtableBudgetMiB must be at least 1.");
    }
}
