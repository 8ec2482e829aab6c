namespace StreamHealth.Runtime.State;

/// <summary>An error status returned by RocksDB; the message is RocksDB's own (for example
/// "IO error: lock hold by current process ... LOCK: No locks available" when a store is opened twice).</summary>
public sealed class RocksDbException(string message) : Exception(message);
