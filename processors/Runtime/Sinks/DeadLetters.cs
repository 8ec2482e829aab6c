using Microsoft.Extensions.Logging;
using Npgsql;

namespace StreamHealth.Runtime.Sinks;

/// <summary>streamhealth.dead_letters: where a record that cannot be stored is kept, as it arrived, with the reason.
/// Keyed by source position and processor (V0007): archiving the same record twice from one sink (a retried batch)
/// is a no-op, while two sinks that both refuse one record each keep their own reason.</summary>
public static class DeadLetters
{
    /// <summary>Archives <paramref name="record"/>, inside <paramref name="tx"/> when a writer keeps the letter with its
    /// batch (so the batch commits with it, never without it). True when archived now, false when it already was.
    /// The error is made storable (<see cref="SinkErrors.Storable"/>): a message may echo the very value refused.</summary>
    public static bool Insert(NpgsqlConnection connection, NpgsqlTransaction? tx, SinkRecord record, string processor, string error, ILogger? log = null)
    {
        error = SinkErrors.Storable(error);
        using var letter = new NpgsqlCommand("""
            INSERT INTO streamhealth.dead_letters (source_topic, source_partition, source_offset, processor, error, record_key, record_value)
            VALUES (@topic, @partition, @offset, @processor, @error, @key, @value) ON CONFLICT DO NOTHING
            """, connection, tx);
        letter.Parameters.AddWithValue("topic", record.Topic);
        letter.Parameters.AddWithValue("partition", record.Partition);
        letter.Parameters.AddWithValue("offset", record.Offset);
        letter.Parameters.AddWithValue("processor", processor);
        letter.Parameters.AddWithValue("error", error);
        letter.Parameters.AddWithValue("key", (object?)record.Key ?? DBNull.Value);
        letter.Parameters.AddWithValue("value", (object?)record.Value ?? DBNull.Value);
        var inserted = letter.ExecuteNonQuery() == 1;
        log?.LogWarning("{Sink}: {Topic}[{Partition}]@{Offset}: {Error}; kept in streamhealth.dead_letters",
            processor, record.Topic, record.Partition, record.Offset, error);
        return inserted;
    }
}

/// <summary>Where a <see cref="SinkRunner"/> archives the records its writer refuses permanently. Throwing means the
/// archive is unavailable: an outage, so the runner pauses and retries rather than drop the record.</summary>
public interface ISinkDeadLetters
{
    /// <summary>True when archived now, false when it already was (a batch retried after an outage).</summary>
    bool Archive(SinkRecord record, string processor, string error);
}

/// <summary>streamhealth.dead_letters in the given database, for every sink whatever its store (a Redis sink's refused
/// records are archived in PostgreSQL too), one short transaction per letter.</summary>
public sealed class PostgresSinkDeadLetters(NpgsqlDataSource db, ILogger? log = null) : ISinkDeadLetters
{
    public bool Archive(SinkRecord record, string processor, string error)
    {
        using var connection = db.OpenConnection();
        return DeadLetters.Insert(connection, null, record, processor, error, log);
    }
}
