using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using StreamHealth.Tests.Gateway.Contract;

namespace StreamHealth.Tests.Gateway;

/// <summary>What the per-person API tests share: a registered person with a token, a client speaking for them, and a
/// problem answer checked for its status and media type.</summary>
internal static class PeopleOnTheStack
{
    public static async Task<(string UserId, string Token)> SignUpAsync(GatewayStackFixture f, string prefix)
    {
        using var anonymous = f.Client(apiKey: null);
        var email = $"{prefix}-{Guid.NewGuid():N}@example.org";
        const string password = "Insights-walk-1";
        Assert.Equal(HttpStatusCode.Created, (await anonymous.PostAsJsonAsync("/api/v1/users/register", new { email, password })).StatusCode);
        var token = JsonDocument.Parse(await (await anonymous.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password }))
            .Content.ReadAsStringAsync()).RootElement;
        return (token.GetProperty("user_id").GetString()!, token.GetProperty("access_token").GetString()!);
    }

    public static HttpClient Bearer(GatewayStackFixture f, string token)
    {
        var client = f.Client(apiKey: null);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    public static async Task<JsonElement> ProblemAsync(HttpResponseMessage response, HttpStatusCode expected)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode} {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(text).RootElement;
    }

    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response, HttpStatusCode expected)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    /// <summary><paramref name="body"/> with <paramref name="field"/> set to <paramref name="value"/> (null: JSON null), for
    /// the one-field-wrong cases of a request body.</summary>
    public static Dictionary<string, object?> With(Dictionary<string, object?> body, string field, object? value)
    {
        body[field] = value;
        return body;
    }

    public static IEnumerable<string> ErrorFields(JsonElement problem) => problem.GetProperty("errors").EnumerateObject().Select(p => p.Name);
}
