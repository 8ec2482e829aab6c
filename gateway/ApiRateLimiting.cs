using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.RateLimiting;

namespace StreamHealth.Gateway;

/// <summary>Per-client token buckets (Gateway:RateLimit) for the key-protected API. The rate limiter
/// runs after authentication and before authorization, so a known key is limited as its client and
/// anything else (no key, a wrong key) as its IP address: guessing keys is rate limited too.</summary>
public static class ApiRateLimiting
{
    public const string PolicyName = "per-api-client";
    /// <summary>Registration and sign-in, per IP address (Gateway:Identity:SignInPermitsPerMinute), apart from the API's
    /// buckets: password guessing is slowed before the per-account lockout, and across accounts.</summary>
    public const string SignInPolicyName = "sign-in";

    /// <summary>Applies the per-client token bucket to these endpoints (429 problem details with Retry-After).</summary>
    public static TBuilder RequireApiRateLimit<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.RequireRateLimiting(PolicyName);

    internal static void Add(IServiceCollection services) => services.AddRateLimiter(limiter =>
    {
        limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
        limiter.AddPolicy(PolicyName, context =>
        {
            // Options are read per request (a cheap singleton lookup) so that tests and hosts that add
            // configuration sources until Build still decide the limits.
            var limits = context.RequestServices.GetRequiredService<GatewayOptions>().RateLimit;
            // A person (bearer) and a service (API key) of the same name are different callers.
            var partition = context.User.Identity is { IsAuthenticated: true, Name: { } client, AuthenticationType: var type }
                ? type + ":" + client
                : "ip:" + context.Connection.RemoteIpAddress;
            return RateLimitPartition.GetTokenBucketLimiter(partition, _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = limits.Burst,
                TokensPerPeriod = limits.PermitsPerSecond,
                ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                // Reject rather than queue: a queued request holds a connection and still arrives late.
                QueueLimit = 0,
            });
        });
        limiter.AddPolicy(SignInPolicyName, context =>
        {
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
            // The token bucket knows when enough tokens will be back; a whole second at least, since
            // Retry-After has no finer unit.
            var wait = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? retryAfter : TimeSpan.FromSeconds(1);
            var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
            var http = rejected.HttpContext;
            http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
            var limits = http.RequestServices.GetRequiredService<GatewayOptions>().RateLimit;
            await http.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
            {
                HttpContext = http,
                ProblemDetails = new ProblemDetails
                {
                    Status = StatusCodes.Status429TooManyRequests,
                    Title = "Too many requests",
                    Detail = http.GetEndpoint()?.Metadata.GetMetadata<EnableRateLimitingAttribute>()?.PolicyName == SignInPolicyName
                        ? $"This address may send {http.RequestServices.GetRequiredService<GatewayOptions>().Identity.SignInPermitsPerMinute} " +
                          $"registration and sign-in requests per minute; retry after {seconds} s."
                        : $"This client may send {limits.PermitsPerSecond} requests per second (bursts of {limits.Burst}); retry after {seconds} s.",
                },
            });
        };
    });
}
