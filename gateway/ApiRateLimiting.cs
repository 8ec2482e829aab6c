using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.RateLimiting;

namespace StreamHealth.Gateway;

/// <summary>The gateway's rate limits. Every endpoint but the health probes is under one chain of token buckets
/// (Gateway:RateLimit, <see cref="GatewayRateLimitOptions"/>), taken in order: the whole gateway, the client's IP address,
/// the caller, and the endpoint for that caller; the first level out of tokens answers 429 with Retry-After and names
/// itself. Registration and sign-in have a bucket of their own per IP on top (<see cref="SignInPolicyName"/>). The limiter
/// runs after authentication and before authorization, so a known credential is limited as its caller and anything else
/// (no credential, a wrong one) as its IP address: guessing keys is rate limited too.</summary>
public static class ApiRateLimiting
{
    /// <summary>Registration and sign-in, per IP address (Gateway:Identity:SignInPermitsPerMinute), apart from the chain:
    /// password guessing is slowed before the per-account lockout, and across accounts.</summary>
    public const string SignInPolicyName = "sign-in";

    /// <summary>The limit a rejected request hit, as the 429 names it (problem extension <c>limit</c>).</summary>
    public enum Level { Global, PerIp, PerCaller, PerEndpointCaller, SignIn }

    // Each level's partitioner records itself as it is asked for a lease; the chain asks in order and stops at the first
    // refusal (and the sign-in policy is asked after the whole chain), so the last level recorded is the one that refused.
    private static readonly object LevelKey = new();

    internal static void Add(IServiceCollection services) => services.AddRateLimiter(limiter =>
    {
        limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
        limiter.GlobalLimiter = PartitionedRateLimiter.CreateChained(
            Partitioned(Level.Global, (_, _) => "global", o => o.Global),
            Partitioned(Level.PerIp, (_, ip) => ip, o => o.PerIp),
            Partitioned(Level.PerCaller, (http, ip) => Caller(http, ip), o => o.PerCaller),
            Partitioned(Level.PerEndpointCaller, (http, ip) => Endpoint(http) + " " + Caller(http, ip), o => o.PerEndpointCaller));
        limiter.AddPolicy(SignInPolicyName, context =>
        {
            context.Items[LevelKey] = Level.SignIn;
            var permits = context.RequestServices.GetRequiredService<GatewayOptions>().Identity.SignInPermitsPerMinute;
            return RateLimitPartition.GetTokenBucketLimiter("sign-in:" + context.Connection.RemoteIpAddress, _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = permits,
                TokensPerPeriod = permits,
                ReplenishmentPeriod = TimeSpan.FromMinutes(1),
                QueueLimit = 0,
            });
        });
        limiter.OnRejected = async (rejected, ct) =>
        {
            // The token bucket knows when enough tokens will be back; a whole second at least, since Retry-After has no
            // finer unit.
            var wait = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? retryAfter : TimeSpan.FromSeconds(1);
            var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
            var http = rejected.HttpContext;
            http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
            var level = http.Items[LevelKey] is Level hit ? hit : Level.Global;
            var options = http.RequestServices.GetRequiredService<GatewayOptions>();
            var problem = new ProblemDetails
            {
                Status = StatusCodes.Status429TooManyRequests,
                Title = "Too many requests",
                Detail = $"{Describe(level, options)}; retry after {seconds} s.",
            };
            problem.Extensions["limit"] = Name(level);
            await http.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext { HttpContext = http, ProblemDetails = problem });
        };
    });

    /// <summary>The level's name in the 429's <c>limit</c> extension and in Gateway:RateLimit.</summary>
    public static string Name(Level level) => level switch
    {
        Level.Global => "Global",
        Level.PerIp => "PerIp",
        Level.PerCaller => "PerCaller",
        Level.PerEndpointCaller => "PerEndpointCaller",
        _ => "SignIn",
    };

    private static string Describe(Level level, GatewayOptions options)
    {
        var limits = options.RateLimit;
        return level switch
        {
            Level.Global => $"The gateway as a whole (all callers together) takes {Rate(limits.Global)}",
            Level.PerIp => $"This IP address may send {Rate(limits.PerIp)}",
            Level.PerCaller => $"This caller may send {Rate(limits.PerCaller)}",
            Level.PerEndpointCaller => $"This endpoint for this caller takes {Rate(limits.PerEndpointCaller)}",
            _ => $"This address may send {options.Identity.SignInPermitsPerMinute} registration and sign-in requests per minute",
        };

        static string Rate(RateLimitLevelOptions l) => $"{l.PermitsPerSecond} requests/s (bursts of {l.Burst})";
    }

    /// <summary>One level of the chain: a token bucket per partition key, sized from the options read per request (a cheap
    /// singleton lookup, so tests and hosts that add configuration sources until Build still decide the limits).</summary>
    private static PartitionedRateLimiter<HttpContext> Partitioned(Level level, Func<HttpContext, string, string> key,
        Func<GatewayRateLimitOptions, RateLimitLevelOptions> select) =>
        PartitionedRateLimiter.Create<HttpContext, string>(http =>
        {
            http.Items[LevelKey] = level;
            var limits = select(http.RequestServices.GetRequiredService<GatewayOptions>().RateLimit);
            var ip = http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
            return RateLimitPartition.GetTokenBucketLimiter(key(http, ip), _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = limits.Burst,
                TokensPerPeriod = limits.PermitsPerSecond,
                ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                // Reject rather than queue: a queued request holds a connection and still arrives late.
                QueueLimit = 0,
            });
        });

    // A person (bearer) and a service (API key) of the same name are different callers; no valid credential: the address.
    private static string Caller(HttpContext http, string ip) =>
        http.User.Identity is { IsAuthenticated: true, Name: { } name, AuthenticationType: var type } ? type + ":" + name : "ip:" + ip;

    // The route pattern, not the path: /api/weight/a/latest and /api/weight/b/latest are one endpoint.
    private static string Endpoint(HttpContext http) =>
        http.GetEndpoint() is RouteEndpoint endpoint ? http.Request.Method + " " + endpoint.RoutePattern.RawText : "unrouted";
}
