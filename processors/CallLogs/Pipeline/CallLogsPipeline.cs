using Microsoft.Extensions.Logging;
using Npgsql;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.CallLogs.Pipeline;

/// <summary>The call-log extraction in one process: the topology on a StreamHost and the check-ins and entries → PostgreSQL sinks,
/// as `up` runs them and the tests start them.</summary>
public sealed class CallLogsPipeline : IDisposable
{
    public StreamHost Host { get; }
    public CallLogsPipelineNames Names { get; }
    public IReadOnlyList<SinkRunner> Sinks { get; }

    public CallLogsPipeline(StreamHostOptions hostOptions, NpgsqlDataSource postgres, ILoggerFactory logs, CallLogsOptions? options = null,
        CallLogsPipelineNames? names = null, IHealthEntryExtractor? extractor = null, int sessionTimeoutMs = 6_000)
    {
        Names = names ??= CallLogsPipelineNames.Default;
        var registry = hostOptions.SchemaRegistry
            ?? throw new ArgumentException("the call-log topics are Avro: StreamHostOptions.SchemaRegistry must be set", nameof(hostOptions));
        Host = new StreamHost(hostOptions, [CallLogsTopology.Create(extractor ?? new EmbeddedExtractor(), options, names.ApplicationId, names.Topics)], logs);
        Sinks = CallLogSinks.Create(names, hostOptions.BootstrapServers, postgres, registry, logs, sessionTimeoutMs);
    }

    public CallLogsPipeline Start()
    {
        Host.Start();
        foreach (var sink in Sinks) sink.Start();
        return this;
    }

    /// <summary>Stops the topology first (its last outputs reach the topics), then the sinks.</summary>
    public void Dispose()
    {
        Host.Dispose();
        foreach (var sink in Sinks) sink.Dispose();
    }
}
