using Npgsql;
using NpgsqlTypes;

namespace StreamHealth.Runtime.Audit;

/// <summary>audit.events and audit.anchors (schemas/sql/V0012__audit.sql): appending a batch to the chain, walking it,
/// and retention pruning. The chain maths is <see cref="AuditChain"/>.</summary>
public static class AuditLog
{
    /// <summary>What <see cref="VerifyAsync"/> found. <see cref="BrokenSeq"/> null: the chain is intact.</summary>
    public sealed record Verdict(long Rows, long? FirstSeq, long? LastSeq, long? AnchorSeq, long? BrokenSeq, string? Reason)
    {
        public bool Intact => BrokenSeq is null;

        public override string ToString() => Intact
            ? $"audit chain OK: {Rows} rows" + (Rows > 0 ? $", seq {FirstSeq}..{LastSeq}" : "")
              + (AnchorSeq is { } anchor ? $", continuing the anchor of pruned rows through seq {anchor}" : "")
            : $"audit chain broken at seq {BrokenSeq}: {Reason} ({Rows} rows verified before it)";
    }

    /// <summary>A row of the chain as seen at some time, <c>SEQ:HASH</c> (hash in hex): kept outside PostgreSQL (the gateway
    /// logs one a minute), it lets <see cref="VerifyAsync"/> find what the chain alone cannot, the newest rows deleted (or
    /// the whole chain rewritten) since.</summary>
    public sealed record Witness(long Seq, byte[] Hash)
    {
        public override string ToString() => $"{Seq}:{Convert.ToHexStringLower(Hash)}";

        /// <summary>Null when <paramref name="text"/> is not <c>SEQ:HASH</c> with a seq from 1 and 64 hex digits.</summary>
        public static Witness? Parse(string text)
        {
            var colon = text.IndexOf(':');
            if (colon < 1 || !long.TryParse(text.AsSpan(0, colon), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture,
                    out var seq) || seq < 1) return null;
            var hex = text.AsSpan(colon + 1);
            if (hex.Length != AuditChain.HashBytes * 2) return null;
            try
            {
                return new Witness(seq, Convert.FromHexString(hex));
            }
            catch (FormatException)
            {
                return null;
            }
        }
    }

    /// <summary>Appends <paramref name="entries"/> in one transaction under <see cref="AuditChain.LockKey"/>: the last
    /// hash is read inside the lock, so concurrent appenders (gateway replicas) build one linear chain. Returns the
    /// chain's new last row (null when there was nothing to append).</summary>
    public static async Task<Witness?> AppendAsync(NpgsqlDataSource db, IReadOnlyList<AuditEntry> entries, CancellationToken ct = default)
    {
        if (entries.Count == 0) return null;
        await using var conn = await db.OpenConnectionAsync(ct);
        await using var tx = await conn.BeginTransactionAsync(ct);
        await using (var lockCmd = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({AuditChain.LockKey})", conn, tx))
            await lockCmd.ExecuteNonQueryAsync(ct);
        long lastSeq = 0;
        var prevHash = AuditChain.GenesisHash;
        // The chain's end: the last row, or where pruning cut it when every row was pruned.
        await using (var last = new NpgsqlCommand("""
            SELECT seq, hash FROM (
              (SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1)
              UNION ALL
              (SELECT through_seq, hash FROM audit.anchors ORDER BY through_seq DESC LIMIT 1)) ends
            ORDER BY seq DESC LIMIT 1
            """, conn, tx))
        await using (var reader = await last.ExecuteReaderAsync(ct))
            if (await reader.ReadAsync(ct))
            {
                lastSeq = reader.GetInt64(0);
                prevHash = reader.GetFieldValue<byte[]>(1);
            }

        // COPY (binary) rather than an INSERT of arrays: no statement to parse or plan and no array decoding, the cheapest
        // way into PostgreSQL for a gateway that audits every request (RESULTS "Insights API").
        await using (var copy = await conn.BeginBinaryImportAsync(
            "COPY audit.events (seq, at, actor, subject, action, resource, outcome, prev_hash, hash) FROM STDIN (FORMAT BINARY)", ct))
        {
            for (var i = 0; i < entries.Count; i++)
            {
                var entry = entries[i].Normalised();
                var seq = lastSeq + 1 + i;
                var hash = AuditChain.Hash(seq, entry, prevHash);
                await copy.StartRowAsync(ct);
                await copy.WriteAsync(seq, NpgsqlDbType.Bigint, ct);
                await copy.WriteAsync(entry.At, NpgsqlDbType.TimestampTz, ct);
                await copy.WriteAsync(entry.Actor, NpgsqlDbType.Text, ct);
                await copy.WriteAsync(entry.Subject, NpgsqlDbType.Text, ct);
                await copy.WriteAsync(entry.Action, NpgsqlDbType.Text, ct);
                await copy.WriteAsync(entry.Resource, NpgsqlDbType.Text, ct);
                await copy.WriteAsync(entry.Outcome, NpgsqlDbType.Integer, ct);
                await copy.WriteAsync(prevHash, NpgsqlDbType.Bytea, ct);
                await copy.WriteAsync(hash, NpgsqlDbType.Bytea, ct);
                prevHash = hash;
            }
            await copy.CompleteAsync(ct);
        }
        await tx.CommitAsync(ct);
        return new Witness(lastSeq + entries.Count, prevHash);
    }

    /// <summary>Walks the chain in seq order, one row in memory at a time, from the latest anchor (or the first row), or
    /// from <paramref name="fromSeq"/> trusting the row before it. Stops at the first row that is missing (a gap in
    /// seq: deleted), does not follow its predecessor (prev_hash: the one before was deleted or replaced), or whose
    /// content no longer matches its hash (changed). With a <paramref name="witness"/>, the row it names must still be there
    /// with its hash: otherwise the newest rows were deleted, or the chain rewritten, since it was taken. A witness before
    /// the rows walked (pruned, or below <paramref name="fromSeq"/>) cannot be checked: <see cref="ArgumentException"/>.</summary>
    public static async Task<Verdict> VerifyAsync(NpgsqlDataSource db, long? fromSeq = null, Witness? witness = null, CancellationToken ct = default)
    {
        await using var conn = await db.OpenConnectionAsync(ct);
        long? anchorSeq = null;
        byte[]? anchorHash = null;
        var expectedPrev = AuditChain.GenesisHash;
        await using (var anchor = new NpgsqlCommand("SELECT through_seq, hash FROM audit.anchors ORDER BY through_seq DESC LIMIT 1", conn))
        await using (var reader = await anchor.ExecuteReaderAsync(ct))
            if (await reader.ReadAsync(ct))
            {
                anchorSeq = reader.GetInt64(0);
                expectedPrev = anchorHash = reader.GetFieldValue<byte[]>(1);
            }
        var expectedSeq = (anchorSeq ?? 0) + 1;
        var previousWhat = anchorSeq is null ? "the chain's start (32 zero bytes)" : $"the anchor of pruned rows through seq {anchorSeq}";
        if (fromSeq is { } from && from > expectedSeq)
        {
            await using var before = new NpgsqlCommand("SELECT hash FROM audit.events WHERE seq = $1", conn);
            before.Parameters.Add(new NpgsqlParameter { Value = from - 1 });
            if (await before.ExecuteScalarAsync(ct) is not byte[] hash)
                return new Verdict(0, null, null, anchorSeq, from - 1, $"row {from - 1}, before --from-seq {from}, is missing (deleted)");
            expectedSeq = from;
            expectedPrev = hash;
            previousWhat = $"row {from - 1}";
        }

        long rows = 0;
        long? first = null, last = null;
        await using var walk = new NpgsqlCommand("""
            SELECT seq, at, actor, subject, action, resource, outcome, prev_hash, hash FROM audit.events WHERE seq >= $1 ORDER BY seq
            """, conn);
        walk.Parameters.Add(new NpgsqlParameter { Value = expectedSeq });
        await using var rowsReader = await walk.ExecuteReaderAsync(ct);
        while (await rowsReader.ReadAsync(ct))
        {
            var seq = rowsReader.GetInt64(0);
            if (seq != expectedSeq)
                return new Verdict(rows, first, last, anchorSeq, expectedSeq, seq == expectedSeq + 1
                    ? $"row {expectedSeq} is missing (deleted); the chain continues at seq {seq}"
                    : $"rows {expectedSeq}..{seq - 1} are missing (deleted); the chain continues at seq {seq}");
            var entry = new AuditEntry(DateTime.SpecifyKind(rowsReader.GetDateTime(1), DateTimeKind.Utc), rowsReader.GetString(2), rowsReader.GetString(3),
                rowsReader.GetString(4), rowsReader.GetString(5), rowsReader.GetInt32(6));
            var prevHash = rowsReader.GetFieldValue<byte[]>(7);
            var hash = rowsReader.GetFieldValue<byte[]>(8);
            if (!prevHash.AsSpan().SequenceEqual(expectedPrev))
                return new Verdict(rows, first, last, anchorSeq, seq,
                    $"prev_hash does not match the hash of {previousWhat}: a row before it was deleted, replaced or re-hashed");
            if (!AuditChain.Hash(seq, entry, prevHash).AsSpan().SequenceEqual(hash))
                return new Verdict(rows, first, last, anchorSeq, seq, "hash mismatch: the row was changed after it was written");
            if (witness is not null && seq == witness.Seq && !hash.AsSpan().SequenceEqual(witness.Hash))
                return new Verdict(rows, first, last, anchorSeq, seq,
                    $"the hash differs from the witness {witness}: the chain was rewritten (re-hashed) at or before this row since the witness was taken");
            rows++;
            first ??= seq;
            last = seq;
            expectedSeq = seq + 1;
            expectedPrev = hash;
            previousWhat = $"row {seq}";
        }
        if (witness is not null)
        {
            if (witness.Seq >= expectedSeq)
                return new Verdict(rows, first, last, anchorSeq, expectedSeq,
                    $"the witnessed row {witness.Seq} is missing: the rows after seq {expectedSeq - 1} were deleted since the witness {witness} was taken");
            if (witness.Seq < (first ?? expectedSeq))
            {
                if (witness.Seq != anchorSeq)
                    throw new ArgumentException($"the witness's seq {witness.Seq} is before the rows verified (from seq {first ?? expectedSeq}): it cannot be checked");
                if (!anchorHash!.AsSpan().SequenceEqual(witness.Hash))
                    return new Verdict(rows, first, last, anchorSeq, witness.Seq,
                        $"the anchor's hash differs from the witness {witness}: the chain was rewritten before it was pruned");
            }
        }
        return new Verdict(rows, first, last, anchorSeq, null, null);
    }

    /// <summary>Deletes the rows recorded before <paramref name="cutoffUtc"/> (a prefix of the chain) through
    /// audit.prune, which records the anchor verify continues from.</summary>
    public static async Task<(long PrunedRows, long? ThroughSeq)> PruneAsync(NpgsqlDataSource db, DateTime cutoffUtc, CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("SELECT pruned_rows, through_seq FROM audit.prune($1)");
        cmd.Parameters.Add(new NpgsqlParameter { Value = cutoffUtc, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        return (reader.GetInt64(0), reader.IsDBNull(1) ? null : reader.GetInt64(1));
    }
}
