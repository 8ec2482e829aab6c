using Microsoft.Extensions.Logging;
using Npgsql;

namespace StreamHealth.Runtime.Sinks;

/// <summary>streamhealth.dead_letters: where a sink keeps a record it cannot decode, inside the batch's own
/// transaction (so the batch commits with it, never without it). Keyed by source position: archiving the
/// same record twice (a retried batch) is a no-op.</summary>
public static class DeadLetters
{
    public static void Insert(NpgsqlConnection connection, NpgsqlTransaction tx, SinkRecord record, string processor, string error, ILogger? log = null)
    {
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
        letter.ExecuteNonQuery();
        log?.LogWarning("{Sink}: {Topic}[{Partition}]@{Offset}: {Error}; kept in streamhealth.dead_letters",
            processor, record.Topic, record.Partition, record.Offset, error);
    }
}
