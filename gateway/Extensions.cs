using Scalar.AspNetCore;
using StreamHealth.Gateway.Apis;
using System.Text.Json.Serialization;
using Confluent.Kafka;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.SchemaRegistry;

namespace StreamHealth.Gateway;

/// <summary>All DI wiring of the gateway, in one place (eShop shape).</summary>
public static class Extensions
{
    public static void AddStreamHealthServices(this WebApplicationBuilder builder)
    {
        // gateway.json goes in before the shared sources: their STREAMHEALTH_ environment variables
        // come after it and so override it (production replaces the dev key that way).
        // The recommendation rules' default thresholds (data, with their sources) first: everything after may override them.
        builder.Configuration.AddJsonFile(Path.Combine(AppContext.BaseDirectory, StreamHealth.Insights.Recommendations.RecommendationRules.FileName),
            optional: false, reloadOnChange: false);
        builder.Configuration.AddJsonFile(Path.Combine(AppContext.BaseDirectory, GatewayOptions.FileName), optional: true, reloadOnChange: false);
        // The local stack's credentials (the dev API key with every scope, the dev JWT signing key) exist only in
        // Development; anywhere else they are missing, and a missing signing key stops the gateway at start-up.
        if (builder.Environment.IsDevelopment())
            builder.Configuration.AddJsonFile(Path.Combine(AppContext.BaseDirectory, GatewayOptions.DevelopmentFileName), optional: true, reloadOnChange: false);
        StreamHealthOptions.AddSources(builder.Configuration);
        // JSON lines with trace ids where asked (production); the framework's console format otherwise.
        Runtime.Observability.LogFormat.AddJsonConsoleIfAsked(builder.Logging, builder.Configuration);
        // Bound from the final configuration (hosts and tests may add sources until Build).
        builder.Services.AddSingleton(sp => StreamHealthOptions.Bind(sp.GetRequiredService<IConfiguration>()));
        builder.Services.AddSingleton(sp => GatewayOptions.Bind(sp.GetRequiredService<IConfiguration>(),
            development: sp.GetRequiredService<IHostEnvironment>().IsDevelopment()));
        builder.Services.AddProblemDetails();
        builder.Services.AddExceptionHandler<RequestProblems>();
        // A body bound by the framework that is not JSON or has a field of the wrong type throws, so that
        // RequestProblems answers a 400 naming the field (by default production answers a bare 400 and
        // Development a 500).
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        // "80" is not a number: a client that sends a string where the contract says number gets a 400
        // naming the field, and the document says number, not number-or-string.
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.NumberHandling = JsonNumberHandling.Strict);
        Observability.GatewayTelemetry.Add(builder);
        ApiKeyAuthentication.Add(builder.Services);
        IdentityApi.AddIdentityServices(builder.Services);
        ApiRateLimiting.Add(builder.Services);
        builder.Services.AddOpenApi(openApi =>
        {
            openApi.AddDocumentTransformer((document, _, _) =>
            {
                document.Info.Title = "StreamHealth gateway";
                return Task.CompletedTask;
            });
            Identity.Access.DescribeInOpenApi(openApi);
            OpenApi.ContractResponses.Describe(openApi);
        });
        builder.Services.AddSingleton(sp => NpgsqlDataSource.Create(sp.GetRequiredService<StreamHealthOptions>().Postgres.ConnectionString));
        // abortConnect=false: the gateway starts (and reports Redis as down in /health) without Redis.
        builder.Services.AddSingleton<IConnectionMultiplexer>(sp =>
            ConnectionMultiplexer.Connect(sp.GetRequiredService<StreamHealthOptions>().Redis.ConnectionOptions()));
        builder.Services.AddSingleton(sp => new KafkaClients(sp.GetRequiredService<StreamHealthOptions>().Kafka));
        // One schema registry client for every Avro producer and reader of the gateway (SchemaRegistry:Url, AutoRegister).
        builder.Services.AddSingleton(sp => SchemaRegistryConnection.Connect(sp.GetRequiredService<StreamHealthOptions>().SchemaRegistry));
        // /health, /api/v1/streams and /api/v1/topics read its background readings: no I/O on request threads.
        builder.Services.AddSingleton<OperationsMonitor>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<OperationsMonitor>());
        // Interactive queries: a key's state from the processing host that owns it (routed by the hosts' reports).
        builder.Services.AddSingleton<Streams.InteractiveQueries>();
        builder.Services.AddWeightCommands();
        builder.Services.AddHealthMetrics();
        builder.Services.AddCallWebhooks();
        RecommendationsApi.AddRecommendations(builder.Services);
        // One writer of the audit trail per gateway (replicas share the chain through its advisory lock).
        builder.Services.AddSingleton(sp => new Audit.AuditWriter(sp.GetRequiredService<NpgsqlDataSource>(),
            sp.GetRequiredService<StreamHealthOptions>(), sp.GetRequiredService<ILogger<Audit.AuditWriter>>()));
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Audit.AuditWriter>());
        builder.Services.AddSingleton(sp => new Cgm.CgmReadingsPublisher(sp.GetRequiredService<StreamHealthOptions>(),
            sp.GetRequiredService<SchemaRegistryConnection>()));
        builder.Services.AddSingleton(sp => new Cgm.ForecastEngine(
            StreamHealth.Forecast.ForecastOptions.Load(sp.GetRequiredService<IConfiguration>()),
            sp.GetRequiredService<ILogger<Cgm.ForecastEngine>>()));
    }

    public static void UseStreamHealthDefaults(this WebApplication app)
    {
        // Fail at start-up, not at the first request, on a bad setting.
        _ = app.Services.GetRequiredService<StreamHealthOptions>();
        var gateway = app.Services.GetRequiredService<GatewayOptions>();
        if (gateway.ApiKeys.Count == 0)
            app.Logger.LogWarning("Gateway:ApiKeys is empty: only people's own bearer tokens reach per-user data");
        if (gateway.DevelopmentKeyEnabled)
            app.Logger.LogWarning("Gateway:ApiKeys holds the local development key from {File} (every scope); it is refused outside Development",
                GatewayOptions.DevelopmentFileName);
        // Personal-data requests are audited whatever answers them, so this wraps everything below.
        Audit.AuditTrail.UseAuditTrail(app);
        // Every 503 says when to come back (a handler's own problem as much as an outage the exception handler maps).
        app.Use((http, next) =>
        {
            http.Response.OnStarting(() =>
            {
                if (http.Response.StatusCode == StatusCodes.Status503ServiceUnavailable && !http.Response.Headers.ContainsKey("Retry-After"))
                    http.Response.Headers.RetryAfter = RequestProblems.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
                return Task.CompletedTask;
            });
            return next(http);
        });
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        // The dashboard's files: not looked for under /api (a file-system probe per API request cost ~5 % of the cached
        // recommendations' throughput, RESULTS "Insights API").
        app.UseWhen(http => !http.Request.Path.StartsWithSegments("/api"), files =>
        {
            files.UseDefaultFiles();
            files.UseStaticFiles();
        });
        // Authentication names the client, the rate limiter partitions by it (or by IP when there is
        // none), and only then does authorization turn a missing or unknown key into 401.
        app.UseAuthentication();
        app.UseRateLimiter();
        app.UseAuthorization();
        // /openapi/v1.json stays open like /health: it describes the API, it holds no data.
        app.MapOpenApi().AllowAnonymous();
        Observability.GatewayTelemetry.Map(app);
        // The API reference over that document, served with the package's own bundled script (nothing fetched from a CDN).
        app.MapScalarApiReference("/docs", scalar => scalar
                .WithTitle("StreamHealth API")
                .WithOpenApiRoutePattern("/openapi/{documentName}.json"))
            .AllowAnonymous();
    }
}

/// <summary>Long-lived Kafka clients the gateway shares (each holds broker connections and threads).</summary>
public sealed class KafkaClients(KafkaOptions options) : IDisposable
{
    private readonly Lazy<IAdminClient> _admin = new(() =>
        new AdminClientBuilder(new AdminClientConfig { BootstrapServers = options.BootstrapServers }).Build());
    private readonly Lazy<IConsumer<Ignore, Ignore>> _watermarks = new(() =>
        new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig
        {
            BootstrapServers = options.BootstrapServers,
            GroupId = "streamhealth-gateway-watermarks",   // never subscribes or commits
        }).Build());

    public bool Configured => !string.IsNullOrEmpty(options.BootstrapServers);
    public string BootstrapServers => options.BootstrapServers;
    public IAdminClient Admin => _admin.Value;
    public IConsumer<Ignore, Ignore> WatermarkReader => _watermarks.Value;

    public void Dispose()
    {
        if (_admin.IsValueCreated) _admin.Value.Dispose();
        if (_watermarks.IsValueCreated) _watermarks.Value.Dispose();
    }
}
