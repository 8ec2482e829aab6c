using System.Diagnostics.CodeAnalysis;
using static StreamHealth.Runtime.State.RocksDbNative;

namespace StreamHealth.Runtime.State;

/// <summary>A RocksDB key/value store over raw bytes, ordered by unsigned byte-wise key comparison.</summary>
/// <remarks>
/// <para><b>Thread confinement.</b> One owner thread (the stream task of one input partition) opens,
/// uses and disposes a store. Nothing here takes a lock: the open-iterator bookkeeping and the
/// disposed check are plain fields, so concurrent use or a Dispose racing a call from another thread
/// could use a closed native handle. RocksDB itself would be safe; this wrapper deliberately is not.</para>
/// <para><b>Allocation.</b> <see cref="Get"/>, <see cref="Put"/>, <see cref="Delete"/>,
/// <see cref="Write"/> and <see cref="RocksDbWriteBatch.Put"/> allocate no managed memory;
/// <see cref="TryGet"/> allocates the returned array; a scan allocates one iterator object, not one
/// per row.</para>
/// <para><b>Lifetime.</b> Iterators must be disposed before the store; any still open when the store
/// is disposed are destroyed first (RocksDB requires it) and throw <see cref="ObjectDisposedException"/>
/// afterwards. A store that is never disposed is closed by its finalizer, releasing the directory's
/// LOCK file.</para>
/// </remarks>
public sealed unsafe class RocksDbStore : IDisposable
{
    private IntPtr _db;
    private readonly IntPtr _readOptions;
    private readonly IntPtr _writeOptions;
    private readonly List<RocksDbIterator> _openIterators = [];

    /// <summary>The directory this store was opened on (full path).</summary>
    public string Directory { get; }

    private RocksDbStore(IntPtr db, IntPtr readOptions, IntPtr writeOptions, string directory)
    {
        _db = db;
        _readOptions = readOptions;
        _writeOptions = writeOptions;
        Directory = directory;
    }

    ~RocksDbStore() => Release();

    /// <summary>Opens (creating when missing) the store in <paramref name="directory"/>.</summary>
    /// <exception cref="RocksDbException">RocksDB refused, e.g. the directory is locked by another open store.</exception>
    public static RocksDbStore Open(string directory, RocksDbStoreOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        options ??= new RocksDbStoreOptions();
        options.Validate();
        var fullPath = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(fullPath);

        var dbOptions = CreateOptions(options);
        IntPtr db;
        try
        {
            byte* error = null;
            db = rocksdb_open(dbOptions, fullPath, &error);
            ThrowIfError(error);
        }
        finally
        {
            // The DB keeps its own copy of every option, including shared_ptrs to cache and filter.
            rocksdb_options_destroy(dbOptions);
        }

        var readOptions = rocksdb_readoptions_create();
        var writeOptions = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(writeOptions, options.Sync ? (byte)1 : (byte)0);
        return new RocksDbStore(db, readOptions, writeOptions, fullPath);
    }

    /// <summary>Deletes the store's files and its directory. The store must not be open.</summary>
    public static void Destroy(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var fullPath = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(fullPath)) return;
        var dbOptions = rocksdb_options_create();
        try
        {
            byte* error = null;
            rocksdb_destroy_db(dbOptions, fullPath, &error);
            ThrowIfError(error);
        }
        finally
        {
            rocksdb_options_destroy(dbOptions);
        }
        // destroy_db leaves the directory behind when anything it does not own is still inside.
        if (System.IO.Directory.Exists(fullPath)) System.IO.Directory.Delete(fullPath, recursive: true);
    }

    private static IntPtr CreateOptions(RocksDbStoreOptions options)
    {
        var dbOptions = rocksdb_options_create();
        rocksdb_options_set_create_if_missing(dbOptions, 1);
        // Background flush and compaction threads; RocksDB's default of one thread each stalls writes
        // behind compaction under sustained batch load.
        rocksdb_options_increase_parallelism(dbOptions, Math.Max(2, Environment.ProcessorCount));
        rocksdb_options_optimize_level_style_compaction(dbOptions, (ulong)options.MemtableBudgetMiB << 20);

        var tableOptions = rocksdb_block_based_options_create();
        var cache = rocksdb_cache_create_lru((nuint)options.BlockCacheSizeMiB << 20);
        try
        {
            rocksdb_block_based_options_set_block_cache(tableOptions, cache);
            if (options.BloomBitsPerKey > 0)
                rocksdb_block_based_options_set_filter_policy(tableOptions, rocksdb_filterpolicy_create_bloom(options.BloomBitsPerKey));
            rocksdb_options_set_block_based_table_factory(dbOptions, tableOptions);
        }
        finally
        {
            // The table factory copies the table options and shares the cache, so both handles can go now.
            rocksdb_block_based_options_destroy(tableOptions);
            rocksdb_cache_destroy(cache);
        }
        return dbOptions;
    }

    /// <summary>Copies the value of <paramref name="key"/> into <paramref name="destination"/> without
    /// allocating.</summary>
    /// <returns>The value's length; -1 when the key is absent. When the value is longer than
    /// <paramref name="destination"/>, nothing is copied and the (larger) required length is returned,
    /// so the caller tests <c>length &gt; destination.Length</c>, rents a big enough buffer and asks again.
    /// No exception: an oversized value is a sizing decision for the caller, not a fault.</returns>
    public int Get(ReadOnlySpan<byte> key, Span<byte> destination)
    {
        var slice = GetPinned(key);
        if (slice == IntPtr.Zero) return -1;
        try
        {
            nuint length;
            var value = rocksdb_pinnableslice_value(slice, &length);
            if (length > int.MaxValue) throw new RocksDbException($"value of {length} bytes is larger than a span can hold");
            if ((int)length <= destination.Length)
                new ReadOnlySpan<byte>(value, (int)length).CopyTo(destination);
            return (int)length;
        }
        finally
        {
            rocksdb_pinnableslice_destroy(slice);
        }
    }

    /// <summary>The pinned slice holding <paramref name="key"/>'s value (zero when absent); the caller destroys it.</summary>
    private IntPtr GetPinned(ReadOnlySpan<byte> key)
    {
        ThrowIfDisposed();
        fixed (byte* keyPtr = NonNull(key))
        {
            byte* error = null;
            var slice = rocksdb_get_pinned(_db, _readOptions, keyPtr, (nuint)key.Length, &error);
            ThrowIfError(error);
            return slice;
        }
    }

    /// <summary>Reads the value of <paramref name="key"/> into a new array; <see cref="Get"/> avoids the allocation.</summary>
    public bool TryGet(ReadOnlySpan<byte> key, [MaybeNullWhen(false)] out byte[] value)
    {
        var slice = GetPinned(key);
        if (slice == IntPtr.Zero)
        {
            value = null;
            return false;
        }
        try
        {
            nuint length;
            var pinned = rocksdb_pinnableslice_value(slice, &length);
            value = new ReadOnlySpan<byte>(pinned, checked((int)length)).ToArray();
            return true;
        }
        finally
        {
            rocksdb_pinnableslice_destroy(slice);
        }
    }

    public void Put(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        ThrowIfDisposed();
        fixed (byte* keyPtr = NonNull(key))
        fixed (byte* valuePtr = NonNull(value))
        {
            byte* error = null;
            rocksdb_put(_db, _writeOptions, keyPtr, (nuint)key.Length, valuePtr, (nuint)value.Length, &error);
            ThrowIfError(error);
        }
    }

    /// <summary>Removes <paramref name="key"/>; deleting an absent key is not an error.</summary>
    public void Delete(ReadOnlySpan<byte> key)
    {
        ThrowIfDisposed();
        fixed (byte* keyPtr = NonNull(key))
        {
            byte* error = null;
            rocksdb_delete(_db, _writeOptions, keyPtr, (nuint)key.Length, &error);
            ThrowIfError(error);
        }
    }

    /// <summary>Applies every operation in <paramref name="batch"/> atomically (all or none, one WAL
    /// record). The batch keeps its contents; <see cref="RocksDbWriteBatch.Clear"/> it to reuse it.</summary>
    public void Write(RocksDbWriteBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ThrowIfDisposed();
        byte* error = null;
        rocksdb_write(_db, _writeOptions, batch.Handle, &error);
        ThrowIfError(error);
    }

    /// <summary>Keys in [<paramref name="fromInclusive"/>, <paramref name="toExclusive"/>) in ascending
    /// byte order. Both bounds are copied, so the spans may be reused as soon as this returns.</summary>
    public RocksDbIterator Range(ReadOnlySpan<byte> fromInclusive, ReadOnlySpan<byte> toExclusive)
    {
        ThrowIfDisposed();
        return Track(RocksDbIterator.Create(_db, fromInclusive, toExclusive, hasUpperBound: true, this));
    }

    /// <summary>Keys that start with <paramref name="prefix"/>, ascending; an empty prefix scans everything.</summary>
    public RocksDbIterator PrefixScan(ReadOnlySpan<byte> prefix)
    {
        ThrowIfDisposed();
        // The smallest key greater than every key with this prefix: drop trailing 0xFF bytes, then add
        // one to the last byte. An all-0xFF (or empty) prefix has no such key; nothing sorts after its
        // matches, so the scan simply runs to the end.
        var end = prefix.TrimEnd((byte)0xFF);
        if (end.IsEmpty)
            return Track(RocksDbIterator.Create(_db, prefix, default, hasUpperBound: false, this));

        Span<byte> upper = end.Length <= 256 ? stackalloc byte[end.Length] : new byte[end.Length];
        end.CopyTo(upper);
        upper[^1]++;
        return Track(RocksDbIterator.Create(_db, prefix, upper, hasUpperBound: true, this));
    }

    /// <summary>Writes a consistent, openable copy of the store to <paramref name="targetDirectory"/>,
    /// which must not exist yet. SST files are hard-linked, so this is cheap on the same filesystem.</summary>
    public void Checkpoint(string targetDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(targetDirectory);
        ThrowIfDisposed();
        var fullPath = Path.GetFullPath(targetDirectory);
        // RocksDB creates the target itself (via a temporary sibling) but not its parents.
        var parent = Path.GetDirectoryName(fullPath);
        if (parent is not null) System.IO.Directory.CreateDirectory(parent);

        byte* error = null;
        var checkpoint = rocksdb_checkpoint_object_create(_db, &error);
        ThrowIfError(error);
        try
        {
            rocksdb_checkpoint_create(checkpoint, fullPath, 0, &error);
            ThrowIfError(error);
        }
        finally
        {
            rocksdb_checkpoint_object_destroy(checkpoint);
        }
    }

    /// <summary>Writes the memtables to SST files and waits for it, so the WAL need not be replayed on
    /// the next open.</summary>
    public void Flush()
    {
        ThrowIfDisposed();
        var flushOptions = rocksdb_flushoptions_create();
        try
        {
            rocksdb_flushoptions_set_wait(flushOptions, 1);
            byte* error = null;
            rocksdb_flush(_db, flushOptions, &error);
            ThrowIfError(error);
        }
        finally
        {
            rocksdb_flushoptions_destroy(flushOptions);
        }
    }

    /// <summary>Destroys open iterators, then closes the database. Safe to call more than once.</summary>
    public void Dispose()
    {
        Release();
        GC.SuppressFinalize(this);
    }

    private void Release()
    {
        if (_db == IntPtr.Zero) return;
        // Iterators pin memtables and SST versions; closing the DB under them is a use-after-free.
        // The list keeps leaked iterators reachable, so the finalizer can reach them here too.
        for (var i = _openIterators.Count - 1; i >= 0; i--) _openIterators[i].ReleaseNative();
        _openIterators.Clear();
        rocksdb_close(_db);
        _db = IntPtr.Zero;
        rocksdb_readoptions_destroy(_readOptions);
        rocksdb_writeoptions_destroy(_writeOptions);
    }

    private RocksDbIterator Track(RocksDbIterator iterator)
    {
        _openIterators.Add(iterator);
        return iterator;
    }

    internal void Untrack(RocksDbIterator iterator) => _openIterators.Remove(iterator);

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_db == IntPtr.Zero, this);
}
