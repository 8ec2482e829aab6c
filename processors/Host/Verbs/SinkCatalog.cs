using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Npgsql;
using StreamHealth.CallLogs.Pipeline;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Forecast.Service;
using StreamHealth.Insights.Aggregates;
using StreamHealth.Insights.Metrics;
using StreamHealth.Insights.Nutrition;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Tools;
using StreamHealth.Schemas;
using StreamHealth.Sensors.Districts;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Weight.Pipeline;

namespace StreamHealth.Host.Verbs;

/// <summary>The consumer groups this deployment runs, by the names operators use: each sink (its topic, group and, for a
/// PostgreSQL sink, its table) and each topology's application id. The embedded broker cannot list groups, so `lag` and
/// `reset-sink` start from here (the group ids are the ones <see cref="RunVerb"/> builds from the same names).</summary>
internal static class SinkCatalog
{
    /// <param name="Table">The PostgreSQL table it fills (null: Redis).</param>
    /// <param name="CreateWriter">A writer into another table of the same columns (a replay into a new table); null for a sink
    /// whose statement names its table alone.</param>
    public sealed record Sink(string Name, string Topic, string GroupId, string? Table,
        Func<NpgsqlDataSource, SchemaRegistryConnection, ILogger, string, ISinkWriter>? CreateWriter = null);

    public static readonly IReadOnlyList<Sink> Sinks =
    [
        new(WeightPostgresWriter.Name, Topics.WeightsFiltered, WeightPipelineNames.Default.PostgresSinkGroup, WeightPostgresWriter.Table,
            (db, registry, log, table) => WeightPostgresWriter.Create(db, registry, log, table)),
        new(WeightRedisWriter.Name, Topics.WeightsFiltered, WeightPipelineNames.Default.RedisSinkGroup, null),
        new(CgmReadingsPostgresWriter.Name, Topics.CgmReadings, CgmPipelineNames.Default.PostgresSinkGroup, "cgm.readings"),
        new(CgmLatestRedisWriter.Name, Topics.CgmLatest, CgmPipelineNames.Default.RedisSinkGroup, null),
        new(ForecastPostgresWriter.Name, Topics.CgmForecasts, ForecastNames.Default.PostgresSinkGroup, "cgm.forecasts"),
        new(ForecastRedisWriter.Name, Topics.CgmForecasts, ForecastNames.Default.RedisSinkGroup, null),
        new(InsightsAggregatePostgresWriter.Name, Topics.InsightsDaily, InsightsAggregatePostgresWriter.SinkGroup, "insights.daily_metrics"),
        new(HealthMetricPostgresWriter.Name, Topics.InsightsMetrics, HealthMetricPostgresWriter.SinkGroup, "streamhealth.health_metrics"),
        new(NutritionLogPostgresWriter.Name, Topics.InsightsNutrition, NutritionLogPostgresWriter.SinkGroup, "insights.nutrition_logs"),
        new(SensorMetricsPostgresWriter.Name, Topics.SensorsMetrics, SensorsPipelineNames.Default.PostgresSinkGroup, "sensors.window_metrics"),
        new(SensorMetricsRedisWriter.Name, Topics.SensorsMetrics, SensorsPipelineNames.Default.RedisSinkGroup, null),
        new(DistrictSinks.AnomaliesName, Topics.SensorsAnomalies, DistrictSinks.SinkGroup(DistrictTopology.ApplicationId, "anomalies"), "sensors.anomalies"),
        new(DistrictSinks.QualityName, Topics.SensorsQuality, DistrictSinks.SinkGroup(DistrictTopology.ApplicationId, "quality"), "sensors.window_quality"),
        new(DistrictSinks.EfficiencyName, Topics.SensorsEfficiency, DistrictSinks.SinkGroup(DistrictTopology.ApplicationId, "efficiency"), "sensors.efficiency"),
        new(DistrictSinks.PredictionsName, Topics.SensorsPredictions, DistrictSinks.SinkGroup(DistrictTopology.ApplicationId, "predictions"), "sensors.predictions"),
        new(CheckInPostgresWriter.Name, Topics.CallLogsCheckins, CallLogsPipelineNames.Default.CheckinsSinkGroup, "calllogs.checkins"),
        // One sink, three tables (an entry's kind picks its table).
        new(HealthEntryPostgresWriter.Name, Topics.CallLogsEntries, CallLogsPipelineNames.Default.EntriesSinkGroup,
            "calllogs.medication_entries, calllogs.food_entries, calllogs.symptom_entries"),
    ];

    /// <summary>The stream topologies' groups (application id = group id) and their source topics.</summary>
    public static readonly IReadOnlyList<(string GroupId, string Topic)> Topologies =
    [
        (WeightTopology.ApplicationId, Topics.WeightsRaw),
        (CgmTopology.ApplicationId, Topics.CgmReadings),
        (InsightsTopology.ApplicationId, Topics.InsightsMetrics),
        (StreamHealth.Sensors.Metrics.SensorsTopology.ApplicationId, Topics.SensorsReadings),
        (DistrictTopology.ApplicationId, Topics.SensorsDistrictWindows),
        (ForecastNames.DefaultGroupId, Topics.CgmForecastRequests),
        (StreamHealth.CallLogs.Pipeline.CallLogsTopology.ApplicationId, Topics.CallLogsCalls),
    ];

    public static Sink Get(string name) =>
        Sinks.FirstOrDefault(s => s.Name == name)
        ?? throw new UsageException($"unknown sink '{name}' (known: {string.Join(", ", Sinks.Select(s => s.Name))})");

    /// <summary>Runs <paramref name="sink"/>'s writer under <paramref name="groupId"/> into <paramref name="table"/> (created like
    /// the sink's own table when missing) until the group has committed everything the topic held when it started; returns
    /// the records written. The group starts where its committed offsets say (a `replay … --into group:` set them), else at
    /// the beginning.</summary>
    public static long RunIntoTable(Sink sink, string groupId, string table, string bootstrap, NpgsqlDataSource db,
        SchemaRegistryConnection registry, ILoggerFactory logs, ReplayProgress? progress, CancellationToken ct, string? topic = null)
    {
        if (sink.CreateWriter is null || sink.Table is null)
            throw new UsageException($"sink '{sink.Name}' cannot write into another table (sinks that can: " +
                string.Join(", ", Sinks.Where(s => s.CreateWriter is not null).Select(s => s.Name)) + ")");
        topic ??= sink.Topic;
        SinkTables.CreateLike(db, sink.Table, SinkTables.Checked(table));
        var start = TopicReplay.Lag(bootstrap, groupId, topic);
        var total = start.Sum(l => l.Lag);
        var writer = sink.CreateWriter(db, registry, logs.CreateLogger("StreamHealth.Sinks." + sink.Name), table);
        using var runner = SinkRunner.For(bootstrap, topic, groupId, writer, db, logs);
        runner.Start();
        var clock = Stopwatch.StartNew();
        while (!ct.IsCancellationRequested)
        {
            var now = TopicReplay.Lag(bootstrap, groupId, topic);
            var caughtUp = true;
            long remaining = 0;
            foreach (var s in start)
            {
                var l = now.First(x => x.Partition == s.Partition);
                if (s.Lag > 0 && (l.Committed ?? -1) < s.End) caughtUp = false;
                remaining += s.Lag == 0 ? 0 : Math.Max(0, s.End - (l.Committed ?? s.End - s.Lag));
            }
            progress?.Invoke(total - remaining, total);
            if (caughtUp) break;
            Thread.Sleep(clock.ElapsedMilliseconds < 1_000 ? 50 : 200);
        }
        return runner.Written;
    }
}
