using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Gateway.Contract;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.ContainerTests;

/// <summary>The main suite's whole stack (<see cref="GatewayStackFixture"/>: the gateway, the weights, CGM and insights
/// topologies and their sinks) on the containers.</summary>
public sealed class GatewayStackOnContainersFixture(ContainerStack stack) : GatewayStackFixture(stack, ownsStack: false);

/// <summary>What only the containers can show: the gateway's writes going through real Kafka and the topologies into
/// TimescaleDB hypertables, and the gateway reading them back.</summary>
[Collection(ContainerCollection.Name)]
public sealed partial class GatewayOnContainersTests(GatewayStackOnContainersFixture f) : IClassFixture<GatewayStackOnContainersFixture>
{
    [Fact]
    public async Task Every_time_series_table_of_the_migrations_is_a_timescale_hypertable()
    {
        var expected = PostgresMigrator.Embedded
            .SelectMany(m => TimeSeriesTable().Matches(m.Sql).Select(match => $"{match.Groups[1].Value}.{match.Groups[2].Value}"))
            .ToHashSet();
        Assert.Contains("weights.measurements", expected);
        Assert.Contains("cgm.readings", expected);

        var hypertables = new HashSet<string>();
        await using (var cmd = f.Postgres.CreateCommand("SELECT hypertable_schema || '.' || hypertable_name FROM timescaledb_information.hypertables"))
        await using (var reader = await cmd.ExecuteReaderAsync())
            while (await reader.ReadAsync()) hypertables.Add(reader.GetString(0));
        Assert.Empty(expected.Except(hypertables));
        // The fallback (native range partitions) was taken nowhere.
        await using var partitioned = f.Postgres.CreateCommand("SELECT count(*) FROM pg_partitioned_table");
        Assert.Equal(0L, (long)(await partitioned.ExecuteScalarAsync())!);
    }

    [Fact]
    public async Task Weights_and_a_cgm_upload_posted_to_the_gateway_are_stored_and_read_back_through_it()
    {
        using var client = f.Client();
        // A weight and a CGM upload in through the gateway, out of Kafka by the topologies, into TimescaleDB.
        await f.AssertSinksFlowAsync(client);

        // Three measurements initialise a user's filter; the third is then the latest weight, from Redis or TimescaleDB.
        var user = GatewayStackFixture.NewUser("tc-weight");
        var now = DateTime.UtcNow;
        var ids = new[] { "m1", "m2", "m3" }.Select(id => $"{user}-{id}").ToArray();
        for (var i = 0; i < ids.Length; i++)
        {
            var response = await client.PostAsJsonAsync("/api/weight/process", GatewayStackFixture.Measurement(user, 80 + i * 0.2, now.AddHours(i - 3), ids[i]));
            Assert.True(response.IsSuccessStatusCode || response.StatusCode == HttpStatusCode.GatewayTimeout,
                $"measurement {ids[i]} refused: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
        JsonElement latest = default;
        WaitFor(() =>
        {
            var response = client.GetAsync($"/api/weight/{user}/latest").GetAwaiter().GetResult();
            if (response.StatusCode != HttpStatusCode.OK) return false;
            latest = JsonDocument.Parse(response.Content.ReadAsStringAsync().GetAwaiter().GetResult()).RootElement.Clone();
            return latest.GetProperty("measurement_id").GetString() == ids[2];
        }, TimeSpan.FromSeconds(90), () => $"latest weight of {user}: {latest}\n{f.Logs.Tail()}");
        Assert.InRange(latest.GetProperty("filtered_weight").GetDouble(), 79.5, 80.9);

        // Two hours of readings for a user of its own: every one stored once and served back, oldest first.
        var cgmUser = GatewayStackFixture.NewUser("tc-cgm");
        var upload = await client.PostAsync($"/api/v1/cgm/{cgmUser}/upload",
            new ByteArrayContent(GatewayStackFixture.RecentUnifiedCsv(24)) { Headers = { ContentType = new("text/csv") } });
        Assert.Equal(HttpStatusCode.Accepted, upload.StatusCode);
        JsonElement page = default;
        WaitFor(() =>
        {
            var response = client.GetAsync($"/api/v1/cgm/{cgmUser}/readings").GetAwaiter().GetResult();
            if (response.StatusCode != HttpStatusCode.OK) return false;
            page = JsonDocument.Parse(response.Content.ReadAsStringAsync().GetAwaiter().GetResult()).RootElement.Clone();
            return page.GetProperty("readings").GetArrayLength() >= 24;
        }, TimeSpan.FromSeconds(90), () => $"readings of {cgmUser}: {page}\n{f.Logs.Tail()}");
        var times = page.GetProperty("readings").EnumerateArray().Select(r => r.GetProperty("time").GetDateTime()).ToList();
        Assert.Equal(24, times.Count);
        Assert.Equal(times.Order(), times);
    }

    [GeneratedRegex(@"create_time_series\('(\w+)',\s*'(\w+)'")]
    private static partial Regex TimeSeriesTable();
}
