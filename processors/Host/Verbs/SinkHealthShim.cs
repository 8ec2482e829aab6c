using StreamHealth.Runtime.Sinks;

namespace StreamHealth.Host.Verbs;

// TEMPORARY (branch `ops`), FOR THE LEAD TO DELETE IN THE MERGE: the `sinks` branch gives SinkRunner an instance
// Health() returning SinkHealth. An instance method wins over this extension, so after the merge this file is dead
// code: delete it. Until then it lets the hosts publish their sinks with what SinkRunner exposes on main (no lag,
// no last error, never stalled).
internal static class SinkHealthShim
{
    public static SinkHealth Health(this SinkRunner sink) => new(
        Name: "sink", Topic: "", GroupId: "", Lag: 0, Written: sink.Written, DeadLettered: 0, Paused: sink.IsPaused,
        LastProgressUnixMs: DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), LastError: null, LastErrorUnixMs: 0, Stalled: false);
}
