using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Service;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth forecast`: one member of the forecast consumer group (cgm.forecast-requests → ONNX Runtime →
/// cgm.forecasts, Avro through the schema registry at SchemaRegistry:Url) with the forecasts' PostgreSQL and Redis sinks;
/// what a forecaster pod runs. Keeps no durable state,
/// so it scales by replicas. The model is checked before the group is joined. SIGTERM/Ctrl-C stop it gracefully.</summary>
internal static class ForecastVerb
{
    public static async Task<int> RunAsync(string[] argv)
    {
        if (argv.FirstOrDefault() == "evaluate") return ForecastEvaluateVerb.Run(argv[1..]);
        var args = new Args(argv);
        var options = StreamHealthOptions.Load();
        if (string.IsNullOrEmpty(options.Kafka.BootstrapServers))
            throw new ConfigurationException("Kafka:BootstrapServers is empty: `forecast` joins an existing cluster (start one with `streamhealth kafka`)");
        var forecast = ForecastOptions.Load(StreamHealthOptions.AddSources(new ConfigurationBuilder()).Build());
        var hostId = args.Get("--host-id") ?? $"{Environment.MachineName}-{Environment.ProcessId}";

        using var logs = ConsoleLogs.Create();
        var log = logs.CreateLogger("StreamHealth.Forecast");
        using var redis = ConnectionMultiplexer.Connect(options.Redis.ConnectionOptions());   // abortConnect=false: the sink retries
        using var postgres = NpgsqlDataSource.Create(options.Postgres.ConnectionString);
        using var schemas = SchemaRegistryConnection.Connect(options.SchemaRegistry);
        var settings = new ForecastConsumerSettings(options.Kafka.BootstrapServers, options.Streams.SessionTimeoutMs,
            options.Streams.EffectiveFetchWaitMaxMs(options.Kafka.Flavor));
        // The model (a local file) before the registry (a remote service): a misconfigured pod names its own mistake
        // rather than whatever else happens to be unreachable.
        var forecaster = OnnxGlucoseForecaster.Open(forecast, log);
        await schemas.EnsureReachableAsync();   // one line naming the URL at start-up; later outages are held and retried
        using var service = new ForecastService(forecast, forecaster, settings, schemas, postgres, redis, logs).Start();
        log.LogInformation("forecaster {Host}: group {Group} on {Topic} → {Output}, batches of up to {Batch} requests within {Wait} ms, {Bootstrap}",
            hostId, service.Consumer.Names.GroupId, service.Consumer.Names.RequestsTopic, service.Consumer.Names.ForecastsTopic,
            forecast.MaxBatchSize, forecast.MaxWaitMs, options.Kafka.BootstrapServers);
        // Its /metrics (Prometheus; OTLP too when configured): the consumer's figures, its sinks' and its Kafka clients' statistics,
        // on the query port a processors pod exposes (Streams:QueryListenUrl; the forecaster serves no store).
        using var consumerMetrics = ForecastTelemetry.Publish(hostId, service.Consumer);
        using var sinkMetrics = StreamTelemetry.PublishSinks(hostId, RunVerb.SinkHealths([service.PostgresSink, service.RedisSink], options.Streams.StallAfterMs));
        await using var metrics = await StoreQueryServer.StartMetricsAsync(options.Streams.QueryListenUrl, ForecastTelemetry.MeterName);
        log.LogInformation("forecaster {Host}: metrics at {Url}/metrics", hostId, metrics.Url);
        var status = await ReportUntilStoppedAsync(service.Consumer, log, TimeSpan.FromMilliseconds(options.Streams.MetricsIntervalMs));
        log.LogInformation("forecaster {Host} stopping: forecasting what is queued, committing", hostId);
        return status;
    }

    /// <summary>Logs throughput and batch figures every interval until Ctrl-C/SIGTERM (0) or the consumer fails (1).</summary>
    internal static async Task<int> ReportUntilStoppedAsync(ForecastConsumer consumer, ILogger log, TimeSpan interval)
    {
        var stopped = Shutdown.WaitAsync();
        long forecasts = 0, batches = 0, batched = 0, dead = 0;
        var inference = TimeSpan.Zero;
        var summary = TimeSpan.Zero;
        while (true)
        {
            var done = await Task.WhenAny(stopped, Task.Delay(interval)) == stopped;
            if (consumer.Failure is { } failure)
            {
                log.LogError("forecaster failed: {Error}", failure.Message);
                return 1;
            }
            var (f, b, r, d) = (consumer.Forecasts, consumer.Batches, consumer.BatchedRequests, consumer.DeadLettered);
            if (b > batches)
                log.LogInformation("forecaster: {Rate:F0} forecasts/s, {Batches} batches of {Mean:F1} requests on average, " +
                                   "model {Model:F2} ms and quantiles {Quantiles:F2} ms per batch, {Dead} dead letters",
                    (f - forecasts) / interval.TotalSeconds, b - batches, (double)(r - batched) / (b - batches),
                    (consumer.InferenceTime - inference).TotalMilliseconds / (b - batches), (consumer.SummaryTime - summary).TotalMilliseconds / (b - batches),
                    d - dead);
            (forecasts, batches, batched, dead, inference, summary) = (f, b, r, d, consumer.InferenceTime, consumer.SummaryTime);
            if (done) return 0;
        }
    }
}
