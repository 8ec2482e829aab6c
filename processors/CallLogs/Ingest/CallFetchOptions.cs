using Microsoft.Extensions.Configuration;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.CallLogs.Ingest;

/// <summary>How StreamHealth learns that a provider's call has ended (the setting <c>CdcMode</c>, the seed's <c>cdc_mode</c>).</summary>
public enum CdcMode
{
    /// <summary>The provider's signed webhook only (the gateway's POST /webhooks/call-completed).</summary>
    Webhook,
    /// <summary>Only the poller: for providers without webhooks. The gateway needs no entry for them.</summary>
    Polling,
    /// <summary>Webhooks, and the poller as a safety net for the ones that never came: it takes up only calls that ended more than
    /// <see cref="CallFetchOptions.HybridGraceMs"/> ago and that no notice has brought yet, so it never creates a duplicate.</summary>
    Hybrid,
}

/// <summary>One call provider's API, as the fetch worker and the poller call it: <c>GET {BaseUrl}/calls/{call_id}</c> and
/// <c>GET {BaseUrl}/calls?completed_since=…</c> with <c>Authorization: Bearer {ApiToken}</c>.</summary>
public sealed class CallProviderEndpoint
{
    public string BaseUrl { get; set; } = "";
    public string ApiToken { get; set; } = "";
    public CdcMode CdcMode { get; set; } = CdcMode.Webhook;
    /// <summary>Time between two polls of the provider's listing, ms (polling and hybrid): the seed polled every 15 s.</summary>
    public int PollIntervalMs { get; set; } = 15_000;
}

/// <summary>Settings of the transcript fetch worker, section "CallLogs:Fetch". The providers come from the environment like the
/// gateway's webhook secrets: <c>STREAMHEALTH_CallLogs__Fetch__Providers__&lt;name&gt;__BaseUrl</c> and <c>__ApiToken</c>, one per
/// name in Gateway:CallWebhooks:Providers.</summary>
public sealed class CallFetchOptions
{
    public const string Section = "CallLogs:Fetch";

    public Dictionary<string, CallProviderEndpoint> Providers { get; set; } = new(StringComparer.Ordinal);
    /// <summary>One HTTP request's limit, ms: a transcript is tens of KB, so a provider that has not answered in 10 s is down or stuck.</summary>
    public int RequestTimeoutMs { get; set; } = 10_000;
    /// <summary>Tries of one fetch before the partition is paused (5xx, 408, 429, 401/403, timeouts, connection errors).</summary>
    public int MaxAttempts { get; set; } = 5;
    /// <summary>First wait between tries, ms; doubled per try up to <see cref="MaxBackoffMs"/>, each wait drawn uniformly from
    /// [0, that] (full jitter, so workers that failed together do not retry together).</summary>
    public int InitialBackoffMs { get; set; } = 200;
    public int MaxBackoffMs { get; set; } = 5_000;
    /// <summary>Longest one round of tries may take, ms (tries and waits): a round never holds the consumer past its poll interval.</summary>
    public int RetryBudgetMs { get; set; } = 60_000;
    /// <summary>How long the partition stays paused after a round failed before the same notice is tried again, ms. An outage
    /// delays the notices; none is dead-lettered because the provider is down.</summary>
    public int OutagePauseMs { get; set; } = 30_000;
    /// <summary>How long after a call ended a 404 for its transcript still means "not ready yet", ms: the worker waits for it
    /// (as for an outage) this long, then dead-letters the notice as a call the provider does not know.</summary>
    public int TranscriptWaitMs { get; set; } = 15 * 60_000;
    /// <summary>How far before the cursor each poll lists again, ms: a call the provider lists late (its end time already behind
    /// the cursor) is still found if it is listed within this; the ledger removes what is listed twice.</summary>
    public int PollLookbackMs { get; set; } = 60 * 60_000;
    /// <summary>Calls asked for per listing page.</summary>
    public int PollPageSize { get; set; } = 100;
    /// <summary>Hybrid mode: how long the webhook has to bring a call before the poller takes it up, ms.</summary>
    public int HybridGraceMs { get; set; } = 5 * 60_000;
    /// <summary>Longest wait between polls while the provider's listing keeps failing, ms (the wait doubles per failed poll from
    /// the provider's interval, jittered).</summary>
    public int PollMaxBackoffMs { get; set; } = 5 * 60_000;

    public bool AnyPolled => Providers.Values.Any(p => p.CdcMode != CdcMode.Webhook);

    public void Validate()
    {
        foreach (var (name, p) in Providers)
        {
            if (!Uri.TryCreate(p.BaseUrl, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttps && url.Scheme != Uri.UriSchemeHttp))
                throw new ArgumentException($"{Section}:Providers:{name}:BaseUrl = '{p.BaseUrl}': must be an absolute http(s) URL");
            if (string.IsNullOrWhiteSpace(p.ApiToken))
                throw new ArgumentException($"{Section}:Providers:{name}:ApiToken is empty: set STREAMHEALTH_CallLogs__Fetch__Providers__{name}__ApiToken");
            if (!Enum.IsDefined(p.CdcMode))
                throw new ArgumentException($"{Section}:Providers:{name}:CdcMode = {(int)p.CdcMode}: must be webhook, polling or hybrid");
            if (p.PollIntervalMs is < 100 or > 86_400_000)
                throw new ArgumentException($"{Section}:Providers:{name}:PollIntervalMs = {p.PollIntervalMs}: must be 100-86400000 ms");
        }
        if (RequestTimeoutMs is < 100 or > 300_000)
            throw new ArgumentException($"{Section}:RequestTimeoutMs = {RequestTimeoutMs}: must be 100-300000 ms");
        if (MaxAttempts is < 1 or > 100)
            throw new ArgumentException($"{Section}:MaxAttempts = {MaxAttempts}: must be 1-100");
        if (InitialBackoffMs < 1 || MaxBackoffMs < InitialBackoffMs)
            throw new ArgumentException($"{Section}:InitialBackoffMs = {InitialBackoffMs}, MaxBackoffMs = {MaxBackoffMs}: need 1 <= initial <= max");
        if (RetryBudgetMs < RequestTimeoutMs || RetryBudgetMs > 240_000)
            throw new ArgumentException($"{Section}:RetryBudgetMs = {RetryBudgetMs}: must be RequestTimeoutMs ({RequestTimeoutMs})-240000 ms " +
                                        "(below the consumer's 300 s poll interval)");
        if (OutagePauseMs is < 100 or > 3_600_000)
            throw new ArgumentException($"{Section}:OutagePauseMs = {OutagePauseMs}: must be 100-3600000 ms");
        if (TranscriptWaitMs is < 0 or > 7 * 86_400_000)
            throw new ArgumentException($"{Section}:TranscriptWaitMs = {TranscriptWaitMs}: must be 0-604800000 ms");
        if (PollPageSize is < 1 or > 1_000)
            throw new ArgumentException($"{Section}:PollPageSize = {PollPageSize}: must be 1-1000");
        if (HybridGraceMs < 0 || PollLookbackMs <= HybridGraceMs || PollLookbackMs > 7 * 86_400_000)
            throw new ArgumentException($"{Section}:PollLookbackMs = {PollLookbackMs}, HybridGraceMs = {HybridGraceMs}: need 0 <= grace < look-back " +
                                        "<= 7 days (a call the grace holds back must still be listed by a later poll)");
        if (PollMaxBackoffMs < 100)
            throw new ArgumentException($"{Section}:PollMaxBackoffMs = {PollMaxBackoffMs}: must be at least 100 ms");
    }

    /// <summary>The section, checked; a bad setting is a <see cref="ConfigurationException"/> (one line naming it, no stack trace).</summary>
    public static CallFetchOptions Load(IConfiguration configuration)
    {
        try
        {
            var options = configuration.GetSection(Section).Get<CallFetchOptions>() ?? new CallFetchOptions();
            // The binder leaves an enum it cannot read at its default: a typo must not quietly mean "webhook".
            foreach (var provider in configuration.GetSection(Section + ":Providers").GetChildren())
                if (provider["CdcMode"] is { } mode && !Enum.TryParse<CdcMode>(mode, ignoreCase: true, out _))
                    throw new ArgumentException($"{Section}:Providers:{provider.Key}:CdcMode = '{mode}': must be webhook, polling or hybrid");
            options.Validate();
            return options;
        }
        // The binder's InvalidOperationException names the key and the value it could not convert (CdcMode = "sometimes").
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new ConfigurationException(e.Message);
        }
    }
}
