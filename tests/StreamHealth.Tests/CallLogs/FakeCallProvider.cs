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
    private int _fetches;

    /// <summary>One call as the provider holds it.</summary>
    public sealed record Call(string CallId, string PatientId, DateTimeOffset StartedAt, int DurationSeconds, string Transcript);

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
            if (self._rawAnswers.TryGetValue(callId, out var raw)) return Results.Content(raw, "application/json");
            return self._calls.TryGetValue(callId, out var call)
                ? Results.Json(new
                {
                    call_id = call.CallId, patient_id = call.PatientId, started_at = call.StartedAt.ToString("O", CultureInfo.InvariantCulture),
                    duration_s = call.DurationSeconds, transcript = call.Transcript,
                })
                : Results.NotFound();
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
