using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;

namespace StreamHealth.Gateway;

/// <summary>The X-Api-Key scheme: a request carrying a key from Gateway:ApiKeys is authenticated as
/// that key's client. It is the default scheme, so HttpContext.User names the client before the rate
/// limiter partitions by it; only endpoints marked <see cref="RequireApiKey{TBuilder}"/> demand it.</summary>
public static class ApiKeyAuthentication
{
    public const string Scheme = "ApiKey";
    public const string HeaderName = "X-Api-Key";
    public const string PolicyName = "ApiKey";

    /// <summary>Requires a configured X-Api-Key (401 problem details otherwise) on these endpoints, and
    /// declares the requirement in the OpenAPI document.</summary>
    public static TBuilder RequireApiKey<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.RequireAuthorization(PolicyName).WithMetadata(ApiKeyRequired.Instance);

    internal static void Add(IServiceCollection services)
    {
        services.AddAuthentication(Scheme).AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(Scheme, null);
        services.AddAuthorizationBuilder().AddPolicy(PolicyName, p => p.AddAuthenticationSchemes(Scheme).RequireAuthenticatedUser());
    }

    /// <summary>Declares the scheme in the document and on every operation that requires it.</summary>
    internal static void DescribeInOpenApi(OpenApiOptions options)
    {
        options.AddDocumentTransformer((document, _, _) =>
        {
            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
            document.Components.SecuritySchemes[Scheme] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Header,
                Name = HeaderName,
                Description = "A key from the gateway's Gateway:ApiKeys setting.",
            };
            return Task.CompletedTask;
        });
        options.AddOperationTransformer(async (operation, context, ct) =>
        {
            if (context.Description.ActionDescriptor.EndpointMetadata.Contains(ApiKeyRequired.Instance))
            {
                operation.Security ??= [];
                operation.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(Scheme, context.Document)] = [] });
                await OpenApi.ContractResponses.AddProblemAsync(operation, context, StatusCodes.Status401Unauthorized, typeof(ProblemDetails), ct);
            }
        });
    }

    /// <summary>Endpoint metadata marking an endpoint as key-protected, for the OpenAPI transformer.</summary>
    private sealed class ApiKeyRequired
    {
        public static readonly ApiKeyRequired Instance = new();
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
        var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, client)], Scheme.Name);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), Scheme.Name)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        var result = await HandleAuthenticateOnceSafeAsync();
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = $"{ApiKeyAuthentication.Scheme} header=\"{ApiKeyAuthentication.HeaderName}\"";
        await problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = Context,
            ProblemDetails = new ProblemDetails
            {
                Status = StatusCodes.Status401Unauthorized,
                Title = $"Missing or unknown {ApiKeyAuthentication.HeaderName} header",
                Detail = result.Failure?.Message
                         ?? $"The request has no {ApiKeyAuthentication.HeaderName} header; send one of the keys configured in Gateway:ApiKeys.",
            },
        });
    }
}
