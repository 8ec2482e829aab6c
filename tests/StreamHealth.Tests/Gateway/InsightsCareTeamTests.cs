using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Gateway;

/// <summary>Scopes on the insights reads and writes: a care team's key reads the nutrition logs and goals of the people
/// assigned to it and no one else's, and writes nothing; a key with only the read scopes cannot write either.</summary>
public sealed class InsightsCareTeamTests
{
    private const string CareTeamKey = "care-team-key-0123456789";
    private const string ReaderKey = "insights-reader-key-0123456789";

    [Fact]
    public async Task A_care_team_reads_its_peoples_meals_and_goals_only_and_read_scopes_do_not_write()
    {
        var database = LocalServices.NewDatabaseName("gateway_careteam");
        await PostgresMigrator.MigrateAsync(LocalServices.PostgresConnectionString(database));
        var settings = LocalServices.Overrides(database);
        settings["Gateway:ApiKeys:0:Key"] = CareTeamKey;
        settings["Gateway:ApiKeys:0:Name"] = "clinic";
        settings["Gateway:ApiKeys:0:Scopes"] = "care-team:read";
        settings["Gateway:ApiKeys:0:CareTeamUsers"] = "patient-1";
        settings["Gateway:ApiKeys:1:Key"] = ReaderKey;
        settings["Gateway:ApiKeys:1:Name"] = "reader";
        settings["Gateway:ApiKeys:1:Scopes"] = "nutrition:read goals:read";
        await using var app = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));

        using var clinic = Client(app, CareTeamKey);
        foreach (var list in new[] { "/api/v1/nutrition-logs/user/", "/api/v1/health-goals/user/" })
        {
            Assert.Equal(HttpStatusCode.OK, (await clinic.GetAsync(list + "patient-1")).StatusCode);
            Assert.Equal(HttpStatusCode.Forbidden, (await clinic.GetAsync(list + "patient-2")).StatusCode);
        }
        using var reader = Client(app, ReaderKey);
        Assert.Equal(HttpStatusCode.OK, (await reader.GetAsync("/api/v1/health-goals/user/patient-2")).StatusCode);
        foreach (var client in new[] { clinic, reader })
        {
            Assert.Equal(HttpStatusCode.Forbidden, (await client.PostAsJsonAsync("/api/v1/health-goals/", HealthGoalsApiTests.StepsGoal("patient-1"))).StatusCode);
            Assert.Equal(HttpStatusCode.Forbidden, (await client.PostAsJsonAsync("/api/v1/nutrition-logs/",
                NutritionLogsApiTests.Meal("patient-1", DateTimeOffset.UtcNow.AddMinutes(-5)))).StatusCode);
        }
    }

    private static HttpClient Client(WebApplicationFactory<Program> app, string key)
    {
        var client = app.CreateClient();
        client.DefaultRequestHeaders.Add("X-Api-Key", key);
        return client;
    }
}
