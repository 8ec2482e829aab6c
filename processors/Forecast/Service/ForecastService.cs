using Microsoft.Extensions.Logging;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Forecast.Inference;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;

namespace StreamHealth.Forecast.Service;

/// <summary>The forecasting slice in one process: the model (checked before anything joins a group), the forecast
/// consumer, and the cgm.forecasts → PostgreSQL and → Redis sinks, each sink its own consumer group. All of them read and
/// write the Avro topics through <c>registry</c> (the process's schema registry connection, kept by the caller).</summary>
public sealed class ForecastService : IDisposable
{
    public ForecastConsumer Consumer { get; }
    public SinkRunner PostgresSink { get; }
    public SinkRunner RedisSink { get; }

    /// <exception cref="ForecastModelException">The model is missing, does not fit the options, or its samples do not differ.</exception>
    public ForecastService(ForecastOptions options, ForecastConsumerSettings settings, SchemaRegistryConnection registry, NpgsqlDataSource postgres,
        IConnectionMultiplexer redis, ILoggerFactory logs, ForecastNames? names = null)
        : this(options, OnnxGlucoseForecaster.Open(options, logs.CreateLogger("StreamHealth.Forecast")), settings, registry, postgres, redis, logs, names)
    {
    }

    /// <param name="forecaster">Opened by the caller, e.g. before it checks remote services, so that a missing model is
    /// reported first; the service owns it from here.</param>
    public ForecastService(ForecastOptions options, OnnxGlucoseForecaster forecaster, ForecastConsumerSettings settings, SchemaRegistryConnection registry,
        NpgsqlDataSource postgres, IConnectionMultiplexer redis, ILoggerFactory logs, ForecastNames? names = null)
    {
        names ??= ForecastNames.Default;
        Consumer = new ForecastConsumer(options, forecaster, settings, registry, names, logs);
        (PostgresSink, RedisSink) = CreateSinks(names, settings.BootstrapServers, postgres, redis, registry, logs, settings.SessionTimeoutMs, options.TimeRule);
    }

    public static (SinkRunner Postgres, SinkRunner Redis) CreateSinks(ForecastNames names, string bootstrapServers, NpgsqlDataSource postgres,
        IConnectionMultiplexer redis, SchemaRegistryConnection registry, ILoggerFactory logs, int sessionTimeoutMs = 6_000,
        Runtime.Validation.EventTimeRule? timeRule = null) =>
    (
        SinkRunner.For(bootstrapServers, names.ForecastsTopic, names.PostgresSinkGroup,
            ForecastPostgresWriter.Create(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + ForecastPostgresWriter.Name), timeRule),
            postgres, logs, sessionTimeoutMs),
        SinkRunner.For(bootstrapServers, names.ForecastsTopic, names.RedisSinkGroup,
            ForecastRedisWriter.Create(redis, registry), postgres, logs, sessionTimeoutMs)
    );

    public ForecastService Start()
    {
        Consumer.Start();
        PostgresSink.Start();
        RedisSink.Start();
        return this;
    }

    /// <summary>Stops the consumer first (its last forecasts reach the topic), then the sinks.</summary>
    public void Dispose()
    {
        Consumer.Dispose();
        PostgresSink.Dispose();
        RedisSink.Dispose();
    }
}
