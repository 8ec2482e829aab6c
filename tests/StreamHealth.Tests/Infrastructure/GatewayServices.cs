using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using StackExchange.Redis;
using StreamHealth.Runtime.Storage;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>What a test of the gateway against processing hosts it starts itself needs: an embedded Kafka, a migrated
/// database and Redis, and gateways that find hosts in a discovery registry of the test's own (Streams:RegistryKey), so
/// the hosts one test registers are never seen by another's gateway.</summary>
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

    public static string NewRegistryKey() => $"streamhealth:hosts:test:{Guid.NewGuid():N}";

    /// <summary>A gateway (in-memory test server) on these services that finds hosts in <paramref name="registryKey"/>.</summary>
    public WebApplicationFactory<Program> Gateway(string registryKey)
    {
        var settings = Registry.With(LocalServices.Overrides(Database, Kafka.BootstrapServers));
        settings["Streams:RegistryKey"] = registryKey;
        return new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
    }
}
