namespace StreamHealth.Runtime.Streams;

/// <summary>Avro's <c>timestamp-millis</c> as the generated classes hold it (a UTC <see cref="DateTime"/>) and the Unix
/// milliseconds the platform's rules, stores and APIs work in. A time outside the years 1..9999 has no DateTime and is
/// refused rather than clamped.</summary>
public static class AvroTime
{
    private static readonly long EpochMs = DateTime.UnixEpoch.Ticks / TimeSpan.TicksPerMillisecond;
    private static readonly long MinUnixMs = -EpochMs;
    private static readonly long MaxUnixMs = DateTime.MaxValue.Ticks / TimeSpan.TicksPerMillisecond - EpochMs;

    /// <summary>A UTC DateTime (what Apache.Avro writes as timestamp-millis without shifting it).</summary>
    public static DateTime FromUnixMs(long unixMs) =>
        unixMs >= MinUnixMs && unixMs <= MaxUnixMs ? new DateTime((unixMs + EpochMs) * TimeSpan.TicksPerMillisecond, DateTimeKind.Utc)
        : throw new ArgumentOutOfRangeException(nameof(unixMs), unixMs, "event time is outside the years 1..9999 (timestamp-millis as DateTime)");

    /// <summary>Milliseconds since the Unix epoch (sub-millisecond ticks dropped, as timestamp-millis does); a Local time is
    /// converted to UTC first, an Unspecified one is taken as UTC.</summary>
    public static long ToUnixMs(DateTime time) =>
        (time.Kind == DateTimeKind.Local ? time.ToUniversalTime() : time).Ticks / TimeSpan.TicksPerMillisecond - EpochMs;
}
