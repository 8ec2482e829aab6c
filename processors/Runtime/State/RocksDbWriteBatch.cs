using static StreamHealth.Runtime.State.RocksDbNative;

namespace StreamHealth.Runtime.State;

/// <summary>Operations collected in native memory and applied atomically by <see cref="RocksDbStore.Write"/>.
/// Reuse one per task (<see cref="Clear"/> after each write): the native buffer keeps its capacity, so a
/// steady-state batch allocates nothing. Not bound to a store; confined to one thread.</summary>
/// <remarks>Operations apply in the order added, so a later Put of the same key wins, and the input
/// offset stored in the same batch commits exactly with the state it produced.</remarks>
public sealed unsafe class RocksDbWriteBatch : IDisposable
{
    private IntPtr _batch = rocksdb_writebatch_create();

    ~RocksDbWriteBatch() => Release();

    internal IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_batch == IntPtr.Zero, this);
            return _batch;
        }
    }

    /// <summary>Number of operations (puts and deletes) added since creation or the last <see cref="Clear"/>.</summary>
    public int Count => rocksdb_writebatch_count(Handle);

    /// <summary>Adds a put; both spans are copied into the batch, so they may be reused at once.</summary>
    public void Put(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        var batch = Handle;
        fixed (byte* keyPtr = NonNull(key))
        fixed (byte* valuePtr = NonNull(value))
            rocksdb_writebatch_put(batch, keyPtr, (nuint)key.Length, valuePtr, (nuint)value.Length);
    }

    public void Delete(ReadOnlySpan<byte> key)
    {
        var batch = Handle;
        fixed (byte* keyPtr = NonNull(key))
            rocksdb_writebatch_delete(batch, keyPtr, (nuint)key.Length);
    }

    public void Clear() => rocksdb_writebatch_clear(Handle);

    public void Dispose()
    {
        Release();
        GC.SuppressFinalize(this);
    }

    private void Release()
    {
        if (_batch == IntPtr.Zero) return;
        rocksdb_writebatch_destroy(_batch);
        _batch = IntPtr.Zero;
    }
}
