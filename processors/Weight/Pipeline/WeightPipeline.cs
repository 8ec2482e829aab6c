using Microsoft.Extensions.Logging;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Weight.Filter;

namespace StreamHealth.Weight.Pipeline;

/// <summary>Topic and group names of one weights pipeline (production uses <see cref="Default"/>;
/// tests give each pipeline its own).</summary>
public sealed record WeightPipelineNames(string ApplicationId, string RawTopic, string FilteredTopic)
{
    public static readonly WeightPipelineNames Default = new(WeightTopology.ApplicationId, Topics.WeightsRaw, Topics.WeightsFiltered);
    public string PostgresSinkGroup => ApplicationId + "-postgres-sink";
    public string RedisSinkGroup => ApplicationId + "-redis-sink";
}

/// <summary>The weights vertical slice in one process: the Kalman topology on a StreamHost plus the
/// PostgreSQL and Redis sinks of weights.filtered, each sink its own consumer group.</summary>
public sealed class WeightPipeline : StreamPipeline<WeightPipeline>
{
    private readonly SinkRunner _postgres;
    private readonly SinkRunner _redis;

    public WeightPipelineNames Names { get; }
    public SinkRunner PostgresSink => _postgres;
    public SinkRunner RedisSink => _redis;

    public WeightPipeline(StreamHostOptions hostOptions, NpgsqlDataSource postgres, IConnectionMultiplexer redis,
        ILoggerFactory logs, WeightFilterOptions? filterOptions = null, WeightPipelineNames? names = null, int sessionTimeoutMs = 6_000,
        EventTimeRule? timeRule = null)
    {
        names ??= WeightPipelineNames.Default;
        Names = names;
        Host = new StreamHost(hostOptions, [WeightTopology.Create(filterOptions, names.ApplicationId, names.RawTopic, names.FilteredTopic, timeRule)], logs);
        var registry = hostOptions.SchemaRegistry
            ?? throw new ArgumentException("the weights topics are Avro: StreamHostOptions.SchemaRegistry must be set", nameof(hostOptions));
        (_postgres, _redis) = CreateSinks(names, hostOptions.BootstrapServers, postgres, redis, registry, logs, sessionTimeoutMs);
    }

    /// <summary>The two sinks of weights.filtered (for hosts that run them beside other topologies); they read its Avro
    /// values through <paramref name="registry"/>.</summary>
    public static (SinkRunner Postgres, SinkRunner Redis) CreateSinks(WeightPipelineNames names, string bootstrapServers,
        NpgsqlDataSource postgres, IConnectionMultiplexer redis, SchemaRegistryConnection registry, ILoggerFactory logs, int sessionTimeoutMs = 6_000) =>
    (
        SinkRunner.For(bootstrapServers, names.FilteredTopic, names.PostgresSinkGroup,
            WeightPostgresWriter.Create(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + WeightPostgresWriter.Name)), postgres, logs, sessionTimeoutMs),
        SinkRunner.For(bootstrapServers, names.FilteredTopic, names.RedisSinkGroup,
            WeightRedisWriter.Create(redis, registry), postgres, logs, sessionTimeoutMs)
    );

    public override IReadOnlyList<SinkRunner> Sinks => [_postgres, _redis];
}
