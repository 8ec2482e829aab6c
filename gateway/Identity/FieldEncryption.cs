using System.Buffers.Text;
using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;

namespace StreamHealth.Gateway.Identity;

/// <summary>A stored value that cannot be decrypted: tampered, moved to another person or field, or sealed with a key
/// this gateway no longer has. The message names the field and key id, never the value.</summary>
public sealed class FieldDecryptionException(string message) : CryptographicException(message);

/// <summary>Encryption at rest of one personal field: AES-256-GCM with a 12-byte random nonce and a 16-byte tag, the
/// associated data binding the value to its person and field (a ciphertext copied to another user or column fails to
/// open), stored as the envelope <c>v1.&lt;key id&gt;.&lt;base64url(nonce | ciphertext | tag)&gt;</c>
/// (schemas/sql/V0011__insights.sql). The active key seals; every configured key opens, so keys rotate by adding a new
/// active key and keeping the old ones until every value was rewritten. Pure: no I/O, no logging.</summary>
public sealed class FieldEncryption
{
    public const string Version = "v1";
    public const int KeyBytes = 32;
    public const int NonceBytes = 12;
    public const int TagBytes = 16;
    public const int MaxKeyIdLength = 32;

    private readonly FrozenDictionary<string, byte[]> _keys;
    private readonly string _activeKeyId;

    /// <param name="keys">key id → 32-byte key</param>
    public FieldEncryption(IReadOnlyDictionary<string, byte[]> keys, string activeKeyId)
    {
        foreach (var (id, key) in keys)
        {
            if (CheckKeyId(id) is { } problem) throw new ArgumentException(problem, nameof(keys));
            if (key.Length != KeyBytes) throw new ArgumentException($"key '{id}' is {key.Length} bytes; AES-256 takes {KeyBytes}", nameof(keys));
        }
        if (!keys.ContainsKey(activeKeyId)) throw new ArgumentException($"the active key id '{activeKeyId}' is not one of the keys", nameof(activeKeyId));
        _keys = keys.ToFrozenDictionary(k => k.Key, k => k.Value.ToArray(), StringComparer.Ordinal);
        _activeKeyId = activeKeyId;
    }

    public string ActiveKeyId => _activeKeyId;

    /// <summary>Null when <paramref name="keyId"/> may name a key: the envelope splits on '.', so ids are 1-32 of
    /// A-Z a-z 0-9 _ -.</summary>
    public static string? CheckKeyId(string keyId) =>
        keyId.Length is >= 1 and <= MaxKeyIdLength && keyId.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-')
            ? null
            : $"key id '{keyId}' must be 1-{MaxKeyIdLength} characters of A-Z a-z 0-9 _ -";

    /// <summary>Seals <paramref name="plaintext"/> under the active key for <paramref name="field"/> of <paramref name="userId"/>.</summary>
    public string Encrypt(string plaintext, string userId, string field)
    {
        var plain = Encoding.UTF8.GetBytes(plaintext);
        var sealedBytes = new byte[NonceBytes + plain.Length + TagBytes];
        var nonce = sealedBytes.AsSpan(0, NonceBytes);
        // Random 96-bit nonces: NIST SP 800-38D bounds one key to 2^32 of them; rotate the key long before that.
        RandomNumberGenerator.Fill(nonce);
        using (var aes = new AesGcm(_keys[_activeKeyId], TagBytes))
            aes.Encrypt(nonce, plain, sealedBytes.AsSpan(NonceBytes, plain.Length), sealedBytes.AsSpan(NonceBytes + plain.Length), AssociatedData(userId, field));
        CryptographicOperations.ZeroMemory(plain);
        return $"{Version}.{_activeKeyId}.{Base64Url.EncodeToString(sealedBytes)}";
    }

    /// <summary>Opens an envelope sealed for <paramref name="field"/> of <paramref name="userId"/>; throws
    /// <see cref="FieldDecryptionException"/> when it is malformed, its key is unknown, or it was altered or moved.</summary>
    public string Decrypt(string envelope, string userId, string field)
    {
        var keyId = KeyIdOf(envelope, field);
        if (!_keys.TryGetValue(keyId, out var key))
            throw new FieldDecryptionException($"{field}: sealed with key '{keyId}', which is not in Gateway:Encryption:Keys");
        byte[] sealedBytes;
        try
        {
            sealedBytes = Base64Url.DecodeFromChars(envelope.AsSpan(Version.Length + 1 + keyId.Length + 1));
        }
        catch (FormatException)
        {
            throw new FieldDecryptionException($"{field}: the envelope's payload is not base64url");
        }
        if (sealedBytes.Length < NonceBytes + TagBytes)
            throw new FieldDecryptionException($"{field}: the envelope's payload is {sealedBytes.Length} bytes, shorter than a nonce and a tag");
        var cipherLength = sealedBytes.Length - NonceBytes - TagBytes;
        var plain = new byte[cipherLength];
        try
        {
            using var aes = new AesGcm(key, TagBytes);
            aes.Decrypt(sealedBytes.AsSpan(0, NonceBytes), sealedBytes.AsSpan(NonceBytes, cipherLength), sealedBytes.AsSpan(NonceBytes + cipherLength),
                plain, AssociatedData(userId, field));
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new FieldDecryptionException($"{field}: the value does not authenticate under key '{keyId}' for this person and field " +
                                               "(altered, or copied from another person or field)");
        }
        var text = Encoding.UTF8.GetString(plain);
        CryptographicOperations.ZeroMemory(plain);
        return text;
    }

    /// <summary>The key id an envelope names (what a re-encryption job looks for).</summary>
    public static string KeyIdOf(string envelope, string field = "value")
    {
        var parts = envelope.Split('.');
        if (parts.Length != 3 || parts[0] != Version)
            throw new FieldDecryptionException($"{field}: not a {Version}.<key id>.<payload> envelope");
        if (CheckKeyId(parts[1]) is not null) throw new FieldDecryptionException($"{field}: the envelope's key id is malformed");
        return parts[1];
    }

    /// <summary>Version, field and person, NUL-separated: neither a field name (a constant) nor a user id (the id rule)
    /// holds a NUL, so no two (field, person) pairs share associated data.</summary>
    private static byte[] AssociatedData(string userId, string field) => Encoding.UTF8.GetBytes($"{Version}\0{field}\0{userId}");
}
