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

    // The usual record does get(key) then put(key): the second builds nothing. Safe to share the array:
    // the task's caches only ever use it as a dictionary key and never write into it.
    // Only for immutable key types: a mutable key (a Protobuf message) could change between the two calls.
    private static readonly bool KeysAreImmutable = typeof(TKey) == typeof(string) || typeof(TKey).IsValueType;
    private TKey? _lastKey;
    private byte[]? _lastKeyBytes;

    private byte[] Key(TKey key)
    {
        if (KeysAreImmutable && _lastKeyBytes is not null && EqualityComparer<TKey>.Default.Equals(key, _lastKey)) return _lastKeyBytes;
        _lastKeyBytes = _keys.SerializeWithPrefix(_prefix, key);
        _lastKey = key;
        return _lastKeyBytes;
    }
}
