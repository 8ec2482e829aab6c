using System.Buffers.Binary;
using System.Text;
using StreamHealth.Runtime.State;

namespace StreamHealth.Tests.State;

/// <summary>Against the real librocksdb.so.7.8; every test works in its own temporary directory.</summary>
public sealed class RocksDbStoreTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "streamhealth-rocksdb-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string Dir(string name) => Path.Combine(_root, name);

    private static byte[] B(string text) => Encoding.UTF8.GetBytes(text);

    private static string S(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);

    private static List<(string Key, string Value)> Drain(RocksDbIterator iterator)
    {
        var rows = new List<(string, string)>();
        while (iterator.MoveNext()) rows.Add((S(iterator.Key), S(iterator.Value)));
        return rows;
    }

    [Fact]
    public void Put_get_delete_round_trip()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        store.Put(B("user-1"), B("81.4"));
        store.Put(B("user-2"), B("77.0"));

        Assert.True(store.TryGet(B("user-1"), out var value));
        Assert.Equal("81.4", S(value));

        Span<byte> buffer = stackalloc byte[16];
        var length = store.Get(B("user-2"), buffer);
        Assert.Equal(4, length);
        Assert.Equal("77.0", S(buffer[..length]));

        store.Put(B("user-1"), B("80.9"));
        Assert.True(store.TryGet(B("user-1"), out value));
        Assert.Equal("80.9", S(value));

        store.Delete(B("user-1"));
        Assert.False(store.TryGet(B("user-1"), out _));
        Assert.Equal(-1, store.Get(B("user-1"), buffer));
        Assert.True(store.TryGet(B("user-2"), out _));
    }

    [Fact]
    public void Missing_key_is_reported_as_absent_and_deleting_it_is_harmless()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        Assert.False(store.TryGet(B("nope"), out var value));
        Assert.Null(value);
        Assert.Equal(-1, store.Get(B("nope"), stackalloc byte[8]));
        store.Delete(B("nope"));
        Assert.False(store.TryGet(B("nope"), out _));
    }

    [Fact]
    public void Binary_keys_with_zero_bytes_and_empty_values_are_kept_exactly()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        byte[] a = [0x00, 0x01, 0x00], b = [0x00, 0x01, 0x00, 0x00], c = [0x00];
        store.Put(a, [0xFF, 0x00, 0xFE]);
        store.Put(b, [0x42]);
        store.Put(c, []);
        store.Put([], [0x07]);

        Assert.True(store.TryGet(a, out var va));
        Assert.Equal([0xFF, 0x00, 0xFE], va);
        Assert.True(store.TryGet(b, out var vb));
        Assert.Equal([0x42], vb);
        Assert.True(store.TryGet(c, out var vc));
        Assert.Empty(vc);
        Assert.Equal(0, store.Get(c, stackalloc byte[1]));
        Assert.True(store.TryGet([], out var vEmpty));
        Assert.Equal([0x07], vEmpty);
        // A prefix of an existing key is a different key.
        Assert.False(store.TryGet([0x00, 0x01], out _));
    }

    [Fact]
    public void Get_into_a_too_small_span_copies_nothing_and_returns_the_required_length()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        store.Put(B("k"), B("0123456789"));

        Span<byte> small = [0xAA, 0xAA, 0xAA, 0xAA];
        var required = store.Get(B("k"), small);
        Assert.Equal(10, required);
        Assert.True(small.SequenceEqual((ReadOnlySpan<byte>)[0xAA, 0xAA, 0xAA, 0xAA]));

        Span<byte> exact = new byte[required];
        Assert.Equal(10, store.Get(B("k"), exact));
        Assert.Equal("0123456789", S(exact));
    }

    [Fact]
    public void Write_batch_is_applied_as_a_whole_counted_and_reusable_after_clear()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        store.Put(B("doomed"), B("x"));
        using var batch = new RocksDbWriteBatch();
        batch.Put(B("a"), B("1"));
        batch.Put(B("b"), B("2"));
        batch.Delete(B("doomed"));
        batch.Put(B("a"), B("3"));
        Assert.Equal(4, batch.Count);

        // Nothing is visible until Write.
        Assert.False(store.TryGet(B("a"), out _));
        Assert.True(store.TryGet(B("doomed"), out _));

        store.Write(batch);
        Assert.True(store.TryGet(B("a"), out var a));
        Assert.Equal("3", S(a));
        Assert.True(store.TryGet(B("b"), out var b));
        Assert.Equal("2", S(b));
        Assert.False(store.TryGet(B("doomed"), out _));

        batch.Clear();
        Assert.Equal(0, batch.Count);
        batch.Put(B("c"), B("4"));
        Assert.Equal(1, batch.Count);
        store.Write(batch);
        Assert.True(store.TryGet(B("c"), out var c));
        Assert.Equal("4", S(c));
        // A cleared batch does not replay its earlier operations.
        store.Put(B("b"), B("changed"));
        store.Write(batch);
        Assert.True(store.TryGet(B("b"), out b));
        Assert.Equal("changed", S(b));
    }

    [Fact]
    public void Range_returns_keys_in_byte_order_from_inclusive_to_exclusive()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        foreach (var key in new[] { "k05", "k01", "k03", "k02", "k04", "j99", "l00" })
            store.Put(B(key), B("v" + key));

        using (var range = store.Range(B("k02"), B("k04")))
            Assert.Equal([("k02", "vk02"), ("k03", "vk03")], Drain(range));

        using (var all = store.Range(B("a"), B("z")))
            Assert.Equal(["j99", "k01", "k02", "k03", "k04", "k05", "l00"], Drain(all).Select(r => r.Key));

        // Bounds between keys, and an empty or inverted range.
        using (var between = store.Range(B("k015"), B("k035")))
            Assert.Equal(["k02", "k03"], Drain(between).Select(r => r.Key));
        using (var empty = store.Range(B("k03"), B("k03")))
            Assert.False(empty.MoveNext());
        using (var inverted = store.Range(B("k04"), B("k02")))
            Assert.False(inverted.MoveNext());
    }

    [Fact]
    public void Range_orders_bytes_unsigned_and_reads_after_the_end_stay_false()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        store.Put([0x80], [1]);
        store.Put([0x7F], [2]);
        store.Put([0xFF, 0x00], [3]);

        using var range = store.Range([0x00], [0xFF, 0x01]);
        var keys = new List<byte[]>();
        while (range.MoveNext()) keys.Add(range.Key.ToArray());
        Assert.Equal([[0x7F], [0x80], [0xFF, 0x00]], keys);
        Assert.False(range.MoveNext());
        Assert.True(range.Key.IsEmpty);
    }

    [Fact]
    public void Prefix_scan_returns_exactly_the_keys_with_the_prefix()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        foreach (var key in new[] { "user-1/a", "user-1/b", "user-10/a", "user-1", "user-2/a", "user-0/z" })
            store.Put(B(key), B(key.ToUpperInvariant()));

        using (var scan = store.PrefixScan(B("user-1/")))
            Assert.Equal([("user-1/a", "USER-1/A"), ("user-1/b", "USER-1/B")], Drain(scan));
        using (var scan = store.PrefixScan(B("user-1")))
            Assert.Equal(["user-1", "user-1/a", "user-1/b", "user-10/a"], Drain(scan).Select(r => r.Key));
        using (var none = store.PrefixScan(B("user-3")))
            Assert.False(none.MoveNext());
        using (var everything = store.PrefixScan([]))
            Assert.Equal(6, Drain(everything).Count);
    }

    [Fact]
    public void Prefix_scan_handles_prefixes_ending_in_0xFF()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        store.Put([0x01, 0xFE], [1]);
        store.Put([0x01, 0xFF], [2]);
        store.Put([0x01, 0xFF, 0x00], [3]);
        store.Put([0x02], [4]);
        store.Put([0xFF, 0xFF], [5]);
        store.Put([0xFF, 0xFF, 0x01], [6]);

        static List<byte> Values(RocksDbIterator it)
        {
            var values = new List<byte>();
            while (it.MoveNext()) values.Add(it.Value[0]);
            return values;
        }

        using (var scan = store.PrefixScan([0x01, 0xFF]))
            Assert.Equal([2, 3], Values(scan));
        using (var scan = store.PrefixScan([0xFF]))
            Assert.Equal([5, 6], Values(scan));
    }

    [Fact]
    public void Iterator_sees_the_snapshot_of_its_creation_and_many_rows_without_copying()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        using (var batch = new RocksDbWriteBatch())
        {
            Span<byte> key = stackalloc byte[4];
            for (var i = 0; i < 5_000; i++)
            {
                BinaryPrimitives.WriteInt32BigEndian(key, i);
                batch.Put(key, key);
            }
            store.Write(batch);
        }
        store.Flush();

        using var scan = store.Range([0, 0, 0x03, 0xE8], [0, 0, 0x07, 0xD0]); // [1000, 2000)
        store.Put([0, 0, 0x03, 0xE9], [9]);
        var expected = 1000;
        while (scan.MoveNext())
        {
            Assert.Equal(expected, BinaryPrimitives.ReadInt32BigEndian(scan.Key));
            Assert.True(scan.Key.SequenceEqual(scan.Value));
            expected++;
        }
        Assert.Equal(2000, expected);
    }

    [Fact]
    public void Data_survives_close_and_reopen()
    {
        var dir = Dir("db");
        using (var store = RocksDbStore.Open(dir))
        {
            store.Put(B("flushed"), B("1"));
            store.Flush();
            store.Put(B("only-in-wal"), B("2"));
        }

        using (var reopened = RocksDbStore.Open(dir))
        {
            Assert.True(reopened.TryGet(B("flushed"), out var a));
            Assert.Equal("1", S(a));
            Assert.True(reopened.TryGet(B("only-in-wal"), out var b));
            Assert.Equal("2", S(b));
        }
    }

    [Fact]
    public void Checkpoint_opens_as_a_store_with_the_same_data_and_is_independent()
    {
        var checkpoint = Dir("checkpoints/cp-1");
        using var store = RocksDbStore.Open(Dir("db"));
        for (var i = 0; i < 100; i++) store.Put(B($"key-{i:D3}"), B($"value-{i}"));
        store.Checkpoint(checkpoint);
        store.Put(B("after-checkpoint"), B("x"));

        Assert.True(File.Exists(Path.Combine(checkpoint, "CURRENT")));
        using var copy = RocksDbStore.Open(checkpoint);
        using (var scan = copy.PrefixScan(B("key-")))
        {
            var rows = Drain(scan);
            Assert.Equal(100, rows.Count);
            Assert.Equal(("key-042", "value-42"), rows[42]);
        }
        Assert.False(copy.TryGet(B("after-checkpoint"), out _));
    }

    [Fact]
    public void Checkpoint_into_an_existing_directory_is_a_RocksDbException()
    {
        using var store = RocksDbStore.Open(Dir("db"));
        var existing = Dir("already-there");
        Directory.CreateDirectory(existing);
        Assert.Throws<RocksDbException>(() => store.Checkpoint(existing));
        // The store is still usable after the failed call.
        store.Put(B("k"), B("v"));
        Assert.True(store.TryGet(B("k"), out _));
    }

    [Fact]
    public void Opening_a_directory_already_open_in_this_process_reports_the_lock_error()
    {
        var dir = Dir("db");
        using var first = RocksDbStore.Open(dir);
        var error = Assert.Throws<RocksDbException>(() => RocksDbStore.Open(dir));
        Assert.Contains("lock", error.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("LOCK", error.Message, StringComparison.Ordinal);

        // The first store is unaffected, and after it closes the directory opens again.
        first.Put(B("k"), B("v"));
        first.Dispose();
        using var second = RocksDbStore.Open(dir);
        Assert.True(second.TryGet(B("k"), out _));
    }

    [Fact]
    public void Dispose_is_idempotent_closes_open_iterators_and_later_calls_throw()
    {
        var store = RocksDbStore.Open(Dir("db"));
        store.Put(B("a"), B("1"));
        var leaked = store.PrefixScan([]);
        Assert.True(leaked.MoveNext());

        store.Dispose();
        store.Dispose();
        Assert.Throws<ObjectDisposedException>(() => leaked.MoveNext());
        Assert.Throws<ObjectDisposedException>(() => store.Put(B("a"), B("2")));
        Assert.Throws<ObjectDisposedException>(() => store.Get(B("a"), stackalloc byte[4]));
        leaked.Dispose();

        var batch = new RocksDbWriteBatch();
        batch.Dispose();
        batch.Dispose();
        Assert.Throws<ObjectDisposedException>(() => batch.Put(B("a"), B("1")));
    }

    [Fact]
    public void Destroy_removes_the_store_and_sync_writes_still_work()
    {
        var dir = Dir("db");
        using (var store = RocksDbStore.Open(dir, new RocksDbStoreOptions { Sync = true, BlockCacheSizeMiB = 1, BloomBitsPerKey = 0 }))
            store.Put(B("k"), B("v"));
        Assert.True(Directory.Exists(dir));

        RocksDbStore.Destroy(dir);
        Assert.False(Directory.Exists(dir));
        RocksDbStore.Destroy(dir); // absent: nothing to do

        using var fresh = RocksDbStore.Open(dir);
        Assert.False(fresh.TryGet(B("k"), out _));
    }

    [Fact]
    public void Invalid_options_name_the_field_and_value()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
            RocksDbStore.Open(Dir("db"), new RocksDbStoreOptions { BlockCacheSizeMiB = -5 }));
        Assert.Equal("BlockCacheSizeMiB", error.ParamName);
        Assert.Equal(-5, error.ActualValue);
    }
}
