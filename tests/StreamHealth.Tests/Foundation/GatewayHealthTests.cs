using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Foundation;

public sealed class GatewayHealthTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public async Task Health_reports_kafka_postgres_and_redis_reachable()
    {
        var database = LocalServices.NewDatabaseName("gateway");
        await PostgresMigrator.MigrateAsync(LocalServices.PostgresConnectionString(database));
        await using var app = Gateway(LocalServices.Overrides(database, kafka.BootstrapServers));
        using var client = app.CreateClient();

        var response = await client.GetAsync("/health");
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.True(response.StatusCode == HttpStatusCode.OK, body.ToString());
        Assert.Equal("healthy", body.GetProperty("status").GetString());
        foreach (var part in new[] { "kafka", "postgres", "redis" })
        {
            Assert.True(body.GetProperty(part).GetProperty("ok").GetBoolean(), part);
            Assert.True(body.GetProperty(part).GetProperty("latencyMs").GetDouble() > 0.001, part + " latency is measured");
        }

        var topics = JsonDocument.Parse(await client.GetStringAsync("/api/v1/topics")).RootElement;
        Assert.Contains(topics.EnumerateArray(), t => t.GetProperty("name").GetString() == "weights.raw" && t.GetProperty("partitions").GetInt32() == 4);
        // An Avro topic is described by its Avro value schema, a Protobuf one by its message.
        var schemas = topics.EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("valueSchema").GetString());
        Assert.Equal("StreamHealth.Schemas.Avro.Weights.WeightMeasurement", schemas["weights.raw"]);
        Assert.Equal("StreamHealth.Schemas.Avro.Weights.WeightResult", schemas["weights.filtered"]);
        Assert.Equal("StreamHealth.Schemas.Avro.Cgm.CgmReading", schemas["cgm.readings"]);
        Assert.Equal("StreamHealth.Schemas.Avro.Cgm.CgmLatest", schemas["cgm.latest"]);
        Assert.Equal("StreamHealth.Schemas.Avro.Cgm.CgmForecastRequest", schemas["cgm.forecast-requests"]);
        Assert.Equal("StreamHealth.Schemas.Avro.Cgm.CgmForecast", schemas["cgm.forecasts"]);
        Assert.Equal("StreamHealth.Schemas.Avro.CallLogs.CallCompleted", schemas["calllogs.raw"]);
        Assert.Equal("StreamHealth.Schemas.Avro.CallLogs.CallLog", schemas["calllogs.calls"]);
        Assert.Contains("StreamHealth", await client.GetStringAsync("/"));
    }

    [Fact]
    public async Task Health_is_503_and_names_the_part_that_is_down()
    {
        var overrides = LocalServices.Overrides(LocalServices.NewDatabaseName("gateway_down"), kafka.BootstrapServers);
        overrides["Redis:Port"] = "1";   // nothing listens there
        await using var app = Gateway(overrides);
        using var client = app.CreateClient();
        var response = await client.GetAsync("/health");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.False(body.GetProperty("redis").GetProperty("ok").GetBoolean());
        Assert.True(body.GetProperty("kafka").GetProperty("ok").GetBoolean());
    }

    private static WebApplicationFactory<Program> Gateway(Dictionary<string, string?> settings) =>
        new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
            b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
}
