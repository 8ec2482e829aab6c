using System.Net.ServerSentEvents;
using System.Text.Json;

namespace StreamHealth.Tests.Dashboard;

/// <summary>GET /api/v1/events/stream over a real HTTP connection to Kestrel: without credentials, as an EventSource
/// connects, it keeps sending the pipeline's health.</summary>
[Collection(DashboardCollection.Name)]
public sealed class DashboardEventStreamTests(DashboardStack d)
{
    [Fact]
    public async Task The_event_stream_pushes_every_hosts_tasks_and_sinks_again_and_again_without_credentials()
    {
        using var client = d.Stack.Client(apiKey: null);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var response = await client.GetAsync("/api/v1/events/stream", HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        await using var body = await response.Content.ReadAsStreamAsync(timeout.Token);
        var views = new List<JsonElement>();
        await foreach (var item in SseParser.Create(body).EnumerateAsync(timeout.Token))
        {
            Assert.True(item.EventType == "streams", $"{item.EventType}: {item.Data}");
            views.Add(JsonDocument.Parse(item.Data).RootElement.Clone());
            if (views.Count == 2) break;
        }
        Assert.Equal(2, views.Count);
        foreach (var view in views)
        {
            Assert.Contains(view.GetProperty("status").GetString(), new[] { "healthy", "degraded" });
            var hosts = view.GetProperty("hosts").EnumerateArray().ToList();
            Assert.Contains(hosts, h => h.GetProperty("tasks").GetArrayLength() > 0);
            Assert.All(hosts, h => Assert.True(!h.TryGetProperty("queryUrl", out var url) || url.ValueKind == JsonValueKind.Null, "a host's query URL left the gateway"));
        }
        // Live: the second event carries a later reading than the first.
        Assert.True(views[1].GetProperty("readAtUnixMs").GetInt64() > views[0].GetProperty("readAtUnixMs").GetInt64());
    }
}
