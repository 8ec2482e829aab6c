using System.Buffers;
using System.ComponentModel;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Threading.RateLimiting;
using Confluent.Kafka;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using StackExchange.Redis;
using StreamHealth.Gateway.CallLogs;
using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Schemas.Avro.CallLogs;
using static StreamHealth.Gateway.Apis.JsonBodyInput;

namespace StreamHealth.Gateway.Apis;

/// <summary>POST /webhooks/call-completed: a call provider's signed notice that a check-in call ended (ids only, as the
/// provider's webhook sends them). No user credential: the provider proves itself by an HMAC-SHA256 signature over the
/// timestamp and the raw body (<see cref="WebhookSignature"/>) with its own secret (Gateway:CallWebhooks:Providers).
/// Checked in this order, cheapest refusal first and nothing trusted before it is verified: size (413), provider (401),
/// timestamp within ±5 minutes (401), signature (401), the provider's rate (429), the JSON (400), then the event id
/// (a repeat is acknowledged, not produced again). 202 only once calllogs.raw has the CallCompleted record (acks=all),
/// keyed by call id; Kafka or Redis unreachable is a 503 with nothing kept, so the provider's retry is processed.</summary>
public static class CallWebhookApi
{
    public const string Path = "/webhooks/call-completed";

    /// <summary>The request body (for the API description; the handler reads the raw bytes, which are what is signed).</summary>
    public sealed record CallCompletedRequest(
        [property: JsonPropertyName("event_id"), Description("the provider's id of this notice, " + InputRules.IdRuleText + "; a redelivery repeats it")] string EventId,
        [property: JsonPropertyName("call_id"), Description("the provider's id of the call, " + InputRules.IdRuleText)] string CallId,
        [property: JsonPropertyName("occurred_at"), Description("when the call ended: ISO-8601 date-time with an offset, such as 2026-12-04T09:30:00Z")] DateTimeOffset OccurredAt,
        [property: JsonPropertyName("patient_id"), Description("optional: the patient called, " + InputRules.IdRuleText)] string? PatientId);

    /// <summary>The acknowledgement; a repeat of an acknowledged event gets the first one again with <c>duplicate</c> true.</summary>
    public sealed record CallCompletedAccepted(
        [property: JsonPropertyName("event_id")] string EventId,
        [property: JsonPropertyName("call_id")] string CallId,
        [property: JsonPropertyName("provider")] string Provider,
        [property: JsonPropertyName("received_at"), Description("when the gateway first accepted the event")] DateTime ReceivedAt,
        [property: JsonPropertyName("duplicate"), Description("true when this event id was accepted before: nothing was produced this time")] bool Duplicate);

    private static readonly JsonSerializerOptions AnswerJson = new(JsonSerializerDefaults.Web);

    public static RouteHandlerBuilder MapCallWebhookApi(this IEndpointRouteBuilder app)
    {
        return app.MapPost(Path, ReceiveAsync).WithName("ReceiveCallCompletedWebhook")
            .WithTags("Call-log webhooks")
            .WithSummary("A call provider's signed notice that a call ended")
            .WithDescription($"Sent by a call provider, not a user: `{WebhookSignature.ProviderHeader}` names the provider, " +
                             $"`{WebhookSignature.TimestampHeader}` is the Unix time in whole seconds (within 5 minutes of the gateway's clock), " +
                             $"`{WebhookSignature.SignatureHeader}` is `sha256=` and the lowercase hex HMAC-SHA256, keyed with the provider's secret, " +
                             "of the timestamp, a `.` and the raw body. 202 once calllogs.raw holds the event (keyed by `call_id`). The same " +
                             "`event_id` again (a replay or the provider's redelivery) is answered 200 with the first acknowledgement and " +
                             "`duplicate: true`, nothing produced; while the first delivery is still in flight a repeat waits for it (409 " +
                             "if it waited 30 s). A new `event_id` for a known `call_id` is produced again: consumers remove repeats by " +
                             "`call_id`. 401 for an unknown provider, a timestamp out of the window or a wrong signature; 413 over " +
                             "Gateway:CallWebhooks:MaxBodyBytes; 429 over the provider's rate; 503 (with Retry-After) when Kafka or Redis " +
                             "cannot take the event: nothing was kept, retry.")
            .Accepts<CallCompletedRequest>("application/json")
            .Produces<CallCompletedAccepted>(StatusCodes.Status202Accepted)
            .Produces<CallCompletedAccepted>(StatusCodes.Status200OK)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Signed);
    }

    public static IServiceCollection AddCallWebhooks(this IServiceCollection services) =>
        services.AddSingleton(sp => new CallProviders(sp.GetRequiredService<GatewayOptions>()))
            .AddSingleton(sp => new CallEventClaims(sp.GetRequiredService<IConnectionMultiplexer>(), sp.GetRequiredService<GatewayOptions>()))
            .AddSingleton(sp => new CallCompletedPublisher(sp.GetRequiredService<StreamHealthOptions>(),
                sp.GetRequiredService<StreamHealth.Runtime.SchemaRegistry.SchemaRegistryConnection>()));

    private static async Task<IResult> ReceiveAsync(HttpContext http,
        [FromHeader(Name = WebhookSignature.ProviderHeader), Description("the provider's name, as configured in Gateway:CallWebhooks:Providers")] string? provider,
        [FromHeader(Name = WebhookSignature.TimestampHeader), Description("Unix time of sending, whole seconds")] string? timestamp,
        [FromHeader(Name = WebhookSignature.SignatureHeader), Description("sha256= and the lowercase hex HMAC-SHA256 of timestamp + \".\" + raw body")] string? signature,
        GatewayOptions gateway, CallProviders providers, CallEventClaims claims, CallCompletedPublisher publisher, StreamHealthOptions options,
        ILoggerFactory loggers, CancellationToken ct)
    {
        var log = loggers.CreateLogger(typeof(CallWebhookApi));
        var limit = gateway.CallWebhooks.MaxBodyBytes;
        var buffer = ArrayPool<byte>.Shared.Rent(limit + 1);
        try
        {
            var length = await ReadBoundedAsync(http.Request, buffer, limit + 1, ct);
            if (length is null || length > limit)
            {
                // The rest is left unread, and Kestrel will not drain an unbounded body: it closes the connection after this answer.
                http.Response.Headers.Connection = "close";
                return TypedResults.Problem($"the body exceeds {limit} bytes (Gateway:CallWebhooks:MaxBodyBytes)",
                    statusCode: StatusCodes.Status413PayloadTooLarge, title: "Payload too large");
            }
            var body = buffer.AsMemory(0, length.Value);

            // Nothing below says which part of a signature was wrong, nor what it should have been.
            if (providers.Find(provider) is not { } known)
                return Unauthorized(WebhookSignature.ProviderHeader, "names no provider this gateway accepts webhooks from");
            if (WebhookSignature.ParseTimestamp(timestamp) is not { } sentAt)
                return Unauthorized(WebhookSignature.TimestampHeader, "must be the Unix time of sending in whole seconds");
            var now = DateTimeOffset.UtcNow;
            if ((now - sentAt).Duration() > WebhookSignature.Tolerance)
                return Unauthorized(WebhookSignature.TimestampHeader,
                    $"is {(int)(now - sentAt).TotalSeconds} s from the gateway's clock; at most {(int)WebhookSignature.Tolerance.TotalSeconds} s either way is accepted (a replay, or a clock to fix)");
            if (!WebhookSignature.Verify(known.Keys, timestamp!, body.Span, signature))
            {
                log.LogWarning("call webhook from {Provider}: signature does not verify", known.Name);
                return Unauthorized(WebhookSignature.SignatureHeader, "does not match the timestamp and body under this provider's secret");
            }
            // The caller is known from here on: the audit trail names it.
            http.Items[Access.SignedCallerItem] = "provider:" + known.Name;

            using var lease = known.Rate.AttemptAcquire();
            if (!lease.IsAcquired) return TooManyRequests(http, lease, known.Name, gateway);

            JsonElement json;
            try
            {
                using var document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 8 });
                json = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                return Invalid("body", $"body is not valid JSON: {e.Message.Split(" Path:")[0]}");
            }
            if (json.ValueKind != JsonValueKind.Object) return Invalid("body", $"body must be a JSON object, not {Kind(json)}");
            var errors = new Dictionary<string, string[]>();
            var eventId = RequiredId(json, "event_id", errors);
            var callId = RequiredId(json, "call_id", errors);
            var patientId = OptionalId(json, "patient_id", errors);
            var occurredAtMs = EventTime(json, "occurred_at", options.Input.TimeRule, errors);
            if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
            if (patientId is not null) http.Items[Access.SubjectItem] = patientId;

            if (!publisher.Configured)
                return TypedResults.Problem("Kafka:BootstrapServers is not configured; nothing was kept",
                    statusCode: StatusCodes.Status503ServiceUnavailable, title: "Call-log pipeline unavailable");
            // Schema ids first: a registry outage is a 503 before anything is claimed.
            await publisher.PrepareAsync();
            var key = CallEventClaims.Key(known.Name, eventId!);
            var (state, pending, doneJson) = await claims.ClaimAsync(key, ct);
            if (state == CallEventClaimState.Done)
                return TypedResults.Ok(JsonSerializer.Deserialize<CallCompletedAccepted>(doneJson!, AnswerJson)! with { Duplicate = true });
            if (state == CallEventClaimState.InFlight)
            {
                http.Response.Headers.RetryAfter = "1";
                return TypedResults.Problem($"event_id {InputRules.Quote(eventId!)} is still being delivered by an earlier request; retry",
                    statusCode: StatusCodes.Status409Conflict, title: "Event in flight");
            }

            // Whole milliseconds: what the record holds (timestamp-millis) is what the answer says.
            var receivedAt = DateTime.UnixEpoch.AddMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            var notice = new CallCompleted
            {
                event_time_unix_ms = AvroTime.FromUnixMs(occurredAtMs!.Value), event_id = eventId!, call_id = callId!, provider = known.Name,
                patient_id = patientId, received_at_unix_ms = receivedAt, origin = CallLogOrigin.CALL_LOG_ORIGIN_WEBHOOK,
            };
            try
            {
                await publisher.ProduceAsync(notice);
            }
            catch (KafkaException e)
            {
                // Nothing kept: the provider's retry of this event id must be processed, not taken for a duplicate.
                await claims.ReleaseAsync(key, pending);
                log.LogWarning(e, "producing call webhook event from {Provider} failed", known.Name);
                return TypedResults.Problem($"{Topics.CallLogsRaw} did not acknowledge the event ({e.Error.Reason}); nothing was kept, retry it",
                    statusCode: StatusCodes.Status503ServiceUnavailable, title: "Call-log pipeline unavailable");
            }
            catch
            {
                // Whatever else stopped the produce (the registry, a bug): the claim must not make the provider's retry a duplicate.
                await claims.ReleaseAsync(key, pending);
                throw;
            }
            var answer = new CallCompletedAccepted(eventId!, callId!, known.Name, receivedAt, Duplicate: false);
            try
            {
                await claims.CompleteAsync(key, JsonSerializer.Serialize(answer, AnswerJson));
            }
            catch (Exception e) when (e is RedisConnectionException or RedisTimeoutException)
            {
                // The event is on the topic, so it is acknowledged; the pending claim expires, and a later redelivery may produce
                // it once more (removed downstream by call id).
                log.LogWarning(e, "recording call webhook event from {Provider} as done failed", known.Name);
            }
            return TypedResults.Accepted((string?)null, answer);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads up to <paramref name="max"/> bytes (limit + 1: enough to know the body is over the limit, never more);
    /// null when Content-Length already says it is over.</summary>
    private static async Task<int?> ReadBoundedAsync(HttpRequest request, byte[] buffer, int max, CancellationToken ct)
    {
        if (request.ContentLength >= max) return null;
        var total = 0;
        while (total < max)
        {
            var read = await request.Body.ReadAsync(buffer.AsMemory(total, max - total), ct);
            if (read == 0) break;
            total += read;
        }
        return total;
    }

    private static ProblemHttpResult Unauthorized(string header, string problem) =>
        TypedResults.Problem($"{header} {problem}.", statusCode: StatusCodes.Status401Unauthorized, title: "Webhook not authenticated");

    private static ProblemHttpResult TooManyRequests(HttpContext http, RateLimitLease lease, string provider, GatewayOptions gateway)
    {
        var wait = lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? retryAfter : TimeSpan.FromSeconds(1);
        var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
        http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        var settings = gateway.CallWebhooks.Providers[provider];
        return TypedResults.Problem(
            $"Provider {provider} may send {settings.RequestsPerSecond} webhooks/s (bursts of {settings.Burst}); retry after {seconds} s.",
            statusCode: StatusCodes.Status429TooManyRequests, title: "Too many requests",
            extensions: new Dictionary<string, object?> { ["limit"] = "CallProvider" });
    }
}
