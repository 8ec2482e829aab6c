using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using StackExchange.Redis;
using StreamHealth.Runtime.Storage;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>What a test of the gateway against processing hosts it starts itself needs: an embedded Kafka, a migrated
/// database and Redis, and gateways that read the host reports from a hash of the test's own (Streams:MetricsKey), so
/// what one test publishes is never seen by another's gateway.</summary>
public sealed class GatewayServices : IAsyncLifetime
{
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public string Database { get; } = LocalServices.NewDatabaseName("gateway_hosts");
    public ConnectionMultiplexer Redis { get; private set; } = null!;
    /// <summary>The schema registry (on <see cref="Database"/>) the hosts, the gateways and the tests' producers use.</summary>
    public TestRegistry Registry { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await PostgresMigrator.MigrateAsync(LocalServices.PostgresConnectionString(Database));
        Redis = await ConnectionMultiplexer.ConnectAsync(LocalServices.RedisConfiguration);
        Registry = TestRegistry.Start(LocalServices.PostgresConnectionString(Database));
    }

    public Task DisposeAsync()
    {
        Registry?.Dispose();
        Redis.Dispose();
        Kafka.Dispose();
        return Task.CompletedTask;
    }

    public static string NewMetricsKey() => $"streamhealth:streams:test:{Guid.NewGuid():N}";

    /// <summary>A gateway (in-memory test server) on these services that reads host reports from <paramref name="metricsKey"/>.</summary>
    public WebApplicationFactory<Program> Gateway(string metricsKey)
    {
        var settings = Registry.With(LocalServices.Overrides(Database, Kafka.BootstrapServers));
        settings["Streams:MetricsKey"] = metricsKey;
        return new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
    }
}
