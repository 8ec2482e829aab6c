using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using StreamHealth.CallLogs.Ingest;
using StreamHealth.Runtime.Http;

namespace StreamHealth.Host.Samples;

/// <summary>The local stack's call provider: a stand-in for the external company whose nurses and voice agents make the check-in
/// calls, so that `up` shows check-ins flowing through the real path. It serves its calls over HTTP as a provider does
/// (<c>GET /calls/{id}</c>, <c>GET /calls?completed_since=</c>, bearer token), completes a call every few seconds with a varied
/// transcript, and tells the gateway with a signed webhook (the README's recipe, with gateway.Development.json's "local-dev"
/// secret). Every fourth call gets no webhook, and those sent before the gateway is up fail: the provider runs in hybrid mode,
/// so the poller's safety net takes those up, and the backfill of the last hour reaches the dashboard through it too.</summary>
internal sealed class CallSamples : IAsyncDisposable
{
    /// <summary>The provider of gateway/gateway.Development.json (local use only).</summary>
    public const string Provider = "local-dev";
    private const string WebhookSecret = "local-dev-call-provider-secret-change-me-0123";
    private const string ApiToken = "local-dev-call-provider-token";
    public const int BackfillCalls = 6;

    private static readonly string[] Patients = ["demo-alice", "demo-bob", "demo-chen", "demo-dara", "demo-eli"];

    private sealed record Call(string CallId, string PatientId, DateTimeOffset EndedAt, int DurationSeconds, string Transcript);

    private readonly ConcurrentDictionary<string, Call> _calls = new(StringComparer.Ordinal);
    private readonly InternalHttpServer _server;
    private readonly ILogger _log;
    private readonly string _run = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString("x", CultureInfo.InvariantCulture);
    private int _sequence;

    private CallSamples(InternalHttpServer server, ILogger log)
    {
        _server = server;
        _log = log;
    }

    /// <summary>The provider's settings for the fetch worker and the poller (hybrid, polled every 5 s).</summary>
    public CallProviderEndpoint Endpoint => new() { BaseUrl = _server.Url, ApiToken = ApiToken, CdcMode = CdcMode.Hybrid, PollIntervalMs = 5_000 };

    public static async Task<CallSamples> StartAsync(ILoggerFactory logs)
    {
        CallSamples? self = null;
        var server = await InternalHttpServer.StartAsync("http://127.0.0.1:0", app =>
        {
            app.MapGet("/calls/{callId}", (string callId, HttpRequest request) =>
                !Authorized(request) ? Results.Unauthorized()
                : self!._calls.TryGetValue(callId, out var c) ? Results.Json(new
                {
                    call_id = c.CallId, patient_id = c.PatientId, duration_s = c.DurationSeconds, transcript = c.Transcript,
                    started_at = c.EndedAt.AddSeconds(-c.DurationSeconds).ToString("O", CultureInfo.InvariantCulture),
                })
                : Results.NotFound());
            app.MapGet("/calls", (HttpRequest request) =>
            {
                if (!Authorized(request)) return Results.Unauthorized();
                if (!DateTimeOffset.TryParse(request.Query["completed_since"], CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var since))
                    return Results.BadRequest("completed_since is required");
                // A demo's calls fit one page.
                return Results.Json(new
                {
                    calls = self!._calls.Values.Where(c => c.EndedAt >= since).OrderBy(c => c.EndedAt).Select(c => new
                    {
                        call_id = c.CallId, patient_id = c.PatientId, completed_at = c.EndedAt.ToString("O", CultureInfo.InvariantCulture),
                    }),
                    next_page_token = (string?)null,
                });
            });
        });
        self = new CallSamples(server, logs.CreateLogger("StreamHealth.Samples.Calls"));
        return self;
    }

    private static bool Authorized(HttpRequest request) => request.Headers.Authorization.ToString() == "Bearer " + ApiToken;

    /// <summary>Backfills <see cref="BackfillCalls"/> calls over the last 50 minutes, then completes one every
    /// <paramref name="every"/>, sending its webhook to <paramref name="gatewayUrl"/> (none when empty: all through the poller).</summary>
    public async Task RunAsync(string gatewayUrl, TimeSpan every, CancellationToken ct)
    {
        var now = DateTimeOffset.UtcNow;
        for (var i = 0; i < BackfillCalls; i++) Complete(now.AddMinutes(-50 + i * 8));
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var timer = new PeriodicTimer(every);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                var call = Complete(DateTimeOffset.UtcNow);
                if (gatewayUrl.Length == 0 || _sequence % 4 == 0) continue;
                await SendWebhookAsync(http, gatewayUrl, call, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    private async Task SendWebhookAsync(HttpClient http, string gatewayUrl, Call call, CancellationToken ct)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new
        {
            event_id = "evt-" + call.CallId, type = "call.completed", call_id = call.CallId, patient_id = call.PatientId,
            occurred_at = call.EndedAt.ToString("O", CultureInfo.InvariantCulture),
        });
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        var signed = Encoding.ASCII.GetBytes(timestamp + ".").Concat(body).ToArray();
        using var request = new HttpRequestMessage(HttpMethod.Post, gatewayUrl.TrimEnd('/') + "/webhooks/call-completed")
        {
            Content = new ByteArrayContent(body) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } },
        };
        request.Headers.Add("X-StreamHealth-Provider", Provider);
        request.Headers.Add("X-StreamHealth-Timestamp", timestamp);
        request.Headers.Add("X-StreamHealth-Signature", "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(WebhookSecret), signed)));
        try
        {
            using var response = await http.SendAsync(request, ct);
            if (!response.IsSuccessStatusCode)
                _log.LogInformation("webhook for call {CallId}: HTTP {Status}; the poller will take it up", call.CallId, (int)response.StatusCode);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            // The gateway is not up yet (it starts after this host) or is restarting: the hybrid poller's safety net.
            _log.LogDebug("webhook for call {CallId} not delivered ({Reason}); the poller will take it up", call.CallId, e.Message);
        }
    }

    private Call Complete(DateTimeOffset endedAt)
    {
        var n = Interlocked.Increment(ref _sequence);
        var random = new Random(n * 7919);
        var call = new Call($"sample-{_run}-{n}", Patients[n % Patients.Length], endedAt, 120 + random.Next(600), Transcript(random));
        _calls[call.CallId] = call;
        return call;
    }

    // The phrasings the embedded extractor reads (doses in words, negations, a relative's symptom, a correction, Spanish).
    private static readonly string[] Medications =
    [
        "Yes, I took my metformin 500 mg this morning.", "I took the lisinopril, ten milligrams, after breakfast.",
        "I skipped my atorvastatin last night, I forgot.", "The doctor stopped the ibuprofen last week.",
        "I take insulin glargine 20 units at bedtime.", "Tomé la metformina esta mañana.",
        "I had my Lipitor, five hundred — sorry, forty mg.",
    ];
    private static readonly string[] Foods =
    [
        "For breakfast two eggs and a slice of toast.", "I had a bowl of oatmeal with a banana.", "Lunch was a turkey sandwich and an apple.",
        "For dinner rice and chicken.", "Just a cup of coffee this morning.",
    ];
    private static readonly string[] Symptoms =
    [
        "I have a headache, pain is 4/10.", "No chest pain, no dizziness.", "I felt a bit nauseous yesterday.",
        "My daughter has a cough but I'm fine.", "Some swelling in my ankles since two days ago.", "No fever.",
    ];

    private static string Transcript(Random random) =>
        "Nurse: Good morning, this is your check-in call. Did you take your medication?\n" +
        $"Patient: {Medications[random.Next(Medications.Length)]}\n" +
        "Nurse: What have you eaten today?\n" +
        $"Patient: {Foods[random.Next(Foods.Length)]}\n" +
        "Nurse: Any symptoms?\n" +
        $"Patient: {Symptoms[random.Next(Symptoms.Length)]}";

    public ValueTask DisposeAsync() => _server.DisposeAsync();
}
