using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using StreamHealth.Tests.Gateway;
using StreamHealth.Tests.Gateway.Contract;
using static StreamHealth.Tests.Gateway.PeopleOnTheStack;

namespace StreamHealth.Tests.Insights;

/// <summary>Recommendations over the whole pipeline: metrics posted through the gateway reach the insights topology, its
/// sink stores the aggregates and drops the person's cached answers, and the next read recommends on the new data.</summary>
public sealed class RecommendationsPipelineTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    [Fact]
    public async Task A_write_through_the_pipeline_drops_the_cached_recommendations_and_summary()
    {
        var (user, token) = await SignUpAsync(f, "recs-pipeline");
        var client = Bearer(f, token);
        // Every "today" reading on today's UTC date: at 00:03 "five minutes ago" was yesterday, and the day's total never reached 22,000.
        var now = DateTimeOffset.UtcNow;
        var today = now.TimeOfDay >= TimeSpan.FromMinutes(6) ? now.AddMinutes(-5) : new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        // Three days of 2,000 steps: the low step count rule, priority 1.
        for (var d = 0; d < 3; d++)
            Assert.Equal(HttpStatusCode.Accepted, (await client.PostAsJsonAsync("/api/v1/health-metrics/", new
            {
                user_id = user, type = "steps", value = 2000, unit = "steps", recorded_at = today.AddDays(-d).ToString("O"),
                metric_id = $"steps-{user}-{d}",
            })).StatusCode);
        var first = await EventuallyAsync(client, $"/api/v1/recommendations/{user}",
            r => r.GetProperty("recommendations").EnumerateArray().Any(x => x.GetProperty("rule").GetString() == "low_step_count"));
        var summary = await GetAsync(client, $"/api/v1/health-metrics/user/{user}/summary");
        Assert.Equal(first.GetProperty("generated_at").GetString(), (await GetAsync(client, $"/api/v1/recommendations/{user}")).GetProperty("generated_at").GetString());

        // 20,000 more steps today: the mean over the days rises above the target, and the sink's DEL makes the next read
        // recompute instead of serving the cached answer for the rest of the hour.
        Assert.Equal(HttpStatusCode.Accepted, (await client.PostAsJsonAsync("/api/v1/health-metrics/", new
        {
            user_id = user, type = "steps", value = 20000, unit = "steps", recorded_at = today.ToString("O"), metric_id = $"steps-{user}-more",
        })).StatusCode);
        var after = await EventuallyAsync(client, $"/api/v1/recommendations/{user}",
            r => r.GetProperty("recommendations").EnumerateArray().All(x => x.GetProperty("rule").GetString() != "low_step_count"));
        Assert.NotEqual(first.GetProperty("generated_at").GetString(), after.GetProperty("generated_at").GetString());
        var newSummary = await EventuallyAsync(client, $"/api/v1/health-metrics/user/{user}/summary",
            s => s.GetRawText() != summary.GetRawText());
        Assert.Contains("22000", newSummary.GetRawText());
    }

    private static async Task<JsonElement> GetAsync(HttpClient client, string path)
    {
        var response = await client.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<JsonElement> EventuallyAsync(HttpClient client, string path, Func<JsonElement, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var body = await GetAsync(client, path);
            if (done(body)) return body;
            Assert.True(DateTime.UtcNow < deadline, $"{path} did not change in 60 s: {body.GetRawText()}");
            await Task.Delay(250);
        }
    }
}
