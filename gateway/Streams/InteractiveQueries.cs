using System.Net;
using System.Net.Http.Json;
using StreamHealth.Gateway.Apis;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Gateway.Streams;

/// <summary>Reads a key's state from the processing host that owns it (the gateway side of <see cref="StoreQueryApi"/>).
/// The owner is found from the hosts' metrics as last scraped (<see cref="OperationsMonitor.Streams"/>, every second; each host's
/// URL from the discovery registry, its stores and task partitions from its <c>/metrics</c>): the
/// key's source bytes hashed over the store's source partitions (<see cref="KeyPartitioner"/>) name a partition, and the host
/// whose tasks hold it is asked. Readings are a few seconds old after a rebalance, so a host that answers 421 (not mine) or
/// cannot be reached is followed by every other host serving the store (each checks ownership itself); while no host can
/// answer (restore, rebalance, a host that died before the group moved its partitions) it retries until
/// <see cref="Budget"/>, then answers 503 with Retry-After.</summary>
public sealed class InteractiveQueries(OperationsMonitor monitor, ILogger<InteractiveQueries> log) : IDisposable
{
    /// <summary>Longest a query waits for a store to become queryable before answering 503.</summary>
    public static readonly TimeSpan Budget = TimeSpan.FromSeconds(8);
    private static readonly TimeSpan PerHostTimeout = TimeSpan.FromSeconds(3);

    private readonly HttpClient _http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(2), ConnectTimeout = TimeSpan.FromSeconds(1) })
    {
        Timeout = PerHostTimeout,
    };

    public enum Outcome { Found, NotFound, Unavailable }

    public readonly record struct Answer<T>(Outcome Outcome, T? Value, string Detail, string? Host);

    public async Task<Answer<T>> QueryAsync<T>(string applicationId, string store, string key, byte[] sourceKey, CancellationToken ct) where T : class
    {
        var deadline = DateTime.UtcNow + Budget;
        var reason = "no processing host has registered yet";
        while (true)
        {
            var hosts = Serving(applicationId, store, out var partitions);
            if (hosts.Count == 0)
            {
                reason = $"no live processing host serves store {store} of {applicationId}";
            }
            else
            {
                var partition = KeyPartitioner.PartitionOf(sourceKey, partitions);
                // The owner as last read first; then the others, in case the reading predates a rebalance.
                foreach (var host in hosts.OrderByDescending(h => h.Tasks.Any(t => t.ApplicationId == applicationId && t.Partition == partition)))
                {
                    var wait = deadline - DateTime.UtcNow;
                    if (wait <= TimeSpan.Zero) break;
                    var url = $"{host.QueryUrl}/stores/{Uri.EscapeDataString(applicationId)}/{Uri.EscapeDataString(store)}?key={Uri.EscapeDataString(key)}" +
                              $"&wait_ms={(int)Math.Min(wait.TotalMilliseconds, PerHostTimeout.TotalMilliseconds - 500)}";
                    try
                    {
                        using var response = await _http.GetAsync(url, ct);
                        switch (response.StatusCode)
                        {
                            case HttpStatusCode.OK:
                                var value = await response.Content.ReadFromJsonAsync<T>(ct)
                                            ?? throw new InvalidDataException($"host {host.HostId} answered an empty body");
                                return new(Outcome.Found, value, "", host.HostId);
                            case HttpStatusCode.NotFound:
                                return new(Outcome.NotFound, null, $"no state for '{key}' (partition {partition}, host {host.HostId})", host.HostId);
                            default:
                                reason = $"host {host.HostId} answered {(int)response.StatusCode} for partition {partition}: {await Detail(response, ct)}";
                                break;
                        }
                    }
                    catch (Exception e) when ((e is HttpRequestException or TaskCanceledException or InvalidDataException or System.Text.Json.JsonException)
                                              && !ct.IsCancellationRequested)
                    {
                        reason = $"host {host.HostId} at {host.QueryUrl} did not answer ({e.Message})";
                    }
                }
            }
            if (DateTime.UtcNow + TimeSpan.FromMilliseconds(250) >= deadline)
            {
                log.LogWarning("interactive query {App}/{Store} for {Key} unavailable: {Reason}", applicationId, store, key, reason);
                return new(Outcome.Unavailable, null, reason, null);
            }
            await Task.Delay(250, ct);
        }
    }

    /// <summary>Live hosts (the reading holds no silent one) that serve the store, and its source partition count.</summary>
    private List<StreamMetricsReport> Serving(string applicationId, string store, out int partitions)
    {
        partitions = 0;
        var result = new List<StreamMetricsReport>();
        foreach (var host in monitor.Streams.Hosts)
        {
            if (host.QueryUrl is null) continue;
            var served = host.Queryable?.FirstOrDefault(q => q.ApplicationId == applicationId && q.Store == store);
            if (served is null) continue;
            partitions = served.SourcePartitions;
            result.Add(host);
        }
        return result;
    }

    private static async Task<string> Detail(HttpResponseMessage response, CancellationToken ct)
    {
        var body = await response.Content.ReadAsStringAsync(ct);
        return body.Length > 300 ? body[..300] : body;
    }

    public void Dispose() => _http.Dispose();
}
