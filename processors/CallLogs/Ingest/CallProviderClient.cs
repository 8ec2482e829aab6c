using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.CallLogs.Ingest;

/// <summary>A call as the provider's <c>GET /calls/{id}</c> answers it.</summary>
public sealed record ProviderCall(string CallId, string? PatientId, long? StartedAtUnixMs, int DurationSeconds, string Transcript);

/// <summary>One call of the provider's listing (<c>GET /calls?completed_since=…</c>).</summary>
public sealed record ListedCall(string CallId, string? PatientId, DateTimeOffset CompletedAt);

/// <summary>One page of the listing and the token of the next (null on the last page).</summary>
public sealed record CallPage(IReadOnlyList<ListedCall> Calls, string? NextPageToken);

/// <summary>A listing page, or why there is none: <see cref="FetchOutcome.Unavailable"/> (try the poll again later) or
/// <see cref="FetchOutcome.Refused"/> (a malformed page: the provider's bug, also tried again later, and logged as an error).</summary>
public readonly record struct ListResult(FetchOutcome Outcome, CallPage? Page, string? Reason);

public enum FetchOutcome
{
    /// <summary>The call, read.</summary>
    Fetched,
    /// <summary>The provider is down, slow or refusing us (5xx, 408, 429, 401/403, a timeout, a connection error): try again later.</summary>
    Unavailable,
    /// <summary>The notice itself cannot be fetched (another 4xx; a malformed answer): trying again gives the same answer, so it
    /// is dead-lettered.</summary>
    Refused,
    /// <summary>404/410: the provider does not know the call, or does not have its transcript yet (some providers list a call
    /// before its transcript is ready). The worker waits for it while the call is recent, then dead-letters it.</summary>
    Missing,
}

public readonly record struct FetchResult(FetchOutcome Outcome, ProviderCall? Call, string? Reason)
{
    public static FetchResult Fetched(ProviderCall call) => new(FetchOutcome.Fetched, call, null);
    public static FetchResult Unavailable(string reason) => new(FetchOutcome.Unavailable, null, reason);
    public static FetchResult Refused(string reason) => new(FetchOutcome.Refused, null, reason);
}

/// <summary>One provider's call API: one GET per try with its own timeout (<see cref="CallFetchOptions.RequestTimeoutMs"/>),
/// classified into fetched, unavailable (retry) and refused (dead letter). No retries here: the worker owns them.</summary>
public sealed class CallProviderClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly TimeSpan _timeout;
    public string Provider { get; }

    public CallProviderClient(string provider, CallProviderEndpoint endpoint, TimeSpan requestTimeout, HttpMessageHandler? handler = null)
    {
        Provider = provider;
        _timeout = requestTimeout;
        // HttpClient.Timeout stays infinite: each request gets its own token, so a timeout reads as ours, not as the caller's stop.
        _http = new HttpClient(handler ?? new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
        {
            BaseAddress = new Uri(endpoint.BaseUrl.TrimEnd('/') + "/"),
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", endpoint.ApiToken);
        _http.DefaultRequestHeaders.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
    }

    /// <summary>Largest answer read, bytes: the extraction takes transcripts up to 1 MiB at most (CallLogs:MaxTranscriptBytes), and
    /// JSON escaping can double that; a bigger answer is the provider's bug, refused rather than held in memory.</summary>
    public const int MaxAnswerBytes = 4 * 1024 * 1024;

    public async Task<FetchResult> FetchAsync(string callId, CancellationToken stop)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
        timeout.CancelAfter(_timeout);
        try
        {
            using var response = await _http.GetAsync("calls/" + Uri.EscapeDataString(callId), HttpCompletionOption.ResponseContentRead, timeout.Token);
            var status = (int)response.StatusCode;
            if (response.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Gone)
                return new FetchResult(FetchOutcome.Missing, null, $"provider {Provider} does not know call {callId} (HTTP {status})");
            if (status >= 500 || response.StatusCode is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests
                    or HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
                // 401/403 are our credentials, not the call: a rotated token must delay calls, not dead-letter them all.
                return FetchResult.Unavailable($"provider {Provider} answered HTTP {status} for call {callId}");
            if (!response.IsSuccessStatusCode)
                return FetchResult.Refused($"provider {Provider} refused call {callId}: HTTP {status}");
            var body = await ReadAtMostAsync(response.Content, MaxAnswerBytes + 1, timeout.Token);
            return body.Length > MaxAnswerBytes
                ? FetchResult.Refused($"provider {Provider} answered call {callId} with more than {MaxAnswerBytes} bytes")
                : Parse(callId, body);
        }
        catch (OperationCanceledException) when (!stop.IsCancellationRequested)
        {
            return FetchResult.Unavailable($"provider {Provider} did not answer for call {callId} within {_timeout.TotalMilliseconds:0} ms");
        }
        catch (HttpRequestException e)
        {
            return FetchResult.Unavailable($"provider {Provider} unreachable for call {callId}: {e.Message}");
        }
    }

    /// <summary>Largest listing page read, bytes (a page of ids and times: 100 calls are about 15 KB).</summary>
    public const int MaxPageBytes = 1024 * 1024;

    /// <summary>One page of <c>GET /calls?completed_since={ISO 8601}&amp;limit={n}[&amp;page_token={t}]</c>: calls that ended at or
    /// after <paramref name="completedSince"/>, in any order, possibly repeating calls of other pages (the poller removes repeats).</summary>
    public async Task<ListResult> ListAsync(DateTimeOffset completedSince, int limit, string? pageToken, CancellationToken stop)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
        timeout.CancelAfter(_timeout);
        var query = "calls?completed_since=" + Uri.EscapeDataString(completedSince.UtcDateTime.ToString("O", CultureInfo.InvariantCulture)) +
                    "&limit=" + limit.ToString(CultureInfo.InvariantCulture) + (pageToken is null ? "" : "&page_token=" + Uri.EscapeDataString(pageToken));
        try
        {
            using var response = await _http.GetAsync(query, HttpCompletionOption.ResponseContentRead, timeout.Token);
            var status = (int)response.StatusCode;
            if (!response.IsSuccessStatusCode)
                return new ListResult(status >= 500 || response.StatusCode is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests
                        or HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden ? FetchOutcome.Unavailable : FetchOutcome.Refused,
                    null, $"provider {Provider} answered HTTP {status} to its call listing");
            var body = await ReadAtMostAsync(response.Content, MaxPageBytes + 1, timeout.Token);
            return body.Length > MaxPageBytes
                ? new ListResult(FetchOutcome.Refused, null, $"provider {Provider} answered its call listing with more than {MaxPageBytes} bytes")
                : ParsePage(body, pageToken);
        }
        catch (OperationCanceledException) when (!stop.IsCancellationRequested)
        {
            return new ListResult(FetchOutcome.Unavailable, null, $"provider {Provider} did not answer its call listing within {_timeout.TotalMilliseconds:0} ms");
        }
        catch (HttpRequestException e)
        {
            return new ListResult(FetchOutcome.Unavailable, null, $"provider {Provider} unreachable for its call listing: {e.Message}");
        }
    }

    /// <summary>A listing page, checked: <c>{"calls": [{"call_id", "patient_id"?, "completed_at"}], "next_page_token": string|null}</c>.
    /// One bad call refuses the whole page (taking up the rest would move the cursor past the bad one).</summary>
    internal ListResult ParsePage(ReadOnlySpan<byte> body, string? pageToken)
    {
        ListResult Malformed(string why) => new(FetchOutcome.Refused, null, $"provider {Provider} answered its call listing with a malformed page: {why}");
        try
        {
            var reader = new Utf8JsonReader(body);
            using var doc = JsonDocument.ParseValue(ref reader);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("calls", out var calls) || calls.ValueKind != JsonValueKind.Array)
                return Malformed("no calls array");
            var page = new List<ListedCall>(calls.GetArrayLength());
            foreach (var c in calls.EnumerateArray())
            {
                string? Text(string name) => c.ValueKind == JsonValueKind.Object && c.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String
                    ? v.GetString() : null;
                var callId = Text("call_id") ?? "";
                if (InputRules.CheckId("call_id", callId) is { } badId) return Malformed($"call {page.Count}: {badId}");
                if (Text("completed_at") is not { } completed
                    || !DateTimeOffset.TryParse(completed, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var completedAt))
                    return Malformed($"call {callId}: completed_at missing or not an ISO 8601 time");
                page.Add(new ListedCall(callId, Text("patient_id"), completedAt));
            }
            string? next = root.TryGetProperty("next_page_token", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
            if (next is not null && next == pageToken) return Malformed($"next_page_token repeats this page's token '{next}'");
            return new ListResult(FetchOutcome.Fetched, new CallPage(page, string.IsNullOrEmpty(next) ? null : next), null);
        }
        catch (JsonException e)
        {
            return Malformed("not JSON: " + e.Message);
        }
    }

    private static async Task<byte[]> ReadAtMostAsync(HttpContent content, int limit, CancellationToken ct)
    {
        await using var stream = await content.ReadAsStreamAsync(ct);
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while (buffer.Length < limit && (read = await stream.ReadAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, limit - buffer.Length)), ct)) > 0)
            buffer.Write(chunk, 0, read);
        return buffer.ToArray();
    }

    /// <summary>The provider's answer, checked: a JSON object with call_id (this call), transcript, duration_s and optionally
    /// patient_id and started_at (ISO 8601).</summary>
    internal FetchResult Parse(string callId, ReadOnlySpan<byte> body)
    {
        string Malformed(string why) => $"provider {Provider} answered call {callId} with a malformed call: {why}";
        try
        {
            var reader = new Utf8JsonReader(body);
            using var doc = JsonDocument.ParseValue(ref reader);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return FetchResult.Refused(Malformed($"a JSON {root.ValueKind}, not an object"));
            string? Text(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            var answeredId = Text("call_id");
            if (answeredId != callId) return FetchResult.Refused(Malformed($"call_id = '{answeredId}', not the call asked for"));
            if (Text("transcript") is not { } transcript) return FetchResult.Refused(Malformed("transcript is missing or not a string"));
            if (!root.TryGetProperty("duration_s", out var d) || d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out var durationS))
                return FetchResult.Refused(Malformed("duration_s is missing or not an integer"));
            long? startedAtMs = null;
            if (Text("started_at") is { } started)
            {
                if (!DateTimeOffset.TryParse(started, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var at))
                    return FetchResult.Refused(Malformed($"started_at = '{started}' is not an ISO 8601 time"));
                startedAtMs = at.ToUnixTimeMilliseconds();
            }
            return FetchResult.Fetched(new ProviderCall(callId, Text("patient_id"), startedAtMs, durationS, transcript));
        }
        catch (JsonException e)
        {
            return FetchResult.Refused(Malformed("not JSON: " + e.Message));
        }
    }

    public void Dispose() => _http.Dispose();
}
