using System.Text;
using Google.Protobuf;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Runtime.Sinks;

/// <summary>Thrown by a writer for one record it can never store (it does not decode, or a value in it is out of the
/// store's domain), naming the record so the runner archives it without searching the batch. Permanent by
/// definition; the writer must have written nothing of the batch.</summary>
public sealed class SinkRecordException(SinkRecord record, string message) : Exception(message)
{
    public SinkRecord Record { get; } = record;
}

/// <summary>The one place that tells a record the store refuses from a store that is not there (issue 11, defect 1).
/// A permanent error is a property of the records in the batch: writing them again fails again, so the runner splits
/// the batch, archives the refused record in streamhealth.dead_letters and moves on. Anything else is an outage (or a
/// fault we cannot attribute to a record): nothing is archived, the runner pauses and retries, and the sink's health
/// shows it stalled. Unknown exceptions are outages on purpose: dead-lettering every record because of a bug in a
/// writer would look like progress while losing the stream; stalling is loud and loses nothing.</summary>
public static class SinkErrors
{
    // Redis error prefixes that describe the server's state, not the value: retry, never archive.
    private static readonly string[] TransientRedisErrors =
        ["LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF", "NOSCRIPT", "MOVED", "ASK"];

    /// <summary>True when <paramref name="e"/> says "these records can never be stored", false for an outage:
    /// <list type="bullet">
    /// <item>PostgreSQL SQLSTATE class 22 (data exception: a NUL in text, a value out of range, ...) or 23 (integrity
    /// constraint violation) is permanent; every other class (08 connection, 53 resources, 57 operator intervention,
    /// 58 system, 40 rollback, 42 a schema the deployment lacks, ...) and every non-server Npgsql error is an outage;</item>
    /// <item>a Redis error reply (<see cref="RedisServerException"/>: a script error, WRONGTYPE) is permanent unless it
    /// describes the server's state (LOADING, BUSY, READONLY, OOM, ...); connection errors and timeouts are outages;</item>
    /// <item>a record that does not decode or convert (<see cref="SinkRecordException"/>, protobuf, format, overflow,
    /// argument and cast errors a writer meets while turning a record into parameters) is permanent;</item>
    /// <item>an <see cref="AggregateException"/> (a pipelined batch) is permanent only when all its errors are.</item>
    /// </list></summary>
    public static bool IsPermanent(Exception e) => e switch
    {
        AggregateException a => a.Flatten().InnerExceptions is { Count: > 0 } inner && inner.All(IsPermanent),
        SinkRecordException => true,
        PostgresException pg => pg.SqlState.StartsWith("22", StringComparison.Ordinal) || pg.SqlState.StartsWith("23", StringComparison.Ordinal),
        NpgsqlException => false,
        RedisServerException r => !IsTransientRedisError(r.Message),
        RedisException => false,   // RedisConnectionException, ...; RedisTimeoutException is a TimeoutException: the default arm
        ArgumentNullException => false,   // a writer's bug, not a value
        InvalidProtocolBufferException or FormatException or OverflowException or ArgumentException or InvalidCastException => true,
        _ => false,
    };

    private static bool IsTransientRedisError(string message)
    {
        foreach (var prefix in TransientRedisErrors)
            if (message.StartsWith(prefix, StringComparison.Ordinal)
                && (message.Length == prefix.Length || message[prefix.Length] == ' '))
                return true;
        return false;
    }

    /// <summary>The longest error text kept (dead letters, health): enough for any store's message, bounded because
    /// a message may echo a client's value.</summary>
    public const int MaxMessageLength = 1_000;

    /// <summary>An error's text as operators see it and as streamhealth.dead_letters can store it: the message
    /// (never a type name or a stack trace), the first inner message of an aggregate, with NULs and other C0
    /// controls (except tab and newline) and unpaired surrogates replaced, at most <see cref="MaxMessageLength"/>
    /// characters.</summary>
    public static string Describe(Exception e)
    {
        if (e is AggregateException a && a.Flatten().InnerExceptions is { Count: > 0 } inner)
            e = inner.FirstOrDefault(IsPermanent) ?? inner[0];
        return Storable(e.Message);
    }

    /// <summary><paramref name="text"/> made storable in a PostgreSQL text column (see <see cref="Describe"/>).</summary>
    /// <remarks>What is storable is the free-text rule every ingest path applies (<see cref="InputRules.FindForbiddenChar"/>).</remarks>
    public static string Storable(string text)
    {
        var rest = text.AsSpan();
        var bad = InputRules.FindForbiddenChar(rest);
        if (bad < 0 && text.Length <= MaxMessageLength) return text;
        var s = new StringBuilder(Math.Min(text.Length, MaxMessageLength));
        while (s.Length < MaxMessageLength)
        {
            var clean = bad < 0 ? rest : rest[..bad];
            s.Append(clean[..Math.Min(clean.Length, MaxMessageLength - s.Length)]);
            if (bad < 0 || s.Length >= MaxMessageLength) break;
            var c = rest[bad];
            if (char.IsSurrogate(c)) s.Append('\uFFFD');
            else s.Append("\\x").Append(((int)c).ToString("x2"));
            rest = rest[(bad + 1)..];
            bad = InputRules.FindForbiddenChar(rest);
        }
        return s.ToString();
    }
}
