using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>A stand-alone HTTP server for <see cref="SchemaRegistryApi"/> over one PostgreSQL database: the schema
/// registry of the embedded stack, where Confluent's own (Java) server cannot run. Several servers on one database
/// share the registry; a new server on the database of a disposed one serves the same ids.</summary>
public sealed class SchemaRegistryServer : IAsyncDisposable
{
    private readonly Http.InternalHttpServer _server;
    private readonly NpgsqlDataSource _db;

    /// <summary>The URL clients reach this server at (<c>schema.registry.url</c>), e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public string Url => _server.Url;

    private SchemaRegistryServer(Http.InternalHttpServer server, NpgsqlDataSource db)
    {
        _server = server;
        _db = db;
    }

    /// <param name="postgresConnectionString">The database whose <c>registry</c> schema holds the state; its migrations
    /// (<see cref="Storage.PostgresMigrator"/>) must have been applied.</param>
    /// <param name="listenUrl">Where to listen, e.g. <c>http://127.0.0.1:8081</c>; port 0 takes a free one.</param>
    public static async Task<SchemaRegistryServer> StartAsync(string postgresConnectionString, string listenUrl, ILoggerFactory? logs = null, CancellationToken ct = default)
    {
        logs ??= NullLoggerFactory.Instance;
        var log = logs.CreateLogger("StreamHealth.SchemaRegistry");
        var db = NpgsqlDataSource.Create(postgresConnectionString);
        try
        {
            var store = new SchemaRegistryStore(db);
            if (!await store.TablesExistAsync(ct))
                throw new InvalidOperationException(
                    "the database has no registry tables (schemas/sql/V0008__schema_registry.sql): apply the migrations (PostgresMigrator.MigrateAsync) first");
            var server = await Http.InternalHttpServer.StartAsync(listenUrl, app =>
            {
                app.MapSchemaRegistryApi(store, log);
                app.MapFallback(SchemaRegistryApi.NotFound);
            }, ct);
            log.LogInformation("schema registry served on {Url}", server.Url);
            return new SchemaRegistryServer(server, db);
        }
        catch
        {
            await db.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await _db.DisposeAsync();
    }
}
