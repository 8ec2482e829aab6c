using System.Runtime.InteropServices;
using static StreamHealth.Runtime.State.RocksDbNative;

namespace StreamHealth.Runtime.State;

/// <summary>A forward scan created by <see cref="RocksDbStore.Range"/> or <see cref="RocksDbStore.PrefixScan"/>.
/// Call <see cref="MoveNext"/> before reading the first row. <see cref="Key"/> and <see cref="Value"/>
/// point into RocksDB's memory and are valid only until the next <see cref="MoveNext"/> or
/// <see cref="Dispose"/>: copy what must outlive the row. Dispose it before the store.</summary>
/// <remarks>Sees a consistent snapshot taken when it was created; writes made afterwards are not visible.
/// Confined to the store's owner thread.</remarks>
public sealed unsafe class RocksDbIterator : IDisposable
{
    private readonly RocksDbStore _store;
    private IntPtr _iterator;
    private IntPtr _readOptions;
    // The upper bound's bytes: RocksDB keeps a pointer to them (not a copy) for the iterator's life,
    // so they live in native memory that the GC cannot move or collect.
    private byte* _upperBound;
    private bool _started;
    private bool _ended;
    private byte* _key;
    private int _keyLength;
    private byte* _value;
    private int _valueLength;

    private RocksDbIterator(RocksDbStore store) => _store = store;

    internal static RocksDbIterator Create(IntPtr db, ReadOnlySpan<byte> fromInclusive, ReadOnlySpan<byte> toExclusive, bool hasUpperBound, RocksDbStore store)
    {
        var result = new RocksDbIterator(store);
        try
        {
            result._readOptions = rocksdb_readoptions_create();
            if (hasUpperBound)
            {
                // One spare byte keeps the allocation (and so the pointer) non-NULL for an empty bound.
                result._upperBound = (byte*)NativeMemory.Alloc((nuint)toExclusive.Length + 1);
                toExclusive.CopyTo(new Span<byte>(result._upperBound, toExclusive.Length));
                rocksdb_readoptions_set_iterate_upper_bound(result._readOptions, result._upperBound, (nuint)toExclusive.Length);
            }
            result._iterator = rocksdb_create_iterator(db, result._readOptions);
            // Seek now, while the caller's span is still alive; RocksDB copies the target internally.
            fixed (byte* from = NonNull(fromInclusive))
                rocksdb_iter_seek(result._iterator, from, (nuint)fromInclusive.Length);
            return result;
        }
        catch
        {
            result.ReleaseNative();
            throw;
        }
    }

    /// <summary>Advances to the next row; false at the end of the range.</summary>
    /// <exception cref="RocksDbException">The scan failed (e.g. a corrupt block), rather than ended.</exception>
    public bool MoveNext()
    {
        ObjectDisposedException.ThrowIf(_iterator == IntPtr.Zero, this);
        // Debian's librocksdb keeps assertions on: Next on an invalid iterator aborts the process.
        if (_ended) return false;
        // The seek in Create already positioned the first row.
        if (_started) rocksdb_iter_next(_iterator);
        else _started = true;

        if (rocksdb_iter_valid(_iterator) != 0)
        {
            nuint length;
            _key = rocksdb_iter_key(_iterator, &length);
            _keyLength = (int)length;
            _value = rocksdb_iter_value(_iterator, &length);
            _valueLength = checked((int)length);
            return true;
        }

        _ended = true;
        _key = _value = null;
        _keyLength = _valueLength = 0;
        // Invalid means either the end or an I/O or corruption error; only the status tells them apart.
        byte* error = null;
        rocksdb_iter_get_error(_iterator, &error);
        ThrowIfError(error);
        return false;
    }

    /// <summary>The current row's key; empty before the first and after the last <see cref="MoveNext"/>.</summary>
    public ReadOnlySpan<byte> Key
    {
        get
        {
            ObjectDisposedException.ThrowIf(_iterator == IntPtr.Zero, this);
            return new ReadOnlySpan<byte>(_key, _keyLength);
        }
    }

    /// <summary>The current row's value; empty before the first and after the last <see cref="MoveNext"/>.</summary>
    public ReadOnlySpan<byte> Value
    {
        get
        {
            ObjectDisposedException.ThrowIf(_iterator == IntPtr.Zero, this);
            return new ReadOnlySpan<byte>(_value, _valueLength);
        }
    }

    public void Dispose()
    {
        if (_iterator == IntPtr.Zero && _readOptions == IntPtr.Zero) return;
        ReleaseNative();
        _store.Untrack(this);
    }

    /// <summary>Frees the native iterator, then what it points into. Also called by the store when it
    /// is disposed with this iterator still open.</summary>
    internal void ReleaseNative()
    {
        if (_iterator != IntPtr.Zero) rocksdb_iter_destroy(_iterator);
        if (_readOptions != IntPtr.Zero) rocksdb_readoptions_destroy(_readOptions);
        if (_upperBound != null) NativeMemory.Free(_upperBound);
        _iterator = _readOptions = IntPtr.Zero;
        _upperBound = null;
        _key = _value = null;
        _keyLength = _valueLength = 0;
    }
}
