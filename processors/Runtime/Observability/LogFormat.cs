using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace StreamHealth.Runtime.Observability;

/// <summary>The console log format of every StreamHealth process: human lines by default (a terminal), one JSON object per line
/// when <c>Logging:Format</c> (or the environment variable <c>STREAMHEALTH_LOG_FORMAT</c>) is <c>json</c>, as compose and k8s
/// set it, for a log collector. A JSON line written inside a span carries that span's ids in its scopes
/// (<c>"Scopes":[{"SpanId":…,"TraceId":…,"ParentId":…}]</c>), so a log line leads to its trace and back.</summary>
public static class LogFormat
{
    public const string Json = "json";
    public const string EnvironmentVariable = "STREAMHEALTH_LOG_FORMAT";

    /// <summary>Whether JSON lines are asked for: <c>Logging:Format</c>, else <c>LOG_FORMAT</c> (what the STREAMHEALTH_
    /// prefix makes of the environment variable in a configuration built by StreamHealthOptions.AddSources), else the
    /// environment variable itself (a process without that configuration).</summary>
    public static bool WantsJson(IConfiguration? configuration)
    {
        var format = configuration?["Logging:Format"] ?? configuration?["LOG_FORMAT"] ?? Environment.GetEnvironmentVariable(EnvironmentVariable);
        return string.Equals(format, Json, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>When <see cref="WantsJson"/>: replaces the console providers by the built-in JSON console with scopes and
    /// trace/span ids; false (nothing changed) otherwise, so the caller keeps its human format.</summary>
    public static bool AddJsonConsoleIfAsked(this ILoggingBuilder logging, IConfiguration? configuration)
    {
        if (!WantsJson(configuration)) return false;
        logging.ClearProviders();
        logging.AddJsonConsole(o =>
        {
            o.IncludeScopes = true;   // the activity's ids arrive as a scope
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
        });
        // ParentId too: a line of a topology's "process" span names the publish span that caused it.
        logging.Configure(o => o.ActivityTrackingOptions = ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId
            | ActivityTrackingOptions.ParentId);
        return true;
    }
}
