using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using StreamHealth.Runtime.Sinks;

namespace StreamHealth.Runtime.Streams;

/// <summary>Every stream host's latest report in this process (<see cref="StreamMetricsReporter"/>), as OpenTelemetry instruments
/// of the meter <see cref="MeterName"/>: what a host reads, emits and dead-letters, its lag and latency, each task's and each
/// sink's lag and stall. Observed when scraped (the processors' <c>/metrics</c>, <see cref="StoreQueryServer"/>), tagged by host,
/// so several hosts in one process (`up`) stay apart.</summary>
public static class StreamTelemetry
{
    public const string MeterName = "StreamHealth.Streams";

    private static readonly ConcurrentDictionary<string, StreamMetricsReport> Latest = new(StringComparer.Ordinal);
    private static readonly Meter Meter = new(MeterName);

    static StreamTelemetry()
    {
        Meter.CreateObservableGauge("streamhealth.stream.records_in", () => Hosts(r => r.RecordsInPerSecond), unit: "{record}/s",
            description: "records the host's tasks read per second over its last report interval");
        Meter.CreateObservableGauge("streamhealth.stream.records_out", () => Hosts(r => r.RecordsOutPerSecond), unit: "{record}/s",
            description: "records the host's tasks emitted per second over its last report interval");
        Meter.CreateObservableGauge("streamhealth.stream.process_p99", () => Hosts(r => r.ProcessP99Us / 1e6), unit: "s",
            description: "99th percentile of one record's processing time");
        Meter.CreateObservableGauge("streamhealth.stream.consumer_lag", () => Hosts(r => r.ConsumerLag), unit: "{record}",
            description: "records the host's tasks have not read yet");
        Meter.CreateObservableGauge("streamhealth.stream.restore_progress", () => Hosts(r => r.RestoreProgress),
            description: "share of the state stores restored from their changelogs (1 when running)");
        Meter.CreateObservableCounter("streamhealth.stream.processed", () => HostCounts(r => r.Processed), unit: "{record}",
            description: "records processed since the host started");
        Meter.CreateObservableCounter("streamhealth.stream.dead_lettered", () => HostCounts(r => r.DeadLettered), unit: "{record}",
            description: "records dead-lettered since the host started");
        Meter.CreateObservableCounter("streamhealth.stream.thread_restarts", () => HostCounts(r => r.ThreadRestarts),
            description: "stream threads restarted after a fatal error");
        Meter.CreateObservableGauge("streamhealth.task.lag", () => Tasks(t => t.Lag), unit: "{record}",
            description: "records of the task's input partition not read yet");
        Meter.CreateObservableGauge("streamhealth.task.stalled", () => Tasks(t => t.Stalled ? 1 : 0),
            description: "1 while the task's input waits and nothing has advanced for Streams:StallAfterMs");
        Meter.CreateObservableGauge("streamhealth.sink.lag", () => Sinks(s => s.Lag), unit: "{record}",
            description: "records a sink (or a worker reporting as one) has not written yet");
        Meter.CreateObservableCounter("streamhealth.sink.written", () => Sinks(s => s.Written), unit: "{record}",
            description: "records a sink wrote since its host started");
        Meter.CreateObservableCounter("streamhealth.sink.dead_lettered", () => Sinks(s => s.DeadLettered), unit: "{record}",
            description: "records a sink dead-lettered since its host started");
        Meter.CreateObservableGauge("streamhealth.sink.stalled", () => Sinks(s => s.Stalled ? 1 : 0),
            description: "1 while a sink's input waits and nothing has advanced for Streams:StallAfterMs");
    }

    internal static void Publish(StreamMetricsReport report) => Latest[report.HostId] = report;

    internal static void Forget(string hostId) => Latest.TryRemove(hostId, out _);

    private static KeyValuePair<string, object?> Tag(string name, object? value) => new(name, value);

    private static IEnumerable<Measurement<double>> Hosts(Func<StreamMetricsReport, double> value) =>
        Latest.Values.Select(r => new Measurement<double>(value(r), Tag("host", r.HostId)));

    private static IEnumerable<Measurement<long>> HostCounts(Func<StreamMetricsReport, long> value) =>
        Latest.Values.Select(r => new Measurement<long>(value(r), Tag("host", r.HostId)));

    private static IEnumerable<Measurement<long>> Tasks(Func<StreamTaskHealth, long> value) =>
        Latest.Values.SelectMany(r => r.Tasks.Select(t => new Measurement<long>(value(t), Tag("host", r.HostId), Tag("application", t.ApplicationId),
            Tag("task", t.Task))));

    private static IEnumerable<Measurement<long>> Sinks(Func<SinkHealth, long> value) =>
        Latest.Values.SelectMany(r => r.Sinks.Select(s => new Measurement<long>(value(s), Tag("host", r.HostId), Tag("sink", s.Name),
            Tag("topic", s.Topic))));
}
