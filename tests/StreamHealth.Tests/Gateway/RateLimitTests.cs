using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Gateway;

/// <summary>The chained rate limits (Gateway:RateLimit): each level is tried with a small limit while the others keep
/// their defaults, on a real Kestrel so that requests come from real addresses (127.0.0.1 and 127.0.0.2). The requests are
/// ones the gateway answers without PostgreSQL or Kafka (a 400 for a bad route value): the limiter runs before any handler.</summary>
public sealed class RateLimitTests(MigratedDatabase database) : IClassFixture<MigratedDatabase>
{
    private const string KeyA = "rate-limit-key-a-0123456789";
    private const string KeyB = "rate-limit-key-b-0123456789";
    private const string Metrics = "/api/v1/health-metrics/user/bad%20id";
    private const string Nutrition = "/api/v1/nutrition-logs/user/bad%20id";

    [Fact]
    public async Task The_endpoint_for_a_caller_level_limits_one_endpoint_and_leaves_the_callers_others_and_other_callers_alone()
    {
        await using var gateway = Start(("PerEndpointCaller:PermitsPerSecond", "1"), ("PerEndpointCaller:Burst", "2"));
        using var a = gateway.Client(KeyA);
        var rejected = await ExhaustAsync(a, Metrics);
        var problem = await ProblemAsync(rejected, "PerEndpointCaller");
        Assert.Contains("This endpoint for this caller takes 1 requests/s (bursts of 2)", problem.GetProperty("detail").GetString());
        Assert.Equal(HttpStatusCode.BadRequest, (await a.GetAsync(Nutrition)).StatusCode);
        using var b = gateway.Client(KeyB);
        Assert.Equal(HttpStatusCode.BadRequest, (await b.GetAsync(Metrics)).StatusCode);
    }

    [Fact]
    public async Task The_caller_level_limits_a_caller_across_endpoints_and_leaves_other_callers_alone()
    {
        await using var gateway = Start(("PerCaller:PermitsPerSecond", "1"), ("PerCaller:Burst", "2"));
        using var a = gateway.Client(KeyA);
        Assert.Equal(HttpStatusCode.BadRequest, (await a.GetAsync(Metrics)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await a.GetAsync(Nutrition)).StatusCode);
        var problem = await ProblemAsync(await a.GetAsync("/api/v1/health-goals/user/bad%20id"), "PerCaller");
        Assert.Contains("This caller may send 1 requests/s", problem.GetProperty("detail").GetString());
        using var b = gateway.Client(KeyB);
        Assert.Equal(HttpStatusCode.BadRequest, (await b.GetAsync(Metrics)).StatusCode);
    }

    [Fact]
    public async Task The_ip_level_limits_every_caller_from_one_address_and_leaves_other_addresses_alone()
    {
        await using var gateway = Start(("PerIp:PermitsPerSecond", "1"), ("PerIp:Burst", "2"));
        using var a = gateway.Client(KeyA);
        using var b = gateway.Client(KeyB);
        Assert.Equal(HttpStatusCode.BadRequest, (await a.GetAsync(Metrics)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await b.GetAsync(Nutrition)).StatusCode);
        // Without a credential the caller is its address too, and the address's bucket is empty.
        using var anonymous = gateway.Client(null);
        var problem = await ProblemAsync(await anonymous.GetAsync("/api/v1/topics"), "PerIp");
        Assert.Contains("This IP address may send 1 requests/s", problem.GetProperty("detail").GetString());
        using var elsewhere = gateway.Client(KeyB, from: IPAddress.Parse("127.0.0.2"));
        Assert.Equal(HttpStatusCode.BadRequest, (await elsewhere.GetAsync(Metrics)).StatusCode);
    }

    [Fact]
    public async Task The_global_level_limits_everyone_together_and_the_health_probes_stay_open()
    {
        await using var gateway = Start(("Global:PermitsPerSecond", "1"), ("Global:Burst", "2"));
        using var a = gateway.Client(KeyA);
        using var b = gateway.Client(KeyB, from: IPAddress.Parse("127.0.0.2"));
        Assert.Equal(HttpStatusCode.BadRequest, (await a.GetAsync(Metrics)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await a.GetAsync(Nutrition)).StatusCode);
        var problem = await ProblemAsync(await b.GetAsync(Metrics), "Global");
        Assert.Contains("The gateway as a whole (all callers together) takes 1 requests/s", problem.GetProperty("detail").GetString());
        foreach (var probe in new[] { "/health", "/health/ready", "/health/live", "/health/live", "/health/live" })
            Assert.NotEqual(HttpStatusCode.TooManyRequests, (await b.GetAsync(probe)).StatusCode);
    }

    [Fact]
    public async Task Sign_in_keeps_its_own_per_minute_limit_apart_from_the_chain()
    {
        await using var gateway = Start(("Gateway:Identity:SignInPermitsPerMinute", "1"));
        using var anonymous = gateway.Client(null);
        var token = new { grant_type = "refresh_token", refresh_token = "not-issued-here" };
        Assert.NotEqual(HttpStatusCode.TooManyRequests, (await anonymous.PostAsJsonAsync("/api/v1/auth/token", token)).StatusCode);
        var problem = await ProblemAsync(await anonymous.PostAsJsonAsync("/api/v1/auth/token", token), "SignIn");
        Assert.Contains("1 registration and sign-in requests per minute", problem.GetProperty("detail").GetString());
        using var a = gateway.Client(KeyA);
        Assert.Equal(HttpStatusCode.BadRequest, (await a.GetAsync(Metrics)).StatusCode);
    }

    [Fact]
    public async Task The_defaults_let_one_loopback_client_send_thousands_of_requests_at_once()
    {
        // The defaults (GatewayRateLimitOptions) sit above the 20,000 requests/s the load harnesses send from one client
        // on loopback: a burst of 2,000 (the old per-client burst) meets no limit at any level.
        await using var gateway = Start();
        using var a = gateway.Client(KeyA);
        var statuses = new System.Collections.Concurrent.ConcurrentBag<HttpStatusCode>();
        await Parallel.ForEachAsync(Enumerable.Range(0, 2_000), new ParallelOptions { MaxDegreeOfParallelism = 32 },
            async (_, ct) => statuses.Add((await a.GetAsync(Metrics, ct)).StatusCode));
        Assert.Equal(2_000, statuses.Count);
        Assert.All(statuses, s => Assert.Equal(HttpStatusCode.BadRequest, s));
        var limits = gateway.App.Services.GetRequiredService<StreamHealth.Gateway.GatewayOptions>().RateLimit;
        Assert.True(limits.PerIp.PermitsPerSecond >= 20_000 && limits.PerCaller.PermitsPerSecond >= 20_000
                    && limits.PerEndpointCaller.PermitsPerSecond >= 20_000 && limits.Global.PermitsPerSecond >= 20_000);
    }

    [Theory]
    [InlineData("Gateway:RateLimit:PermitsPerSecond", "100", "Gateway:RateLimit:PerCaller:PermitsPerSecond")]
    [InlineData("Gateway:RateLimit:PerIp:PermitsPerSecond", "0", "Gateway:RateLimit:PerIp:PermitsPerSecond = 0")]
    [InlineData("Gateway:RateLimit:Global:Burst", "10", "Gateway:RateLimit:Global:Burst = 10")]
    public async Task A_bad_or_retired_setting_stops_the_gateway_naming_it(string key, string value, string named)
    {
        await using var app = Factory((key, value));
        Assert.Contains(named, Assert.ThrowsAny<Exception>(() => app.CreateClient()).ToString());
    }

    private static async Task<HttpResponseMessage> ExhaustAsync(HttpClient client, string path)
    {
        for (var i = 0; i < 10; i++)
        {
            var response = await client.GetAsync(path);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.True(i >= 2, $"refused after {i} requests; the burst is 2");
                return response;
            }
        }
        throw new Xunit.Sdk.XunitException($"{path}: no 429 in 10 requests");
    }

    private static async Task<JsonElement> ProblemAsync(HttpResponseMessage response, string limit)
    {
        var body = await PeopleOnTheStack.ProblemAsync(response, HttpStatusCode.TooManyRequests);
        Assert.Equal(limit, body.GetProperty("limit").GetString());
        Assert.InRange(response.Headers.RetryAfter?.Delta?.TotalSeconds ?? -1, 1, 60);
        return body;
    }

    private sealed class Gateway(WebApplicationFactory<Program> app, string baseUrl) : IAsyncDisposable
    {
        public WebApplicationFactory<Program> App => app;

        /// <summary>A client with <paramref name="apiKey"/> (none: anonymous), connecting from <paramref name="from"/> (a
        /// loopback address: Linux routes all of 127/8 to the loopback interface).</summary>
        public HttpClient Client(string? apiKey, IPAddress? from = null)
        {
            var handler = new SocketsHttpHandler();
            if (from is not null)
                handler.ConnectCallback = async (context, ct) =>
                {
                    var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                    socket.Bind(new IPEndPoint(from, 0));
                    await socket.ConnectAsync(context.DnsEndPoint, ct);
                    return new NetworkStream(socket, ownsSocket: true);
                };
            var client = new HttpClient(handler) { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromSeconds(30) };
            if (apiKey is not null) client.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
            return client;
        }

        public ValueTask DisposeAsync() => app.DisposeAsync();
    }

    /// <summary>A gateway on Kestrel with two service keys (every scope a request below needs) and the given Gateway:RateLimit
    /// settings (keys relative to it unless they start with "Gateway:").</summary>
    private Gateway Start(params (string Key, string Value)[] settings)
    {
        var app = Factory(settings);
        app.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
        app.StartServer();
        var address = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses.Single();
        return new Gateway(app, address.TrimEnd('/'));
    }

    private WebApplicationFactory<Program> Factory(params (string Key, string Value)[] settings)
    {
        // Nothing here reaches a handler's storage, but every request is audited.
        var all = LocalServices.Overrides(database.Name);
        foreach (var (index, key) in new[] { (0, KeyA), (1, KeyB) })
        {
            all[$"Gateway:ApiKeys:{index}:Key"] = key;
            all[$"Gateway:ApiKeys:{index}:Name"] = $"rate-{index}";
            all[$"Gateway:ApiKeys:{index}:Scopes"] = "metrics:read nutrition:read goals:read";
        }
        foreach (var (key, value) in settings) all[key.StartsWith("Gateway:", StringComparison.Ordinal) ? key : "Gateway:RateLimit:" + key] = value;
        return new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(all)));
    }
}
