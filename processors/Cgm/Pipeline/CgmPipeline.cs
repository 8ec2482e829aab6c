using Microsoft.Extensions.Logging;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>Topic and group names of one CGM pipeline (production uses <see cref="Default"/>; tests give
/// each pipeline its own).</summary>
public sealed record CgmPipelineNames(string ApplicationId, string ReadingsTopic, string LatestTopic, string RequestsTopic)
{
    public static readonly CgmPipelineNames Default = new(CgmTopology.ApplicationId, Topics.CgmReadings, Topics.CgmLatest, Topics.CgmForecastRequests);
    public string PostgresSinkGroup => ApplicationId + "-readings-postgres-sink";
    public string RedisSinkGroup => ApplicationId + "-latest-redis-sink";
}

/// <summary>The CGM slice in one process: the window topology on a StreamHost, the readings → PostgreSQL
/// sink and the latest → Redis sink, each sink its own consumer group.</summary>
public sealed class CgmPipeline : StreamPipeline<CgmPipeline>
{
    public CgmPipelineNames Names { get; }
    public SinkRunner PostgresSink { get; }
    public SinkRunner RedisSink { get; }

    public CgmPipeline(StreamHostOptions hostOptions, NpgsqlDataSource postgres, IConnectionMultiplexer redis, ILoggerFactory logs,
        CgmPipelineOptions? options = null, CgmPipelineNames? names = null, int sessionTimeoutMs = 6_000)
    {
        names ??= CgmPipelineNames.Default;
        Names = names;
        var registry = hostOptions.SchemaRegistry
            ?? throw new ArgumentException("the CGM topics are Avro: StreamHostOptions.SchemaRegistry must be set", nameof(hostOptions));
        Host = new StreamHost(hostOptions, [CgmTopology.Create(options, names.ApplicationId, names.ReadingsTopic, names.LatestTopic, names.RequestsTopic)], logs);
        (PostgresSink, RedisSink) = CreateSinks(names, hostOptions.BootstrapServers, postgres, redis, registry, logs, sessionTimeoutMs,
            (options ?? new CgmPipelineOptions()).TimeRule);
    }

    /// <summary>The two sinks (for hosts that run them beside other topologies); they read the topics' Avro records
    /// through <paramref name="registry"/>.</summary>
    public static (SinkRunner Postgres, SinkRunner Redis) CreateSinks(CgmPipelineNames names, string bootstrapServers,
        NpgsqlDataSource postgres, IConnectionMultiplexer redis, SchemaRegistryConnection registry, ILoggerFactory logs, int sessionTimeoutMs = 6_000,
        Runtime.Validation.EventTimeRule? timeRule = null) =>
    (
        SinkRunner.For(bootstrapServers, names.ReadingsTopic, names.PostgresSinkGroup,
            CgmReadingsPostgresWriter.Create(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + CgmReadingsPostgresWriter.Name), timeRule),
            postgres, logs, sessionTimeoutMs),
        SinkRunner.For(bootstrapServers, names.LatestTopic, names.RedisSinkGroup,
            CgmLatestRedisWriter.Create(redis, registry), postgres, logs, sessionTimeoutMs)
    );

    public override IReadOnlyList<SinkRunner> Sinks => [PostgresSink, RedisSink];
}
