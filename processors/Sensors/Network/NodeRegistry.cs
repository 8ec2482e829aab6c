using System.Collections.Frozen;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using StreamHealth.Runtime.Validation;
using StreamHealth.Sensors.Readings;

namespace StreamHealth.Sensors.Network;

/// <summary>One registered node of the water network (a row of sensors.nodes).</summary>
public sealed record SensorNode(string NodeId, string DistrictId, string Kind, IReadOnlyList<string> Metrics, int CadenceSeconds,
    string? Name = null, double? Latitude = null, double? Longitude = null, long? RetiredAtUnixMs = null)
{
    public static readonly IReadOnlyList<string> Kinds = ["inflow", "meter", "pressure_logger", "quality_probe"];

    /// <summary>Why the node cannot be registered (naming the field), or null.</summary>
    public string? Check()
    {
        if ((InputRules.CheckId("node_id", NodeId) ?? InputRules.CheckId("district_id", DistrictId)) is { } badId) return badId;
        if (!Kinds.Contains(Kind)) return $"kind = {InputRules.Quote(Kind ?? "")}: not one of {string.Join(", ", Kinds)}";
        if (Metrics is null || Metrics.Count == 0) return "metrics: at least one metric is required";
        foreach (var metric in Metrics)
            if (SensorQuantities.Find(metric) is null)
                return $"metrics: {InputRules.Quote(metric ?? "")} is not one of {string.Join(", ", SensorQuantities.All.Select(q => q.Metric))}";
        if (Metrics.Distinct(StringComparer.Ordinal).Count() != Metrics.Count) return "metrics: a metric is listed twice";
        if (CadenceSeconds is < 1 or > 86_400) return $"cadence_seconds = {CadenceSeconds}: must be 1-86400";
        if (Name is not null && InputRules.CheckText("name", Name, 200) is { } badName) return badName;
        if (Latitude is { } lat && !(lat is >= -90 and <= 90)) return $"latitude = {lat}: must be -90 to 90";
        if (Longitude is { } lon && !(lon is >= -180 and <= 180)) return $"longitude = {lon}: must be -180 to 180";
        return null;
    }
}

/// <summary>The node registry (sensors.nodes) as the sensors topology reads it: a snapshot in memory, reloaded every
/// <c>refresh</c> and at once when a reading names a node the snapshot does not have and the snapshot is older than
/// <see cref="MissReloadInterval"/>: a node's readings are accepted from a second after its registration at the latest. PostgreSQL unreachable keeps the last
/// snapshot (logged); a first load that fails throws, and the stream thread retries the record as for any outage.</summary>
public sealed class NodeRegistry(NpgsqlDataSource db, TimeSpan refresh, ILogger? log = null)
{
    private readonly ILogger _log = log ?? NullLogger.Instance;
    private readonly Lock _gate = new();
    private FrozenDictionary<string, SensorNode>? _snapshot;
    private long _loadedAtTicks;

    public static readonly TimeSpan DefaultRefresh = TimeSpan.FromSeconds(10);

    /// <summary>The most series (node and metric) a district may register: what its analysis follows (<see
    /// cref="Districts.DistrictAnalyzerOptions.MaxSeries"/>).</summary>
    public static readonly int MaxSeriesPerDistrict = new Districts.DistrictAnalyzerOptions().MaxSeries;

    /// <summary>How soon after its registration a node's readings are accepted at the latest: a miss reloads the snapshot unless
    /// it is younger than this, so a flood of readings from unknown nodes costs one query a second, not one each.</summary>
    public static readonly TimeSpan MissReloadInterval = TimeSpan.FromSeconds(1);

    /// <summary>Every registered node as the snapshot has them (reloaded as <see cref="Find"/> says); the same instance until the
    /// next reload, so a caller can tell a new snapshot by reference.</summary>
    public IReadOnlyDictionary<string, SensorNode> Nodes => Current();

    /// <summary>The registered node, or null when none has the id.</summary>
    public SensorNode? Find(string nodeId)
    {
        var snapshot = Current();
        if (snapshot.TryGetValue(nodeId, out var node)) return node;
        // Not known: a node registered since the last load would otherwise be refused until the next refresh.
        lock (_gate)
        {
            if (Environment.TickCount64 - Interlocked.Read(ref _loadedAtTicks) < MissReloadInterval.TotalMilliseconds) return null;
            return Reload(throwOnFailure: false).GetValueOrDefault(nodeId);
        }
    }

    private FrozenDictionary<string, SensorNode> Current()
    {
        var snapshot = _snapshot;
        if (snapshot is not null && Environment.TickCount64 - Interlocked.Read(ref _loadedAtTicks) < refresh.TotalMilliseconds) return snapshot;
        return Reload(throwOnFailure: snapshot is null);
    }

    private FrozenDictionary<string, SensorNode> Reload(bool throwOnFailure)
    {
        try
        {
            var loaded = Load(db).ToFrozenDictionary(n => n.NodeId, StringComparer.Ordinal);
            _snapshot = loaded;
            Interlocked.Exchange(ref _loadedAtTicks, Environment.TickCount64);
            return loaded;
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException && !throwOnFailure)
        {
            _log.LogWarning("node registry: cannot reload sensors.nodes ({Error}); keeping the last snapshot", e.Message);
            Interlocked.Exchange(ref _loadedAtTicks, Environment.TickCount64);
            return _snapshot!;
        }
    }

    /// <summary>The columns <see cref="Read"/> reads, in its order, for a SELECT over sensors.nodes (the gateway's reads use it too).</summary>
    public const string Columns = "node_id, district_id, kind, metrics, cadence_seconds, name, latitude, longitude, retired_at";

    /// <summary>A row of <see cref="Columns"/> as a node.</summary>
    public static SensorNode Read(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetFieldValue<string[]>(3), r.GetInt32(4),
        r.IsDBNull(5) ? null : r.GetString(5), r.IsDBNull(6) ? null : r.GetDouble(6), r.IsDBNull(7) ? null : r.GetDouble(7),
        r.IsDBNull(8) ? null : new DateTimeOffset(r.GetDateTime(8)).ToUnixTimeMilliseconds());

    /// <summary>Every node of sensors.nodes.</summary>
    public static List<SensorNode> Load(NpgsqlDataSource db)
    {
        using var command = db.CreateCommand($"SELECT {Columns} FROM sensors.nodes");
        using var reader = command.ExecuteReader();
        var nodes = new List<SensorNode>();
        while (reader.Read()) nodes.Add(Read(reader));
        return nodes;
    }

    /// <summary>Registers or updates nodes (all or none). A node already registered in another district is refused: moving a
    /// node is a new node id, or its history would mix two places. So is a registration that gives a district more series
    /// than <see cref="MaxSeriesPerDistrict"/>.</summary>
    public static async Task RegisterAsync(NpgsqlDataSource db, IReadOnlyList<SensorNode> nodes, CancellationToken cancel = default)
    {
        foreach (var node in nodes)
            if (node.Check() is { } problem) throw new ArgumentException($"node {InputRules.Quote(node.NodeId ?? "")}: {problem}");
        await using var connection = await db.OpenConnectionAsync(cancel);
        await using var tx = await connection.BeginTransactionAsync(cancel);
        foreach (var node in nodes)
        {
            await using var upsert = new NpgsqlCommand("""
                INSERT INTO sensors.nodes (node_id, district_id, kind, metrics, cadence_seconds, name, latitude, longitude)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (node_id) DO UPDATE SET kind = EXCLUDED.kind, metrics = EXCLUDED.metrics, cadence_seconds = EXCLUDED.cadence_seconds,
                    name = EXCLUDED.name, latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude, updated_at = now()
                  WHERE sensors.nodes.district_id = EXCLUDED.district_id
                RETURNING district_id
                """, connection, tx);
            upsert.Parameters.AddWithValue(node.NodeId);
            upsert.Parameters.AddWithValue(node.DistrictId);
            upsert.Parameters.AddWithValue(node.Kind);
            upsert.Parameters.AddWithValue(node.Metrics.ToArray());
            upsert.Parameters.AddWithValue(node.CadenceSeconds);
            upsert.Parameters.AddWithValue((object?)node.Name ?? DBNull.Value);
            upsert.Parameters.AddWithValue((object?)node.Latitude ?? DBNull.Value);
            upsert.Parameters.AddWithValue((object?)node.Longitude ?? DBNull.Value);
            if (await upsert.ExecuteScalarAsync(cancel) is null)
                throw new ArgumentException($"node {InputRules.Quote(node.NodeId)} is registered in another district; moving a node is a new node id");
        }
        // A district's analysis follows a bounded number of series (its state is rewritten with every window): a registration
        // past it is refused here, rather than the district's windows being dead-lettered later.
        await using (var cap = new NpgsqlCommand("""
            SELECT district_id, sum(cardinality(metrics))::int FROM sensors.nodes
            WHERE district_id = ANY($1) AND retired_at IS NULL GROUP BY district_id HAVING sum(cardinality(metrics)) > $2 LIMIT 1
            """, connection, tx))
        {
            cap.Parameters.AddWithValue(nodes.Select(n => n.DistrictId).Distinct().ToArray());
            cap.Parameters.AddWithValue(MaxSeriesPerDistrict);
            await using var reader = await cap.ExecuteReaderAsync(cancel);
            if (await reader.ReadAsync(cancel))
                throw new ArgumentException($"district {InputRules.Quote(reader.GetString(0))} would have {reader.GetInt32(1)} series (node and metric); " +
                                            $"its analysis follows at most {MaxSeriesPerDistrict}: split it into smaller districts");
        }
        await tx.CommitAsync(cancel);
    }
}
