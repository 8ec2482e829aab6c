namespace StreamHealth.Runtime.Sinks;

/// <summary>One sink's progress as operators see it (/health, /api/v1/streams, the dashboard): how far behind its topic
/// it is, when it last advanced, and the last error it met. <see cref="Stalled"/> means "input waits and nothing has
/// advanced for the configured time", the state that must never go unreported.</summary>
public sealed record SinkHealth(
    string Name,
    string Topic,
    string GroupId,
    /// <summary>Records between the sink's position and the high watermark, over its assigned partitions.</summary>
    long Lag,
    long Written,
    /// <summary>Records this sink archived in streamhealth.dead_letters (undecodable or refused by the store).</summary>
    long DeadLettered,
    bool Paused,
    /// <summary>When the sink last wrote, dead-lettered or found itself caught up (lag 0), Unix ms.</summary>
    long LastProgressUnixMs,
    string? LastError,
    long LastErrorUnixMs,
    bool Stalled);

/// <summary>Anything that reads a topic in its own consumer group and reports its progress as a sink does: the sinks, and
/// workers such as the call-log fetch worker, so that one waiting on an outage shows in /health like a stalled sink.</summary>
public interface ISinkHealthSource
{
    /// <summary>Cheap and non-blocking: the latest figures.</summary>
    SinkHealth Health();

    /// <summary>How long input may wait with no progress before the source reports itself stalled.</summary>
    TimeSpan StallAfter { get; set; }
}
