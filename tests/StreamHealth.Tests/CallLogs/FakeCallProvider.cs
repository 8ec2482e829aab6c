using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace StreamHealth.Tests.CallLogs;

/// <summary>A call provider outside our system, as the tests need one: it signs and sends call-completed webhooks to a
/// gateway (good ones, and every kind of bad one a provider or an attacker could send), and serves its calls'
/// transcripts at <c>GET /calls/{id}</c> on a real Kestrel port, with outages and latency the test controls (what the
/// transcript fetch worker will read). The signature is computed here from the README's recipe with .NET's own
/// HMACSHA256, not with the gateway's code, so a gateway that drifts from the documented recipe fails the tests.</summary>
public sealed class FakeCallProvider : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, Call> _calls = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _rawAnswers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _fetchesOf = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _unlisted = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _transcriptPending = new(StringComparer.Ordinal);
    private int _fetches, _listings;

    /// <summary>One call as the provider holds it.</summary>
    public sealed record Call(string CallId, string PatientId, DateTimeOffset StartedAt, int DurationSeconds, string Transcript)
    {
        public DateTimeOffset EndedAt => StartedAt.AddSeconds(DurationSeconds);
    }

    /// <summary>One webhook as sent: its raw body and headers (send it again as is: a replay).</summary>
    public sealed record Delivery(string Provider, string Timestamp, string Signature, byte[] Body)
    {
        public string EventId => JsonDocument.Parse(Body).RootElement.GetProperty("event_id").GetString()!;
    }

    public string Name { get; }
    public string Secret { get; }
    /// <summary>Where <c>GET /calls/{id}</c> answers.</summary>
    public string BaseUrl { get; }
    /// <summary>While true, <c>GET /calls/{id}</c> answers 503 (a provider outage).</summary>
    public bool Outage { get; set; }
    /// <summary>Added before every transcript answer (a slow provider).</summary>
    public TimeSpan Latency { get; set; }
    public int Fetches => Volatile.Read(ref _fetches);
    /// <summary>Requests for one call id, answered or not.</summary>
    public int FetchesOf(string callId) => _fetchesOf.GetValueOrDefault(callId);
    /// <summary>Listing requests (<c>GET /calls?…</c>), answered or not.</summary>
    public int Listings => Volatile.Read(ref _listings);
    /// <summary>While true, the listing answers 503.</summary>
    public bool ListingOutage { get; set; }
    /// <summary>The listing answers 503 for every page after this many (a provider failing mid-listing); null: never.</summary>
    public int? ListingFailsAfterPages { get; set; }
    /// <summary>Every page is served twice (its first next_page_token points to itself once more): duplicate pages.</summary>
    public bool RepeatPages { get; set; }
    /// <summary>The listing is ordered by call id, not by end time: out-of-order pages.</summary>
    public bool ListByCallId { get; set; }

    /// <summary>When set, <c>GET /calls/{id}</c> without <c>Authorization: Bearer {ApiToken}</c> answers 401.</summary>
    public string? ApiToken { get; set; }

    private FakeCallProvider(string name, string secret, WebApplication app, string baseUrl)
    {
        Name = name;
        Secret = secret;
        _app = app;
        BaseUrl = baseUrl;
    }

    public static async Task<FakeCallProvider> StartAsync(string name, string secret)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        FakeCallProvider? provider = null;
        app.MapGet("/calls/{callId}", async (string callId, HttpRequest request, CancellationToken ct) =>
        {
            var self = provider!;
            Interlocked.Increment(ref self._fetches);
            self._fetchesOf.AddOrUpdate(callId, 1, static (_, n) => n + 1);
            if (self.Latency > TimeSpan.Zero) await Task.Delay(self.Latency, ct);
            if (self.Outage) return Results.Problem("provider maintenance", statusCode: StatusCodes.Status503ServiceUnavailable);
            if (self.ApiToken is { } token && request.Headers.Authorization.ToString() != "Bearer " + token) return Results.Unauthorized();
            if (self._transcriptPending.ContainsKey(callId)) return Results.NotFound();
            if (self._rawAnswers.TryGetValue(callId, out var raw)) return Results.Content(raw, "application/json");
            return self._calls.TryGetValue(callId, out var call)
                ? Results.Json(new
                {
                    call_id = call.CallId, patient_id = call.PatientId, started_at = call.StartedAt.ToString("O", CultureInfo.InvariantCulture),
                    duration_s = call.DurationSeconds, transcript = call.Transcript,
                })
                : Results.NotFound();
        });
        // The listing the poller reads: calls that ended at or after completed_since, `limit` a page, page tokens are offsets
        // ("o12"; "r12" serves offset 12 again when RepeatPages is set).
        app.MapGet("/calls", (HttpRequest request) =>
        {
            var self = provider!;
            Interlocked.Increment(ref self._listings);
            if (self.ApiToken is { } token && request.Headers.Authorization.ToString() != "Bearer " + token) return Results.Unauthorized();
            if (self.ListingOutage) return Results.Problem("provider maintenance", statusCode: StatusCodes.Status503ServiceUnavailable);
            if (!DateTimeOffset.TryParse(request.Query["completed_since"], CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var since)
                || !int.TryParse(request.Query["limit"], CultureInfo.InvariantCulture, out var limit) || limit < 1)
                return Results.BadRequest("completed_since and limit are required");
            var pageToken = request.Query["page_token"].ToString();
            var pageIndex = pageToken.Length == 0 ? 0 : int.Parse(pageToken[1..], CultureInfo.InvariantCulture) / limit;
            if (self.ListingFailsAfterPages is { } n && pageIndex >= n)
                return Results.Problem("listing backend failed", statusCode: StatusCodes.Status502BadGateway);
            var listed = self._calls.Values.Where(c => !self._unlisted.ContainsKey(c.CallId) && c.EndedAt >= since);
            var ordered = (self.ListByCallId ? listed.OrderBy(c => c.CallId, StringComparer.Ordinal) : listed.OrderBy(c => c.EndedAt).ThenBy(c => c.CallId, StringComparer.Ordinal)).ToList();
            var offset = pageIndex * limit;
            var next = offset + limit < ordered.Count ? "o" + (offset + limit).ToString(CultureInfo.InvariantCulture) : null;
            if (self.RepeatPages && !pageToken.StartsWith('r')) next = "r" + offset.ToString(CultureInfo.InvariantCulture);
            return Results.Json(new
            {
                calls = ordered.Skip(offset).Take(limit).Select(c => new
                {
                    call_id = c.CallId, patient_id = c.PatientId, completed_at = c.EndedAt.ToString("O", CultureInfo.InvariantCulture),
                }),
                next_page_token = next,
            });
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single().TrimEnd('/');
        provider = new FakeCallProvider(name, secret, app, address);
        return provider;
    }

    /// <summary>Records a call (its transcript is then served) and returns the notice the provider's webhook sends for it.</summary>
    public byte[] CompleteCall(string callId, string? patientId, DateTimeOffset endedAt, string? eventId = null, string transcript = "Took my metformin at 8.")
    {
        _calls[callId] = new Call(callId, patientId ?? "unknown", endedAt.AddMinutes(-4), 240, transcript);
        return Notice(eventId ?? "evt-" + Guid.NewGuid().ToString("N"), callId, patientId, endedAt);
    }

    /// <summary>Records a call the listing does not show yet (<see cref="List"/> shows it: a provider that lists calls late).</summary>
    public void CompleteUnlisted(string callId, string patientId, DateTimeOffset endedAt, string transcript = "Took my metformin at 8.")
    {
        _unlisted[callId] = true;
        CompleteCall(callId, patientId, endedAt, transcript: transcript);
    }

    public void List(string callId) => _unlisted.TryRemove(callId, out _);

    /// <summary>The call's transcript answers 404 until <see cref="ReleaseTranscript"/> (a transcript that appears late).</summary>
    public void HoldTranscript(string callId) => _transcriptPending[callId] = true;

    public void ReleaseTranscript(string callId) => _transcriptPending.TryRemove(callId, out _);

    /// <summary>Answers <c>GET /calls/{callId}</c> with <paramref name="body"/> as is (200, application/json): a provider's broken answer.</summary>
    public void AnswerRaw(string callId, string body) => _rawAnswers[callId] = body;

    /// <summary>A notice body as the provider serialises it (extra fields included: the gateway must ignore what it does not read).</summary>
    public static byte[] Notice(string eventId, string callId, string? patientId, DateTimeOffset endedAt) =>
        JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object?>
        {
            ["event_id"] = eventId, ["type"] = "call.completed", ["call_id"] = callId, ["patient_id"] = patientId,
            ["occurred_at"] = endedAt.ToString("O", CultureInfo.InvariantCulture), ["api_version"] = "2026-10-01",
        });

    /// <summary>The README's recipe: sha256= and the lowercase hex of HMAC-SHA256(secret, timestamp + "." + body).</summary>
    public static string Signature(string secret, string timestamp, byte[] body)
    {
        var signed = Encoding.ASCII.GetBytes(timestamp + ".").Concat(body).ToArray();
        return "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), signed));
    }

    /// <summary>A delivery signed now (or at <paramref name="sentAt"/>) with this provider's secret (or <paramref name="secret"/>).</summary>
    public Delivery Sign(byte[] body, DateTimeOffset? sentAt = null, string? secret = null, string? provider = null)
    {
        var timestamp = (sentAt ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        return new Delivery(provider ?? Name, timestamp, Signature(secret ?? Secret, timestamp, body), body);
    }

    /// <summary>Sends a delivery exactly as recorded (the same bytes and headers: a replay when sent twice).</summary>
    public static async Task<HttpResponseMessage> SendAsync(HttpClient gateway, Delivery delivery, byte[]? bodyInstead = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/call-completed")
        {
            Content = new ByteArrayContent(bodyInstead ?? delivery.Body) { Headers = { { "Content-Type", "application/json" } } },
        };
        request.Headers.Add("X-StreamHealth-Provider", delivery.Provider);
        request.Headers.Add("X-StreamHealth-Timestamp", delivery.Timestamp);
        request.Headers.Add("X-StreamHealth-Signature", delivery.Signature);
        return await gateway.SendAsync(request);
    }

    /// <summary>Signs now and sends: what a healthy provider does (also for a redelivery: same body, fresh timestamp).</summary>
    public Task<HttpResponseMessage> DeliverAsync(HttpClient gateway, byte[] body) => SendAsync(gateway, Sign(body));

    /// <summary>Reads a transcript as the fetch worker will (for the tests of the fake itself).</summary>
    public async Task<(HttpStatusCode Status, string Body)> FetchAsync(string callId)
    {
        using var client = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromSeconds(30) };
        using var response = await client.GetAsync($"/calls/{Uri.EscapeDataString(callId)}");
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
