using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.CallLogs.LlmExtraction;

/// <summary>Which extractor the call-log stage runs, section "CallLogs:Extractor". <see cref="Kind"/> "embedded" (the default:
/// no network) or "openai": any OpenAI-compatible <c>POST {BaseUrl}/chat/completions</c> endpoint, with the embedded extractor as
/// its fallback. The key comes from the environment, never the file: <c>STREAMHEALTH_CallLogs__Extractor__ApiKey</c>.</summary>
public sealed class ExtractorOptions
{
    public const string Section = "CallLogs:Extractor";
    public const string Embedded = "embedded", OpenAi = "openai";

    public string Kind { get; set; } = Embedded;
    /// <summary>The API root that <c>/chat/completions</c> is under, e.g. <c>https://api.openai.com/v1</c> or a local server's <c>http://127.0.0.1:8000/v1</c>.</summary>
    public string BaseUrl { get; set; } = "";
    /// <summary>Sent as <c>Authorization: Bearer</c>; empty sends no header (a local server without keys).</summary>
    public string ApiKey { get; set; } = "";
    public string Model { get; set; } = "";
    /// <summary>Transcripts per request at most (the seed's <c>llm_batch_size</c>; its value is not known to us, 8 is our choice:
    /// eight check-ins of a few KB each stay far inside any current model's context and output limits).</summary>
    public int BatchSize { get; set; } = 8;
    /// <summary>How long the first transcript of a batch waits for others before the request goes, ms. Small against a model's
    /// answer time (about a second), so a lone call loses little; concurrent callers (stream threads, the checker) share requests.</summary>
    public int MaxBatchWaitMs { get; set; } = 20;
    /// <summary>One request's limit, ms, the wait for a rate-limit permit included: a batch of check-ins answered in 30 s or not at all.</summary>
    public int RequestTimeoutMs { get; set; } = 30_000;
    /// <summary>Requests of one batch before it falls back to the embedded extractor (5xx, 408, 429, timeouts, connection errors,
    /// answers that do not validate). Waits between tries as the fetch worker's: doubled from <see cref="InitialBackoffMs"/> up to
    /// <see cref="MaxBackoffMs"/>, each drawn uniformly from [0, that] (full jitter).</summary>
    public int MaxAttempts { get; set; } = 3;
    public int InitialBackoffMs { get; set; } = 500;
    public int MaxBackoffMs { get; set; } = 8_000;
    /// <summary>Requests per second to the endpoint (a token bucket, tries included), and the burst it allows.</summary>
    public double RequestsPerSecond { get; set; } = 5;
    public int Burst { get; set; } = 10;
    /// <summary>Requests in flight at once.</summary>
    public int MaxConcurrentRequests { get; set; } = 4;
    /// <summary>Extractions kept in memory (least recently used dropped first), keyed by SHA-256 of model, prompt version and transcript.</summary>
    public int CacheEntries { get; set; } = 10_000;

    public bool IsOpenAi => Kind == OpenAi;

    /// <summary>Worst case a stream thread waits in one Extract, ms: every try timing out plus the longest waits.</summary>
    public long WorstCaseMs => MaxBatchWaitMs + (long)MaxAttempts * RequestTimeoutMs + (long)(MaxAttempts - 1) * MaxBackoffMs;

    public void Validate()
    {
        if (Kind is not (Embedded or OpenAi))
            throw new ArgumentException($"{Section}:Kind = '{Kind}': must be {Embedded} or {OpenAi}");
        if (!IsOpenAi) return;
        if (!Uri.TryCreate(BaseUrl, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttps && url.Scheme != Uri.UriSchemeHttp))
            throw new ArgumentException($"{Section}:BaseUrl = '{BaseUrl}': must be an absolute http(s) URL");
        if (string.IsNullOrWhiteSpace(Model) || Model.Length > 200)
            throw new ArgumentException($"{Section}:Model = '{Model}': name the endpoint's model (1-200 characters)");
        if (BatchSize is < 1 or > 64) throw new ArgumentException($"{Section}:BatchSize = {BatchSize}: must be 1-64 transcripts");
        if (MaxBatchWaitMs is < 0 or > 5_000) throw new ArgumentException($"{Section}:MaxBatchWaitMs = {MaxBatchWaitMs}: must be 0-5000 ms");
        if (RequestTimeoutMs is < 100 or > 300_000) throw new ArgumentException($"{Section}:RequestTimeoutMs = {RequestTimeoutMs}: must be 100-300000 ms");
        if (MaxAttempts is < 1 or > 10) throw new ArgumentException($"{Section}:MaxAttempts = {MaxAttempts}: must be 1-10");
        if (InitialBackoffMs < 1 || MaxBackoffMs < InitialBackoffMs)
            throw new ArgumentException($"{Section}:InitialBackoffMs = {InitialBackoffMs}, MaxBackoffMs = {MaxBackoffMs}: need 1 <= initial <= max");
        if (!double.IsFinite(RequestsPerSecond) || RequestsPerSecond is < 0.01 or > 10_000)
            throw new ArgumentException($"{Section}:RequestsPerSecond = {RequestsPerSecond}: must be 0.01-10000");
        if (Burst is < 1 or > 10_000) throw new ArgumentException($"{Section}:Burst = {Burst}: must be 1-10000");
        if (MaxConcurrentRequests is < 1 or > 256) throw new ArgumentException($"{Section}:MaxConcurrentRequests = {MaxConcurrentRequests}: must be 1-256");
        if (CacheEntries is < 0 or > 10_000_000) throw new ArgumentException($"{Section}:CacheEntries = {CacheEntries}: must be 0-10000000");
        // A stream thread blocks in Extract; past Kafka's 300 s poll interval it would be thrown out of its group.
        if (WorstCaseMs > 240_000)
            throw new ArgumentException($"{Section}:MaxAttempts x RequestTimeoutMs + waits = {WorstCaseMs} ms: must stay under 240000 ms " +
                                        "(a stream thread waits that long at worst, below the consumer's 300 s poll interval)");
    }

    /// <summary>The extractor these settings name: the embedded one, or the endpoint's with the embedded one as its fallback.</summary>
    public IHealthEntryExtractor Create(ILogger? log = null) =>
        IsOpenAi ? new OpenAiCompatibleExtractor(this, log) : new EmbeddedExtractor();

    /// <summary>The section, checked; a bad setting is a <see cref="ConfigurationException"/> (one line naming it, no stack trace).</summary>
    public static ExtractorOptions Load(IConfiguration configuration)
    {
        var options = configuration.GetSection(Section).Get<ExtractorOptions>() ?? new ExtractorOptions();
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
