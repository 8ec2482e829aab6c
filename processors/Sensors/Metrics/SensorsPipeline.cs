using Microsoft.Extensions.Logging;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Sensors.Network;

namespace StreamHealth.Sensors.Metrics;

/// <summary>The sensors slice in one process: the windows topology on a StreamHost (with the node registry it checks readings
/// against) and the sensors.metrics → PostgreSQL and → Redis sinks, as `up` runs them and the tests start and restart them.</summary>
public sealed class SensorsPipeline : IDisposable
{
    public StreamHost Host { get; }
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
        Host = new StreamHost(hostOptions, [SensorsTopology.Create(new NodeRegistry(postgres, options.RegistryRefresh, logs.CreateLogger("StreamHealth.Sensors.Registry")),
            options, names.ApplicationId, names.ReadingsTopic, names.MetricsTopic)], logs);
        (PostgresSink, RedisSink) = SensorMetricsSinks.Create(names, hostOptions.BootstrapServers, postgres, redis, registry, logs, sessionTimeoutMs);
    }

    /// <summary>The sensors tables' retention (V0013: window metrics 90 days, predictions 30, anomalies until resolved plus 30),
    /// hourly, for the hosts that run the sensors sinks.</summary>
    public static RetentionJob Retention(NpgsqlDataSource postgres, ILoggerFactory logs) =>
        new(postgres, TimeSpan.FromHours(1), ["SELECT sensors.prune_resolved_anomalies()"], logs.CreateLogger("StreamHealth.Sensors.Retention"));

    public SensorsPipeline Start()
    {
        Host.Start();
        PostgresSink.Start();
        RedisSink.Start();
        return this;
    }

    /// <summary>Stops the topology first (its last outputs reach the topic), then the sinks.</summary>
    public void Dispose()
    {
        Host.Dispose();
        PostgresSink.Dispose();
        RedisSink.Dispose();
    }
}
