using Npgsql;
using StreamHealth.Runtime.Storage;
using StreamHealth.Sensors.Network;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Sensors;

/// <summary>The sensors tables on the real PostgreSQL: the node registry's rules and the retention of V0013 (partition drops
/// where TimescaleDB is absent, as here; resolved anomalies pruned 30 days after resolution).</summary>
public sealed class SensorStorageTests : IAsyncLifetime
{
    private NpgsqlDataSource _db = null!;

    public async Task InitializeAsync()
    {
        var connectionString = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("sensors_storage"));
        await PostgresMigrator.MigrateAsync(connectionString);
        _db = NpgsqlDataSource.Create(connectionString);
    }

    public async Task DisposeAsync() => await _db.DisposeAsync();

    private async Task<long> Count(string sql)
    {
        await using var command = _db.CreateCommand(sql);
        return Convert.ToInt64(await command.ExecuteScalarAsync());
    }

    private async Task Execute(string sql)
    {
        await using var command = _db.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }

    [Fact]
    public async Task The_registry_stores_nodes_refuses_bad_ones_and_never_moves_a_node_to_another_district()
    {
        await NodeRegistry.RegisterAsync(_db, [new SensorNode("n-1", "dma-a", "meter", ["flow"], 60, Name: "Main St meter", Latitude: 39.2, Longitude: 9.1)]);
        var registry = new NodeRegistry(_db, TimeSpan.FromMinutes(5));
        Assert.Equal(("dma-a", "meter", 60, "Main St meter"), registry.Find("n-1") is { } n ? (n.DistrictId, n.Kind, n.CadenceSeconds, n.Name) : default);
        Assert.Null(registry.Find("n-2"));

        // Updating a node in place is allowed; moving it is not, and a refused batch writes nothing.
        await NodeRegistry.RegisterAsync(_db, [new SensorNode("n-1", "dma-a", "meter", ["flow", "pressure"], 30)]);
        var moved = await Assert.ThrowsAsync<ArgumentException>(() => NodeRegistry.RegisterAsync(_db,
            [new SensorNode("n-3", "dma-b", "meter", ["flow"], 60), new SensorNode("n-1", "dma-b", "meter", ["flow"], 60)]));
        Assert.Contains("'n-1' is registered in another district", moved.Message);
        Assert.Equal(0, await Count("SELECT count(*) FROM sensors.nodes WHERE node_id = 'n-3'"));
        Assert.Equal(30, await Count("SELECT cadence_seconds FROM sensors.nodes WHERE node_id = 'n-1'"));

        foreach (var (node, problem) in new (SensorNode, string)[]
                 {
                     (new SensorNode("n\u00004", "dma-a", "meter", ["flow"], 60), "node_id"),
                     (new SensorNode("n-4", "dma-a", "pump", ["flow"], 60), "kind = 'pump'"),
                     (new SensorNode("n-4", "dma-a", "meter", [], 60), "at least one metric"),
                     (new SensorNode("n-4", "dma-a", "meter", ["voltage"], 60), "'voltage' is not one of"),
                     (new SensorNode("n-4", "dma-a", "meter", ["flow", "flow"], 60), "listed twice"),
                     (new SensorNode("n-4", "dma-a", "meter", ["flow"], 0), "cadence_seconds = 0"),
                     (new SensorNode("n-4", "dma-a", "meter", ["flow"], 60, Latitude: 91), "latitude = 91"),
                 })
            Assert.Contains(problem, (await Assert.ThrowsAsync<ArgumentException>(() => NodeRegistry.RegisterAsync(_db, [node]))).Message);
        Assert.Equal(1, await Count("SELECT count(*) FROM sensors.nodes"));

        // A district's analysis follows at most 64 series: 32 nodes of two metrics fill dma-c, one more is refused (and nothing
        // of its batch is stored).
        await NodeRegistry.RegisterAsync(_db, [.. Enumerable.Range(0, 32).Select(i => new SensorNode($"c-{i}", "dma-c", "inflow", ["flow", "pressure"], 60))]);
        var full = await Assert.ThrowsAsync<ArgumentException>(() => NodeRegistry.RegisterAsync(_db,
            [new SensorNode("c-extra", "dma-c", "meter", ["flow"], 60), new SensorNode("d-1", "dma-d", "meter", ["flow"], 60)]));
        Assert.Contains("district 'dma-c' would have 65 series", full.Message);
        Assert.Equal(0, await Count("SELECT count(*) FROM sensors.nodes WHERE node_id IN ('c-extra', 'd-1')"));
    }

    [Fact]
    public async Task Retention_drops_whole_partitions_past_the_keep_and_prunes_anomalies_30_days_after_resolution()
    {
        // Windows of 2026-01-10, 2026-03-20 and 2026-04-02; retention judged as of 2026-06-15 with the 90-day keep: the cutoff
        // is 2026-03-17, so January's and February's partitions go whole, March's stays (it holds rows after the cutoff).
        foreach (var day in new[] { "2026-01-10", "2026-03-20", "2026-04-02" })
            await Execute($"""
                INSERT INTO sensors.window_metrics (node_id, district_id, metric, unit, window_minutes, window_start, window_end, reading_count,
                    duplicate_count, late_count, mean, source_partition, source_offset)
                VALUES ('n-1', 'dma-a', 'flow', 'L/s', 60, '{day} 10:00Z', '{day} 11:00Z', 60, 0, 0, 1.5, 0, 0)
                """);
        var dropped = new List<string>();
        await using (var command = _db.CreateCommand("SELECT dropped_partition FROM streamhealth.enforce_retention('2026-06-15Z')"))
        await using (var reader = await command.ExecuteReaderAsync())
            while (await reader.ReadAsync()) dropped.Add(reader.GetString(0));
        Assert.Contains("sensors.window_metrics_p20260101", dropped);
        Assert.Contains("sensors.window_metrics_p20260201", dropped);
        Assert.DoesNotContain("sensors.window_metrics_p20260301", dropped);
        // Predictions keep 30 days: May's partition is past 2026-05-16 only in part, so it stays; April's goes.
        Assert.Contains("sensors.predictions_p20260401", dropped);
        Assert.DoesNotContain("sensors.predictions_p20260501", dropped);
        Assert.Equal(2, await Count("SELECT count(*) FROM sensors.window_metrics"));
        Assert.DoesNotContain(dropped, d => d.EndsWith("_pdefault", StringComparison.Ordinal));
        // Idempotent: nothing more to drop at the same time.
        Assert.Equal(0, await Count("SELECT count(*) FROM streamhealth.enforce_retention('2026-06-15Z')"));

        await Execute("""
            INSERT INTO sensors.anomalies (anomaly_id, kind, district_id, started_at, ended_at, severity, score, state, reason, resolved_at) VALUES
              ('a-old', 'burst', 'dma-a', '2026-04-01Z', '2026-04-02Z', 'high', 9, 'resolved', 'night flow', '2026-04-02Z'),
              ('a-recent', 'burst', 'dma-a', '2026-05-20Z', '2026-05-21Z', 'high', 9, 'resolved', 'night flow', '2026-05-21Z'),
              ('a-open', 'background_leak', 'dma-a', '2026-01-01Z', NULL, 'medium', 4, 'open', 'night flow trend', NULL)
            """);
        Assert.Equal(1, await Count("SELECT sensors.prune_resolved_anomalies('2026-06-15Z')"));
        Assert.Equal(["a-open", "a-recent"], await Ids());
        // A resolved anomaly must say when: the table refuses one without resolved_at.
        await Assert.ThrowsAsync<Npgsql.PostgresException>(() => Execute("""
            INSERT INTO sensors.anomalies (anomaly_id, kind, district_id, started_at, severity, score, state, reason)
            VALUES ('a-bad', 'burst', 'dma-a', '2026-05-20Z', 'high', 9, 'resolved', 'x')
            """));
    }

    private async Task<List<string>> Ids()
    {
        var ids = new List<string>();
        await using var command = _db.CreateCommand("SELECT anomaly_id FROM sensors.anomalies ORDER BY anomaly_id");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) ids.Add(reader.GetString(0));
        return ids;
    }
}
