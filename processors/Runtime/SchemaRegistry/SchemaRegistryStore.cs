using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>The registry's durable state in PostgreSQL (schema <c>registry</c>, schemas/sql/V0008__schema_registry.sql):
/// global schema ids, the versions of each subject, compatibility levels. Registration runs in one transaction under an
/// advisory lock, so concurrent callers, in this process or another on the same database, get one id per distinct
/// schema and consecutive versions, and the compatibility check sees the versions it is checked against.</summary>
public sealed class SchemaRegistryStore(NpgsqlDataSource db)
{
    // Arbitrary constant ("SHREGI"); only registrations take this transaction-level advisory lock.
    private const long RegistrationLockKey = 0x5348_5245_4749;

    /// <summary>The global level's row in registry.config.</summary>
    private const string GlobalConfigSubject = "";

    /// <summary>A version of a subject: its global schema id and canonical schema text.</summary>
    public sealed record SubjectVersion(string Subject, int Version, int Id, string Schema);

    /// <summary>Whether the migration that creates the registry's tables has been applied to the database.</summary>
    public async Task<bool> TablesExistAsync(CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("SELECT to_regclass('registry.subject_versions') IS NOT NULL");
        return (bool)(await cmd.ExecuteScalarAsync(ct))!;
    }

    /// <summary>Registers <paramref name="schema"/> under <paramref name="subject"/>: the schema's existing id and version
    /// when it is already there; else, when it is compatible with the subject's earlier versions under the subject's
    /// level, the next version, with the schema's global id (new, or the one it has under other subjects). Throws
    /// <see cref="SchemaRegistryError"/> 409 when it is incompatible.</summary>
    public async Task<(int Id, int Version)> RegisterAsync(string subject, AvroSchemaText schema, CancellationToken ct = default)
    {
        var sha256 = SHA256.HashData(Encoding.UTF8.GetBytes(schema.Canonical));
        await using var conn = await db.OpenConnectionAsync(ct);
        await using var tx = await conn.BeginTransactionAsync(ct);
        await using (var lockCmd = new NpgsqlCommand("SELECT pg_advisory_xact_lock($1)", conn, tx))
        {
            lockCmd.Parameters.AddWithValue(RegistrationLockKey);
            await lockCmd.ExecuteNonQueryAsync(ct);
        }

        var id = await ScalarAsync<int?>(conn, tx, "SELECT id FROM registry.schemas WHERE schema_type = 'AVRO' AND sha256 = $1", ct, sha256);
        if (id is { } known)
        {
            var existing = await ScalarAsync<int?>(conn, tx,
                "SELECT version FROM registry.subject_versions WHERE subject = $1 AND schema_id = $2", ct, subject, known);
            if (existing is { } version)
            {
                await tx.CommitAsync(ct);
                return (known, version);
            }
        }

        var level = await EffectiveLevelAsync(conn, tx, subject, ct);
        var earlier = (await VersionsAsync(conn, tx, subject, ct))
            .Select(v => (v.Version, Avro.Schema.Parse(v.Schema)))
            .ToList();
        var problems = AvroCompatibility.Check(level, schema.Schema, earlier);
        if (problems.Count > 0)
            throw SchemaRegistryError.Incompatible(
                $"Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{string.Join("; ", problems)}]");

        id ??= await ScalarAsync<int>(conn, tx, """
            INSERT INTO registry.schemas (id, canonical, sha256)
            SELECT COALESCE(max(id), 0) + 1, $1, $2 FROM registry.schemas
            RETURNING id
            """, ct, schema.Canonical, sha256);
        var next = await ScalarAsync<int>(conn, tx, """
            INSERT INTO registry.subject_versions (subject, version, schema_id)
            SELECT $1, COALESCE(max(version), 0) + 1, $2 FROM registry.subject_versions WHERE subject = $1
            RETURNING version
            """, ct, subject, id.Value);
        await tx.CommitAsync(ct);
        return (id.Value, next);
    }

    /// <summary>The version of <paramref name="subject"/> that holds <paramref name="schema"/>; null when the subject has
    /// no such version.</summary>
    public async Task<SubjectVersion?> LookupAsync(string subject, AvroSchemaText schema, CancellationToken ct = default)
    {
        var sha256 = SHA256.HashData(Encoding.UTF8.GetBytes(schema.Canonical));
        await using var cmd = db.CreateCommand("""
            SELECT v.version, s.id, s.canonical
            FROM registry.subject_versions v JOIN registry.schemas s ON s.id = v.schema_id
            WHERE v.subject = $1 AND s.schema_type = 'AVRO' AND s.sha256 = $2
            """);
        cmd.Parameters.AddWithValue(subject);
        cmd.Parameters.AddWithValue(sha256);
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? new SubjectVersion(subject, reader.GetInt32(0), reader.GetInt32(1), reader.GetString(2)) : null;
    }

    /// <summary>The canonical text of schema <paramref name="id"/>; null when there is none.</summary>
    public async Task<string?> SchemaByIdAsync(int id, CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("SELECT canonical FROM registry.schemas WHERE id = $1");
        cmd.Parameters.AddWithValue(id);
        return (string?)await cmd.ExecuteScalarAsync(ct);
    }

    /// <summary>Every (subject, version) that holds schema <paramref name="id"/>, by subject then version.</summary>
    public async Task<IReadOnlyList<(string Subject, int Version)>> SubjectVersionsOfIdAsync(int id, CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand(
            "SELECT subject, version FROM registry.subject_versions WHERE schema_id = $1 ORDER BY subject, version");
        cmd.Parameters.AddWithValue(id);
        var list = new List<(string, int)>();
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) list.Add((reader.GetString(0), reader.GetInt32(1)));
        return list;
    }

    /// <summary>Every subject with at least one version, sorted.</summary>
    public async Task<IReadOnlyList<string>> SubjectsAsync(CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("SELECT DISTINCT subject FROM registry.subject_versions ORDER BY subject");
        var list = new List<string>();
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) list.Add(reader.GetString(0));
        return list;
    }

    /// <summary>The versions of <paramref name="subject"/>, oldest first; empty when the subject has none.</summary>
    public async Task<IReadOnlyList<SubjectVersion>> VersionsAsync(string subject, CancellationToken ct = default)
    {
        await using var conn = await db.OpenConnectionAsync(ct);
        return await VersionsAsync(conn, null, subject, ct);
    }

    /// <summary>Version <paramref name="version"/> of <paramref name="subject"/>, or its latest when null; null when there
    /// is no such version.</summary>
    public async Task<SubjectVersion?> VersionAsync(string subject, int? version, CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("""
            SELECT v.version, s.id, s.canonical
            FROM registry.subject_versions v JOIN registry.schemas s ON s.id = v.schema_id
            WHERE v.subject = $1 AND ($2::int IS NULL OR v.version = $2)
            ORDER BY v.version DESC LIMIT 1
            """);
        cmd.Parameters.AddWithValue(subject);
        cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)version ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Integer });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? new SubjectVersion(subject, reader.GetInt32(0), reader.GetInt32(1), reader.GetString(2)) : null;
    }

    /// <summary>The level set for <paramref name="subject"/>, or the global level when <paramref name="subject"/> is
    /// null; null when none is set.</summary>
    public async Task<CompatibilityLevel?> ConfiguredLevelAsync(string? subject, CancellationToken ct = default)
    {
        await using var conn = await db.OpenConnectionAsync(ct);
        return await ConfiguredLevelAsync(conn, null, subject ?? GlobalConfigSubject, ct);
    }

    /// <summary>The level registrations under <paramref name="subject"/> are checked with: the subject's own, else the
    /// global one, else <see cref="CompatibilityLevels.Default"/>. Null <paramref name="subject"/>: the global level.</summary>
    public async Task<CompatibilityLevel> EffectiveLevelAsync(string? subject, CancellationToken ct = default)
    {
        await using var conn = await db.OpenConnectionAsync(ct);
        return await EffectiveLevelAsync(conn, null, subject, ct);
    }

    /// <summary>Sets the level of <paramref name="subject"/>, or the global level when it is null.</summary>
    public async Task SetLevelAsync(string? subject, CompatibilityLevel level, CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("""
            INSERT INTO registry.config (subject, compatibility) VALUES ($1, $2)
            ON CONFLICT (subject) DO UPDATE SET compatibility = excluded.compatibility, updated_at = now()
            """);
        cmd.Parameters.AddWithValue(subject ?? GlobalConfigSubject);
        cmd.Parameters.AddWithValue(level.ToWire());
        await cmd.ExecuteNonQueryAsync(ct);
    }

    private static async Task<CompatibilityLevel> EffectiveLevelAsync(NpgsqlConnection conn, NpgsqlTransaction? tx, string? subject, CancellationToken ct)
    {
        if (subject is not null && await ConfiguredLevelAsync(conn, tx, subject, ct) is { } own) return own;
        return await ConfiguredLevelAsync(conn, tx, GlobalConfigSubject, ct) ?? CompatibilityLevels.Default;
    }

    private static async Task<CompatibilityLevel?> ConfiguredLevelAsync(NpgsqlConnection conn, NpgsqlTransaction? tx, string subject, CancellationToken ct)
    {
        var text = await ScalarAsync<string?>(conn, tx, "SELECT compatibility FROM registry.config WHERE subject = $1", ct, subject);
        if (text is null) return null;
        return CompatibilityLevels.TryParse(text, out var level)
            ? level
            : throw new InvalidOperationException($"registry.config holds an unknown compatibility level '{text}' for subject '{subject}'");
    }

    private static async Task<List<SubjectVersion>> VersionsAsync(NpgsqlConnection conn, NpgsqlTransaction? tx, string subject, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT v.version, s.id, s.canonical
            FROM registry.subject_versions v JOIN registry.schemas s ON s.id = v.schema_id
            WHERE v.subject = $1 ORDER BY v.version
            """, conn, tx);
        cmd.Parameters.AddWithValue(subject);
        var list = new List<SubjectVersion>();
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) list.Add(new SubjectVersion(subject, reader.GetInt32(0), reader.GetInt32(1), reader.GetString(2)));
        return list;
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection conn, NpgsqlTransaction? tx, string sql, CancellationToken ct, params object[] args)
    {
        await using var cmd = new NpgsqlCommand(sql, conn, tx);
        foreach (var arg in args) cmd.Parameters.AddWithValue(arg);
        var value = await cmd.ExecuteScalarAsync(ct);
        return value is null or DBNull ? default! : (T)value;
    }
}
