using Microsoft.Extensions.Logging;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;

namespace StreamHealth.Insights.Aggregates;

/// <summary>Topic and group names of one insights pipeline (production uses <see cref="Default"/>; tests may give each its own).</summary>
public sealed record InsightsPipelineNames(string ApplicationId, string MetricsTopic, string DailyTopic, string SinkGroup)
{
    public static readonly InsightsPipelineNames Default =
        new(InsightsTopology.ApplicationId, Topics.InsightsMetrics, Topics.InsightsDaily, InsightsAggregatePostgresWriter.SinkGroup);
}

/// <summary>The insights aggregates in one process: the topology on a StreamHost plus the insights.daily → PostgreSQL sink (with
/// the cache invalidation after each commit), as `up` runs them and the tests start and restart them.</summary>
public sealed class InsightsPipeline : StreamPipeline<InsightsPipeline>
{
    public SinkRunner Sink { get; }
    public InsightsCacheInvalidation Cache { get; }
    public InsightsPipelineNames Names { get; }

    public InsightsPipeline(StreamHostOptions hostOptions, NpgsqlDataSource postgres, IConnectionMultiplexer redis, ILoggerFactory logs,
        InsightsOptions? options = null, InsightsPipelineNames? names = null, int sessionTimeoutMs = 6_000)
    {
        Names = names ??= InsightsPipelineNames.Default;
        var registry = hostOptions.SchemaRegistry
            ?? throw new ArgumentException("the insights topics are Avro: StreamHostOptions.SchemaRegistry must be set", nameof(hostOptions));
        Host = new StreamHost(hostOptions, [InsightsTopology.Create(options, names.ApplicationId, names.MetricsTopic, names.DailyTopic)], logs);
        (Sink, Cache) = CreateSink(names, hostOptions.BootstrapServers, postgres, redis, registry, logs, sessionTimeoutMs);
    }

    /// <summary>The sink of insights.daily with its cache invalidation, for hosts that run it beside other topologies.</summary>
    public static (SinkRunner Sink, InsightsCacheInvalidation Cache) CreateSink(InsightsPipelineNames names, string bootstrapServers,
        NpgsqlDataSource postgres, IConnectionMultiplexer redis, StreamHealth.Runtime.SchemaRegistry.SchemaRegistryConnection registry,
        ILoggerFactory logs, int sessionTimeoutMs = 6_000)
    {
        var cache = new InsightsCacheInvalidation(redis, logs.CreateLogger("StreamHealth.Sinks." + InsightsAggregatePostgresWriter.Name));
        return (InsightsAggregatePostgresWriter.CreateSink(bootstrapServers, postgres, registry, cache, logs, sessionTimeoutMs, names.DailyTopic,
            names.SinkGroup), cache);
    }

    public override IReadOnlyList<SinkRunner> Sinks => [Sink];
}
