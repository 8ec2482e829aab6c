using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.Gateway;

/// <summary>One client allowed to call the /api/weight endpoints. <see cref="Name"/> is what logs and the
/// rate limiter see; the key itself is never logged.</summary>
public sealed record ApiClient(string Name, string Key);

/// <summary>Per-client token bucket of the /api/weight group.</summary>
public sealed class GatewayRateLimitOptions
{
    public const string Section = GatewayOptions.Section + ":RateLimit";
    /// <summary>Tokens added to each client's bucket per second (the sustained request rate).</summary>
    public int PermitsPerSecond { get; set; } = 1_000;
    /// <summary>Bucket size: requests a client may send at once after being idle.</summary>
    public int Burst { get; set; } = 2_000;

    internal void Validate(List<string> errors)
    {
        if (PermitsPerSecond is < 1 or > 1_000_000) errors.Add($"{Section}:PermitsPerSecond = {PermitsPerSecond}: must be 1-1000000");
        if (Burst is < 1 or > 1_000_000) errors.Add($"{Section}:Burst = {Burst}: must be 1-1000000");
    }
}

/// <summary>CGM upload endpoints (Gateway:Cgm).</summary>
public sealed class GatewayCgmOptions
{
    public const string Section = GatewayOptions.Section + ":Cgm";
    /// <summary>Largest accepted export (raw body or the file of a multipart form). 20 MiB holds about a
    /// year of Dexcom readings; larger bodies are answered 413 before they are read in full.</summary>
    public long MaxUploadBytes { get; set; } = 20 * 1024 * 1024;

    internal void Validate(List<string> errors)
    {
        if (MaxUploadBytes is < 1024 or > 1L << 32) errors.Add($"{Section}:MaxUploadBytes = {MaxUploadBytes}: must be 1024-4294967296");
    }
}

/// <summary>Gateway-only settings, section "Gateway" of the same configuration as <see cref="StreamHealthOptions"/>:
/// gateway/gateway.json (local defaults, copied beside the binary) overridden by STREAMHEALTH_Gateway__… variables.</summary>
public sealed class GatewayOptions
{
    public const string Section = "Gateway";
    public const string FileName = "gateway.json";
    /// <summary>The key gateway.json ships for the local stack; never valid anywhere real.</summary>
    public const string DevelopmentKey = "dev-key-change-me";
    public const int MinimumKeyLength = 16;

    private FrozenDictionary<string, string> _clientByKeyHash = FrozenDictionary<string, string>.Empty;

    public IReadOnlyList<ApiClient> ApiKeys { get; private set; } = [];
    public GatewayRateLimitOptions RateLimit { get; } = new();
    public GatewayCgmOptions Cgm { get; } = new();

    public bool DevelopmentKeyEnabled => ApiKeys.Any(c => c.Key == DevelopmentKey);

    /// <summary>The client name for a presented key, or null when no configured key matches.</summary>
    public string? FindClient(string presentedKey) =>
        _clientByKeyHash.GetValueOrDefault(Hash(presentedKey));

    // Looking up a digest rather than the key keeps the comparison time independent of how many
    // leading characters of a guessed key are right.
    private static string Hash(string key) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>Binds and validates; every problem is reported naming its setting, never a key's value.</summary>
    public static GatewayOptions Bind(IConfiguration configuration)
    {
        var options = new GatewayOptions();
        var errors = new List<string>();
        try
        {
            configuration.GetSection(GatewayRateLimitOptions.Section).Bind(options.RateLimit);
            configuration.GetSection(GatewayCgmOptions.Section).Bind(options.Cgm);
        }
        catch (InvalidOperationException e)
        {
            throw new ConfigurationException(e.Message.ReplaceLineEndings(" ").Trim());
        }
        options.ApiKeys = ReadApiKeys(configuration.GetSection(Section + ":ApiKeys"), errors);
        options.RateLimit.Validate(errors);
        options.Cgm.Validate(errors);
        if (errors.Count > 0) throw new ConfigurationException("configuration error: " + string.Join("; ", errors));

        options._clientByKeyHash = options.ApiKeys.ToFrozenDictionary(c => Hash(c.Key), c => c.Name, StringComparer.Ordinal);
        return options;
    }

    // Gateway:ApiKeys:N is either a plain string (the key, client "key-N": the shape the compose and k8s
    // manifests set through STREAMHEALTH_Gateway__ApiKeys__0) or an object {Key, Name}. Configuration
    // merges sources per index, so one index can carry gateway.json's plain dev key as its value and an
    // override's Key child at once: the Key child wins, so either shape of override replaces the dev key.
    private static List<ApiClient> ReadApiKeys(IConfigurationSection section, List<string> errors)
    {
        var clients = new List<ApiClient>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in section.GetChildren())
        {
            var path = $"{Section}:ApiKeys:{entry.Key}";
            var key = entry["Key"] ?? entry.Value;
            var name = entry["Name"] ?? $"key-{entry.Key}";
            // An empty value is how an environment variable switches an inherited entry off.
            if (string.IsNullOrEmpty(key)) continue;
            if (key.Length < MinimumKeyLength)
                errors.Add($"{path}: key is {key.Length} characters; at least {MinimumKeyLength} are required");
            // Secrets mounted from files often end in a newline that no client would ever send.
            if (key.Any(char.IsWhiteSpace))
                errors.Add($"{path}: key contains whitespace (a trailing newline from a secret file?)");
            if (string.IsNullOrWhiteSpace(name) || name.Length > 64)
                errors.Add($"{path}:Name = '{name}': must be 1-64 characters");
            if (seen.TryGetValue(key, out var first))
                errors.Add($"{path}: same key as {first}");
            else
                seen[key] = path;
            clients.Add(new ApiClient(name, key));
        }
        return clients;
    }
}
