using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Insights.Aggregates;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Pipeline;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway.Contract;

/// <summary>The whole gateway in front of everything it talks to, as deployed: Kafka with the catalogue topics, the weights,
/// CGM and insights topologies with their PostgreSQL and Redis sinks, a database of its own. Here on the embedded Kafka and
/// the test profile's servers; tests/StreamHealth.ContainerTests runs it on containers (<see cref="ITestStack"/>).</summary>
public class GatewayStackFixture : IAsyncLifetime
{
    public const string ApiKey = "dev-key-change-me";
    public ITestStack Stack { get; }
    private readonly IDisposable? _ownedStack;

    public GatewayStackFixture() : this(new LocalStack(), ownsStack: true) { }

    protected GatewayStackFixture(ITestStack stack, bool ownsStack)
    {
        Stack = stack;
        _ownedStack = ownsStack ? stack as IDisposable : null;
    }

    public TestLogs Logs { get; } = new();
    public WebApplicationFactory<Program> App { get; private set; } = null!;
    public NpgsqlDataSource Postgres { get; private set; } = null!;
    private WeightPipeline _weights = null!;
    private TestRegistry _registry = null!;
    /// <summary>The stand-in schema registry this stack's processes and gateway use.</summary>
    public TestRegistry Registry => _registry;
    private CgmPipeline _cgm = null!;
    private StreamHealth.Runtime.Sinks.SinkRunner _metricsSink = null!;
    private StreamHealth.Runtime.Sinks.SinkRunner _nutritionSink = null!;
    private ConnectionMultiplexer _redis = null!;
    private InsightsPipeline _insights = null!;
    /// <summary>The insights aggregates topology and its sink (<see cref="RestartInsights"/> replaces them).</summary>
    public InsightsPipeline Insights => _insights;
    public IConnectionMultiplexer Redis => _redis;
    private StoreQueryServer _queries = null!;
    private StreamMetricsReporter[] _reporters = [];
    private readonly string _stateDir = Directory.CreateTempSubdirectory("streamhealth-gateway-contract-").FullName;

    public async Task InitializeAsync()
    {
        var database = LocalServices.NewDatabaseName("gateway_contract");
        var connectionString = Stack.PostgresConnectionString(database);
        await PostgresMigrator.MigrateAsync(connectionString);
        Postgres = NpgsqlDataSource.Create(connectionString);
        _redis = await ConnectionMultiplexer.ConnectAsync(Stack.RedisConfiguration);
        _registry = Stack.Registry(connectionString);
        _weights = new WeightPipeline(new StreamHostOptions { SchemaRegistry = _registry.Connection, BootstrapServers = Stack.BootstrapServers, CreateInternalTopic = Stack.CreateInternalTopic, StateDirectory = Path.Combine(_stateDir, "w") },
            Postgres, _redis, Logs).Start();
        _cgm = new CgmPipeline(new StreamHostOptions { SchemaRegistry = _registry.Connection, BootstrapServers = Stack.BootstrapServers, CreateInternalTopic = Stack.CreateInternalTopic, StateDirectory = Path.Combine(_stateDir, "c") },
            Postgres, _redis, Logs, new CgmPipelineOptions { EmitIntervalMs = 100, MinForecastRequestIntervalMs = 500 }).Start();
        // insights.metrics → streamhealth.health_metrics and insights.nutrition → insights.nutrition_logs, as `up` and `run`
        // run them beside the workloads.
        _metricsSink = StreamHealth.Insights.Metrics.HealthMetricPostgresWriter.CreateSink(Stack.BootstrapServers, Postgres, _registry.Connection, Logs);
        _metricsSink.Start();
        _nutritionSink = StreamHealth.Insights.Nutrition.NutritionLogPostgresWriter.CreateSink(Stack.BootstrapServers, Postgres, _registry.Connection, Logs);
        _nutritionSink.Start();
        _insights = StartInsights();
        // The hosts register where they serve /metrics and interactive queries in a discovery hash of this stack's own.
        var registryKey = $"streamhealth:hosts:test:{Guid.NewGuid():N}";
        _queries = await StoreQueryServer.StartAsync([_weights.Host, _cgm.Host], "http://127.0.0.1:0", null, Logs);
        _reporters =
        [
            new StreamMetricsReporter("contract-weights", [WeightTopology.ApplicationId], _weights.Host, Logs.CreateLogger("weights"), _redis.GetDatabase(),
                TimeSpan.FromMilliseconds(500), registryKey: registryKey, url: _queries.Url),
            new StreamMetricsReporter("contract-cgm", [CgmTopology.ApplicationId], _cgm.Host, Logs.CreateLogger("cgm"), _redis.GetDatabase(),
                TimeSpan.FromMilliseconds(500), registryKey: registryKey, url: _queries.Url),
        ];
        var settings = _registry.With(Stack.Settings(database));
        settings["Streams:RegistryKey"] = registryKey;
        App = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
        // Real Kestrel on a real port, not the in-memory TestServer: hostile request lines (a NUL or invalid
        // UTF-8 in the path) must meet the server's own parser, and curl must be able to reach it.
        App.UseKestrel(kestrel => kestrel.Listen(System.Net.IPAddress.Loopback, 0));   // a free port of its own
        App.StartServer();
        var addresses = App.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses;
        BaseUrl = addresses.Single().TrimEnd('/');
        WaitFor(() => _weights.Host.Metrics.ActiveTasks == 4, TimeSpan.FromSeconds(60), () => "weights tasks not assigned");
    }

    private InsightsPipeline StartInsights() =>
        new InsightsPipeline(new StreamHostOptions { SchemaRegistry = _registry.Connection, BootstrapServers = Stack.BootstrapServers, CreateInternalTopic = Stack.CreateInternalTopic, StateDirectory = Path.Combine(_stateDir, "i") },
            Postgres, _redis, Logs).Start();

    /// <summary>Stops the insights topology and its sink gracefully, runs <paramref name="whileStopped"/>, and starts them again on the
    /// same state directory, as a redeployed processors pod does; returns once its tasks are assigned again.</summary>
    public void RestartInsights(Action? whileStopped = null)
    {
        _insights.Dispose();
        whileStopped?.Invoke();
        _insights = StartInsights();
        WaitFor(() => _insights.Host.Metrics.ActiveTasks == 4, TimeSpan.FromSeconds(60), () => "insights tasks not assigned after the restart");
    }

    /// <summary>Where the gateway listens (Kestrel on a free loopback port).</summary>
    public string BaseUrl { get; private set; } = "";

    public HttpClient Client(string? apiKey = ApiKey)
    {
        var client = new HttpClient { BaseAddress = new Uri(BaseUrl) };
        client.Timeout = TimeSpan.FromSeconds(60);
        if (apiKey is not null) client.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        return client;
    }

    public static string NewUser(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    /// <summary>A valid weight measurement body (snake_case, as the endpoint reads it).</summary>
    public static object Measurement(string user, double kg, DateTime timeUtc, string? measurementId = null) => new
    {
        user_id = user, weight = kg, unit = "kg", timestamp = timeUtc.ToString("O", CultureInfo.InvariantCulture),
        source = "connected_scale", measurement_id = measurementId ?? Guid.NewGuid().ToString("N"),
    };

    /// <summary>A unified CSV of <paramref name="count"/> sensor readings, 5 minutes apart, ending 10 minutes ago
    /// (inside every time rule), glucose 100-130 mg/dL.</summary>
    public static byte[] RecentUnifiedCsv(int count = 12)
    {
        var text = new StringBuilder("sequence_id,original_datetime,original_glucose,quality,event_type,datetime,glucose,carbs,insulin_slow,insulin_fast,exercise\n");
        var end = DateTime.UtcNow.AddMinutes(-10);
        var first = new DateTime(end.Year, end.Month, end.Day, end.Hour, end.Minute / 5 * 5, 0, DateTimeKind.Utc).AddMinutes(-5 * (count - 1));
        for (var i = 0; i < count; i++)
        {
            var t = first.AddMinutes(5 * i).ToString("yyyy-MM-ddTHH:mm:ss.fff", CultureInfo.InvariantCulture);
            var g = (100 + i % 30).ToString(CultureInfo.InvariantCulture) + ".0";
            text.Append($"0,{t},{g},0,EGV_READ,{t},{g},,,,\n");
        }
        return Encoding.UTF8.GetBytes(text.ToString());
    }

    /// <summary>Proves that no sink is stuck: a fresh, valid weight measurement and CGM upload go in through the
    /// gateway and reach PostgreSQL within a generous deadline.</summary>
    public async Task AssertSinksFlowAsync(HttpClient client)
    {
        var weightUser = NewUser("sentinel-w");
        var measurementId = Guid.NewGuid().ToString("N");
        var process = await client.PostAsJsonAsync("/api/weight/process", Measurement(weightUser, 80.5, DateTime.UtcNow.AddMinutes(-1), measurementId));
        Assert.True(process.IsSuccessStatusCode || (int)process.StatusCode == 504,
            $"the sentinel measurement was refused: {(int)process.StatusCode} {await process.Content.ReadAsStringAsync()}");
        var cgmUser = NewUser("sentinel-c");
        var upload = await client.PostAsync($"/api/v1/cgm/{cgmUser}/upload",
            new ByteArrayContent(RecentUnifiedCsv()) { Headers = { ContentType = new MediaTypeHeaderValue("text/csv") } });
        Assert.True((int)upload.StatusCode == 202, $"the sentinel CGM upload was refused: {(int)upload.StatusCode} {await upload.Content.ReadAsStringAsync()}");

        long weights = 0, readings = 0;
        WaitFor(() =>
        {
            weights = Count("SELECT count(*) FROM weights.measurements WHERE user_id = $1 AND measurement_id = $2", weightUser, measurementId);
            readings = Count("SELECT count(*) FROM cgm.readings WHERE user_id = $1", cgmUser);
            return weights == 1 && readings == 12;
        }, TimeSpan.FromSeconds(90), () => $"a sink is stuck: sentinel weight rows {weights}/1, sentinel CGM readings {readings}/12");
    }

    private long Count(string sql, params object[] values)
    {
        using var cmd = Postgres.CreateCommand(sql);
        foreach (var v in values) cmd.Parameters.Add(new NpgsqlParameter { Value = v });
        return (long)cmd.ExecuteScalar()!;
    }

    /// <summary>Also after an InitializeAsync that failed part way (a stack that never started): disposes what was started.</summary>
    public async Task DisposeAsync()
    {
        if (App is not null) await App.DisposeAsync();
        foreach (var reporter in _reporters) reporter.Dispose();
        if (_queries is not null) await _queries.DisposeAsync();
        _weights?.Dispose();
        _cgm?.Dispose();
        _metricsSink?.Dispose();
        _nutritionSink?.Dispose();
        _insights?.Dispose();
        _registry?.Dispose();
        _redis?.Dispose();
        if (Postgres is not null) await Postgres.DisposeAsync();
        _ownedStack?.Dispose();
        Directory.Delete(_stateDir, recursive: true);
    }
}
