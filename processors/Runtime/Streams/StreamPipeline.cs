using StreamHealth.Runtime.Sinks;

namespace StreamHealth.Runtime.Streams;

/// <summary>A workload's slice in one process: its topologies on a <see cref="StreamHost"/> and the sinks that write their
/// results, each sink its own consumer group. Every workload's pipeline starts and stops the same way: the host first, then
/// the sinks; on the way down the host first (its last outputs reach the topics), then the sinks.</summary>
public abstract class StreamPipeline<TSelf> : IDisposable where TSelf : StreamPipeline<TSelf>
{
    /// <summary>Set by the workload's constructor, which builds its topologies from its names and options.</summary>
    public StreamHost Host { get; protected init; } = null!;

    /// <summary>Every sink of the pipeline, for starting, stopping and health reports.</summary>
    public abstract IReadOnlyList<SinkRunner> Sinks { get; }

    public TSelf Start()
    {
        Host.Start();
        foreach (var sink in Sinks) sink.Start();
        return (TSelf)this;
    }

    public void Dispose()
    {
        Host.Dispose();
        foreach (var sink in Sinks) sink.Dispose();
        GC.SuppressFinalize(this);
    }
}
