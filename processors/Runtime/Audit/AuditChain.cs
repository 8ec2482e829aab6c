using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace StreamHealth.Runtime.Audit;

/// <summary>One access to personal data: when, who (<c>user:&lt;id&gt;</c>, <c>service:&lt;key name&gt;</c> or
/// <c>anonymous</c>), whose data (a user id, or "" when not one person's), read/write/delete, which resource (method,
/// route pattern, concrete path) and the HTTP status answered. Never any request or response content.</summary>
public readonly record struct AuditEntry(DateTime At, string Actor, string Subject, string Action, string Resource, int Outcome)
{
    public const int MaxActorLength = 200;
    public const int MaxSubjectLength = 128;
    public const int MaxResourceLength = 600;

    /// <summary>The entry as it can be stored and hashed: time truncated to PostgreSQL's microseconds (so the hash of
    /// what was written equals the hash of what is read back), texts bounded and without control characters or
    /// unpaired surrogates (which PostgreSQL's UTF-8 text could not hold as sent).</summary>
    public AuditEntry Normalised() => new(
        new DateTime(At.ToUniversalTime().Ticks / 10 * 10, DateTimeKind.Utc),
        AuditChain.Clean(Actor, MaxActorLength), AuditChain.Clean(Subject, MaxSubjectLength), Action,
        AuditChain.Clean(Resource, MaxResourceLength), Outcome);
}

/// <summary>The hash chain of audit.events (schemas/sql/V0012__audit.sql), pure: each row's hash is SHA-256 over a
/// canonical encoding of (seq, at, actor, subject, action, resource, outcome, prev_hash), and prev_hash is the previous
/// row's hash (32 zero bytes before the first row). The encoding is unambiguous: fixed-width big-endian integers, each
/// text as its UTF-8 byte length then its bytes, so no two different rows encode alike.</summary>
public static class AuditChain
{
    public const int HashBytes = 32;
    /// <summary>Advisory lock every appender and audit.prune take ("SHAUDIT"): replicas append one linear chain.</summary>
    public const long LockKey = 0x53484155444954;
    /// <summary>Versions the encoding: a future change of it cannot collide with this one.</summary>
    private static readonly byte[] Domain = "streamhealth.audit.v1\0"u8.ToArray();

    public static readonly byte[] GenesisHash = new byte[HashBytes];

    public static readonly string[] Actions = ["read", "write", "delete"];

    public static long UnixMicroseconds(DateTime utc) => (utc.Ticks - DateTime.UnixEpoch.Ticks) / 10;

    /// <summary>The row's hash. <paramref name="entry"/> must be <see cref="AuditEntry.Normalised"/> (or read back from
    /// the table, which only holds normalised entries).</summary>
    public static byte[] Hash(long seq, in AuditEntry entry, ReadOnlySpan<byte> prevHash)
    {
        var length = Domain.Length + 8 + 8 + 4 + 4 + prevHash.Length
                     + 4 * 4 + Encoding.UTF8.GetByteCount(entry.Actor) + Encoding.UTF8.GetByteCount(entry.Subject)
                     + Encoding.UTF8.GetByteCount(entry.Action) + Encoding.UTF8.GetByteCount(entry.Resource);
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var span = buffer.AsSpan(0, length);
            Domain.CopyTo(span);
            var at = Domain.Length;
            BinaryPrimitives.WriteInt64BigEndian(span[at..], seq); at += 8;
            BinaryPrimitives.WriteInt64BigEndian(span[at..], UnixMicroseconds(entry.At)); at += 8;
            at = WriteText(span, at, entry.Actor);
            at = WriteText(span, at, entry.Subject);
            at = WriteText(span, at, entry.Action);
            at = WriteText(span, at, entry.Resource);
            BinaryPrimitives.WriteInt32BigEndian(span[at..], entry.Outcome); at += 4;
            BinaryPrimitives.WriteInt32BigEndian(span[at..], prevHash.Length); at += 4;
            prevHash.CopyTo(span[at..]);
            return SHA256.HashData(span);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static int WriteText(Span<byte> span, int at, string text)
    {
        var written = Encoding.UTF8.GetBytes(text, span[(at + 4)..]);
        BinaryPrimitives.WriteInt32BigEndian(span[at..], written);
        return at + 4 + written;
    }

    /// <summary>At most <paramref name="maxLength"/> characters; control characters and unpaired surrogates become '?';
    /// a surrogate pair is never cut in two.</summary>
    public static string Clean(string text, int maxLength)
    {
        var clean = true;
        foreach (var c in text)
            if (c < ' ' || c == '\u007f' || char.IsSurrogate(c)) { clean = false; break; }
        if (clean && text.Length <= maxLength) return text;
        var s = new StringBuilder(Math.Min(text.Length, maxLength));
        for (var i = 0; i < text.Length && s.Length < maxLength; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                if (s.Length + 2 > maxLength) break;
                s.Append(c).Append(text[++i]);
            }
            else s.Append(c < ' ' || c == '\u007f' || char.IsSurrogate(c) ? '?' : c);
        }
        return s.ToString();
    }
}
