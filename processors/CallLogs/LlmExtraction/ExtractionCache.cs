using System.Security.Cryptography;
using System.Text;
using StreamHealth.CallLogs.Extraction;

namespace StreamHealth.CallLogs.LlmExtraction;

/// <summary>Extractions by content: the key is SHA-256 of (model, prompt version, transcript), so a redelivered call, the same
/// transcript in two calls, or a restart of extract-check asks the endpoint once, and a new model or prompt asks again. Bounded:
/// the least recently used entry is dropped past <c>capacity</c> (a dictionary plus a recency list under one lock; a lookup is a
/// hash and a pointer move against a model's second-long answer). Only the endpoint's validated answers are kept, never a
/// fallback's, so a call extracted by the embedded extractor during an outage is asked again next time.</summary>
public sealed class ExtractionCache(int capacity)
{
    private readonly Dictionary<TranscriptHash, LinkedListNode<(TranscriptHash Key, ExtractionResult Result)>> _byKey = new();
    private readonly LinkedList<(TranscriptHash Key, ExtractionResult Result)> _recency = new();
    private readonly Lock _lock = new();

    public int Count { get { lock (_lock) return _byKey.Count; } }

    public static TranscriptHash KeyOf(string model, string transcript)
    {
        // Lengths first, so that no (model, transcript) pair can be spelled as another by moving the boundary.
        var text = $"{model.Length}:{model}\n{ExtractionAnswer.PromptVersion.Length}:{ExtractionAnswer.PromptVersion}\n{transcript.Length}:{transcript}";
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(text), hash);
        return new TranscriptHash(hash);
    }

    public bool TryGet(TranscriptHash key, out ExtractionResult result)
    {
        lock (_lock)
        {
            if (_byKey.TryGetValue(key, out var node))
            {
                _recency.Remove(node);
                _recency.AddFirst(node);
                result = node.Value.Result;
                return true;
            }
        }
        result = ExtractionResult.Empty;
        return false;
    }

    public void Put(TranscriptHash key, ExtractionResult result)
    {
        if (capacity == 0) return;
        lock (_lock)
        {
            if (_byKey.TryGetValue(key, out var old)) _recency.Remove(old);
            _byKey[key] = _recency.AddFirst((key, result));
            while (_byKey.Count > capacity)
            {
                _byKey.Remove(_recency.Last!.Value.Key);
                _recency.RemoveLast();
            }
        }
    }
}

/// <summary>The whole SHA-256 digest as a dictionary key (two 128-bit halves: no truncation, so no engineered collisions).</summary>
public readonly record struct TranscriptHash(UInt128 High, UInt128 Low)
{
    public TranscriptHash(ReadOnlySpan<byte> sha256)
        : this(System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(sha256[..16]),
            System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(sha256[16..32])) { }
}
