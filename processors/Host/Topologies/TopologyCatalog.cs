using StreamHealth.Runtime.Configuration;
using StreamHealth.Host.Verbs;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Streams.Reference;
using Microsoft.Extensions.Configuration;
using StreamHealth.CallLogs.Pipeline;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Insights.Aggregates;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Sensors.Network;
using StreamHealth.Weight.Pipeline;

namespace StreamHealth.Host.Topologies;

/// <summary>The topologies `streamhealth run --topology NAME` can start, by name.</summary>
internal static class TopologyCatalog
{
    public static readonly IReadOnlyList<string> Names = ["weights", "cgm", "insights", "sensors", "sensors-districts", "calllogs", "key-sum"];

    /// <summary>The changelogs of the catalogue's workload topologies (weights, cgm, insights, sensors, sensors-districts, calllogs), read from their descriptions, with
    /// their source's partition count: the embedded broker creates them up front (it cannot create topics on request).</summary>
    public static IEnumerable<(string Topic, int Partitions)> InternalTopics(IConfiguration configuration, IReadOnlyDictionary<string, int> partitionOverrides)
    {
        var args = new Args([]);
        // Building a topology connects to nothing (the sensors node registry reads on the first record).
        using var postgres = Npgsql.NpgsqlDataSource.Create(StreamHealthOptions.Bind(configuration).Postgres.ConnectionString);
        foreach (var name in new[] { "weights", "cgm", "insights", "sensors", "sensors-districts", "calllogs" })
        {
            // The call-log extractor does not change the changelogs; an endpoint's extractor would only be built to be dropped.
            var topology = name == "calllogs"
                ? CallLogsTopology.Create(new StreamHealth.CallLogs.Extraction.EmbeddedExtractor(), CallLogsOptions.Load(configuration))
                : Create(name, args, configuration, postgres);
            var partitions = partitionOverrides.TryGetValue(topology.SourceTopic, out var p) ? p : StreamHealth.Schemas.Topics.Get(topology.SourceTopic).Partitions;
            foreach (var changelog in topology.ChangelogTopics()) yield return (changelog, partitions);
        }
    }

    public static StreamTopology Create(string name, Args args, IConfiguration configuration, Npgsql.NpgsqlDataSource postgres) => name switch
    {
        "weights" => WeightTopology.Create(WeightTopology.FilterOptions(configuration), timeRule: StreamHealthOptions.Bind(configuration).Input.TimeRule),
        "cgm" => CgmTopology.Create(CgmTopology.Options(configuration)),
        "insights" => InsightsTopology.Create(InsightsOptions.Load(configuration)),
        "sensors" => Sensors(configuration, postgres),
        "sensors-districts" => SensorsDistricts(configuration, postgres),
        "calllogs" => CallLogsTopology.Create(CallLogsExtractor(configuration), CallLogsOptions.Load(configuration)),
        // Reference fold used by the crash/rebalance tests and the load harness. --kill-in-flush N: the process SIGKILLs
        // itself inside the Nth store flush that has writes (in the middle of a commit), for the crash-recovery test.
        "key-sum" => KeySumTopology.Create(
            args.Get("--source") ?? throw new UsageException("--topology key-sum needs --source TOPIC"),
            args.Get("--app") ?? "key-sum-" + args.Get("--source"),
            args.GetInt("--kill-in-flush", 0) is > 0 and var kill ? new StoreFaults { KillInFlush = kill } : null),
        _ => throw new UsageException($"unknown topology '{name}' (known: {string.Join(", ", Names)})"),
    };

    /// <summary>CallLogs:Extractor's choice: embedded unless Kind = openai (then the endpoint, falling back to embedded).</summary>
    private static StreamHealth.CallLogs.Extraction.IHealthEntryExtractor CallLogsExtractor(IConfiguration configuration)
    {
        var options = StreamHealth.CallLogs.LlmExtraction.ExtractorOptions.Load(configuration);
        return options.Create(options.IsOpenAi ? ConsoleLogs.Create().CreateLogger("calllogs-extractor") : null);
    }

    private static StreamTopology Sensors(IConfiguration configuration, Npgsql.NpgsqlDataSource postgres)
    {
        var options = SensorsOptions.Load(configuration);
        return SensorsTopology.Create(new NodeRegistry(postgres, options.RegistryRefresh), options);
    }

    private static StreamTopology SensorsDistricts(IConfiguration configuration, Npgsql.NpgsqlDataSource postgres)
    {
        var options = SensorsOptions.Load(configuration);
        return StreamHealth.Sensors.Districts.DistrictTopology.Create(new NodeRegistry(postgres, options.RegistryRefresh), options.Districts);
    }
}
