using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Forecast.Service;

/// <summary>The forecast consumers in this process as OpenTelemetry instruments of the meter <see cref="MeterName"/>, observed when
/// scraped (`streamhealth forecast` serves them at /metrics beside its sinks' and Kafka clients' series; `up` beside its stream
/// hosts'), tagged by host. Counters since the consumer started; the Prometheus names are the constants below.</summary>
public static class ForecastTelemetry
{
    public const string MeterName = "StreamHealth.Forecast";

    public const string Forecasts = "streamhealth_forecast_forecasts_total";
    public const string Requests = "streamhealth_forecast_requests_total";
    public const string Batches = "streamhealth_forecast_batches_total";
    public const string BatchedRequests = "streamhealth_forecast_batched_requests_total";
    public const string DeadLettered = "streamhealth_forecast_dead_lettered_total";
    public const string InferenceTime = "streamhealth_forecast_inference_seconds_total";

    private static readonly ConcurrentDictionary<string, ForecastConsumer> Consumers = new(StringComparer.Ordinal);
    private static readonly Meter Meter = new(MeterName);

    static ForecastTelemetry()
    {
        Meter.CreateObservableCounter("streamhealth.forecast.forecasts", () => Each(c => c.Forecasts), unit: "{forecast}",
            description: "forecasts produced onto cgm.forecasts");
        Meter.CreateObservableCounter("streamhealth.forecast.requests", () => Each(c => c.Consumed), unit: "{request}",
            description: "forecast requests read from cgm.forecast-requests");
        Meter.CreateObservableCounter("streamhealth.forecast.batches", () => Each(c => c.Batches), unit: "{batch}",
            description: "model runs (each over a batch of requests)");
        Meter.CreateObservableCounter("streamhealth.forecast.batched_requests", () => Each(c => c.BatchedRequests), unit: "{request}",
            description: "requests forecast in batches (over batches: the mean batch size)");
        Meter.CreateObservableCounter("streamhealth.forecast.dead_lettered", () => Each(c => c.DeadLettered), unit: "{request}",
            description: "requests dead-lettered with the reason");
        Meter.CreateObservableCounter("streamhealth.forecast.inference", () => EachSeconds(c => c.InferenceTime), unit: "s",
            description: "time spent in the model (Monte Carlo dropout passes included)");
    }

    /// <summary>Publishes <paramref name="consumer"/> under <paramref name="hostId"/>; disposing forgets it.</summary>
    public static IDisposable Publish(string hostId, ForecastConsumer consumer)
    {
        Consumers[hostId] = consumer;
        return new StreamTelemetry.Forgetting(() => Consumers.TryRemove(hostId, out _));
    }

    private static IEnumerable<Measurement<long>> Each(Func<ForecastConsumer, long> value) =>
        Consumers.Select(kv => new Measurement<long>(value(kv.Value), new KeyValuePair<string, object?>("host", kv.Key)));

    private static IEnumerable<Measurement<double>> EachSeconds(Func<ForecastConsumer, TimeSpan> value) =>
        Consumers.Select(kv => new Measurement<double>(value(kv.Value).TotalSeconds, new KeyValuePair<string, object?>("host", kv.Key)));
}
