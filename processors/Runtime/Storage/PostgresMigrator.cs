using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace StreamHealth.Runtime.Storage;

/// <summary>Applies the versioned SQL files in schemas/sql (embedded in this assembly) in order, each
/// once, each in its own transaction. Safe to run from several processes at once (advisory lock) and
/// on every start-up: applied versions are skipped, and an applied file that was edited afterwards
/// is refused, since its effect would silently differ between databases.</summary>
public static class PostgresMigrator
{
    public sealed record Migration(int Version, string Name, string Sql, string Checksum);

    // Arbitrary constant; only StreamHealth migrators take this advisory lock.
    public const long LockKey = 0x5348_4d49_4752;

    public static IReadOnlyList<Migration> Embedded { get; } = LoadEmbedded();

    /// <summary>Creates the database named in the connection string if it is missing.</summary>
    public static async Task EnsureDatabaseAsync(string connectionString, CancellationToken ct = default)
    {
        var target = new NpgsqlConnectionStringBuilder(connectionString);
        var admin = new NpgsqlConnectionStringBuilder(connectionString) { Database = "postgres", Pooling = false };
        await using var conn = new NpgsqlConnection(admin.ConnectionString);
        await conn.OpenAsync(ct);
        await using var exists = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = $1", conn);
        exists.Parameters.AddWithValue(target.Database!);
        if (await exists.ExecuteScalarAsync(ct) is not null) return;
        await using var create = new NpgsqlCommand($"CREATE DATABASE \"{target.Database!.Replace("\"", "\"\"")}\"", conn);
        try { await create.ExecuteNonQueryAsync(ct); }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DuplicateDatabase) { /* created concurrently */ }
    }

    /// <summary>How long a migrator waits for another's lock by default: as long as the other takes to apply every migration.
    /// Npgsql's command timeout (30 s unless the connection string says otherwise) is not that: four migrators starting
    /// together on a loaded 2-core machine waited longer than it for the first, and failed.</summary>
    public static readonly TimeSpan DefaultLockWait = TimeSpan.FromMinutes(10);

    /// <summary>Applies every pending migration; returns the versions applied by this call. Waits up to
    /// <paramref name="lockWait"/> (<see cref="DefaultLockWait"/>) for a migrator that holds the lock, and a migration runs
    /// as long as it needs: neither is bound by the connection's command timeout, only by <paramref name="ct"/>.</summary>
    public static async Task<IReadOnlyList<int>> MigrateAsync(string connectionString, CancellationToken ct = default, TimeSpan? lockWait = null)
    {
        await EnsureDatabaseAsync(connectionString, ct);
        await using var conn = new NpgsqlConnection(connectionString);
        await conn.OpenAsync(ct);
        var wait = lockWait ?? DefaultLockWait;
        try
        {
            await Exec(conn, $"SELECT pg_advisory_lock({LockKey})", ct, timeoutSeconds: Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)));
        }
        catch (NpgsqlException e) when (e.InnerException is TimeoutException && !ct.IsCancellationRequested)
        {
            throw new TimeoutException($"another migrator held the migration lock (pg_advisory_lock {LockKey}) for more than {wait.TotalSeconds:0} s", e);
        }
        try
        {
            await Exec(conn, """
                CREATE TABLE IF NOT EXISTS public.streamhealth_migrations (
                  version    int PRIMARY KEY,
                  name       text NOT NULL,
                  checksum   text NOT NULL,
                  applied_at timestamptz NOT NULL DEFAULT now())
                """, ct);
            var applied = new Dictionary<int, string>();
            await using (var read = new NpgsqlCommand("SELECT version, checksum FROM public.streamhealth_migrations", conn))
            await using (var reader = await read.ExecuteReaderAsync(ct))
                while (await reader.ReadAsync(ct)) applied[reader.GetInt32(0)] = reader.GetString(1);

            var done = new List<int>();
            foreach (var m in Embedded)
            {
                if (applied.TryGetValue(m.Version, out var checksum))
                {
                    if (checksum != m.Checksum)
                        throw new InvalidOperationException(
                            $"migration V{m.Version:D4}__{m.Name} was changed after it was applied (checksum {checksum} in the database, {m.Checksum} now); add a new migration instead");
                    continue;
                }
                await using var tx = await conn.BeginTransactionAsync(ct);
                try
                {
                    await using (var run = new NpgsqlCommand(m.Sql, conn, tx) { CommandTimeout = 0 }) await run.ExecuteNonQueryAsync(ct);
                    await using (var record = new NpgsqlCommand(
                        "INSERT INTO public.streamhealth_migrations(version, name, checksum) VALUES ($1, $2, $3)", conn, tx))
                    {
                        record.Parameters.AddWithValue(m.Version);
                        record.Parameters.AddWithValue(m.Name);
                        record.Parameters.AddWithValue(m.Checksum);
                        await record.ExecuteNonQueryAsync(ct);
                    }
                    await tx.CommitAsync(ct);
                }
                catch (PostgresException e)
                {
                    throw new InvalidOperationException($"migration V{m.Version:D4}__{m.Name} failed: {e.MessageText}", e);
                }
                done.Add(m.Version);
            }
            return done;
        }
        finally
        {
            await Exec(conn, $"SELECT pg_advisory_unlock({LockKey})", CancellationToken.None);
        }
    }

    private static async Task Exec(NpgsqlConnection conn, string sql, CancellationToken ct, int? timeoutSeconds = null)
    {
        await using var cmd = new NpgsqlCommand(sql, conn);
        if (timeoutSeconds is { } seconds) cmd.CommandTimeout = seconds;
        await cmd.ExecuteNonQueryAsync(ct);
    }

    private static List<Migration> LoadEmbedded()
    {
        var assembly = typeof(PostgresMigrator).Assembly;
        var list = new List<Migration>();
        foreach (var resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith("sql/V", StringComparison.Ordinal)) continue;
            var file = resource["sql/".Length..^".sql".Length];           // V0001__foundation
            var sep = file.IndexOf("__", StringComparison.Ordinal);
            if (sep < 2 || !int.TryParse(file.AsSpan(1, sep - 1), out var version))
                throw new InvalidOperationException($"migration file name '{resource}' is not V<version>__<name>.sql");
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var reader = new StreamReader(stream, Encoding.UTF8);
            var sql = reader.ReadToEnd();
            var checksum = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sql.ReplaceLineEndings("\n"))))[..16];
            list.Add(new Migration(version, file[(sep + 2)..], sql, checksum));
        }
        list.Sort((a, b) => a.Version.CompareTo(b.Version));
        for (var i = 1; i < list.Count; i++)
            if (list[i].Version == list[i - 1].Version)
                throw new InvalidOperationException($"two migrations share version {list[i].Version}");
        return list;
    }
}
