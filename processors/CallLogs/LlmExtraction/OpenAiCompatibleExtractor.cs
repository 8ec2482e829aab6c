using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.Runtime.Resilience;

namespace StreamHealth.CallLogs.LlmExtraction;

/// <summary>
/// Health entries from any OpenAI-compatible chat-completions endpoint (<c>POST {BaseUrl}/chat/completions</c>, a strict JSON
/// schema as <c>response_format</c>, the answer checked by <see cref="ExtractionAnswer"/> before use), with the embedded extractor
/// as the fallback. Entries the model gave carry <c>openai:{Model}</c>; a fallback's carry <c>embedded-1</c>, and so does its
/// <see cref="ExtractionResult.Extractor"/>, which the check-in records.
/// <para><b>Batching, and why a micro-batcher.</b> The stage calls <see cref="Extract"/> synchronously, one call per record, on
/// its stream thread, and must not move on before that call's entries are emitted (at-least-once: the offset is committed only
/// after the outputs). So no call is held back to fill a batch after its Extract returned. Instead every caller (each stream
/// thread, and the checker, which submits the whole labelled set at once through <see cref="ExtractAll"/>) puts its transcript on
/// one queue and blocks; a background loop takes up to <see cref="ExtractorOptions.BatchSize"/> transcripts, waiting at most
/// <see cref="ExtractorOptions.MaxBatchWaitMs"/> after the first for company, and sends them in one request. Identical
/// transcripts in one batch are asked once. What that buys depends on the caller: the checker fills every batch; N stream
/// threads share requests up to N at a time; but a host today runs one stream thread per topology (Streams:ThreadsPerTopology
/// must be 1), so in the stage each request carries one transcript, the wait adds MaxBatchWaitMs (20 ms beside a model's second)
/// and a process extracts about one call per model answer. Batching the stage itself would mean answering records after their
/// Extract returned (Streamiz's asynchronous processors, with their own request topics), a change of its delivery design that
/// this extractor does not make.</para>
/// <para><b>Each request</b> takes a permit of a token bucket (<see cref="ExtractorOptions.RequestsPerSecond"/>, tries included),
/// runs under <see cref="ExtractorOptions.RequestTimeoutMs"/> (the permit's wait included) and at most
/// <see cref="ExtractorOptions.MaxConcurrentRequests"/> run at once. 5xx, 408, 429, a timeout, a connection error or an answer
/// that fails a check is tried again after a fully jittered, doubling wait, up to <see cref="ExtractorOptions.MaxAttempts"/>;
/// another 4xx (our key or request is wrong) is not. Then the batch's transcripts go to the embedded extractor: the stage never
/// stops or dead-letters a call because the endpoint is down, and it never uses an answer that did not validate.</para>
/// <para><b>Cache</b> (<see cref="ExtractionCache"/>): validated answers by SHA-256 of model, prompt version and transcript; a hit
/// makes no request. A model is not deterministic, so a record processed again after a crash may be extracted differently than
/// the first time unless the cache still has it; the entry ids are the same and the sinks keep the first rows.</para>
/// </summary>
public sealed class OpenAiCompatibleExtractor : IHealthEntryExtractor, IDisposable
{
    public const string NamePrefix = "openai:";

    private readonly ExtractorOptions _options;
    private readonly IHealthEntryExtractor _fallback;
    private readonly ILogger _log;
    private readonly HttpClient _http;
    private readonly RateLimiter _limiter;
    private readonly SemaphoreSlim _inFlight;
    private readonly ExtractionCache _cache;
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _batcher;
    private readonly byte[] _schemaFormat;
    private long _requests, _retries, _rejectedAnswers, _cacheHits, _fallbacks, _extracted;

    private sealed record Pending(string Transcript, TranscriptHash Key, TaskCompletionSource<ExtractionResult> Done);

    public OpenAiCompatibleExtractor(ExtractorOptions options, ILogger? log = null, IHealthEntryExtractor? fallback = null)
        : this(options, log, fallback, limiter: null) { }

    /// <summary><paramref name="limiter"/>: tests give one they replenish by hand, so a rate is checked by counting, not timing.</summary>
    internal OpenAiCompatibleExtractor(ExtractorOptions options, ILogger? log, IHealthEntryExtractor? fallback, RateLimiter? limiter)
    {
        options.Validate();
        if (!options.IsOpenAi) throw new ArgumentException($"{ExtractorOptions.Section}:Kind = '{options.Kind}': this extractor needs {ExtractorOptions.OpenAi}");
        _options = options;
        _fallback = fallback ?? new EmbeddedExtractor();
        _log = log ?? NullLogger.Instance;
        Name = NamePrefix + options.Model;
        // HttpClient.Timeout stays infinite: each request gets its own token, so a timeout reads as ours, not as a stop.
        _http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
        {
            BaseAddress = new Uri(options.BaseUrl.TrimEnd('/') + "/"),
            Timeout = Timeout.InfiniteTimeSpan,
            MaxResponseContentBufferSize = 16 * 1024 * 1024,
        };
        if (!string.IsNullOrEmpty(options.ApiKey)) _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", options.ApiKey);
        _http.DefaultRequestHeaders.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        _limiter = limiter ?? CreateLimiter(options);
        _inFlight = new SemaphoreSlim(options.MaxConcurrentRequests);
        _cache = new ExtractionCache(options.CacheEntries);
        _schemaFormat = JsonSerializer.SerializeToUtf8Bytes(new JsonObject
        {
            ["type"] = "json_schema",
            ["json_schema"] = new JsonObject { ["name"] = "health_entries", ["strict"] = true, ["schema"] = JsonNode.Parse(ExtractionAnswer.SchemaJson) },
        });
        _batcher = Task.Run(BatchLoopAsync);
    }

    /// <summary>A token bucket holding <see cref="ExtractorOptions.RequestsPerSecond"/> over time with bursts of
    /// <see cref="ExtractorOptions.Burst"/>; refilled every 100 ms above 10 requests/s (a finer timer does not keep time), else
    /// one token per 1/rate seconds. Waiting requests queue oldest first.</summary>
    internal static TokenBucketRateLimiter CreateLimiter(ExtractorOptions options)
    {
        var (period, tokens) = options.RequestsPerSecond >= 10
            ? (TimeSpan.FromMilliseconds(100), (int)Math.Round(options.RequestsPerSecond / 10))
            : (TimeSpan.FromSeconds(1 / options.RequestsPerSecond), 1);
        return new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
        {
            TokenLimit = options.Burst, TokensPerPeriod = tokens, ReplenishmentPeriod = period,
            QueueLimit = 1_000_000, QueueProcessingOrder = QueueProcessingOrder.OldestFirst, AutoReplenishment = true,
        });
    }

    public string Name { get; }

    /// <summary>Requests sent (tries included).</summary>
    public long Requests => Interlocked.Read(ref _requests);
    /// <summary>Tries after the first of a batch.</summary>
    public long Retries => Interlocked.Read(ref _retries);
    /// <summary>Answers that came back but failed the schema or the code's checks, and were not used.</summary>
    public long RejectedAnswers => Interlocked.Read(ref _rejectedAnswers);
    public long CacheHits => Interlocked.Read(ref _cacheHits);
    /// <summary>Transcripts the embedded extractor did because the endpoint did not give a valid answer in time.</summary>
    public long Fallbacks => Interlocked.Read(ref _fallbacks);
    /// <summary>Transcripts extracted from a validated answer of the endpoint.</summary>
    public long Extracted => Interlocked.Read(ref _extracted);

    public ExtractionResult Extract(string transcript) => ExtractAsync(transcript).GetAwaiter().GetResult();

    /// <summary>All transcripts at once: they fill batches as fast as the queue takes them (the checker's path).</summary>
    public IReadOnlyList<ExtractionResult> ExtractAll(IReadOnlyList<string> transcripts)
    {
        var tasks = new Task<ExtractionResult>[transcripts.Count];
        for (var i = 0; i < tasks.Length; i++) tasks[i] = ExtractAsync(transcripts[i]);
        return Task.WhenAll(tasks).GetAwaiter().GetResult();
    }

    public Task<ExtractionResult> ExtractAsync(string transcript)
    {
        if (string.IsNullOrEmpty(transcript)) return Task.FromResult(ExtractionResult.Empty with { Extractor = Name });
        var key = ExtractionCache.KeyOf(_options.Model, transcript);
        if (_cache.TryGet(key, out var cached))
        {
            Interlocked.Increment(ref _cacheHits);
            return Task.FromResult(cached);
        }
        var pending = new Pending(transcript, key, new TaskCompletionSource<ExtractionResult>(TaskCreationOptions.RunContinuationsAsynchronously));
        if (!_queue.Writer.TryWrite(pending)) return Task.FromResult(Fallback(transcript));
        return pending.Done.Task;
    }

    private async Task BatchLoopAsync()
    {
        var reader = _queue.Reader;
        List<Pending>? batch = null;
        try
        {
            while (await reader.WaitToReadAsync(_stop.Token))
            {
                if (!reader.TryRead(out var first)) continue;
                batch = new List<Pending>(_options.BatchSize) { first };
                using (var window = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
                {
                    window.CancelAfter(_options.MaxBatchWaitMs);
                    while (batch.Count < _options.BatchSize)
                    {
                        if (reader.TryRead(out var next)) { batch.Add(next); continue; }
                        try { if (!await reader.WaitToReadAsync(window.Token)) break; }
                        catch (OperationCanceledException) when (!_stop.IsCancellationRequested) { break; }
                    }
                }
                await _inFlight.WaitAsync(_stop.Token);
                _ = SendAndReleaseAsync(batch);
                batch = null;
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested) { }
        // Stopped: the batch being gathered and whatever still waits are extracted here rather than left blocking their callers.
        foreach (var p in batch ?? []) p.Done.TrySetResult(Fallback(p.Transcript));
        while (reader.TryRead(out var left)) left.Done.TrySetResult(Fallback(left.Transcript));
    }

    private async Task SendAndReleaseAsync(List<Pending> batch)
    {
        try
        {
            await SendAsync(batch);
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested) { }
        catch (Exception e)
        {
            _log.LogError(e, "{Extractor}: batch of {Count} failed unexpectedly; the embedded extractor takes it", Name, batch.Count);
        }
        finally
        {
            foreach (var p in batch)
                if (!p.Done.Task.IsCompleted) p.Done.TrySetResult(Fallback(p.Transcript));
            _inFlight.Release();
        }
    }

    private async Task SendAsync(List<Pending> batch)
    {
        // A batch queued behind another with the same transcripts may find them answered meanwhile.
        var ask = new List<Pending>(batch.Count);
        var transcripts = new List<string>(batch.Count);
        var indexOf = new Dictionary<TranscriptHash, int>();
        foreach (var p in batch)
        {
            if (_cache.TryGet(p.Key, out var cached))
            {
                Interlocked.Increment(ref _cacheHits);
                p.Done.TrySetResult(cached);
                continue;
            }
            ask.Add(p);
            if (indexOf.TryAdd(p.Key, transcripts.Count)) transcripts.Add(p.Transcript);
        }
        if (transcripts.Count == 0) return;

        var body = RequestBody(transcripts);
        var backoff = new FullJitterBackoff(_options.InitialBackoffMs, _options.MaxBackoffMs);
        string? reason = null;
        for (var attempt = 1; attempt <= _options.MaxAttempts; attempt++)
        {
            if (attempt > 1)
            {
                var waitMs = backoff.NextWaitMs();
                _log.LogInformation("{Extractor}: {Reason}; try {Attempt} of {Max} in {WaitMs:0} ms", Name, reason, attempt, _options.MaxAttempts, waitMs);
                await Task.Delay(TimeSpan.FromMilliseconds(waitMs), _stop.Token);
                Interlocked.Increment(ref _retries);
            }
            var (results, retry, why) = await TryOnceAsync(body, transcripts);
            if (results is not null)
            {
                for (var i = 0; i < transcripts.Count; i++) _cache.Put(ExtractionCache.KeyOf(_options.Model, transcripts[i]), results[i]);
                foreach (var p in ask) p.Done.TrySetResult(results[indexOf[p.Key]]);
                Interlocked.Add(ref _extracted, ask.Count);
                return;
            }
            reason = why;
            if (!retry) break;
        }
        _log.LogWarning("{Extractor}: {Reason}; {Count} transcript(s) go to the embedded extractor ({Fallback})", Name, reason, ask.Count, _fallback.Name);
        // SendAndReleaseAsync completes every one still open with the fallback.
    }

    private byte[] RequestBody(List<string> transcripts)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("model", _options.Model);
            json.WriteNumber("temperature", 0);
            json.WriteStartArray("messages");
            json.WriteStartObject(); json.WriteString("role", "system"); json.WriteString("content", ExtractionAnswer.SystemPrompt); json.WriteEndObject();
            json.WriteStartObject(); json.WriteString("role", "user"); json.WriteString("content", ExtractionAnswer.UserMessage(transcripts)); json.WriteEndObject();
            json.WriteEndArray();
            json.WritePropertyName("response_format");
            json.WriteRawValue(_schemaFormat, skipInputValidation: true);
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>One request: the validated results, or why not and whether another try may help.</summary>
    private async Task<(ExtractionResult[]? Results, bool Retry, string Reason)> TryOnceAsync(byte[] body, List<string> transcripts)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(_options.RequestTimeoutMs);
        try
        {
            using var permit = await _limiter.AcquireAsync(1, timeout.Token);
            if (!permit.IsAcquired) return (null, true, "the rate limiter's queue is full");
            Interlocked.Increment(ref _requests);
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await _http.PostAsync("chat/completions", content, timeout.Token);
            var status = (int)response.StatusCode;
            if (status >= 500 || response.StatusCode is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests)
                return (null, true, $"the endpoint answered HTTP {status}");
            if (!response.IsSuccessStatusCode) return (null, false, $"the endpoint refused the request: HTTP {status}");
            var answer = await response.Content.ReadAsStringAsync(timeout.Token);
            var results = Read(answer, transcripts, out var error);
            if (results is null)
            {
                Interlocked.Increment(ref _rejectedAnswers);
                return (null, true, "answer not used: " + error);
            }
            return (results, false, "");
        }
        catch (OperationCanceledException) when (!_stop.IsCancellationRequested)
        {
            return (null, true, $"no answer within {_options.RequestTimeoutMs} ms");
        }
        catch (HttpRequestException e)
        {
            return (null, true, "the endpoint is unreachable: " + e.Message);
        }
    }

    /// <summary>The chat-completion envelope (<c>choices[0].message.content</c>, a JSON string) and then the content itself.</summary>
    private ExtractionResult[]? Read(string answer, List<string> transcripts, out string? error)
    {
        string? text;
        try
        {
            using var envelope = JsonDocument.Parse(answer);
            text = envelope.RootElement.ValueKind == JsonValueKind.Object
                   && envelope.RootElement.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array
                   && choices.GetArrayLength() > 0 && choices[0].ValueKind == JsonValueKind.Object
                   && choices[0].TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.Object
                   && message.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String
                ? c.GetString()
                : null;
        }
        catch (JsonException e)
        {
            error = "the response is not JSON: " + e.Message;
            return null;
        }
        if (text is null)
        {
            error = "the response has no choices[0].message.content string (a refusal, or not a chat completion)";
            return null;
        }
        var results = ExtractionAnswer.Read(text, transcripts, Name, out error);
        if (results is null) return null;
        for (var i = 0; i < results.Length; i++) results[i] = results[i] with { Extractor = Name };
        return results;
    }

    private ExtractionResult Fallback(string transcript)
    {
        Interlocked.Increment(ref _fallbacks);
        return _fallback.Extract(transcript) with { Extractor = _fallback.Name };
    }

    public void Dispose()
    {
        _queue.Writer.TryComplete();
        _stop.Cancel();
        try { _batcher.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
        _http.Dispose();
        _limiter.Dispose();
    }
}
