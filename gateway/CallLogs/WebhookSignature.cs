using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace StreamHealth.Gateway.CallLogs;

/// <summary>How a call provider signs a webhook, and how the gateway checks it: pure code, no I/O.
/// <c>X-StreamHealth-Signature: sha256=&lt;hex&gt;</c>, the lowercase hex of HMAC-SHA256 keyed with the provider's secret (its
/// UTF-8 bytes) over the bytes of <c>X-StreamHealth-Timestamp</c> (Unix seconds, as sent), one <c>.</c>, and the raw body as
/// sent. Signing the timestamp with the body is what makes the replay window hold: an old body cannot be sent again
/// under a fresh timestamp.</summary>
public static class WebhookSignature
{
    public const string ProviderHeader = "X-StreamHealth-Provider";
    public const string TimestampHeader = "X-StreamHealth-Timestamp";
    public const string SignatureHeader = "X-StreamHealth-Signature";
    public const string Prefix = "sha256=";
    /// <summary>How far the timestamp may be from the gateway's clock, either way: the replay window (the provider's clock
    /// may also run ahead).</summary>
    public static readonly TimeSpan Tolerance = TimeSpan.FromMinutes(5);
    public const int DigestBytes = 32;

    /// <summary>The header value for <paramref name="body"/> (what a provider, or a test standing in for one, sends).</summary>
    public static string Sign(string secret, string timestamp, ReadOnlySpan<byte> body)
    {
        Span<byte> digest = stackalloc byte[DigestBytes];
        Compute(Encoding.UTF8.GetBytes(secret), timestamp, body, digest);
        return Prefix + Convert.ToHexStringLower(digest);
    }

    /// <summary>Whether <paramref name="header"/> is a signature of the timestamp and body by one of <paramref name="keys"/>.
    /// Every key is tried and every comparison is constant-time, so the answer's timing says nothing about how many
    /// leading bytes of a guess were right (nor which key matched).</summary>
    public static bool Verify(IReadOnlyList<byte[]> keys, string timestamp, ReadOnlySpan<byte> body, string? header)
    {
        Span<byte> presented = stackalloc byte[DigestBytes];
        if (!TryParse(header, presented)) return false;
        Span<byte> expected = stackalloc byte[DigestBytes];
        var matched = false;
        foreach (var key in keys)
        {
            Compute(key, timestamp, body, expected);
            matched |= CryptographicOperations.FixedTimeEquals(expected, presented);
        }
        return matched;
    }

    /// <summary>The timestamp header's instant, or null when it is not whole Unix seconds (digits only: no sign, no spaces,
    /// no fraction, so that the bytes signed have one spelling).</summary>
    public static DateTimeOffset? ParseTimestamp(string? value)
    {
        if (value is not { Length: > 0 and <= 12 } || !long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
            || seconds > DateTimeOffset.MaxValue.ToUnixTimeSeconds())
            return null;
        return DateTimeOffset.FromUnixTimeSeconds(seconds);
    }

    private static bool TryParse(string? header, Span<byte> digest) =>
        header is { Length: 7 + 2 * DigestBytes } && header.StartsWith(Prefix, StringComparison.Ordinal)
        && Convert.FromHexString(header.AsSpan(Prefix.Length), digest, out _, out var written) == System.Buffers.OperationStatus.Done
        && written == DigestBytes;

    private static void Compute(byte[] key, string timestamp, ReadOnlySpan<byte> body, Span<byte> digest)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
        // The timestamp was parsed as digits only, so its ASCII bytes are the ones the provider signed.
        Span<byte> stamp = stackalloc byte[timestamp.Length + 1];
        var length = Encoding.ASCII.GetBytes(timestamp, stamp);
        stamp[length] = (byte)'.';
        hmac.AppendData(stamp[..(length + 1)]);
        hmac.AppendData(body);
        hmac.GetHashAndReset(digest);
    }
}
