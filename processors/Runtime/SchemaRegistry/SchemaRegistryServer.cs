using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>A stand-alone HTTP server for <see cref="SchemaRegistryApi"/> over one PostgreSQL database: the schema
/// registry of the embedded stack, where Confluent's own (Java) server cannot run. Several servers on one database
/// share the registry; a new server on the database of a disposed one serves the same ids.</summary>
public sealed class SchemaRegistryServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly NpgsqlDataSource _db;

    /// <summary>The URL clients reach this server at (<c>schema.registry.url</c>), e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public string Url { get; }

    private SchemaRegistryServer(WebApplication app, NpgsqlDataSource db, string url)
    {
        _app = app;
        _db = db;
        Url = url;
    }

    /// <param name="postgresConnectionString">The database whose <c>registry</c> schema holds the state; its migrations
    /// (<see cref="Storage.PostgresMigrator"/>) must have been applied.</param>
    /// <param name="listenUrl">Where to listen, e.g. <c>http://127.0.0.1:8081</c>; port 0 takes a free one.</param>
    public static async Task<SchemaRegistryServer> StartAsync(string postgresConnectionString, string listenUrl, ILoggerFactory? logs = null, CancellationToken ct = default)
    {
        logs ??= NullLoggerFactory.Instance;
        var log = logs.CreateLogger("StreamHealth.SchemaRegistry");
        var db = NpgsqlDataSource.Create(postgresConnectionString);
        WebApplication? app = null;
        try
        {
            var store = new SchemaRegistryStore(db);
            if (!await store.TablesExistAsync(ct))
                throw new InvalidOperationException(
                    "the database has no registry tables (schemas/sql/V0008__schema_registry.sql): apply the migrations (PostgresMigrator.MigrateAsync) first");

            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
            builder.Logging.ClearProviders();
            builder.WebHost.UseUrls(listenUrl);
            app = builder.Build();
            app.MapSchemaRegistryApi(store, log);
            app.MapFallback(SchemaRegistryApi.NotFound);
            await app.StartAsync(ct);
            var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? listenUrl;
            var url = bound.Replace("://0.0.0.0:", "://127.0.0.1:").Replace("://[::]:", "://127.0.0.1:").TrimEnd('/');
            log.LogInformation("schema registry served on {Url}", url);
            return new SchemaRegistryServer(app, db, url);
        }
        catch
        {
            if (app is not null) await app.DisposeAsync();
            await db.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        await _db.DisposeAsync();
    }
}
