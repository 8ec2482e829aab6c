using System.Security.Claims;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace StreamHealth.Gateway.Identity;

public enum AccessKind
{
    /// <summary>No credential: the endpoint holds no one's data (health, topics, sign-in).</summary>
    Public,
    /// <summary>One person's data, named by a route value or a body field: that person's token, or a service
    /// with the scope (a read scope also admits <c>care-team:read</c> for the people assigned to the key).</summary>
    OwnData,
    /// <summary>Any person's token (acting for that person) or a service with the scope: what is stored belongs to
    /// the caller (an uploaded dataset), and what is read the caller sent (a quick plot).</summary>
    Caller,
    /// <summary>A stored resource with owners (a dataset handle): an owner's token or service key, or <c>admin</c>.
    /// The handler names the owners once it has loaded the resource.</summary>
    OwnedResource,
    /// <summary>Service credentials with the scope only (cache management: <c>admin</c>).</summary>
    Service,
    /// <summary>A partner system outside our users and keys (a call provider's webhook): the request carries its own
    /// signature, which the handler verifies. No token or API key admits it, and none is needed to reach the handler.</summary>
    Signed,
}

/// <summary>Where an <see cref="AccessKind.OwnData"/> rule finds the person: a route value (checked before the
/// handler runs) or a field of the JSON body (the handler reads the body, then calls
/// <see cref="Access.AuthorizeSubjectAsync"/>).</summary>
public enum SubjectSource { None, Route, Body }

/// <summary>The access rule of one endpoint: endpoint metadata that the authorization policy enforces and the OpenAPI
/// document publishes as <c>x-access</c>. Every endpoint declares one (<see cref="Access.RequireAccess{TBuilder}"/>);
/// an endpoint without one is refused by the fallback policy.</summary>
public sealed record AccessRule(AccessKind Kind, string Scope, SubjectSource Source = SubjectSource.None, string? Subject = null)
{
    /// <summary>Read rules on a person's data also admit a care team's key for the people it is assigned.</summary>
    public bool AdmitsCareTeam => Kind == AccessKind.OwnData && Scope.EndsWith(":read", StringComparison.Ordinal);

    public bool AdmitsPersonalTokens => Kind is AccessKind.OwnData or AccessKind.Caller or AccessKind.OwnedResource;

    /// <summary>Scopes that admit a service key (for any person, except care-team:read: for its list).</summary>
    public IReadOnlyList<string> ServiceScopes => Kind switch
    {
        AccessKind.Public or AccessKind.Signed => [],
        AccessKind.OwnedResource when Scope != Scopes.Admin => [Scope, Scopes.Admin],
        _ when AdmitsCareTeam => [Scope, Scopes.CareTeamRead],
        _ => [Scope],
    };

    /// <summary>The rule as the OpenAPI document's <c>x-access</c> states it.</summary>
    public JsonObject ToOpenApi()
    {
        var node = new JsonObject { ["rule"] = Kind switch
        {
            AccessKind.Public => "public",
            AccessKind.OwnData => "own-data",
            AccessKind.Caller => "caller",
            AccessKind.OwnedResource => "owned-resource",
            AccessKind.Signed => "signed",
            _ => "service",
        } };
        if (Subject is not null) node["subject"] = (Source == SubjectSource.Route ? "path:" : "body:") + Subject;
        node["personal_token"] = AdmitsPersonalTokens;
        node["service_scopes"] = new JsonArray(ServiceScopes.Select(s => (JsonNode)JsonValue.Create(s)).ToArray());
        return node;
    }
}

/// <summary>The one authorization mechanism of the gateway: endpoints declare an <see cref="AccessRule"/>, a single
/// requirement handler decides it for every endpoint, and 401/403 are problem details that never say whether the
/// person asked about exists.</summary>
public static class Access
{
    public const string UserIdClaim = "sub";
    public const string ScopeClaim = "scope";
    public const string CareTeamUserClaim = "care_team_user";
    public const string BearerAuthenticationType = "Bearer";
    /// <summary>HttpContext.Items key of the person a body-subject request turned out to be about (the audit trail's subject).</summary>
    public const string SubjectItem = "streamhealth.subject";
    /// <summary>HttpContext.Items key of who signed a <see cref="AccessKind.Signed"/> request, once verified
    /// (<c>provider:NAME</c>): the audit trail's actor.</summary>
    public const string SignedCallerItem = "streamhealth.signed-caller";

    public static readonly AccessRule Public = new(AccessKind.Public, "");
    public static readonly AccessRule Signed = new(AccessKind.Signed, "");
    /// <summary>The fallback policy's rule: no credential and no scope satisfies it.</summary>
    internal static readonly AccessRule Undeclared = new(AccessKind.Service, "undeclared-endpoint");
    public static AccessRule OwnData(string routeParameter, string scope) => new(AccessKind.OwnData, scope, SubjectSource.Route, routeParameter);
    public static AccessRule OwnDataInBody(string field, string scope) => new(AccessKind.OwnData, scope, SubjectSource.Body, field);
    public static AccessRule Caller(string scope) => new(AccessKind.Caller, scope);
    public static AccessRule OwnedResource(string scope) => new(AccessKind.OwnedResource, scope);
    public static AccessRule Service(string scope) => new(AccessKind.Service, scope);

    /// <summary>Declares and enforces the endpoint's access rule.</summary>
    public static TBuilder RequireAccess<TBuilder>(this TBuilder builder, AccessRule rule) where TBuilder : IEndpointConventionBuilder
    {
        builder.WithMetadata(rule);
        // A signed request is authenticated by its handler (the signature covers the body, which only the handler reads).
        return rule.Kind is AccessKind.Public or AccessKind.Signed
            ? builder.AllowAnonymous()
            : builder.RequireAuthorization(p => p.RequireAuthenticatedUser().AddRequirements(new AccessRequirement(rule)));
    }

    /// <summary>The person a personal bearer token speaks for; null for a service key or no credential.</summary>
    public static string? PersonalUserId(this ClaimsPrincipal user) =>
        user.Identity is { IsAuthenticated: true, AuthenticationType: BearerAuthenticationType } ? user.FindFirst(UserIdClaim)?.Value : null;

    public static bool IsService(this ClaimsPrincipal user) =>
        user.Identity is { IsAuthenticated: true, AuthenticationType: ApiKeyAuthentication.Scheme };

    /// <summary>How a stored resource records the caller as its owner: <c>user:ID</c> or <c>service:NAME</c>.</summary>
    public static string OwnerKey(this ClaimsPrincipal user) =>
        user.PersonalUserId() is { } id ? "user:" + id
        : user.IsService() ? "service:" + user.Identity!.Name
        : throw new InvalidOperationException("no authenticated caller");

    /// <summary>The rule's decision. <paramref name="subject"/> is the person (OwnData) or the owners (OwnedResource);
    /// null while it is not known yet (a body not read, a resource not loaded): then the caller is admitted only if some
    /// subject could admit it, and the handler decides again with the subject.</summary>
    public static bool Allows(ClaimsPrincipal user, AccessRule rule, AccessSubject? subject)
    {
        // A signed request's handler decides (it alone reads the signed body); no credential of ours changes that.
        if (rule.Kind is AccessKind.Public or AccessKind.Signed) return true;
        if (user.PersonalUserId() is { } userId)
            return rule.Kind switch
            {
                AccessKind.OwnData => subject is null ? rule.Source != SubjectSource.Route : string.Equals(subject.Id, userId, StringComparison.Ordinal),
                AccessKind.Caller => true,
                AccessKind.OwnedResource => subject is null || subject.Owners.Contains("user:" + userId),
                _ => false,
            };
        if (!user.IsService()) return false;
        var hasScope = user.HasClaim(ScopeClaim, rule.Scope);
        return rule.Kind switch
        {
            AccessKind.OwnData => hasScope || (rule.AdmitsCareTeam && user.HasClaim(ScopeClaim, Scopes.CareTeamRead)
                                               && (subject is null ? rule.Source != SubjectSource.Route : user.HasClaim(CareTeamUserClaim, subject.Id))),
            AccessKind.OwnedResource => user.HasClaim(ScopeClaim, Scopes.Admin)
                                        || (hasScope && (subject is null || subject.Owners.Contains(user.OwnerKey()))),
            _ => hasScope,
        };
    }

    /// <summary>For rules whose person is in the body: after reading it, the handler asks here; null means go on,
    /// otherwise the 403 to answer. Nothing has been written or sent before this call. The person is recorded
    /// (<see cref="SubjectItem"/>) either way: a refused attempt on someone's data is audited as about them.</summary>
    public static Task<IResult?> AuthorizeSubjectAsync(this HttpContext http, string userId)
    {
        http.Items[SubjectItem] = userId;
        return AuthorizeAsync(http, new AccessSubject(userId, []));
    }

    /// <summary>For <see cref="AccessKind.OwnedResource"/>: once the resource is loaded, whether the caller owns it.</summary>
    public static Task<IResult?> AuthorizeOwnersAsync(this HttpContext http, IReadOnlyCollection<string> owners) =>
        AuthorizeAsync(http, new AccessSubject("", owners));

    private static async Task<IResult?> AuthorizeAsync(HttpContext http, AccessSubject subject)
    {
        var rule = http.GetEndpoint()?.Metadata.GetMetadata<AccessRule>()
                   ?? throw new InvalidOperationException($"{http.Request.Path} declares no access rule");
        var result = await http.RequestServices.GetRequiredService<IAuthorizationService>()
            .AuthorizeAsync(http.User, subject, new AccessRequirement(rule));
        return result.Succeeded ? null : Forbidden();
    }

    /// <summary>The same 403 whether the person or resource exists or not.</summary>
    public static ProblemDetails ForbiddenProblem() => new()
    {
        Status = StatusCodes.Status403Forbidden,
        Title = "Forbidden",
        Detail = "This credential may not access this resource: a personal token reaches only its own person's data and datasets, " +
                 "a service key only what its scopes allow (x-access of the operation in /openapi/v1.json).",
    };

    public static IResult Forbidden() => TypedResults.Problem(ForbiddenProblem());

    internal static void Add(IServiceCollection services)
    {
        services.AddSingleton<IAuthorizationHandler, AccessHandler>();
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, AccessResultHandler>();
        // An endpoint that declares no rule is refused: forgetting RequireAccess fails closed, and the OpenAPI walk test names it.
        // (A request that matched no endpoint passes it, to be answered 404, as do routing's 405 and 415 answers.)
        services.AddAuthorizationBuilder().SetFallbackPolicy(new AuthorizationPolicyBuilder()
            .AddRequirements(new AccessRequirement(Undeclared)).Build());
    }

    /// <summary>The security scheme of the call providers' signed webhooks in the OpenAPI document.</summary>
    public const string CallWebhookSignatureScheme = "CallProviderSignature";

    /// <summary>x-access on every operation, its security alternatives, and its 401/403 responses.</summary>
    internal static void DescribeInOpenApi(OpenApiOptions options)
    {
        options.AddDocumentTransformer((document, _, _) =>
        {
            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
            document.Components.SecuritySchemes[ApiKeyAuthentication.Scheme] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Header,
                Name = ApiKeyAuthentication.HeaderName,
                Description = "A service credential from Gateway:ApiKeys; what it may do is its Scopes (x-access.service_scopes).",
            };
            document.Components.SecuritySchemes[BearerAuthenticationType] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http,
                Scheme = "bearer",
                BearerFormat = "JWT",
                Description = "A person's access token from POST /api/v1/auth/token: that person's data only.",
            };
            document.Components.SecuritySchemes[CallWebhookSignatureScheme] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Header,
                Name = CallLogs.WebhookSignature.SignatureHeader,
                Description = $"A call provider's signature: sha256= and the lowercase hex HMAC-SHA256, keyed with the provider's secret " +
                              $"(Gateway:CallWebhooks:Providers), of {CallLogs.WebhookSignature.TimestampHeader}, a '.' and the raw body; " +
                              $"{CallLogs.WebhookSignature.ProviderHeader} names the provider.",
            };
            return Task.CompletedTask;
        });
        options.AddOperationTransformer(async (operation, context, ct) =>
        {
            if (context.Description.ActionDescriptor.EndpointMetadata.OfType<AccessRule>().LastOrDefault() is not { } rule) return;
            operation.Extensions ??= new Dictionary<string, IOpenApiExtension>();
            operation.Extensions["x-access"] = new JsonNodeExtension(rule.ToOpenApi());
            if (rule.Kind == AccessKind.Public) return;
            if (rule.Kind == AccessKind.Signed)
            {
                operation.Security ??= [];
                operation.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(CallWebhookSignatureScheme, context.Document)] = [] });
                return;
            }
            operation.Security ??= [];
            operation.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(ApiKeyAuthentication.Scheme, context.Document)] = [] });
            if (rule.AdmitsPersonalTokens)
                operation.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerAuthenticationType, context.Document)] = [] });
            await OpenApi.ContractResponses.AddProblemAsync(operation, context, StatusCodes.Status401Unauthorized, typeof(ProblemDetails), ct);
            await OpenApi.ContractResponses.AddProblemAsync(operation, context, StatusCodes.Status403Forbidden, typeof(ProblemDetails), ct);
        });
    }
}

/// <summary>The person (or the owners of a resource) a request turned out to be about.</summary>
public sealed record AccessSubject(string Id, IReadOnlyCollection<string> Owners);

public sealed class AccessRequirement(AccessRule rule) : IAuthorizationRequirement
{
    public AccessRule Rule { get; } = rule;
}

internal sealed class AccessHandler : AuthorizationHandler<AccessRequirement>
{
    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, AccessRequirement requirement)
    {
        var rule = requirement.Rule;
        if (ReferenceEquals(rule, Access.Undeclared))
        {
            // No endpoint (404 to come) or routing's own rejection endpoints (405, 415: no RouteEndpoint, no handler of ours).
            if (context.Resource is HttpContext { } unmatched && unmatched.GetEndpoint() is not RouteEndpoint) context.Succeed(requirement);
            return Task.CompletedTask;
        }
        var subject = context.Resource switch
        {
            AccessSubject known => known,
            HttpContext http when rule.Source == SubjectSource.Route => new AccessSubject(http.GetRouteValue(rule.Subject!) as string ?? "", []),
            _ => null,
        };
        if (Access.Allows(context.User, rule, subject)) context.Succeed(requirement);
        return Task.CompletedTask;
    }
}

/// <summary>403 as problem details (the schemes' own answer is a bare status); 401 stays with the scheme the request
/// tried (bearer or API key), which writes its own problem.</summary>
internal sealed class AccessResultHandler(IProblemDetailsService problems) : IAuthorizationMiddlewareResultHandler
{
    private readonly AuthorizationMiddlewareResultHandler _default = new();

    public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult result)
    {
        if (result.Forbidden && context.User.Identity?.IsAuthenticated == true)
        {
            context.Response.StatusCode = StatusCodes.Status403Forbidden;
            await problems.WriteAsync(new ProblemDetailsContext { HttpContext = context, ProblemDetails = Access.ForbiddenProblem() });
            return;
        }
        await _default.HandleAsync(next, context, policy, result);
    }
}
