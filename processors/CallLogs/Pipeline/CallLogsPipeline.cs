using Microsoft.Extensions.Logging;
using Npgsql;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.CallLogs.Pipeline;

/// <summary>The call-log extraction in one process: the topology on a StreamHost and the check-ins and entries → PostgreSQL sinks,
/// as `up` runs them and the tests start them.</summary>
public sealed class CallLogsPipeline : StreamPipeline<CallLogsPipeline>
{
    public CallLogsPipelineNames Names { get; }
    public override IReadOnlyList<SinkRunner> Sinks { get; }

    public CallLogsPipeline(StreamHostOptions hostOptions, NpgsqlDataSource postgres, ILoggerFactory logs, CallLogsOptions? options = null,
        CallLogsPipelineNames? names = null, IHealthEntryExtractor? extractor = null, int sessionTimeoutMs = 6_000)
    {
        Names = names ??= CallLogsPipelineNames.Default;
        var registry = hostOptions.SchemaRegistry
            ?? throw new ArgumentException("the call-log topics are Avro: StreamHostOptions.SchemaRegistry must be set", nameof(hostOptions));
        Host = new StreamHost(hostOptions, [CallLogsTopology.Create(extractor ?? new EmbeddedExtractor(), options, names.ApplicationId, names.Topics)], logs);
        // The sinks fetch like the stream threads (on the embedded broker a longer wait is latency on every hop).
        Sinks = CallLogSinks.Create(names, hostOptions.BootstrapServers, postgres, registry, logs, sessionTimeoutMs, hostOptions.FetchWaitMaxMs);
    }
}
