using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Runtime.Sinks;

/// <summary>What <see cref="PostgresEventSink{T}"/> needs to know of one workload: how a record decodes, what it
/// refuses, how an event's id is claimed (if its records are events), the insert, and what follows a commit. Everything else (dead letters, the claim, the transaction)
/// is the same for every workload and lives in the sink.</summary>
public sealed class PostgresEventWorkload<T>
{
    /// <summary>The sink's name: its health, its logs and the processor of its dead letters.</summary>
    public required string SinkName { get; init; }

    /// <summary>Turns a record into the event; throws <see cref="FormatException"/> or
    /// <see cref="InvalidProtocolBufferException"/> for a record that does not decode (see
    /// <see cref="PostgresEventSink.Value"/>).</summary>
    public required Func<SinkRecord, T> Decode { get; init; }

    /// <summary>The dead letter's reason for a record that does not decode, before ": " and the decoder's message,
    /// e.g. "cannot decode WeightResult".</summary>
    public required string DecodeFailure { get; init; }

    /// <summary>Why a decoded event cannot be stored (the dead letter's whole reason), or null. The second argument
    /// is the record's receiving clock (<see cref="EventTimeRule.ReceivedAt"/>), so a replay is judged as the first
    /// pass was.</summary>
    public Func<T, long, string?>? Refuse { get; init; }

    /// <summary>True for an event left out without a dead letter here, because the stage that produced the topic
    /// already dead-letters it by the same rule (one letter per refusal, not one per reader). Same arguments as
    /// <see cref="Refuse"/>.</summary>
    public Func<T, long, bool>? Skip { get; init; }

    /// <summary>The workload's name in streamhealth.event_ids (<see cref="EventIds"/>); with it <see cref="EventIdField"/>,
    /// <see cref="EventKind"/>, <see cref="EventId"/> and <see cref="Fingerprint"/> are required. Null for a workload whose records
    /// are not events but the latest state of something (an aggregate the sink upserts, e.g. insights.daily): nothing to claim.</summary>
    public string? EventIdWorkload { get; init; }

    /// <summary>The id's field name as a conflict's reason names it, e.g. "measurement_id".</summary>
    public string? EventIdField { get; init; }

    /// <summary>The kind of event a conflict's reason names (<see cref="EventIds.ConflictReason"/>), e.g.
    /// "measurement (time, value, unit or source differ)".</summary>
    public string? EventKind { get; init; }

    public Func<T, string>? EventId { get; init; }
    public required Func<T, string> UserId { get; init; }

    /// <summary>What makes a retry the same event: equal fingerprints under one id are a retry, different ones a
    /// conflict.</summary>
    public Func<T, string>? Fingerprint { get; init; }

    /// <summary>The statement storing the rows, idempotent (a retried or replayed batch): an INSERT … ON CONFLICT DO NOTHING for
    /// events, an upsert that keeps each key's last row of the batch for state), its parameters added by
    /// <see cref="AddParameters"/>.</summary>
    public required string InsertSql { get; init; }

    /// <summary>Adds <see cref="InsertSql"/>'s parameters for the rows (<see cref="EventRows{T}.Column"/>).</summary>
    public required Action<NpgsqlParameterCollection, EventRows<T>> AddParameters { get; init; }

    /// <summary>Runs after the batch's transaction committed, with the rows it stored (e.g. invalidating a cache of what they
    /// changed). It must not throw for an outage of its own: the rows are stored, and a throw would make the runner write them
    /// again and stall on that outage.</summary>
    public Action<EventRows<T>>? AfterCommit { get; init; }

    internal void Validate()
    {
        if (EventIdWorkload is null) return;
        var missing = new List<string>();
        if (EventIdField is null) missing.Add(nameof(EventIdField));
        if (EventKind is null) missing.Add(nameof(EventKind));
        if (EventId is null) missing.Add(nameof(EventId));
        if (Fingerprint is null) missing.Add(nameof(Fingerprint));
        if (missing.Count > 0)
            throw new ArgumentException($"sink {SinkName}: EventIdWorkload is set, so {string.Join(", ", missing)} must be too");
    }
}

/// <summary>A result topic → PostgreSQL table sink, the same for every workload (<see cref="PostgresEventWorkload{T}"/>).
/// Each event id is claimed in streamhealth.event_ids so an event is stored once whatever its time; idempotent (a retry
/// or replay is the same claim and the insert's ON CONFLICT DO NOTHING; a state workload's upsert of the same rows) and
/// all-or-nothing per batch, followed by the workload's <see cref="PostgresEventWorkload{T}.AfterCommit"/>. A record that
/// does not decode, that the workload refuses, or whose id another user or another event owns goes to
/// streamhealth.dead_letters with the reason in the batch's transaction: nothing is dropped silently. A batch
/// PostgreSQL refuses throws, and the runner finds the refused record (<see cref="SinkErrors"/>).</summary>
public sealed class PostgresEventSink<T> : ISinkWriter
{
    private readonly NpgsqlDataSource db;
    private readonly PostgresEventWorkload<T> workload;
    private readonly ILogger? log;

    public PostgresEventSink(NpgsqlDataSource db, PostgresEventWorkload<T> workload, ILogger? log = null)
    {
        workload.Validate();
        this.db = db;
        this.workload = workload;
        this.log = log;
    }

    public string Name => workload.SinkName;

    public void Write(IReadOnlyList<SinkRecord> batch)
    {
        var rows = new List<(SinkRecord Record, T Value)>(batch.Count);
        var dead = new List<(SinkRecord Record, string Error)>();
        var wallMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        foreach (var record in batch)
        {
            T value;
            try
            {
                value = workload.Decode(record);
            }
            catch (Exception e) when (e is FormatException or InvalidProtocolBufferException)
            {
                dead.Add((record, workload.DecodeFailure + ": " + e.Message));
                continue;
            }
            var receivedAtMs = EventTimeRule.ReceivedAt(record.TimestampUnixMs, wallMs);
            if (workload.Skip?.Invoke(value, receivedAtMs) == true) continue;
            if (workload.Refuse?.Invoke(value, receivedAtMs) is { } problem)
            {
                dead.Add((record, problem));
                continue;
            }
            rows.Add((record, value));
        }
        using var connection = db.OpenConnection();
        using var tx = connection.BeginTransaction();
        if (workload.EventIdWorkload is not null) ClaimEventIds(connection, tx, rows, dead);
        if (rows.Count > 0)
        {
            using var insert = new NpgsqlCommand(workload.InsertSql, connection, tx);
            workload.AddParameters(insert.Parameters, new EventRows<T>(rows));
            insert.ExecuteNonQuery();
        }
        foreach (var (record, message) in dead)
            DeadLetters.Insert(connection, tx, record, Name, message, log);
        tx.Commit();
        if (rows.Count > 0) workload.AfterCommit?.Invoke(new EventRows<T>(rows));
    }

    /// <summary>Claims each row's event id, moving the rows whose id another user or another event owns to
    /// <paramref name="dead"/>. An event id is one event of one user whatever its time; a table's key (id, time) cannot say so,
    /// the registry does. A conflicting record (produced straight onto the topic) is dead-lettered in this transaction, never
    /// stored beside the first.</summary>
    private void ClaimEventIds(NpgsqlConnection connection, NpgsqlTransaction tx, List<(SinkRecord Record, T Value)> rows,
        List<(SinkRecord Record, string Error)> dead)
    {
        var ids = new string[rows.Count];
        var users = new string[rows.Count];
        var fingerprints = new string[rows.Count];
        for (var i = 0; i < rows.Count; i++)
        {
            ids[i] = workload.EventId!(rows[i].Value);
            users[i] = workload.UserId(rows[i].Value);
            fingerprints[i] = workload.Fingerprint!(rows[i].Value);
        }
        var claims = EventIds.Claim(connection, tx, workload.EventIdWorkload!, ids, users, fingerprints);
        // Conflicts are rare: the owned rows are compacted in place rather than copied.
        var owned = 0;
        for (var i = 0; i < rows.Count; i++)
        {
            if (EventIds.ConflictReason(claims[i], workload.EventIdField!, ids[i], workload.EventKind!) is { } conflict)
                dead.Add((rows[i].Record, conflict));
            else
                rows[owned++] = rows[i];
        }
        rows.RemoveRange(owned, rows.Count - owned);
    }
}

/// <summary>Helpers for a workload's <see cref="PostgresEventWorkload{T}.Decode"/>.</summary>
public static class PostgresEventSink
{
    /// <summary>The record's value, or a <see cref="FormatException"/> (a dead letter) when it has none.</summary>
    public static byte[] Value(SinkRecord record) => record.Value ?? throw new FormatException("record has no value");

    /// <summary>The record's key, or a <see cref="FormatException"/> (a dead letter) when it has none.</summary>
    public static byte[] Key(SinkRecord record) => record.Key ?? throw new FormatException("record has no key");

    /// <summary><paramref name="value"/>, when its own <paramref name="field"/> is the record key's id; else a
    /// <see cref="FormatException"/> (a dead letter): a record produced straight onto a topic may disagree with its key.</summary>
    public static T KeyedBy<T>(string keyId, T value, string field, Func<T, string> valueId) =>
        valueId(value) == keyId ? value : throw new FormatException($"value's {field} '{valueId(value)}' is not the record key's '{keyId}'");
}

/// <summary>The rows a <see cref="PostgresEventSink{T}"/> stores from one batch (decoded, not refused, owning their id),
/// in batch order, each with the record it came from.</summary>
public readonly struct EventRows<T>(List<(SinkRecord Record, T Value)> rows)
{
    public int Count => rows.Count;

    public (SinkRecord Record, T Value) this[int i] => rows[i];

    /// <summary>One array parameter with an element per row, for <c>unnest</c> (which turns parallel arrays into rows:
    /// one statement per batch). <paramref name="elementType"/> where the element type alone does not say the column's
    /// (a nullable double, a real).</summary>
    public NpgsqlParameter Column<TValue>(string parameter, Func<SinkRecord, T, TValue> select, NpgsqlDbType? elementType = null)
    {
        var values = new TValue[rows.Count];
        for (var i = 0; i < values.Length; i++) values[i] = select(rows[i].Record, rows[i].Value);
        var p = new NpgsqlParameter<TValue[]>(parameter, values);
        if (elementType is { } type) p.NpgsqlDbType = NpgsqlDbType.Array | type;
        return p;
    }

    /// <summary>A timestamptz[] parameter from each row's Unix time in milliseconds.</summary>
    public NpgsqlParameter Timestamps(string parameter, Func<SinkRecord, T, long> selectUnixMs)
    {
        var values = new DateTime[rows.Count];
        for (var i = 0; i < values.Length; i++) values[i] = DateTime.UnixEpoch.AddMilliseconds(selectUnixMs(rows[i].Record, rows[i].Value));
        return new NpgsqlParameter<DateTime[]>(parameter, values) { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz };
    }
}
