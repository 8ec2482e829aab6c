using System.Runtime.InteropServices;

namespace StreamHealth.Runtime.State;

/// <summary>RocksDB 7.8's C API (<c>include/rocksdb/c.h</c>) as shipped by Debian's <c>librocksdb7.8</c>.
/// Handles are opaque <see cref="IntPtr"/>s; lifetimes are managed by <see cref="RocksDbStore"/>,
/// <see cref="RocksDbWriteBatch"/> and <see cref="RocksDbIterator"/>.</summary>
/// <remarks>Conventions of c.h that the callers rely on: booleans are <c>unsigned char</c>; every call
/// that can fail takes a <c>char** errptr</c> that must point at NULL on entry and, on failure, receives
/// a malloc'd message the caller frees with <c>rocksdb_free</c> (see <see cref="ThrowIfError"/>);
/// every pointer argument must be non-NULL, including the data pointer of an empty key or value.</remarks>
internal static unsafe partial class RocksDbNative
{
    // The versioned soname: the unversioned librocksdb.so only exists with the -dev package.
    public const string Name = "librocksdb.so.7.8";

    /// <summary>Throws <see cref="RocksDbException"/> with RocksDB's message when <paramref name="error"/>
    /// is set, freeing the native string first so a caught exception leaks nothing.</summary>
    public static void ThrowIfError(byte* error)
    {
        if (error != null) Throw(error);
    }

    // Kept out of line so the success path of every hot call stays small enough to inline.
    private static void Throw(byte* error)
    {
        var message = Marshal.PtrToStringUTF8((IntPtr)error) ?? "unknown RocksDB error";
        rocksdb_free(error);
        throw new RocksDbException(message);
    }

    /// <summary>A span whose pinned address is never NULL: <c>fixed</c> over an empty span yields NULL,
    /// which c.h forbids even with a zero length. The u8 literal lives in the image, not the GC heap.</summary>
    public static ReadOnlySpan<byte> NonNull(ReadOnlySpan<byte> bytes) => bytes.IsEmpty ? "\0"u8 : bytes;

    [LibraryImport(Name)] public static partial void rocksdb_free(void* ptr);

    // Options

    [LibraryImport(Name)] public static partial IntPtr rocksdb_options_create();
    [LibraryImport(Name)] public static partial void rocksdb_options_destroy(IntPtr options);
    [LibraryImport(Name)] public static partial void rocksdb_options_set_create_if_missing(IntPtr options, byte value);
    [LibraryImport(Name)] public static partial void rocksdb_options_increase_parallelism(IntPtr options, int totalThreads);
    [LibraryImport(Name)] public static partial void rocksdb_options_optimize_level_style_compaction(IntPtr options, ulong memtableMemoryBudgetBytes);
    [LibraryImport(Name)] public static partial void rocksdb_options_set_block_based_table_factory(IntPtr options, IntPtr tableOptions);

    [LibraryImport(Name)] public static partial IntPtr rocksdb_block_based_options_create();
    [LibraryImport(Name)] public static partial void rocksdb_block_based_options_destroy(IntPtr tableOptions);
    /// <remarks>Takes ownership of <paramref name="filterPolicy"/>: never destroy it afterwards.</remarks>
    [LibraryImport(Name)] public static partial void rocksdb_block_based_options_set_filter_policy(IntPtr tableOptions, IntPtr filterPolicy);
    /// <remarks>Shares the cache (a shared_ptr copy): the caller still destroys its own handle.</remarks>
    [LibraryImport(Name)] public static partial void rocksdb_block_based_options_set_block_cache(IntPtr tableOptions, IntPtr cache);

    // Since 7.0 the bloom factories take a double (fractional bits per key are meaningful).
    [LibraryImport(Name)] public static partial IntPtr rocksdb_filterpolicy_create_bloom(double bitsPerKey);
    [LibraryImport(Name)] public static partial IntPtr rocksdb_cache_create_lru(nuint capacityBytes);
    [LibraryImport(Name)] public static partial void rocksdb_cache_destroy(IntPtr cache);

    [LibraryImport(Name)] public static partial IntPtr rocksdb_readoptions_create();
    [LibraryImport(Name)] public static partial void rocksdb_readoptions_destroy(IntPtr options);
    /// <remarks>Stores a pointer to <paramref name="key"/>, not a copy: the bytes must outlive every
    /// iterator created with these options.</remarks>
    [LibraryImport(Name)] public static partial void rocksdb_readoptions_set_iterate_upper_bound(IntPtr options, byte* key, nuint keyLength);

    [LibraryImport(Name)] public static partial IntPtr rocksdb_writeoptions_create();
    [LibraryImport(Name)] public static partial void rocksdb_writeoptions_destroy(IntPtr options);
    [LibraryImport(Name)] public static partial void rocksdb_writeoptions_set_sync(IntPtr options, byte value);

    [LibraryImport(Name)] public static partial IntPtr rocksdb_flushoptions_create();
    [LibraryImport(Name)] public static partial void rocksdb_flushoptions_destroy(IntPtr options);
    [LibraryImport(Name)] public static partial void rocksdb_flushoptions_set_wait(IntPtr options, byte value);

    // Database

    [LibraryImport(Name, StringMarshalling = StringMarshalling.Utf8)]
    public static partial IntPtr rocksdb_open(IntPtr options, string name, byte** errptr);

    [LibraryImport(Name)] public static partial void rocksdb_close(IntPtr db);

    [LibraryImport(Name, StringMarshalling = StringMarshalling.Utf8)]
    public static partial void rocksdb_destroy_db(IntPtr options, string name, byte** errptr);

    [LibraryImport(Name)]
    public static partial void rocksdb_put(IntPtr db, IntPtr writeOptions, byte* key, nuint keyLength, byte* value, nuint valueLength, byte** errptr);

    [LibraryImport(Name)]
    public static partial void rocksdb_delete(IntPtr db, IntPtr writeOptions, byte* key, nuint keyLength, byte** errptr);

    /// <remarks>Returns NULL when the key is absent. The value stays pinned in the block cache or
    /// memtable until <see cref="rocksdb_pinnableslice_destroy"/>, so it can be copied straight into a
    /// caller's span; <c>rocksdb_get</c> would malloc a copy first.</remarks>
    [LibraryImport(Name)]
    public static partial IntPtr rocksdb_get_pinned(IntPtr db, IntPtr readOptions, byte* key, nuint keyLength, byte** errptr);

    [LibraryImport(Name)] public static partial byte* rocksdb_pinnableslice_value(IntPtr slice, nuint* valueLength);
    [LibraryImport(Name)] public static partial void rocksdb_pinnableslice_destroy(IntPtr slice);

    [LibraryImport(Name)] public static partial void rocksdb_flush(IntPtr db, IntPtr flushOptions, byte** errptr);

    // Write batches

    [LibraryImport(Name)] public static partial IntPtr rocksdb_writebatch_create();
    [LibraryImport(Name)] public static partial void rocksdb_writebatch_destroy(IntPtr batch);
    [LibraryImport(Name)] public static partial void rocksdb_writebatch_clear(IntPtr batch);
    [LibraryImport(Name)] public static partial int rocksdb_writebatch_count(IntPtr batch);
    [LibraryImport(Name)] public static partial void rocksdb_writebatch_put(IntPtr batch, byte* key, nuint keyLength, byte* value, nuint valueLength);
    [LibraryImport(Name)] public static partial void rocksdb_writebatch_delete(IntPtr batch, byte* key, nuint keyLength);
    [LibraryImport(Name)] public static partial void rocksdb_write(IntPtr db, IntPtr writeOptions, IntPtr batch, byte** errptr);

    // Iterators

    [LibraryImport(Name)] public static partial IntPtr rocksdb_create_iterator(IntPtr db, IntPtr readOptions);
    [LibraryImport(Name)] public static partial void rocksdb_iter_destroy(IntPtr iterator);
    [LibraryImport(Name)] public static partial byte rocksdb_iter_valid(IntPtr iterator);
    [LibraryImport(Name)] public static partial void rocksdb_iter_seek_to_first(IntPtr iterator);
    [LibraryImport(Name)] public static partial void rocksdb_iter_seek(IntPtr iterator, byte* key, nuint keyLength);
    [LibraryImport(Name)] public static partial void rocksdb_iter_next(IntPtr iterator);
    [LibraryImport(Name)] public static partial byte* rocksdb_iter_key(IntPtr iterator, nuint* keyLength);
    [LibraryImport(Name)] public static partial byte* rocksdb_iter_value(IntPtr iterator, nuint* valueLength);
    [LibraryImport(Name)] public static partial void rocksdb_iter_get_error(IntPtr iterator, byte** errptr);

    // Checkpoints

    [LibraryImport(Name)] public static partial IntPtr rocksdb_checkpoint_object_create(IntPtr db, byte** errptr);

    /// <remarks><paramref name="logSizeForFlush"/> = 0 flushes the memtables first, so the checkpoint
    /// holds only SST files and needs no WAL replay when opened.</remarks>
    [LibraryImport(Name, StringMarshalling = StringMarshalling.Utf8)]
    public static partial void rocksdb_checkpoint_create(IntPtr checkpoint, string checkpointDirectory, ulong logSizeForFlush, byte** errptr);

    [LibraryImport(Name)] public static partial void rocksdb_checkpoint_object_destroy(IntPtr checkpoint);
}
