using Microsoft.Extensions.Logging;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Sensors.Districts;
using StreamHealth.Sensors.Network;

namespace StreamHealth.Sensors.Metrics;

/// <summary>The sensors slice in one process: the windows topology and the district analysis on a StreamHost (both with the node
/// registry), the sensors.metrics → PostgreSQL and → Redis sinks and the district results → PostgreSQL sinks, as `up` runs them
/// and the tests start and restart them.</summary>
public sealed class SensorsPipeline : StreamPipeline<SensorsPipeline>
{
    public SensorsPipelineNames Names { get; }
    public SinkRunner PostgresSink { get; }
    public SinkRunner RedisSink { get; }

    public SensorsPipeline(StreamHostOptions hostOptions, NpgsqlDataSource postgres, IConnectionMultiplexer redis, ILoggerFactory logs,
        SensorsOptions? options = null, SensorsPipelineNames? names = null, int sessionTimeoutMs = 6_000)
    {
        Names = names ??= SensorsPipelineNames.Default;
        options ??= new SensorsOptions();
        var registry = hostOptions.SchemaRegistry
            ?? throw new ArgumentException("the sensors topics are Avro: StreamHostOptions.SchemaRegistry must be set", nameof(hostOptions));
        var nodes = new NodeRegistry(postgres, options.RegistryRefresh, logs.CreateLogger("StreamHealth.Sensors.Registry"));
        Host = new StreamHost(hostOptions,
        [
            SensorsTopology.Create(nodes, options, names.ApplicationId, names.ReadingsTopic, names.MetricsTopic, names.Districts.Windows),
            DistrictTopology.Create(nodes, options.Districts, names.DistrictsApplicationId, names.Districts),
        ], logs);
        (PostgresSink, RedisSink) = SensorMetricsSinks.Create(names, hostOptions.BootstrapServers, postgres, redis, registry, logs, sessionTimeoutMs);
        DistrictSinks = Districts.DistrictSinks.Create(names.Districts, names.DistrictsApplicationId, hostOptions.BootstrapServers, postgres, registry, logs,
            sessionTimeoutMs);
    }

    /// <summary>The district analysis' sinks: anomalies, quality and efficiency → PostgreSQL.</summary>
    public IReadOnlyList<SinkRunner> DistrictSinks { get; }

    /// <summary>Every sink of the pipeline, for health reports.</summary>
    public override IReadOnlyList<SinkRunner> Sinks => [PostgresSink, RedisSink, .. DistrictSinks];

    /// <summary>The sensors tables' retention (V0013: window metrics 90 days, predictions 30, anomalies until resolved plus 30),
    /// hourly, for the hosts that run the sensors sinks.</summary>
    public static RetentionJob Retention(NpgsqlDataSource postgres, ILoggerFactory logs) =>
        new(postgres, TimeSpan.FromHours(1), ["SELECT sensors.prune_resolved_anomalies()"], logs.CreateLogger("StreamHealth.Sensors.Retention"));
}
