using Microsoft.Extensions.Configuration;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.CallLogs.Ingest;

/// <summary>One call provider's API, as the fetch worker calls it: <c>GET {BaseUrl}/calls/{call_id}</c> with
/// <c>Authorization: Bearer {ApiToken}</c>.</summary>
public sealed class CallProviderEndpoint
{
    public string BaseUrl { get; set; } = "";
    public string ApiToken { get; set; } = "";
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

    public void Validate()
    {
        foreach (var (name, p) in Providers)
        {
            if (!Uri.TryCreate(p.BaseUrl, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttps && url.Scheme != Uri.UriSchemeHttp))
                throw new ArgumentException($"{Section}:Providers:{name}:BaseUrl = '{p.BaseUrl}': must be an absolute http(s) URL");
            if (string.IsNullOrWhiteSpace(p.ApiToken))
                throw new ArgumentException($"{Section}:Providers:{name}:ApiToken is empty: set STREAMHEALTH_CallLogs__Fetch__Providers__{name}__ApiToken");
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
    }

    /// <summary>The section, checked; a bad setting is a <see cref="ConfigurationException"/> (one line naming it, no stack trace).</summary>
    public static CallFetchOptions Load(IConfiguration configuration)
    {
        var options = configuration.GetSection(Section).Get<CallFetchOptions>() ?? new CallFetchOptions();
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ConfigurationException(e.Message);
        }
        return options;
    }
}
