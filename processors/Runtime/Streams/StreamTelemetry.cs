using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using StreamHealth.Runtime.Sinks;

namespace StreamHealth.Runtime.Streams;

/// <summary>Every stream host's figures in this process as OpenTelemetry instruments of the meter <see cref="MeterName"/>, observed
/// when scraped (the processors' <c>/metrics</c>, <see cref="StoreQueryServer"/>, and OTLP when configured): the latest
/// <see cref="StreamMetricsReport"/> of each host (what it reads, emits and dead-letters, each task's and sink's progress, the
/// stores it serves) and its Kafka clients' own statistics (<see cref="KafkaClientMetric"/>: librdkafka's per-partition consumer
/// lag, broker round trips, bytes, queues; Streamiz's thread sensors). Everything is tagged by host, so several hosts in one
/// process (`up`) stay apart. These series are the one format the gateway reads hosts by (<c>/api/v1/streams</c> scrapes them):
/// the names it reads are the constants below, each the Prometheus name the exporter writes.</summary>
public static class StreamTelemetry
{
    public const string MeterName = "StreamHealth.Streams";

    // Prometheus names as the exporter writes them (dots → underscores, a unit of "s" → _seconds, a counter → _total).
    public const string Topology = "streamhealth_stream_topology";
    public const string RecordsIn = "streamhealth_stream_records_in_per_second";
    public const string RecordsOut = "streamhealth_stream_records_out_per_second";
    public const string ProcessP50 = "streamhealth_stream_process_p50_seconds";
    public const string ProcessP99 = "streamhealth_stream_process_p99_seconds";
    public const string ConsumerLag = "streamhealth_stream_consumer_lag";
    public const string RestoreProgress = "streamhealth_stream_restore_progress";
    public const string Processed = "streamhealth_stream_processed_total";
    public const string Emitted = "streamhealth_stream_emitted_total";
    public const string DeadLettered = "streamhealth_stream_dead_lettered_total";
    public const string Commits = "streamhealth_stream_commits_total";
    public const string ThreadRestarts = "streamhealth_stream_thread_restarts_total";
    public const string TaskLag = "streamhealth_task_lag";
    public const string TaskStalled = "streamhealth_task_stalled";
    public const string TaskLastProgress = "streamhealth_task_last_progress_time_seconds";
    public const string TaskLastError = "streamhealth_task_last_error_time_seconds";
    public const string SinkLag = "streamhealth_sink_lag";
    public const string SinkWritten = "streamhealth_sink_written_total";
    public const string SinkDeadLettered = "streamhealth_sink_dead_lettered_total";
    public const string SinkStalled = "streamhealth_sink_stalled";
    public const string SinkPaused = "streamhealth_sink_paused";
    public const string SinkLastProgress = "streamhealth_sink_last_progress_time_seconds";
    public const string SinkLastError = "streamhealth_sink_last_error_time_seconds";
    public const string StoreSourcePartitions = "streamhealth_store_source_partitions";

    /// <summary>An error text kept as a label is cut to this length: the text of a stalled part's last error is what an operator
    /// needs, and one series per part and error (only the latest is observed) keeps it low in cardinality.</summary>
    private const int ErrorLabelLength = 200;

    private static readonly ConcurrentDictionary<string, (StreamMetricsReport Report, StreamHost Host)> Latest = new(StringComparer.Ordinal);
    private static readonly Meter Meter = new(MeterName);

    static StreamTelemetry()
    {
        Meter.CreateObservableGauge("streamhealth.stream.topology",
            () => Latest.Values.SelectMany(l => l.Report.Topologies.Select(t => new Measurement<int>(1, Tag("host", l.Report.HostId), Tag("application", t)))),
            description: "1 for each topology (Streamiz application id) the host runs");
        Meter.CreateObservableGauge("streamhealth.stream.records_in", () => Hosts(r => r.RecordsInPerSecond), unit: "{record}/s",
            description: "records the host's tasks read per second over its last report interval");
        Meter.CreateObservableGauge("streamhealth.stream.records_out", () => Hosts(r => r.RecordsOutPerSecond), unit: "{record}/s",
            description: "records the host's tasks emitted per second over its last report interval");
        Meter.CreateObservableGauge("streamhealth.stream.process_p50", () => Hosts(r => r.ProcessP50Us / 1e6), unit: "s",
            description: "median of one record's processing time");
        Meter.CreateObservableGauge("streamhealth.stream.process_p99", () => Hosts(r => r.ProcessP99Us / 1e6), unit: "s",
            description: "99th percentile of one record's processing time");
        Meter.CreateObservableGauge("streamhealth.stream.consumer_lag", () => Hosts(r => r.ConsumerLag), unit: "{record}",
            description: "records the host's tasks have not read yet");
        Meter.CreateObservableGauge("streamhealth.stream.restore_progress", () => Hosts(r => r.RestoreProgress),
            description: "share of the state stores restored from their changelogs (1 when running)");
        Meter.CreateObservableCounter("streamhealth.stream.processed", () => HostCounts(r => r.Processed), unit: "{record}",
            description: "records processed since the host started");
        Meter.CreateObservableCounter("streamhealth.stream.emitted", () => HostCounts(r => r.Emitted), unit: "{record}",
            description: "records emitted since the host started");
        Meter.CreateObservableCounter("streamhealth.stream.dead_lettered", () => HostCounts(r => r.DeadLettered), unit: "{record}",
            description: "records dead-lettered since the host started");
        Meter.CreateObservableCounter("streamhealth.stream.commits", () => HostCounts(r => r.Commits),
            description: "commits of the host's stream threads since it started");
        Meter.CreateObservableCounter("streamhealth.stream.thread_restarts", () => HostCounts(r => r.ThreadRestarts),
            description: "stream threads restarted after a fatal error");
        Meter.CreateObservableGauge("streamhealth.task.lag", () => Tasks(t => t.Lag), unit: "{record}",
            description: "records of the task's input partition not read yet");
        Meter.CreateObservableGauge("streamhealth.task.stalled", () => Tasks(t => t.Stalled ? 1 : 0),
            description: "1 while the task's input waits and nothing has advanced for Streams:StallAfterMs");
        Meter.CreateObservableGauge("streamhealth.task.last_progress_time", () => Tasks(t => t.LastProgressUnixMs / 1000.0), unit: "s",
            description: "when the task last processed a record or was found caught up (Unix time)");
        Meter.CreateObservableGauge("streamhealth.task.last_error_time", () => TaskErrors(), unit: "s",
            description: "when the task last failed (Unix time), the error's text in the label error");
        Meter.CreateObservableGauge("streamhealth.sink.lag", () => Sinks(s => s.Lag), unit: "{record}",
            description: "records a sink (or a worker reporting as one) has not written yet");
        Meter.CreateObservableCounter("streamhealth.sink.written", () => Sinks(s => s.Written), unit: "{record}",
            description: "records a sink wrote since its host started");
        Meter.CreateObservableCounter("streamhealth.sink.dead_lettered", () => Sinks(s => s.DeadLettered), unit: "{record}",
            description: "records a sink dead-lettered since its host started");
        Meter.CreateObservableGauge("streamhealth.sink.stalled", () => Sinks(s => s.Stalled ? 1 : 0),
            description: "1 while a sink's input waits and nothing has advanced for Streams:StallAfterMs");
        Meter.CreateObservableGauge("streamhealth.sink.paused", () => Sinks(s => s.Paused ? 1 : 0),
            description: "1 while a sink holds its input back (its store refuses writes)");
        Meter.CreateObservableGauge("streamhealth.sink.last_progress_time", () => Sinks(s => s.LastProgressUnixMs / 1000.0), unit: "s",
            description: "when the sink last wrote, dead-lettered or found itself caught up (Unix time)");
        Meter.CreateObservableGauge("streamhealth.sink.last_error_time", () => SinkErrors(), unit: "s",
            description: "when the sink last failed (Unix time), the error's text in the label error");
        Meter.CreateObservableGauge("streamhealth.store.source_partitions",
            () => Latest.Values.SelectMany(l => (l.Report.Queryable ?? []).Select(q => new Measurement<int>(q.SourcePartitions, Tag("host", l.Report.HostId),
                Tag("application", q.ApplicationId), Tag("store", q.Store), Tag("source_topic", q.SourceTopic)))),
            description: "a store the host answers interactive queries for, and its source topic's partition count (keys are hashed over them)");
        KafkaClientMetrics.Register(Meter, () => Latest.Values.Select(l => (l.Report.HostId, l.Host)));
    }

    /// <summary>Creates the instruments (the static constructor) before anything is published: an endpoint serves them from its start,
    /// the sinks' Kafka statistics included.</summary>
    internal static void EnsureInstruments()
    {
    }

    internal static void Publish(StreamMetricsReport report, StreamHost host) => Latest[report.HostId] = (report, host);

    internal static void Forget(string hostId) => Latest.TryRemove(hostId, out _);

    internal static KeyValuePair<string, object?> Tag(string name, object? value) => new(name, value);

    private static IEnumerable<Measurement<double>> Hosts(Func<StreamMetricsReport, double> value) =>
        Latest.Values.Select(l => new Measurement<double>(value(l.Report), Tag("host", l.Report.HostId)));

    private static IEnumerable<Measurement<long>> HostCounts(Func<StreamMetricsReport, long> value) =>
        Latest.Values.Select(l => new Measurement<long>(value(l.Report), Tag("host", l.Report.HostId)));

    private static IEnumerable<Measurement<double>> Tasks(Func<StreamTaskHealth, double> value) => Parts(r => r.Tasks, TaskTags, value);

    private static IEnumerable<Measurement<double>> TaskErrors() =>
        Parts(r => r.Tasks.Where(t => t.LastError is not null), (host, t) => [.. TaskTags(host, t), Tag("error", ErrorLabel(t.LastError))],
            t => t.LastErrorUnixMs / 1000.0);

    private static KeyValuePair<string, object?>[] TaskTags(string host, StreamTaskHealth t) =>
        [Tag("host", host), Tag("application", t.ApplicationId), Tag("task", t.Task), Tag("partition", t.Partition)];

    private static IEnumerable<Measurement<double>> Sinks(Func<SinkHealth, double> value) =>
        Parts(r => r.Sinks, SinkTags, value).Concat(HostlessSinks(_ => true, SinkTags, value));

    private static IEnumerable<Measurement<double>> SinkErrors() =>
        Parts(r => r.Sinks.Where(s => s.LastError is not null), SinkErrorTags, s => s.LastErrorUnixMs / 1000.0)
            .Concat(HostlessSinks(s => s.LastError is not null, SinkErrorTags, s => s.LastErrorUnixMs / 1000.0));

    private static KeyValuePair<string, object?>[] SinkErrorTags(string host, SinkHealth s) =>
        [.. SinkTags(host, s), Tag("error", ErrorLabel(s.LastError))];

    // Sinks of a process with no stream host (the forecaster's), published as the hosts' are, under the process's host id.
    private static readonly ConcurrentDictionary<string, Func<IReadOnlyList<SinkHealth>>> SinksWithoutHost = new(StringComparer.Ordinal);

    /// <summary>Publishes the sinks of a process that runs no stream host (the forecaster) under the same sink series, tagged
    /// <paramref name="hostId"/>; disposing forgets them.</summary>
    public static IDisposable PublishSinks(string hostId, Func<IReadOnlyList<SinkHealth>> sinks)
    {
        SinksWithoutHost[hostId] = sinks;
        return new Forgetting(() => SinksWithoutHost.TryRemove(hostId, out _));
    }

    private static IEnumerable<Measurement<double>> HostlessSinks(Func<SinkHealth, bool> include,
        Func<string, SinkHealth, KeyValuePair<string, object?>[]> tags, Func<SinkHealth, double> value) =>
        SinksWithoutHost.SelectMany(kv => kv.Value().Where(include).Select(s => new Measurement<double>(value(s), tags(kv.Key, s))));

    /// <summary>What a Publish… call returns: disposing it forgets what was published (also for other meters' registries,
    /// e.g. the forecaster's).</summary>
    public sealed class Forgetting(Action forget) : IDisposable
    {
        public void Dispose() => forget();
    }

    private static KeyValuePair<string, object?>[] SinkTags(string host, SinkHealth s) =>
        [Tag("host", host), Tag("sink", s.Name), Tag("topic", s.Topic), Tag("group", s.GroupId)];

    /// <summary>One measurement per part (task, sink) of every host's latest report.</summary>
    private static IEnumerable<Measurement<double>> Parts<T>(Func<StreamMetricsReport, IEnumerable<T>> parts,
        Func<string, T, KeyValuePair<string, object?>[]> tags, Func<T, double> value) =>
        Latest.Values.SelectMany(l => parts(l.Report).Select(p => new Measurement<double>(value(p), tags(l.Report.HostId, p))));

    private static string? ErrorLabel(string? error) =>
        error is { Length: > ErrorLabelLength } ? error[..ErrorLabelLength] : error;
}
