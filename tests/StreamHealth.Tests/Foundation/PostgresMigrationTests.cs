using Npgsql;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Foundation;

public sealed class PostgresMigrationTests
{
    [Fact]
    public async Task Migrations_applied_twice_leave_the_same_schema()
    {
        var cs = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("migrate"));
        var first = await PostgresMigrator.MigrateAsync(cs);
        Assert.Equal(PostgresMigrator.Embedded.Select(m => m.Version), first);
        var before = await SchemaSnapshotAsync(cs);

        var second = await PostgresMigrator.MigrateAsync(cs);
        Assert.Empty(second);
        var after = await SchemaSnapshotAsync(cs);

        Assert.Contains("streamhealth.dead_letters", before);
        Assert.Contains("streamhealth.health_metrics", before);
        Assert.Equal(before, after);
    }

    [Fact]
    public async Task Concurrent_migrators_apply_each_version_once()
    {
        var cs = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("migrate_conc"));
        await PostgresMigrator.EnsureDatabaseAsync(cs);
        var runs = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => PostgresMigrator.MigrateAsync(cs)));
        Assert.Equal(PostgresMigrator.Embedded.Count, runs.Sum(r => r.Count));
    }

    /// <summary>The connection string's command timeout (2 s here, Npgsql's 30 s by default) once bounded the wait for another
    /// migrator's lock: four migrators starting together on a loaded machine failed while the first was still applying.</summary>
    [Fact]
    public async Task A_migrator_waits_for_the_lock_past_the_command_timeout_and_a_bounded_wait_fails_naming_the_lock()
    {
        var plain = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("migrate_wait"));
        await PostgresMigrator.EnsureDatabaseAsync(plain);
        var cs = new NpgsqlConnectionStringBuilder(plain) { CommandTimeout = 2 }.ConnectionString;
        await using var holder = new NpgsqlConnection(plain);
        await holder.OpenAsync();
        await Exec(holder, $"SELECT pg_advisory_lock({PostgresMigrator.LockKey})");

        var bounded = await Assert.ThrowsAsync<TimeoutException>(() => PostgresMigrator.MigrateAsync(cs, lockWait: TimeSpan.FromSeconds(1)));
        Assert.Contains("migration lock", bounded.Message);
        Assert.Contains("1 s", bounded.Message);

        var waiting = PostgresMigrator.MigrateAsync(cs);
        await Task.Delay(TimeSpan.FromSeconds(5));
        Assert.False(waiting.IsCompleted, waiting.Exception?.ToString() ?? "finished while another held the lock");
        await Exec(holder, $"SELECT pg_advisory_unlock({PostgresMigrator.LockKey})");
        Assert.Equal(PostgresMigrator.Embedded.Select(m => m.Version), await waiting.WaitAsync(TimeSpan.FromMinutes(5)));
    }

    [Fact]
    public async Task Time_series_tables_are_range_partitioned_with_brin_and_accept_any_time()
    {
        var cs = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("migrate_ts"));
        await PostgresMigrator.MigrateAsync(cs);
        await using var conn = new NpgsqlConnection(cs);
        await conn.OpenAsync();
        // No TimescaleDB here: native partitioning by time, with a BRIN index on the time column.
        Assert.Equal("r", await Scalar<string>(conn, "SELECT partstrat::text FROM pg_partitioned_table WHERE partrelid = 'streamhealth.health_metrics'::regclass"));
        Assert.Equal("brin", await Scalar<string>(conn, """
            SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
            WHERE i.indrelid = 'streamhealth.health_metrics'::regclass AND am.amname = 'brin'
            """));
        await Exec(conn, """
            INSERT INTO streamhealth.health_metrics VALUES
              ('u1', 'a', '2018-06-01T10:00:00Z', 'steps', 10, '{steps}'),
              ('u1', 'b', '2026-11-23T10:00:00Z', 'steps', 20, '{steps}'),
              ('u1', 'c', '1999-01-01T00:00:00Z', 'steps', 30, '{steps}')
            ON CONFLICT DO NOTHING
            """);
        Assert.Equal("health_metrics_p20180601", await Scalar<string>(conn,
            "SELECT tableoid::regclass::text FROM streamhealth.health_metrics WHERE metric_id = 'a'").ContinueWith(t => t.Result.Split('.')[^1]));
        Assert.Equal("health_metrics_pdefault", await Scalar<string>(conn,
            "SELECT tableoid::regclass::text FROM streamhealth.health_metrics WHERE metric_id = 'c'").ContinueWith(t => t.Result.Split('.')[^1]));
        // Idempotent sink writes: the same row again is a no-op.
        await Exec(conn, "INSERT INTO streamhealth.health_metrics VALUES ('u1', 'a', '2018-06-01T10:00:00Z', 'steps', 10, '{steps}') ON CONFLICT DO NOTHING");
        Assert.Equal(3L, await Scalar<long>(conn, "SELECT count(*) FROM streamhealth.health_metrics"));
    }

    [Fact]
    public async Task A_migration_edited_after_it_was_applied_is_refused()
    {
        var cs = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("migrate_edit"));
        await PostgresMigrator.MigrateAsync(cs);
        await using (var conn = new NpgsqlConnection(cs))
        {
            await conn.OpenAsync();
            await Exec(conn, "UPDATE public.streamhealth_migrations SET checksum = 'edited' WHERE version = 1");
        }
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => PostgresMigrator.MigrateAsync(cs));
        Assert.Contains("V0001__foundation was changed after it was applied", e.Message);
    }

    /// <summary>Tables, columns, indexes, constraints and functions of the database, as sorted text.</summary>
    private static async Task<string> SchemaSnapshotAsync(string cs)
    {
        await using var conn = new NpgsqlConnection(cs);
        await conn.OpenAsync();
        var lines = new List<string>();
        foreach (var sql in new[]
                 {
                     "SELECT table_schema || '.' || table_name || ' ' || table_type FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog','information_schema')",
                     "SELECT table_schema || '.' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog','information_schema')",
                     "SELECT schemaname || '.' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog','information_schema')",
                     "SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)",
                     "SELECT p.oid::regprocedure::text || ' ' || md5(p.prosrc) FROM pg_proc p WHERE p.pronamespace = 'streamhealth'::regnamespace",
                     "SELECT version || ' ' || name || ' ' || checksum FROM public.streamhealth_migrations",
                 })
        {
            await using var cmd = new NpgsqlCommand(sql, conn);
            await using var reader = await cmd.ExecuteReaderAsync();
            while (await reader.ReadAsync()) lines.Add(reader.GetString(0));
        }
        lines.Sort(StringComparer.Ordinal);
        return string.Join('\n', lines);
    }

    private static async Task Exec(NpgsqlConnection conn, string sql)
    {
        await using var cmd = new NpgsqlCommand(sql, conn);
        await cmd.ExecuteNonQueryAsync();
    }

    private static async Task<T> Scalar<T>(NpgsqlConnection conn, string sql)
    {
        await using var cmd = new NpgsqlCommand(sql, conn);
        return (T)(await cmd.ExecuteScalarAsync())!;
    }
}
