using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;

namespace StreamHealth.Gateway;

/// <summary>Authentication of the gateway: a person's bearer token (JWT from POST /api/v1/auth/token) or a service's
/// X-Api-Key from Gateway:ApiKeys. The default scheme picks one per request (a Bearer Authorization header, else the
/// key), so HttpContext.User names the caller before the rate limiter partitions by it; what the caller may then do
/// is the endpoints' access rules (<see cref="Identity.Access"/>).</summary>
public static class ApiKeyAuthentication
{
    public const string Scheme = "ApiKey";
    public const string HeaderName = "X-Api-Key";
    /// <summary>The default scheme: forwards to the bearer or the API key scheme.</summary>
    public const string CallerScheme = "Caller";

    internal static void Add(IServiceCollection services)
    {
        services.AddAuthentication(CallerScheme)
            .AddPolicyScheme(CallerScheme, "Bearer token or X-Api-Key", o => o.ForwardDefaultSelector = http =>
                http.Request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
                    ? JwtBearerDefaults.AuthenticationScheme : Scheme)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(Scheme, null)
            .AddJwtBearer();
        services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<GatewayOptions>((o, gateway) => Identity.AccessTokens.Configure(o, gateway.Identity));
        Identity.Access.Add(services);
    }
}

internal sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    GatewayOptions gateway, IProblemDetailsService problems)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var presented = Request.Headers[ApiKeyAuthentication.HeaderName];
        if (presented.Count == 0) return Task.FromResult(AuthenticateResult.NoResult());
        if (presented.Count > 1)
            return Task.FromResult(AuthenticateResult.Fail($"The request has {presented.Count} {ApiKeyAuthentication.HeaderName} headers; send exactly one."));
        if (gateway.FindClient(presented[0] ?? "") is not { } client)
            return Task.FromResult(AuthenticateResult.Fail($"The {ApiKeyAuthentication.HeaderName} header does not hold a key configured in Gateway:ApiKeys."));
        var claims = new List<Claim>(1 + client.Scopes.Count + client.CareTeamUsers.Count) { new(ClaimTypes.Name, client.Name) };
        foreach (var scope in client.Scopes) claims.Add(new Claim(Identity.Access.ScopeClaim, scope));
        foreach (var user in client.CareTeamUsers) claims.Add(new Claim(Identity.Access.CareTeamUserClaim, user));
        var identity = new ClaimsIdentity(claims, ApiKeyAuthentication.Scheme);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), Scheme.Name)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        var result = await HandleAuthenticateOnceSafeAsync();
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = $"{ApiKeyAuthentication.Scheme} header=\"{ApiKeyAuthentication.HeaderName}\", Bearer";
        await problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = Context,
            ProblemDetails = new ProblemDetails
            {
                Status = StatusCodes.Status401Unauthorized,
                Title = "Missing or invalid credentials (a bearer token or an X-Api-Key)",
                Detail = result.Failure?.Message
                         ?? $"The request has no {ApiKeyAuthentication.HeaderName} header and no bearer token; send a person's access token " +
                            $"(Authorization: Bearer, from POST /api/v1/auth/token) or a service key configured in Gateway:ApiKeys.",
            },
        });
    }
}
