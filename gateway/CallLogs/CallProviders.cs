using System.Collections.Frozen;
using System.Text;
using System.Threading.RateLimiting;

namespace StreamHealth.Gateway.CallLogs;

/// <summary>The enabled call providers of Gateway:CallWebhooks, each with its signing keys and its own token bucket: one
/// provider's burst (catching up after an outage) never takes another's rate.</summary>
public sealed class CallProviders : IDisposable
{
    public sealed record Provider(string Name, IReadOnlyList<byte[]> Keys, TokenBucketRateLimiter Rate);

    private readonly FrozenDictionary<string, Provider> _byName;

    public CallProviders(GatewayOptions options)
    {
        var providers = new Dictionary<string, Provider>(StringComparer.Ordinal);
        foreach (var (name, settings) in options.CallWebhooks.Providers)
        {
            if (!settings.Enabled) continue;
            byte[][] keys = settings.PreviousSecret.Length > 0
                ? [Encoding.UTF8.GetBytes(settings.Secret), Encoding.UTF8.GetBytes(settings.PreviousSecret)]
                : [Encoding.UTF8.GetBytes(settings.Secret)];
            providers[name] = new Provider(name, keys, new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
            {
                TokenLimit = settings.Burst,
                TokensPerPeriod = settings.RequestsPerSecond,
                ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                // Reject rather than queue: the provider retries on 429, a queued webhook only holds a connection.
                QueueLimit = 0,
                AutoReplenishment = true,
            }));
        }
        _byName = providers.ToFrozenDictionary(StringComparer.Ordinal);
    }

    public int Count => _byName.Count;

    /// <summary>The enabled provider of this name; null for an unknown or switched-off one.</summary>
    public Provider? Find(string? name) => name is null ? null : _byName.GetValueOrDefault(name);

    public void Dispose()
    {
        foreach (var provider in _byName.Values) provider.Rate.Dispose();
    }
}
