using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace StreamHealth.Runtime.Http;

/// <summary>A small Kestrel server inside a StreamHealth process that is not the gateway (a processing host's store
/// queries, the embedded schema registry): no framework logging, one listen URL where port 0 takes a free port, and the
/// URL it can be reached at (a wildcard bind reported as loopback).</summary>
public sealed class InternalHttpServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    /// <summary>Where the server listens, e.g. <c>http://127.0.0.1:41234</c> (no trailing slash).</summary>
    public string Url { get; }

    private InternalHttpServer(WebApplication app, string url)
    {
        _app = app;
        Url = url;
    }

    /// <param name="services">Services the endpoints need (e.g. OpenTelemetry's exporter), added before the app is built.</param>
    public static async Task<InternalHttpServer> StartAsync(string listenUrl, Action<WebApplication> map, CancellationToken ct = default,
        Action<IServiceCollection>? services = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(listenUrl);
        services?.Invoke(builder.Services);
        var app = builder.Build();
        try
        {
            map(app);
            await app.StartAsync(ct);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? listenUrl;
        return new InternalHttpServer(app, bound.Replace("://0.0.0.0:", "://127.0.0.1:").Replace("://[::]:", "://127.0.0.1:").TrimEnd('/'));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
