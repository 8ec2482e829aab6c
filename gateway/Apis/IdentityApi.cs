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
/// profile (date of birth and medical history encrypted at rest, <see cref="FieldEncryption"/>; never logged). Passwords are hashed with ASP.NET Core Identity's <see cref="PasswordHasher{TUser}"/> (PBKDF2, its V3 format);
/// the sign-in endpoints are rate limited per IP separately from the API (Gateway:Identity:SignInPermitsPerMinute).</summary>
public static class IdentityApi
{
    /// <summary>Largest body the token endpoint reads: a credential pair is well under 1 KiB.</summary>
    public const int MaxBodyBytes = 4 * 1024;
    /// <summary>Largest body of registration and the profile: 4,000 characters of medical history, each up to a
    /// 6-byte JSON escape, fit.</summary>
    public const int MaxProfileBodyBytes = 32 * 1024;
    public const int MaxRefreshTokenLength = 128;

    public sealed record RegisterRequest(
        [property: JsonPropertyName("email"), Description("an address; stored normalised (NFKC, trimmed, lower case), unique")] string Email,
        [property: JsonPropertyName("password"), Description(Credentials.PasswordRuleText)] string Password,
        [property: JsonPropertyName("time_zone"), Description(TimeZoneText + "; default UTC")] string? TimeZone,
        [property: JsonPropertyName("sex"), Description(SexText)] string? Sex,
        [property: JsonPropertyName("date_of_birth"), Description(DateOfBirthText)] DateOnly? DateOfBirth,
        [property: JsonPropertyName("medical_history"), Description(MedicalHistoryText)] string? MedicalHistory);

    public sealed record ProfileRequest(
        [property: JsonPropertyName("time_zone"), Description(TimeZoneText)] string TimeZone,
        [property: JsonPropertyName("sex"), Description(SexText)] string? Sex,
        [property: JsonPropertyName("date_of_birth"), Description(DateOfBirthText)] DateOnly? DateOfBirth,
        [property: JsonPropertyName("medical_history"), Description(MedicalHistoryText)] string? MedicalHistory);

    private const string TimeZoneText = "IANA time zone id (Europe/Paris): where the person's local day begins";
    private const string SexText = "female, male or other; optional";
    private const string DateOfBirthText = "YYYY-MM-DD, not in the future, at most 130 years ago; optional; encrypted at rest";
    private const string MedicalHistoryText = "free text, at most 4000 characters, no control characters but tab and line breaks; optional; encrypted at rest";

    public sealed record TokenRequest(
        [property: JsonPropertyName("grant_type"), Description("`password` (with email and password) or `refresh_token` (with refresh_token)")] string GrantType,
        [property: JsonPropertyName("email")] string? Email,
        [property: JsonPropertyName("password")] string? Password,
        [property: JsonPropertyName("refresh_token")] string? RefreshToken);

    public sealed record UserProfile(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("email")] string Email,
        [property: JsonPropertyName("created_at")] DateTime CreatedAt,
        [property: JsonPropertyName("time_zone")] string TimeZone,
        [property: JsonPropertyName("sex")] string? Sex,
        [property: JsonPropertyName("date_of_birth")] DateOnly? DateOfBirth,
        [property: JsonPropertyName("medical_history")] string? MedicalHistory,
        [property: JsonPropertyName("profile_updated_at")] DateTime? ProfileUpdatedAt);

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
            .WithDescription("400 naming the field (`email`, `password`: " + Credentials.PasswordRuleText + "; the optional profile " +
                             "fields as PUT /api/v1/users/{userId}/profile takes them), 409 when the address is " +
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
            .WithDescription("The account and its profile, date of birth and medical history decrypted: to the person's own token or " +
                             "an `admin` key only. 500 when a stored field cannot be decrypted with this gateway's keys (a key id " +
                             "missing from Gateway:Encryption:Keys, or an altered value): a fault of the deployment, not of the request.")
            .Produces<UserProfile>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status500InternalServerError)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.Admin));

        app.MapPut("/api/v1/users/{userId}/profile", PutProfileAsync)
            .WithTags("Identity").WithName("PutUserProfile")
            .WithSummary("Replace a person's profile")
            .WithDescription("`time_zone` is required; `sex`, `date_of_birth` and `medical_history` are optional, and absent or null " +
                             "clears them. Date of birth and medical history are stored encrypted (AES-256-GCM, Gateway:Encryption). 400 " +
                             "naming the field; the person's own token or an `admin` key.")
            .Accepts<ProfileRequest>("application/json")
            .Produces<UserProfile>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.Admin));
    }

    internal static void AddIdentityServices(IServiceCollection services)
    {
        services.AddSingleton<IPasswordHasher<string>, PasswordHasher<string>>();
        services.AddSingleton(sp => new IdentityStore(sp.GetRequiredService<Npgsql.NpgsqlDataSource>()));
        services.AddSingleton<ProfileReader>();
    }

    private static async Task<IResult> RegisterAsync(HttpRequest http, IdentityStore store, IPasswordHasher<string> hasher, GatewayOptions gateway,
        CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, MaxProfileBodyBytes, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var emailProblem = Credentials.NormaliseEmail(Text(body, "email", errors), out var email);
        if (emailProblem is not null && !errors.ContainsKey("email")) errors["email"] = [emailProblem];
        var passwordProblem = Credentials.CheckPassword(Text(body, "password", errors), out var password);
        if (passwordProblem is not null && !errors.ContainsKey("password")) errors["password"] = [passwordProblem];
        var profile = ProfileInput.Read(body, requireTimeZone: false, DateOnly.FromDateTime(DateTime.UtcNow), errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        // Hashed before the insert, taken address or not: a 409 costs what a 201 costs.
        var hash = hasher.HashPassword("", password);
        var userId = IdentityStore.NewUserId();
        var given = HasProfileField(body) ? profile! : null;
        if (await store.CreateUserAsync(userId, email, hash, given is null ? null : Seal(gateway, userId, given), ct) is not { } createdAt)
            return TypedResults.Problem(title: "Email already registered", statusCode: StatusCodes.Status409Conflict,
                detail: "An account with this email address exists; sign in at POST /api/v1/auth/token.");
        return TypedResults.Created($"/api/v1/users/{userId}",
            Answer(userId, email, createdAt, given ?? ProfileFields.Default, given is null ? null : createdAt));
    }

    private static async Task<IResult> PutProfileAsync([Description("the user id from registration")] string userId, HttpRequest http,
        IdentityStore store, ProfileReader profiles, GatewayOptions gateway, ILogger<ProfileRequest> log, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        var (body, bad) = await ReadAsync(http, MaxProfileBodyBytes, ct);
        if (bad is not null) return bad;
        var profile = ProfileInput.Read(body, requireTimeZone: true, DateOnly.FromDateTime(DateTime.UtcNow), errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await store.UpdateProfileAsync(userId, Seal(gateway, userId, profile!), ct) is null) return NoSuchUser(userId);
        await profiles.ProfileChangedAsync(userId);
        // Read back rather than echoed: the answer is what GET will show (email, created_at included).
        return await GetUserAsync(userId, profiles, gateway, log, ct);
    }

    private static async Task<IResult> TokenAsync(HttpRequest http, IdentityStore store, IPasswordHasher<string> hasher, GatewayOptions gateway,
        CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, MaxBodyBytes, ct);
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

    private static async Task<IResult> GetUserAsync([Description("the user id from registration")] string userId, ProfileReader profiles,
        GatewayOptions gateway, ILogger<ProfileRequest> log, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await profiles.FindAsync(userId, ct) is not { } stored) return NoSuchUser(userId);
        var encryption = gateway.Encryption.Encryption!;
        try
        {
            DateOnly? dateOfBirth = stored.DateOfBirthEnvelope is { } sealedDate
                ? DateOnly.ParseExact(encryption.Decrypt(sealedDate, userId, ProfileInput.DateOfBirthField), "yyyy-MM-dd", CultureInfo.InvariantCulture)
                : null;
            var history = stored.MedicalHistoryEnvelope is { } sealedHistory ? encryption.Decrypt(sealedHistory, userId, ProfileInput.MedicalHistoryField) : null;
            return TypedResults.Ok(new UserProfile(stored.UserId, stored.Email, stored.CreatedAt, stored.TimeZone, stored.Sex, dateOfBirth, history,
                stored.ProfileUpdatedAt));
        }
        catch (FieldDecryptionException e)
        {
            // The message names the field and key id only. A key missing from configuration is the usual cause.
            log.LogError("profile of user {UserId} cannot be decrypted: {Reason}", userId, e.Message);
            return TypedResults.Problem(title: "Stored profile cannot be decrypted", statusCode: StatusCodes.Status500InternalServerError,
                detail: "A protected profile field cannot be decrypted with this gateway's keys (Gateway:Encryption); nothing was changed.");
        }
    }

    private static IResult NoSuchUser(string userId) =>
        TypedResults.Problem(title: "No such user", statusCode: StatusCodes.Status404NotFound, detail: $"No account has user id '{userId}'.");

    private static bool HasProfileField(JsonElement body) =>
        body.TryGetProperty(ProfileInput.TimeZoneField, out _) || body.TryGetProperty(ProfileInput.SexField, out _)
        || body.TryGetProperty(ProfileInput.DateOfBirthField, out _) || body.TryGetProperty(ProfileInput.MedicalHistoryField, out _);

    /// <summary>The columns to store: date of birth and medical history sealed for this person and field.</summary>
    private static IdentityStore.SealedProfile Seal(GatewayOptions gateway, string userId, ProfileFields profile)
    {
        var encryption = gateway.Encryption.Encryption!;
        return new IdentityStore.SealedProfile(profile.TimeZone, profile.Sex,
            profile.DateOfBirth is { } date ? encryption.Encrypt(date.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), userId, ProfileInput.DateOfBirthField) : null,
            profile.MedicalHistory is { } history ? encryption.Encrypt(history, userId, ProfileInput.MedicalHistoryField) : null);
    }

    private static UserProfile Answer(string userId, string email, DateTime createdAt, ProfileFields profile, DateTime? updatedAt) =>
        new(userId, email, createdAt, profile.TimeZone, profile.Sex, profile.DateOfBirth, profile.MedicalHistory, updatedAt);

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

    /// <summary>The body as a JSON object read under <paramref name="maxBodyBytes"/> and a depth of 4: a deep or huge
    /// document (a "JSON bomb") is a 400 or 413 before it is built.</summary>
    private static async Task<(JsonElement Body, IResult? Problem)> ReadAsync(HttpRequest http, int maxBodyBytes, CancellationToken ct)
    {
        if (http.ContentLength > maxBodyBytes) return (default, TooLarge(maxBodyBytes));
        if (http.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
            limit.MaxRequestBodySize = maxBodyBytes;
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
            return (default, TooLarge(maxBodyBytes));
        }
    }

    private static IResult TooLarge(int maxBodyBytes) => TypedResults.Problem(title: "Payload too large", statusCode: StatusCodes.Status413PayloadTooLarge,
        detail: $"The body is larger than {maxBodyBytes} bytes.");
}
