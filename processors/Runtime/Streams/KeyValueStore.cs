namespace StreamHealth.Runtime.Streams;

/// <summary>A typed view of one store of one task. Reads see this task's uncommitted writes;
/// writes become durable, with the input offset they reflect, at the task's next commit.</summary>
public sealed class KeyValueStore<TKey, TValue>
{
    private readonly TaskState _state;
    private readonly byte[] _prefix;
    private readonly ISerde<TKey> _keys;
    private readonly ISerde<TValue> _values;

    internal KeyValueStore(TaskState state, string name, ISerde<TKey> keys, ISerde<TValue> values)
    {
        _state = state;
        _prefix = TaskState.StorePrefix(name);
        _keys = keys;
        _values = values;
    }

    public bool TryGet(TKey key, out TValue value)
    {
        var bytes = _state.Get(Key(key));
        if (bytes is null)
        {
            value = default!;
            return false;
        }
        value = _values.Deserialize(bytes);
        return true;
    }

    public void Put(TKey key, TValue value) => _state.Put(Key(key), _values.Serialize(value));

    public void Delete(TKey key) => _state.Put(Key(key), null);

    private byte[] Key(TKey key)
    {
        var k = _keys.Serialize(key);
        var full = new byte[_prefix.Length + k.Length];
        _prefix.CopyTo(full, 0);
        k.CopyTo(full, _prefix.Length);
        return full;
    }
}
