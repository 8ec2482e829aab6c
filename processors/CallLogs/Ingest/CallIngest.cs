using Microsoft.Extensions.Logging;
using Npgsql;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Storage;
using StreamHealth.Schemas;

namespace StreamHealth.CallLogs.Ingest;

/// <summary>Call-log change data capture as a host runs it (<c>run --topology calllogs</c>, <c>up</c>): the transcript fetch worker
/// for every configured provider, the poller for the ones whose <see cref="CdcMode"/> is polling or hybrid, and the ledger's
/// retention. With no CallLogs:Fetch:Providers configured nothing reads calllogs.raw, and its notices wait there (nothing is
/// fetched, nothing dropped).</summary>
public sealed class CallIngest : IDisposable
{
    public CallFetchWorker? Fetch { get; }
    public CallPoller? Poller { get; }
    private readonly RetentionJob? _retention;

    private CallIngest(CallFetchWorker? fetch, CallPoller? poller, RetentionJob? retention)
    {
        Fetch = fetch;
        Poller = poller;
        _retention = retention;
        var sources = new List<ISinkHealthSource>(2);
        if (fetch is not null) sources.Add(fetch);
        if (poller is not null) sources.Add(poller);
        HealthSources = sources;
    }

    public static CallIngest StartConfigured(CallFetchOptions options, string bootstrapServers, NpgsqlDataSource postgres, SchemaRegistryConnection registry,
        ILoggerFactory logs, int sessionTimeoutMs, int? fetchWaitMaxMs = null)
    {
        if (options.Providers.Count == 0)
        {
            logs.CreateLogger("StreamHealth.CallLogs." + CallFetchWorker.ProcessorName).LogWarning(
                "{Worker}: no {Section}:Providers configured; notices on {Topic} wait until one is", CallFetchWorker.ProcessorName,
                CallFetchOptions.Section, Topics.CallLogsRaw);
            return new CallIngest(null, null, null);
        }
        var ledger = new CallLedger(postgres);
        var fetch = new CallFetchWorker(options, CallFetchNames.Default, bootstrapServers, ledger, registry, logs, sessionTimeoutMs, fetchWaitMaxMs).Start();
        var poller = options.AnyPolled ? new CallPoller(options, Topics.CallLogsRaw, bootstrapServers, ledger, registry, logs).Start() : null;
        var retention = new RetentionJob(postgres, TimeSpan.FromHours(1), [CallLedger.PruneSql], logs.CreateLogger("StreamHealth.CallLogs.Retention"));
        return new CallIngest(fetch, poller, retention);
    }

    /// <summary>What the host's metrics report carries beside its sinks: the fetch worker and the poller, when running.</summary>
    public IReadOnlyList<ISinkHealthSource> HealthSources { get; }

    /// <summary>One line for a host's start-up banner.</summary>
    public string Describe(CallFetchOptions options) => Fetch is null
        ? "no transcript fetch (no CallLogs:Fetch:Providers configured: notices wait on calllogs.raw)"
        : "transcript fetch for " + string.Join(", ", options.Providers.Select(p => $"{p.Key} ({p.Value.CdcMode.ToString().ToLowerInvariant()})"));

    public void Dispose()
    {
        Poller?.Dispose();
        Fetch?.Dispose();
        _retention?.Dispose();
    }
}
