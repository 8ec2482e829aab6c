using StreamHealth.Runtime.SchemaRegistry;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Host.Samples;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using Microsoft.Extensions.Configuration;
using StreamHealth.CallLogs.Pipeline;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Insights.Aggregates;
using StreamHealth.Insights.Metrics;
using StreamHealth.Insights.Nutrition;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Service;
using StreamHealth.Weight.Pipeline;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth up`: the local stack's processes-in-one: embedded Kafka (unless a broker is
/// configured), migrations, Redis check, the weights, CGM, insights, sensors and call-log pipelines, the forecaster, and sample producers. compose/local/up.sh starts PostgreSQL and
/// Redis before it and the gateway after it.</summary>
internal static class UpVerb
{
    public static async Task<int> RunAsync(string[] argv)
    {
        var args = new Args(argv);
        var options = StreamHealthOptions.Load();
        EmbeddedKafkaCluster? cluster = null;
        var bootstrap = options.Kafka.BootstrapServers;
        if (string.IsNullOrEmpty(bootstrap))
        {
            cluster = EmbeddedKafkaCluster.Start(options.Kafka.EmbeddedBrokers, partitionOverrides: options.Kafka.PartitionOverrides);
            KafkaVerb.CreateInternalTopics(cluster, options);
            bootstrap = cluster.BootstrapServers;
            Console.WriteLine($"kafka     embedded (librdkafka {EmbeddedKafkaCluster.LibrdkafkaVersion} mock cluster from {Path.GetFileName(EmbeddedKafkaCluster.LibrdkafkaPath)}) at {bootstrap}");
        }
        else
        {
            Console.WriteLine($"kafka     {options.Kafka.Flavor} at {bootstrap}");
        }
        try
        {
            await CheckPostgresAsync(options.Postgres);
            CheckRedis(options.Redis);
            KafkaVerb.WriteBootstrap(args.Get("--bootstrap-file"), bootstrap);

            // The weights pipeline (topology + PostgreSQL and Redis sinks) runs in this process locally.
            using var logs = ConsoleLogs.Create();
            await using var registry = await KafkaVerb.StartRegistryAsync(options, logs);
            using var postgres = NpgsqlDataSource.Create(options.Postgres.ConnectionString);
            using var redis = ConnectionMultiplexer.Connect(options.Redis.ConnectionOptions());
            using var schemas = SchemaRegistryConnection.Connect(registry?.Url ?? options.SchemaRegistry.Url, options.SchemaRegistry.EffectiveAutoRegister);
            await schemas.EnsureReachableAsync();
            StreamHostOptions HostOptions() => new()
            {
                SchemaRegistry = schemas,
                BootstrapServers = bootstrap, StateDirectory = options.State.Directory,
                CommitIntervalMs = options.Streams.CommitIntervalMs, SessionTimeoutMs = options.Streams.SessionTimeoutMs,
                FetchWaitMaxMs = options.Streams.EffectiveFetchWaitMaxMs(options.Kafka.Flavor),
                StallAfterMs = options.Streams.StallAfterMs,
                Guarantee = options.Streams.EffectiveGuarantee(options.Kafka.Flavor),
                RequireInternalTopics = options.Kafka.Flavor == KafkaFlavor.Embedded,
            };
            var configuration = StreamHealthOptions.AddSources(new ConfigurationBuilder()).Build();
            using var weights = new WeightPipeline(HostOptions(), postgres, redis, logs, WeightTopology.FilterOptions(configuration),
                timeRule: options.Input.TimeRule).Start();
            using var cgm = new CgmPipeline(HostOptions(), postgres, redis, logs,
                CgmTopology.Options(configuration)).Start();
            using var metricsSink = HealthMetricPostgresWriter.CreateSink(bootstrap, postgres, schemas, logs, options.Streams.SessionTimeoutMs,
                options.Input.TimeRule);
            metricsSink.Start();
            using var nutritionSink = NutritionLogPostgresWriter.CreateSink(bootstrap, postgres, schemas, logs, options.Streams.SessionTimeoutMs,
                options.Input.TimeRule);
            nutritionSink.Start();
            using var insights = new InsightsPipeline(HostOptions(), postgres, redis, logs, InsightsOptions.Load(configuration),
                sessionTimeoutMs: options.Streams.SessionTimeoutMs).Start();
            using var sensors = new SensorsPipeline(HostOptions(), postgres, redis, logs, SensorsOptions.Load(configuration),
                sessionTimeoutMs: options.Streams.SessionTimeoutMs).Start();
            using var sensorsRetention = SensorsPipeline.Retention(postgres, logs);
            var extractorOptions = StreamHealth.CallLogs.LlmExtraction.ExtractorOptions.Load(configuration);
            var extractor = extractorOptions.Create(logs.CreateLogger("StreamHealth.CallLogs.Extractor"));
            using var extractorLifetime = extractor as IDisposable;
            using var calllogs = new CallLogsPipeline(HostOptions(), postgres, logs, CallLogsOptions.Load(configuration),
                extractor: extractor, sessionTimeoutMs: options.Streams.SessionTimeoutMs).Start();
            var callFetchOptions = StreamHealth.CallLogs.Ingest.CallFetchOptions.Load(configuration);
            // With no provider of one's own, the local stack's sample provider (hybrid: webhooks, and the poller for the ones that
            // never came, with a 30 s grace so that they show within a minute).
            await using var callSamples = options.Samples.Enabled && callFetchOptions.Providers.Count == 0 ? await CallSamples.StartAsync(logs) : null;
            if (callSamples is not null)
            {
                callFetchOptions.Providers[CallSamples.Provider] = callSamples.Endpoint;
                callFetchOptions.HybridGraceMs = 30_000;
            }
            using var callIngest = StreamHealth.CallLogs.Ingest.CallIngest.StartConfigured(callFetchOptions, bootstrap, postgres, schemas, logs,
                options.Streams.SessionTimeoutMs, options.Streams.EffectiveFetchWaitMaxMs(options.Kafka.Flavor));
            var upLog = logs.CreateLogger("StreamHealth.Up");
            var metricsInterval = TimeSpan.FromMilliseconds(options.Streams.MetricsIntervalMs);
            Console.WriteLine($"weights   Kalman topology + PostgreSQL/Redis sinks, state in {options.State.Directory}");
            Console.WriteLine("cgm       5-minute window topology + readings→PostgreSQL, latest→Redis sinks; forecast requests on cgm.forecast-requests");
            Console.WriteLine("insights  insights.metrics→PostgreSQL streamhealth.health_metrics, insights.nutrition→insights.nutrition_logs sinks; " +
                              "daily aggregates topology → insights.daily → insights.daily_metrics/metric_summaries sink (then the cached " +
                              "summaries and recommendations are invalidated)");
            Console.WriteLine("sensors   1/15/60-minute window topology (readings checked against sensors.nodes) + metrics→PostgreSQL sensors.window_metrics, " +
                              "latest windows→Redis sinks; district analysis (quality, leaks, efficiency) → sensors.window_quality, " +
                              "sensors.anomalies, sensors.efficiency; retention hourly");
            Console.WriteLine("calllogs  extraction topology (calllogs.calls → entries, check-ins, dashboard refreshes; once per call id) + " +
                              "check-ins→calllogs.checkins, entries→calllogs.medication_entries/food_entries/symptom_entries sinks; " +
                              callIngest.Describe(callFetchOptions));
            using var forecaster = StartForecaster(configuration, new ForecastConsumerSettings(bootstrap, options.Streams.SessionTimeoutMs,
                options.Streams.EffectiveFetchWaitMaxMs(options.Kafka.Flavor)), schemas, postgres, redis, logs);
            await using var queries = await StoreQueryServer.StartAsync([weights.Host, cgm.Host, insights.Host, sensors.Host, calllogs.Host], options.Streams.QueryListenUrl,
                options.Streams.QueryAdvertisedUrl, logs, ForecastTelemetry.MeterName);
            using var forecastMetrics = forecaster is null ? null : ForecastTelemetry.Publish($"up-{Environment.ProcessId}-forecaster", forecaster.Consumer);
            // Each host's meters carry its sinks' progress (the forecaster's with CGM's), so a stalled one shows in /health; all
            // five register this process's /metrics and interactive-query URL for the gateway.
            using var reporter = new StreamMetricsReporter($"up-{Environment.ProcessId}", [WeightTopology.ApplicationId], weights.Host,
                upLog, redis.GetDatabase(), metricsInterval, RunVerb.SinkHealths([weights.PostgresSink, weights.RedisSink, metricsSink, nutritionSink], options.Streams.StallAfterMs),
                options.Streams.RegistryKey, queries.Url);
            using var cgmReporter = new StreamMetricsReporter($"up-{Environment.ProcessId}-cgm", [CgmTopology.ApplicationId], cgm.Host,
                upLog, redis.GetDatabase(), metricsInterval,
                RunVerb.SinkHealths(forecaster is null ? [cgm.PostgresSink, cgm.RedisSink]
                    : [cgm.PostgresSink, cgm.RedisSink, forecaster.PostgresSink, forecaster.RedisSink], options.Streams.StallAfterMs),
                options.Streams.RegistryKey, queries.Url);
            using var insightsReporter = new StreamMetricsReporter($"up-{Environment.ProcessId}-insights", [InsightsTopology.ApplicationId], insights.Host,
                upLog, redis.GetDatabase(), metricsInterval, RunVerb.SinkHealths([insights.Sink], options.Streams.StallAfterMs),
                options.Streams.RegistryKey, queries.Url);
            using var sensorsReporter = new StreamMetricsReporter($"up-{Environment.ProcessId}-sensors",
                [SensorsTopology.ApplicationId, sensors.Names.DistrictsApplicationId], sensors.Host,
                upLog, redis.GetDatabase(), metricsInterval, RunVerb.SinkHealths(sensors.Sinks, options.Streams.StallAfterMs),
                options.Streams.RegistryKey, queries.Url);
            using var calllogsReporter = new StreamMetricsReporter($"up-{Environment.ProcessId}-calllogs", [CallLogsTopology.ApplicationId], calllogs.Host,
                upLog, redis.GetDatabase(), metricsInterval, RunVerb.SinkHealths([.. calllogs.Sinks, .. callIngest.HealthSources], options.Streams.StallAfterMs),
                options.Streams.RegistryKey, queries.Url);

            var producers = new List<Task>();
            if (options.Samples.Enabled)
            {
                producers.Add(WeightSamples.RunAsync(bootstrap, schemas, options.Samples.WeightsPerSecond, Shutdown.Token));
                Console.WriteLine($"samples   a year of weigh-ins of {WeightSamples.Users} synthetic people (e.g. {WeightSamples.ExampleUser}) ending this week onto " +
                                  $"weights.raw: the past at {options.Samples.WeightsPerSecond}/s, then each at its time");
                producers.Add(SensorSamples.RunAsync(bootstrap, schemas, postgres, Shutdown.Token));
                Console.WriteLine($"samples   a simulated water network ({SensorSamples.Districts} districts) onto sensors.readings: the last " +
                                  $"{SensorSamples.BackfillHours} h at once, then each reading at its time");
                if (callSamples is not null)
                {
                    producers.Add(callSamples.RunAsync(options.Samples.GatewayUrl, TimeSpan.FromSeconds(options.Samples.CallEverySeconds), Shutdown.Token));
                    Console.WriteLine($"samples   a call provider ({CallSamples.Provider}, hybrid) with {CallSamples.BackfillCalls} check-in calls of the last hour, " +
                                      $"then one every {options.Samples.CallEverySeconds:0.#} s" +
                                      (options.Samples.GatewayUrl.Length > 0 ? $", 3 of 4 with a signed webhook to {options.Samples.GatewayUrl}" : ", polled"));
                }
                producers.Add(HealthMetricSamples.RunAsync(bootstrap, schemas, options.Samples.MetricsPerSecond, Shutdown.Token));
                Console.WriteLine($"samples   {options.Samples.MetricsPerSecond} health metrics/s onto insights.metrics");
                var (cgmReadings, cgmDescription) = CgmSamples.Load(options.Samples.DataDirectory, options.Samples.CgmFile);
                if (cgmReadings is not null)
                {
                    producers.Add(CgmSamples.RunAsync(bootstrap, schemas, cgmReadings, options.Samples.CgmReadingsPerSecond, Shutdown.Token));
                    Console.WriteLine($"samples   {cgmDescription} onto cgm.readings, {options.Samples.CgmReadingsPerSecond}/s");
                }
                else
                {
                    Console.WriteLine($"samples   {cgmDescription}");
                }
            }
            Console.WriteLine("ready     (Ctrl-C stops)");
            await Shutdown.WaitAsync();
            Console.WriteLine("stopping …");
            await Task.WhenAll(producers);
            return 0;
        }
        finally
        {
            cluster?.Dispose();
        }
    }

    /// <summary>The forecaster in-process when its model is there; locally a missing or unusable model is a line of
    /// output, not a reason to stop the rest of the stack (`streamhealth forecast` does stop on it).</summary>
    private static ForecastService? StartForecaster(IConfiguration configuration, ForecastConsumerSettings settings, SchemaRegistryConnection schemas,
        NpgsqlDataSource postgres, IConnectionMultiplexer redis, Microsoft.Extensions.Logging.ILoggerFactory logs)
    {
        var options = ForecastOptions.Load(configuration);
        try
        {
            var service = new ForecastService(options, settings, schemas, postgres, redis, logs).Start();
            Console.WriteLine($"forecast  {service.Consumer.Forecaster.ModelVersion} on {service.Consumer.Forecaster.Provider}, " +
                              $"{options.McSamples} MC-dropout samples: cgm.forecast-requests → cgm.forecasts → PostgreSQL/Redis");
            return service;
        }
        catch (ForecastModelException e)
        {
            Console.WriteLine($"forecast  not started: {e.Message}");
            return null;
        }
    }

    private static async Task CheckPostgresAsync(PostgresOptions pg)
    {
        try
        {
            var applied = await PostgresMigrator.MigrateAsync(pg.ConnectionString);
            Console.WriteLine($"postgres  {pg.Host}:{pg.Port}/{pg.Database} (migrations: {(applied.Count == 0 ? "up to date" : string.Join(", ", applied.Select(v => $"V{v:D4}")))})");
        }
        catch (NpgsqlException e) when (e is not PostgresException)
        {
            throw new ConfigurationException($"Postgres:Host/Port = {pg.Host}:{pg.Port}: cannot connect ({e.Message.ReplaceLineEndings(" ")}); is it started (compose/local/services.sh start dev)?");
        }
    }

    private static void CheckRedis(RedisOptions redis)
    {
        using var mux = ConnectionMultiplexer.Connect(redis.ConnectionOptions());
        try
        {
            var rtt = mux.GetDatabase().Ping();
            Console.WriteLine($"redis     {redis.Host}:{redis.Port} (ping {rtt.TotalMilliseconds:F1} ms)");
        }
        catch (RedisConnectionException e)
        {
            throw new ConfigurationException($"Redis:Host/Port = {redis.Host}:{redis.Port}: cannot connect ({e.Message.ReplaceLineEndings(" ")})");
        }
    }
}
