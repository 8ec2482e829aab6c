using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Storage;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>A class fixture: a database of its own on the test PostgreSQL, migrated as a deployment's is (every audited
/// gateway request writes audit.events, so a gateway needs one even when its handlers touch no table), and the test Redis.</summary>
public sealed class MigratedDatabase : IAsyncLifetime
{
    public string Name { get; } = LocalServices.NewDatabaseName("gateway");
    public string ConnectionString => LocalServices.PostgresConnectionString(Name);
    public NpgsqlDataSource Postgres { get; private set; } = null!;
    public ConnectionMultiplexer Redis { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await PostgresMigrator.MigrateAsync(ConnectionString);
        Postgres = NpgsqlDataSource.Create(ConnectionString);
        Redis = await ConnectionMultiplexer.ConnectAsync(LocalServices.RedisConfiguration);
    }

    public async Task DisposeAsync()
    {
        Redis.Dispose();
        await Postgres.DisposeAsync();
    }
}
