using System.ComponentModel;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Identity;
using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Gateway.Apis;

/// <summary>Accounts and tokens: registration, the token endpoint (password and refresh-token grants) and a person's own
/// profile. Passwords are hashed with ASP.NET Core Identity's <see cref="PasswordHasher{TUser}"/> (PBKDF2, its V3 format);
/// the sign-in endpoints are rate limited per IP separately from the API (Gateway:Identity:SignInPermitsPerMinute).</summary>
public static class IdentityApi
{
    /// <summary>Largest body the register and token endpoints read: a credential pair is well under 1 KiB.</summary>
    public const int MaxBodyBytes = 4 * 1024;
    public const int MaxRefreshTokenLength = 128;

    public sealed record RegisterRequest(
        [property: JsonPropertyName("email"), Description("an address; stored normalised (NFKC, trimmed, lower case), unique")] string Email,
        [property: JsonPropertyName("password"), Description(Credentials.PasswordRuleText)] string Password);

    public sealed record TokenRequest(
        [property: JsonPropertyName("grant_type"), Description("`password` (with email and password) or `refresh_token` (with refresh_token)")] string GrantType,
        [property: JsonPropertyName("email")] string? Email,
        [property: JsonPropertyName("password")] string? Password,
        [property: JsonPropertyName("refresh_token")] string? RefreshToken);

    public sealed record UserProfile(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("email")] string Email,
        [property: JsonPropertyName("created_at")] DateTime CreatedAt);

    public sealed record TokenResponse(
        [property: JsonPropertyName("access_token")] string AccessToken,
        [property: JsonPropertyName("token_type")] string TokenType,
        [property: JsonPropertyName("expires_in")] int ExpiresIn,
        [property: JsonPropertyName("refresh_token")] string RefreshToken,
        [property: JsonPropertyName("user_id")] string UserId);

    public static void MapIdentityApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/v1/users/register", RegisterAsync)
            .WithTags("Identity").WithName("RegisterUser")
            .WithSummary("Create an account; its user_id is the id of the person's data")
            .WithDescription("400 naming the field (`email`, `password`: " + Credentials.PasswordRuleText + "), 409 when the address is " +
                             "taken (case and compatibility forms do not make a new address; the password is hashed either way, so the " +
                             "answer takes as long).")
            .Accepts<RegisterRequest>("application/json")
            .Produces<UserProfile>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Public)
            .RequireRateLimiting(ApiRateLimiting.SignInPolicyName);

        app.MapPost("/api/v1/auth/token", TokenAsync)
            .WithTags("Identity").WithName("IssueToken")
            .WithSummary("A short-lived access token (JWT, `sub` = user id) and a rotating refresh token")
            .WithDescription("`grant_type` `password` with `email` and `password`, or `refresh_token` with `refresh_token`. A refresh token " +
                             "is used once: the answer carries its successor; presenting a used one again revokes every token descended " +
                             "from the same sign-in. 400 `invalid_grant` for wrong credentials or an unknown, used or expired refresh token; " +
                             "after Gateway:Identity:MaxFailedSignIns (5) wrong passwords within LockoutMinutes (15) the account is locked " +
                             "for that long: 429 with Retry-After, even for the right password.")
            .Accepts<TokenRequest>("application/json")
            .Produces<TokenResponse>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Public)
            .RequireRateLimiting(ApiRateLimiting.SignInPolicyName);

        app.MapGet("/api/v1/users/{userId}", GetUserAsync)
            .WithTags("Identity").WithName("GetUser")
            .WithSummary("A person's own profile")
            .Produces<UserProfile>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.Admin));
    }

    internal static void AddIdentityServices(IServiceCollection services)
    {
        services.AddSingleton<IPasswordHasher<string>, PasswordHasher<string>>();
        services.AddSingleton(sp => new IdentityStore(sp.GetRequiredService<Npgsql.NpgsqlDataSource>()));
    }

    private static async Task<IResult> RegisterAsync(HttpRequest http, IdentityStore store, IPasswordHasher<string> hasher, CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var emailProblem = Credentials.NormaliseEmail(Text(body, "email", errors), out var email);
        if (emailProblem is not null && !errors.ContainsKey("email")) errors["email"] = [emailProblem];
        var passwordProblem = Credentials.CheckPassword(Text(body, "password", errors), out var password);
        if (passwordProblem is not null && !errors.ContainsKey("password")) errors["password"] = [passwordProblem];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        // Hashed before the insert, taken address or not: a 409 costs what a 201 costs.
        var hash = hasher.HashPassword("", password);
        if (await store.CreateUserAsync(email, hash, ct) is not { } created)
            return TypedResults.Problem(title: "Email already registered", statusCode: StatusCodes.Status409Conflict,
                detail: "An account with this email address exists; sign in at POST /api/v1/auth/token.");
        return TypedResults.Created($"/api/v1/users/{created.UserId}", new UserProfile(created.UserId, email, created.CreatedAt));
    }

    private static async Task<IResult> TokenAsync(HttpRequest http, IdentityStore store, IPasswordHasher<string> hasher, GatewayOptions gateway,
        CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var grant = Text(body, "grant_type", errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        var options = gateway.Identity;
        var now = DateTime.UtcNow;
        switch (grant)
        {
            case "password":
            {
                var rawEmail = Text(body, "email", errors);
                var rawPassword = Text(body, "password", errors);
                if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
                var account = Credentials.NormaliseEmail(rawEmail, out var email) is null ? await store.FindByEmailAsync(email, ct) : null;
                var password = rawPassword!.Length <= Credentials.MaxPasswordLength && InputRules.FindForbiddenChar(rawPassword) < 0 ? rawPassword : null;
                if (account?.LockedUntil is { } lockedUntil && lockedUntil > now) return Locked(lockedUntil - now);
                // An unknown address is verified against a hash of its own, so it takes as long as a wrong password.
                var verdict = hasher.VerifyHashedPassword("", account?.PasswordHash ?? TimingHash.Value, password ?? "");
                if (account is null || password is null || verdict == PasswordVerificationResult.Failed)
                {
                    if (account is not null
                        && await store.RecordFailureAsync(account.UserId, now, options.MaxFailedSignIns, TimeSpan.FromMinutes(options.LockoutMinutes), ct) is { } until)
                        return Locked(until - now);
                    return InvalidGrant("The email or password is wrong.");
                }
                await store.ResetFailuresAsync(account.UserId,
                    verdict == PasswordVerificationResult.SuccessRehashNeeded ? hasher.HashPassword("", password) : null, ct);
                return await IssueAsync(store, options, account.UserId, Guid.NewGuid(), now, ct);
            }
            case "refresh_token":
            {
                var presented = Text(body, "refresh_token", errors);
                if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
                if (presented!.Length > MaxRefreshTokenLength) return InvalidGrant("The refresh token is not one this gateway issued.");
                var (outcome, userId, family) = await store.RedeemRefreshTokenAsync(Digest(presented), now, ct);
                return outcome switch
                {
                    IdentityStore.RedeemOutcome.Redeemed => await IssueAsync(store, options, userId!, family, now, ct),
                    IdentityStore.RedeemOutcome.Reused => InvalidGrant("The refresh token was already used. Every token of its sign-in is now " +
                                                                       "revoked; sign in again with the password."),
                    _ => InvalidGrant("The refresh token is unknown, expired or revoked; sign in again with the password."),
                };
            }
            default:
                return TypedResults.ValidationProblem(new Dictionary<string, string[]>
                {
                    ["grant_type"] = [$"'{ApiInput.Shorten(grant ?? "")}' is not one of password, refresh_token"],
                });
        }
    }

    private static async Task<IResult> GetUserAsync([Description("the user id from registration")] string userId, IdentityStore store, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        return await store.FindByIdAsync(userId, ct) is { } account
            ? TypedResults.Ok(new UserProfile(account.UserId, account.Email, account.CreatedAt))
            : TypedResults.Problem(title: "No such user", statusCode: StatusCodes.Status404NotFound, detail: $"No account has user id '{userId}'.");
    }

    private static async Task<IResult> IssueAsync(IdentityStore store, GatewayIdentityOptions options, string userId, Guid family, DateTime now,
        CancellationToken ct)
    {
        var accessToken = AccessTokens.Issue(options, userId, now, out _);
        // 256 random bits; only their SHA-256 is stored, so the table cannot be replayed.
        var refreshToken = Base64Url(RandomNumberGenerator.GetBytes(32));
        await store.StoreRefreshTokenAsync(Digest(refreshToken), userId, family, now.AddDays(options.RefreshTokenDays), ct);
        return TypedResults.Ok(new TokenResponse(accessToken, "Bearer", options.AccessTokenMinutes * 60, refreshToken, userId));
    }

    private static readonly Lazy<string> TimingHash = new(() => new PasswordHasher<string>().HashPassword("", Base64Url(RandomNumberGenerator.GetBytes(16))));

    private static IResult Locked(TimeSpan remaining) =>
        new LockedResult((int)Math.Max(1, Math.Ceiling(remaining.TotalSeconds)));

    /// <summary>429 with Retry-After: too many wrong passwords for this account.</summary>
    private sealed class LockedResult(int retryAfterSeconds) : IResult
    {
        public Task ExecuteAsync(HttpContext http)
        {
            http.Response.Headers.RetryAfter = retryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            return TypedResults.Problem(title: "Account temporarily locked", statusCode: StatusCodes.Status429TooManyRequests,
                detail: $"Too many wrong passwords for this account; sign-in is refused for {retryAfterSeconds} s.").ExecuteAsync(http);
        }
    }

    /// <summary>OAuth 2.0's answer to bad credentials or a bad refresh token (RFC 6749 §5.2): 400 with error invalid_grant.</summary>
    private static IResult InvalidGrant(string detail) => TypedResults.Problem(title: "invalid_grant", statusCode: StatusCodes.Status400BadRequest,
        detail: detail, extensions: new Dictionary<string, object?> { ["error"] = "invalid_grant" });

    private static byte[] Digest(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token));

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    /// <summary>A string field: a missing or non-string one is an error naming it (null returned).</summary>
    private static string? Text(JsonElement body, string field, Dictionary<string, string[]> errors)
    {
        if (!body.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            errors[field] = [$"{field} is required"];
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            errors[field] = [$"{field} must be a string"];
            return null;
        }
        try
        {
            return value.GetString();
        }
        catch (InvalidOperationException)   // a \uD800 escape with no pair: valid JSON, not a valid string
        {
            errors[field] = [$"{field} contains an unpaired surrogate"];
            return null;
        }
    }

    /// <summary>The body as a JSON object read under <see cref="MaxBodyBytes"/> and a depth of 4: a deep or huge
    /// document (a "JSON bomb") is a 400 or 413 before it is built.</summary>
    private static async Task<(JsonElement Body, IResult? Problem)> ReadAsync(HttpRequest http, CancellationToken ct)
    {
        if (http.ContentLength > MaxBodyBytes) return (default, TooLarge());
        if (http.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
            limit.MaxRequestBodySize = MaxBodyBytes;
        try
        {
            using var document = await JsonDocument.ParseAsync(http.Body, new JsonDocumentOptions { MaxDepth = 4 }, ct);
            return document.RootElement.ValueKind == JsonValueKind.Object
                ? (document.RootElement.Clone(), null)
                : (default, TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["body"] = ["body must be a JSON object"] }));
        }
        catch (JsonException e)
        {
            return (default, TypedResults.ValidationProblem(new Dictionary<string, string[]>
            {
                ["body"] = [$"body is not valid JSON (or nests deeper than 4): {e.Message.Split(" Path:")[0]}"],
            }));
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (default, TooLarge());
        }
    }

    private static IResult TooLarge() => TypedResults.Problem(title: "Payload too large", statusCode: StatusCodes.Status413PayloadTooLarge,
        detail: $"The body is larger than {MaxBodyBytes} bytes.");
}
