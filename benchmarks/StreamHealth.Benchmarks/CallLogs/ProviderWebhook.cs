using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;

namespace StreamHealth.Benchmarks.CallLogs;

/// <summary>A call provider's call-completed webhook as the harnesses send it: the notice (ids only) signed with the README's
/// recipe, sha256= and the lowercase hex of HMAC-SHA256(secret, timestamp + "." + body).</summary>
internal static class ProviderWebhook
{
    public static byte[] Notice(string eventId, string callId, string patientId, DateTimeOffset occurredAt) => Encoding.UTF8.GetBytes(
        $$"""{"event_id":"{{eventId}}","call_id":"{{callId}}","patient_id":"{{patientId}}","occurred_at":"{{occurredAt.ToString("O", CultureInfo.InvariantCulture)}}"}""");

    /// <summary>POST /webhooks/call-completed with <paramref name="body"/>, signed now with <paramref name="secret"/>.</summary>
    public static HttpRequestMessage Request(byte[] secret, string provider, byte[] body)
    {
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        var signature = "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(secret, (byte[])[.. Encoding.ASCII.GetBytes(timestamp + "."), .. body]));
        var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/call-completed") { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.Add("X-StreamHealth-Provider", provider);
        request.Headers.Add("X-StreamHealth-Timestamp", timestamp);
        request.Headers.Add("X-StreamHealth-Signature", signature);
        return request;
    }

    /// <summary>The gateway's settings (STREAMHEALTH_… keys) for one provider on the harness's Kafka, registry, PostgreSQL
    /// (<paramref name="postgres"/>: the audit trail writes a row per webhook) and Redis (BENCH_REDIS_PORT: the event-id claims),
    /// with the provider's bucket above the rate sent: the harness measures the path, not the limit. Its event ids leave Redis
    /// within the hour.</summary>
    public static Dictionary<string, string> GatewaySettings(string provider, string secret, int perSecond, string bootstrapServers,
        string registryUrl, string postgres)
    {
        var target = new Npgsql.NpgsqlConnectionStringBuilder(postgres);
        return new()
        {
            ["Kafka__BootstrapServers"] = bootstrapServers,
            ["SchemaRegistry__Url"] = registryUrl,
            ["Postgres__Host"] = target.Host!, ["Postgres__Port"] = target.Port.ToString(CultureInfo.InvariantCulture),
            ["Postgres__Database"] = target.Database!,
            ["Redis__Port"] = Environment.GetEnvironmentVariable("BENCH_REDIS_PORT") ?? "56379",
            [$"Gateway__CallWebhooks__Providers__{provider}__Secret"] = secret,
            ["Gateway__CallWebhooks__DedupeHours"] = "1",
            [$"Gateway__CallWebhooks__Providers__{provider}__RequestsPerSecond"] = (perSecond * 2).ToString(CultureInfo.InvariantCulture),
            [$"Gateway__CallWebhooks__Providers__{provider}__Burst"] = (perSecond * 4).ToString(CultureInfo.InvariantCulture),
        };
    }
}
