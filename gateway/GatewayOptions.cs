using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.Gateway;

/// <summary>One service credential (an X-Api-Key). <see cref="Name"/> is what logs and the rate limiter see; the key
/// itself is never logged. <see cref="Scopes"/> are what it may do (<see cref="Identity.Scopes"/>); with
/// <c>care-team:read</c>, <see cref="CareTeamUsers"/> are the people whose data it may read.</summary>
public sealed record ApiClient(string Name, string Key, FrozenSet<string> Scopes, FrozenSet<string> CareTeamUsers);

/// <summary>Accounts and tokens (Gateway:Identity).</summary>
public sealed class GatewayIdentityOptions
{
    public const string Section = GatewayOptions.Section + ":Identity";
    /// <summary>The signing key gateway.Development.json ships for the local stack; refused anywhere else.</summary>
    public const string DevelopmentSigningKey = "local-dev-jwt-signing-key-change-me-0123456789";
    /// <summary>HS256 wants a key of at least its 256-bit output; 32 characters of a random secret give that.</summary>
    public const int MinimumSigningKeyLength = 32;

    /// <summary>HMAC-SHA256 key of the access tokens (a secret: from the environment or a secret store).</summary>
    public string SigningKey { get; set; } = "";
    public string Issuer { get; set; } = "streamhealth-gateway";
    public string Audience { get; set; } = "streamhealth-api";
    public int AccessTokenMinutes { get; set; } = 15;
    public int RefreshTokenDays { get; set; } = 30;
    /// <summary>Failed password sign-ins of one account within <see cref="LockoutMinutes"/> that lock it for that long.</summary>
    public int MaxFailedSignIns { get; set; } = 5;
    public int LockoutMinutes { get; set; } = 15;
    /// <summary>Requests per minute one IP address may send to the sign-in and registration endpoints.</summary>
    public int SignInPermitsPerMinute { get; set; } = 30;

    internal void Validate(List<string> errors, bool development)
    {
        if (string.IsNullOrEmpty(SigningKey))
            errors.Add($"{Section}:SigningKey is not set: give the gateway a random secret of at least {MinimumSigningKeyLength} characters " +
                       "(STREAMHEALTH_Gateway__Identity__SigningKey)");
        else if (SigningKey.Length < MinimumSigningKeyLength)
            errors.Add($"{Section}:SigningKey is {SigningKey.Length} characters; at least {MinimumSigningKeyLength} are required");
        else if (!development && SigningKey == DevelopmentSigningKey)
            errors.Add($"{Section}:SigningKey is the local development key of gateway.Development.json; set a secret of its own outside Development");
        if (string.IsNullOrWhiteSpace(Issuer)) errors.Add($"{Section}:Issuer is empty");
        if (string.IsNullOrWhiteSpace(Audience)) errors.Add($"{Section}:Audience is empty");
        if (AccessTokenMinutes is < 1 or > 60) errors.Add($"{Section}:AccessTokenMinutes = {AccessTokenMinutes}: must be 1-60");
        if (RefreshTokenDays is < 1 or > 365) errors.Add($"{Section}:RefreshTokenDays = {RefreshTokenDays}: must be 1-365");
        if (MaxFailedSignIns is < 1 or > 100) errors.Add($"{Section}:MaxFailedSignIns = {MaxFailedSignIns}: must be 1-100");
        if (LockoutMinutes is < 1 or > 1440) errors.Add($"{Section}:LockoutMinutes = {LockoutMinutes}: must be 1-1440");
        if (SignInPermitsPerMinute is < 1 or > 100_000) errors.Add($"{Section}:SignInPermitsPerMinute = {SignInPermitsPerMinute}: must be 1-100000");
    }
}

/// <summary>Keys of the personal fields encrypted at rest (Gateway:Encryption; <see cref="Identity.FieldEncryption"/>).</summary>
public sealed class GatewayEncryptionOptions
{
    public const string Section = GatewayOptions.Section + ":Encryption";
    /// <summary>The key id and key gateway.Development.json ships for the local stack; refused anywhere else.</summary>
    public const string DevelopmentKeyId = "local-dev";
    public const string DevelopmentKey = "bG9jYWwtZGV2LWZpZWxkLWtleS1jaGFuZ2UtbWUtMDE=";

    /// <summary>Key id → base64 of a random 32-byte key (a secret: from the environment or a secret store). Old ids stay
    /// while values sealed with them remain: they still decrypt.</summary>
    public Dictionary<string, string> Keys { get; set; } = new(StringComparer.Ordinal);
    /// <summary>The key new values are sealed with.</summary>
    public string ActiveKeyId { get; set; } = "";

    /// <summary>Built by <see cref="Validate"/> when the keys are valid.</summary>
    public Identity.FieldEncryption? Encryption { get; private set; }

    internal void Validate(List<string> errors, bool development)
    {
        var keys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (id, text) in Keys)
        {
            // An empty value is how an environment variable switches an inherited key off.
            if (string.IsNullOrEmpty(text)) continue;
            if (Identity.FieldEncryption.CheckKeyId(id) is { } badId) { errors.Add($"{Section}:Keys: {badId}"); continue; }
            var key = new byte[Identity.FieldEncryption.KeyBytes + 1];
            if (!Convert.TryFromBase64String(text.Trim(), key, out var length) || length != Identity.FieldEncryption.KeyBytes)
                errors.Add($"{Section}:Keys:{id} is not the base64 of {Identity.FieldEncryption.KeyBytes} bytes (openssl rand -base64 32)");
            else if (!development && text.Trim() == DevelopmentKey)
                errors.Add($"{Section}:Keys:{id} is the local development key of gateway.Development.json; set a secret of its own outside Development");
            else keys[id] = key[..length];
        }
        if (string.IsNullOrEmpty(ActiveKeyId))
            errors.Add($"{Section}:ActiveKeyId is not set: give the gateway a key for date of birth and medical history " +
                       "(STREAMHEALTH_Gateway__Encryption__Keys__<id>=<base64 of 32 random bytes>, STREAMHEALTH_Gateway__Encryption__ActiveKeyId=<id>)");
        else if (!keys.ContainsKey(ActiveKeyId))
        {
            if (!Keys.ContainsKey(ActiveKeyId)) errors.Add($"{Section}:ActiveKeyId = {ActiveKeyId}: no such key in {Section}:Keys");
        }
        else Encryption = new Identity.FieldEncryption(keys, ActiveKeyId);
    }
}

/// <summary>One level of the chained rate limit: a token bucket of <see cref="Burst"/> tokens, refilled by
/// <see cref="PermitsPerSecond"/> each second, per partition of the level (the whole gateway, an IP address, a caller, or an
/// endpoint for a caller).</summary>
public sealed class RateLimitLevelOptions(int permitsPerSecond, int burst)
{
    /// <summary>Tokens added each second: the sustained request rate of one partition.</summary>
    public int PermitsPerSecond { get; set; } = permitsPerSecond;
    /// <summary>Bucket size: requests one partition may send at once after being idle.</summary>
    public int Burst { get; set; } = burst;

    internal void Validate(string section, List<string> errors)
    {
        if (PermitsPerSecond is < 1 or > 10_000_000) errors.Add($"{section}:PermitsPerSecond = {PermitsPerSecond}: must be 1-10000000");
        // A bucket smaller than a second's refill would cap the rate at Burst, whatever PermitsPerSecond says.
        if (Burst < PermitsPerSecond || Burst > 20_000_000) errors.Add($"{section}:Burst = {Burst}: must be {PermitsPerSecond} (PermitsPerSecond)-20000000");
    }
}

/// <summary>The chained rate limit of every endpoint but the health probes (Gateway:RateLimit), applied in order: the whole
/// gateway, the client's IP address, the caller (a person or a service key; without a valid credential, the IP address),
/// and one endpoint for that caller. The first level out of tokens answers 429 naming itself. Defaults are our choice (the
/// issue names the levels, not their numbers): each above what the loopback load harnesses send from one client
/// (20,000 requests/s), so they measure the gateway rather than its limits; bursts twice the rate.</summary>
public sealed class GatewayRateLimitOptions
{
    public const string Section = GatewayOptions.Section + ":RateLimit";
    public RateLimitLevelOptions Global { get; } = new(50_000, 100_000);
    public RateLimitLevelOptions PerIp { get; } = new(25_000, 50_000);
    public RateLimitLevelOptions PerCaller { get; } = new(25_000, 50_000);
    public RateLimitLevelOptions PerEndpointCaller { get; } = new(25_000, 50_000);

    internal void Validate(IConfiguration configuration, List<string> errors)
    {
        // The single per-client bucket these keys set is now the PerCaller level: an old setting must not pass silently.
        foreach (var retired in new[] { "PermitsPerSecond", "Burst" })
            if (configuration[$"{Section}:{retired}"] is not null)
                errors.Add($"{Section}:{retired} is no longer read: the limits are per level, {Section}:PerCaller:{retired} for one caller " +
                           $"(also Global, PerIp, PerEndpointCaller)");
        Global.Validate(Section + ":Global", errors);
        PerIp.Validate(Section + ":PerIp", errors);
        PerCaller.Validate(Section + ":PerCaller", errors);
        PerEndpointCaller.Validate(Section + ":PerEndpointCaller", errors);
    }
}

/// <summary>The in-process near cache in front of Redis (Gateway:NearCache; <see cref="Insights.PersonalCache"/>): each gateway
/// keeps the answers it read or loaded for up to <see cref="Seconds"/>, dropped at once when a
/// <see cref="StreamHealth.Runtime.Caching.CacheInvalidation"/> announcement names their key. A Redis hit costs a round
/// trip to Redis; a near hit costs a dictionary lookup, which is what lets one gateway serve the cached answers of people
/// whose dashboards poll at tens of thousands of requests per second (RESULTS "Insights API").</summary>
public sealed class GatewayNearCacheOptions
{
    public const string Section = GatewayOptions.Section + ":NearCache";
    /// <summary>Longest a near copy lives (never beyond its tier's own time to live): the bound on staleness should an
    /// announcement be lost without the subscription failing. 0 switches the near cache off.</summary>
    public int Seconds { get; set; } = 60;
    /// <summary>People held per tier; above it, expired copies are swept and, if that is not enough, the tier is emptied.</summary>
    public int MaxPeople { get; set; } = 10_000;

    internal void Validate(List<string> errors)
    {
        if (Seconds is < 0 or > 3_600) errors.Add($"{Section}:Seconds = {Seconds}: must be 0-3600");
        if (MaxPeople is < 1 or > 1_000_000) errors.Add($"{Section}:MaxPeople = {MaxPeople}: must be 1-1000000");
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

/// <summary>One call provider that may send signed webhooks (Gateway:CallWebhooks:Providers:&lt;name&gt;; the name is what the
/// provider sends in X-StreamHealth-Provider and what calllogs.raw records).</summary>
public sealed class CallProviderOptions
{
    /// <summary>HS256 wants a key of at least its 256-bit output; 32 characters of a random secret give that.</summary>
    public const int MinimumSecretLength = 32;

    /// <summary>The HMAC-SHA256 key shared with the provider (a secret: from the environment or a secret store, never logged).</summary>
    public string Secret { get; set; } = "";
    /// <summary>The key being rotated out, still accepted until it is removed (empty: none), so that a rotation needs no
    /// moment when both sides switch at once.</summary>
    public string PreviousSecret { get; set; } = "";
    /// <summary>Sustained webhooks per second from this provider; above it the gateway answers 429 with Retry-After.</summary>
    public int RequestsPerSecond { get; set; } = 50;
    /// <summary>Webhooks this provider may send at once after being idle (a provider catching up after an outage sends bursts).</summary>
    public int Burst { get; set; } = 100;
    /// <summary>False refuses the provider's webhooks (401) without removing its secret.</summary>
    public bool Enabled { get; set; } = true;

    internal void Validate(string path, List<string> errors, bool development)
    {
        // Switched off (how an environment variable retires an inherited provider): its other settings are not used.
        if (!Enabled) return;
        if (Secret.Length < MinimumSecretLength)
            errors.Add($"{path}:Secret is {(Secret.Length == 0 ? "not set" : $"{Secret.Length} characters")}: give each provider a random secret of at least " +
                       $"{MinimumSecretLength} characters (STREAMHEALTH_{path.Replace(":", "__", StringComparison.Ordinal)}__Secret)");
        foreach (var (name, secret) in new[] { ("Secret", Secret), ("PreviousSecret", PreviousSecret) })
        {
            // Secrets mounted from files often end in a newline that the provider does not sign with.
            if (secret.Any(char.IsWhiteSpace)) errors.Add($"{path}:{name} contains whitespace (a trailing newline from a secret file?)");
            if (!development && secret == GatewayCallWebhookOptions.DevelopmentSecret)
                errors.Add($"{path}:{name} is the local development secret of gateway.Development.json; set a secret of its own outside Development");
        }
        if (PreviousSecret.Length is > 0 and < MinimumSecretLength)
            errors.Add($"{path}:PreviousSecret is {PreviousSecret.Length} characters; at least {MinimumSecretLength} are required (empty: none)");
        if (RequestsPerSecond is < 1 or > 100_000) errors.Add($"{path}:RequestsPerSecond = {RequestsPerSecond}: must be 1-100000");
        // A bucket smaller than a second's refill would cap the rate at Burst, whatever RequestsPerSecond says.
        if (Burst < RequestsPerSecond || Burst > 1_000_000) errors.Add($"{path}:Burst = {Burst}: must be {RequestsPerSecond} (RequestsPerSecond)-1000000");
    }
}

/// <summary>Signed call-provider webhooks (Gateway:CallWebhooks; <see cref="Apis.CallWebhookApi"/>).</summary>
public sealed class GatewayCallWebhookOptions
{
    public const string Section = GatewayOptions.Section + ":CallWebhooks";
    /// <summary>The secret gateway.Development.json ships for its "local-dev" provider; refused anywhere else.</summary>
    public const string DevelopmentSecret = "local-dev-call-provider-secret-change-me-0123";

    /// <summary>Provider name (an id: <see cref="StreamHealth.Runtime.Validation.InputRules.IdRuleText"/>) → its settings.</summary>
    public Dictionary<string, CallProviderOptions> Providers { get; set; } = new(StringComparer.Ordinal);
    /// <summary>Largest webhook body. The notice carries ids only (a few hundred bytes); larger bodies are answered 413
    /// after reading at most this many bytes and one more.</summary>
    public int MaxBodyBytes { get; set; } = 16 * 1024;
    /// <summary>How long an accepted event id is remembered (a repeat within it is acknowledged, not produced again). Far
    /// beyond the 5-minute replay window, so that it also covers a provider's own retries of an answer it never received.</summary>
    public int DedupeHours { get; set; } = 72;

    internal void Validate(List<string> errors, bool development)
    {
        foreach (var (name, provider) in Providers)
        {
            var path = $"{Section}:Providers:{name}";
            if (!StreamHealth.Runtime.Validation.InputRules.IsValidId(name))
                errors.Add($"{Section}:Providers: '{name}' is not a valid provider name ({StreamHealth.Runtime.Validation.InputRules.IdRuleText})");
            provider.Validate(path, errors, development);
        }
        if (MaxBodyBytes is < 1024 or > 1024 * 1024) errors.Add($"{Section}:MaxBodyBytes = {MaxBodyBytes}: must be 1024-1048576");
        if (DedupeHours is < 1 or > 24 * 90) errors.Add($"{Section}:DedupeHours = {DedupeHours}: must be 1-2160");
    }
}

/// <summary>Gateway-only settings, section "Gateway" of the same configuration as <see cref="StreamHealthOptions"/>:
/// gateway/gateway.json (local defaults, copied beside the binary) overridden by STREAMHEALTH_Gateway__… variables.</summary>
public sealed class GatewayOptions
{
    public const string Section = "Gateway";
    public const string FileName = "gateway.json";
    /// <summary>Local-only credentials, read only in the Development environment.</summary>
    public const string DevelopmentFileName = "gateway.Development.json";
    /// <summary>The key gateway.json ships for the local stack; never valid anywhere real.</summary>
    public const string DevelopmentKey = "dev-key-change-me";
    public const int MinimumKeyLength = 16;

    private FrozenDictionary<string, ApiClient> _clientByKeyHash = FrozenDictionary<string, ApiClient>.Empty;

    public IReadOnlyList<ApiClient> ApiKeys { get; private set; } = [];
    public GatewayRateLimitOptions RateLimit { get; } = new();
    public GatewayCgmOptions Cgm { get; } = new();
    public GatewayIdentityOptions Identity { get; } = new();
    public GatewayEncryptionOptions Encryption { get; } = new();
    public GatewayNearCacheOptions NearCache { get; } = new();
    public GatewayCallWebhookOptions CallWebhooks { get; } = new();

    public bool DevelopmentKeyEnabled => ApiKeys.Any(c => c.Key == DevelopmentKey);

    /// <summary>The client of a presented key, or null when no configured key matches.</summary>
    public ApiClient? FindClient(string presentedKey) =>
        _clientByKeyHash.GetValueOrDefault(Hash(presentedKey));

    // Looking up a digest rather than the key keeps the comparison time independent of how many
    // leading characters of a guessed key are right.
    private static string Hash(string key) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>Binds and validates; every problem is reported naming its setting, never a key's value. Outside
    /// <paramref name="development"/> the local development credentials are refused.</summary>
    public static GatewayOptions Bind(IConfiguration configuration, bool development)
    {
        var options = new GatewayOptions();
        var errors = new List<string>();
        try
        {
            configuration.GetSection(GatewayRateLimitOptions.Section).Bind(options.RateLimit);
            configuration.GetSection(GatewayCgmOptions.Section).Bind(options.Cgm);
            configuration.GetSection(GatewayIdentityOptions.Section).Bind(options.Identity);
            configuration.GetSection(GatewayEncryptionOptions.Section).Bind(options.Encryption);
            configuration.GetSection(GatewayNearCacheOptions.Section).Bind(options.NearCache);
            configuration.GetSection(GatewayCallWebhookOptions.Section).Bind(options.CallWebhooks);
        }
        catch (InvalidOperationException e)
        {
            throw new ConfigurationException(e.Message.ReplaceLineEndings(" ").Trim());
        }
        options.ApiKeys = ReadApiKeys(configuration.GetSection(Section + ":ApiKeys"), errors);
        options.RateLimit.Validate(configuration, errors);
        options.Cgm.Validate(errors);
        options.Identity.Validate(errors, development);
        options.Encryption.Validate(errors, development);
        options.NearCache.Validate(errors);
        options.CallWebhooks.Validate(errors, development);
        if (!development && options.DevelopmentKeyEnabled)
            errors.Add($"{Section}:ApiKeys holds the local development key '{DevelopmentKey}'; it is valid only in the Development environment");
        if (errors.Count > 0) throw new ConfigurationException("configuration error: " + string.Join("; ", errors));

        options._clientByKeyHash = options.ApiKeys.ToFrozenDictionary(c => Hash(c.Key), c => c, StringComparer.Ordinal);
        return options;
    }

    // Gateway:ApiKeys:N is either a plain string (the key, client "key-N", no scopes: it authenticates but may do
    // nothing) or an object {Key, Name, Scopes, CareTeamUsers}: the shape the compose and k8s manifests set through
    // STREAMHEALTH_Gateway__ApiKeys__0__Key and __Scopes. Scopes and CareTeamUsers are arrays or one space-separated
    // string (what an environment variable holds). N need not be a number: gateway.Development.json names its
    // entry "local-dev", so an override at index 0 never merges into it.
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
            var scopes = ReadList(entry.GetSection("Scopes"));
            foreach (var scope in scopes.Where(s => !StreamHealth.Gateway.Identity.Scopes.All.Contains(s)))
                errors.Add($"{path}:Scopes: '{scope}' is not one of {string.Join(", ", StreamHealth.Gateway.Identity.Scopes.All)}");
            var careTeam = ReadList(entry.GetSection("CareTeamUsers"));
            foreach (var user in careTeam.Where(u => !StreamHealth.Runtime.Validation.InputRules.IsValidId(u)))
                errors.Add($"{path}:CareTeamUsers: '{user}' is not a valid user id");
            if (careTeam.Count > 0 && !scopes.Contains(StreamHealth.Gateway.Identity.Scopes.CareTeamRead))
                errors.Add($"{path}:CareTeamUsers is set but Scopes lacks {StreamHealth.Gateway.Identity.Scopes.CareTeamRead}");
            clients.Add(new ApiClient(name, key, scopes.ToFrozenSet(StringComparer.Ordinal), careTeam.ToFrozenSet(StringComparer.Ordinal)));
        }
        return clients;
    }

    private static List<string> ReadList(IConfigurationSection section) =>
        (section.Value is { } text ? text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : section.GetChildren().Select(c => c.Value ?? "").Where(v => v.Length > 0)).ToList();
}
