using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Mvc;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace StreamHealth.Gateway.Identity;

/// <summary>Short-lived JWT access tokens (HS256, Gateway:Identity:SigningKey): <c>sub</c> is the user id, issuer and
/// audience are checked, and 30 s of clock skew is allowed rather than the library's 5 minutes, so that a 15-minute
/// token does not live for 20.</summary>
public static class AccessTokens
{
    public static readonly TimeSpan ClockSkew = TimeSpan.FromSeconds(30);

    public static SymmetricSecurityKey SigningKey(GatewayIdentityOptions options) => new(Encoding.UTF8.GetBytes(options.SigningKey));

    public static string Issue(GatewayIdentityOptions options, string userId, DateTime nowUtc, out DateTime expiresUtc)
    {
        expiresUtc = nowUtc.AddMinutes(options.AccessTokenMinutes);
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = options.Issuer,
            Audience = options.Audience,
            IssuedAt = nowUtc,
            NotBefore = nowUtc,
            Expires = expiresUtc,
            Claims = new Dictionary<string, object>
            {
                [Access.UserIdClaim] = userId,
                ["jti"] = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)),
            },
            SigningCredentials = new SigningCredentials(SigningKey(options), SecurityAlgorithms.HmacSha256),
        });
    }

    internal static void Configure(JwtBearerOptions o, GatewayIdentityOptions options)
    {
        // Claims as issued ("sub" stays "sub"), and User.Identity.Name is the user id (the rate limiter's partition).
        o.MapInboundClaims = false;
        o.TokenValidationParameters = new TokenValidationParameters
        {
            ValidIssuer = options.Issuer,
            ValidAudience = options.Audience,
            IssuerSigningKey = SigningKey(options),
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            RequireExpirationTime = true,
            RequireSignedTokens = true,
            ClockSkew = ClockSkew,
            NameClaimType = Access.UserIdClaim,
            AuthenticationType = Access.BearerAuthenticationType,
        };
        o.Events = new JwtBearerEvents
        {
            // 401 as problem details like the API key scheme's, saying what was wrong without echoing the token.
            OnChallenge = async context =>
            {
                context.HandleResponse();
                var http = context.HttpContext;
                http.Response.StatusCode = StatusCodes.Status401Unauthorized;
                http.Response.Headers.WWWAuthenticate = context.AuthenticateFailure is null ? "Bearer" : "Bearer error=\"invalid_token\"";
                await http.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
                {
                    HttpContext = http,
                    ProblemDetails = new ProblemDetails
                    {
                        Status = StatusCodes.Status401Unauthorized,
                        Title = "Missing or invalid bearer token",
                        Detail = context.AuthenticateFailure switch
                        {
                            SecurityTokenExpiredException => "The access token has expired; get a new one from POST /api/v1/auth/token with grant_type refresh_token.",
                            null => "The request has no usable bearer token.",
                            _ => "The access token is not valid here (signature, issuer, audience, algorithm or format).",
                        },
                    },
                });
            },
        };
    }
}
