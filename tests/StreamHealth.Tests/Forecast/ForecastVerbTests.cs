using Confluent.Kafka;
using Npgsql;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using CgmForecastRequest = StreamHealth.Schemas.Avro.Cgm.CgmForecastRequest;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Forecast.ForecastFixtures;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Forecast;

/// <summary>`streamhealth forecast` as deployed: a process per group member, the catalogue's topics, real sinks, the
/// stand-in schema registry (SchemaRegistry:Url) the processes and the test's producer share.</summary>
public sealed class ForecastVerbTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    private Dictionary<string, string> Env(string database) => new()
    {
        ["STREAMHEALTH_Kafka__BootstrapServers"] = kafka.BootstrapServers,
        ["STREAMHEALTH_Postgres__Port"] = LocalServices.PostgresPort.ToString(),
        ["STREAMHEALTH_Postgres__Database"] = database,
        ["STREAMHEALTH_Redis__Port"] = LocalServices.RedisPort.ToString(),
        ["STREAMHEALTH_Streams__SessionTimeoutMs"] = "3000",
        ["STREAMHEALTH_Streams__MetricsIntervalMs"] = "500",
        ["STREAMHEALTH_Forecast__ModelPath"] = TinyModel,
        ["STREAMHEALTH_Forecast__MaxBatchSize"] = "16",
    };

    [Fact]
    public void A_forecaster_whose_model_is_missing_stops_before_joining_with_one_line_naming_the_file()
    {
        var env = Env("unused");
        env["STREAMHEALTH_Forecast__ModelPath"] = "/nonexistent/model.onnx";
        var (code, stdout, stderr) = Repo.Run("dotnet", [ChildHost.HostDll, "forecast"], env);
        Assert.Equal(2, code);
        Assert.Equal("streamhealth: Forecast:ModelPath = /nonexistent/model.onnx: model file /nonexistent/model.onnx does not exist", stderr.Trim());
        Assert.DoesNotContain("   at ", stdout + stderr);
    }

    [Fact]
    public async Task Two_forecaster_processes_share_the_requests_and_every_forecast_is_stored_once()
    {
        var database = LocalServices.NewDatabaseName("forecast_verb");
        var connectionString = LocalServices.PostgresConnectionString(database);
        await PostgresMigrator.MigrateAsync(connectionString);
        using var registry = TestRegistry.Start(connectionString);
        var env = Env(database);
        env["STREAMHEALTH_SchemaRegistry__Url"] = registry.Url;
        env["STREAMHEALTH_SchemaRegistry__AutoRegister"] = "true";
        using var first = ChildHost.Start(["forecast", "--host-id", "forecaster-a"], env);
        using var second = ChildHost.Start(["forecast", "--host-id", "forecaster-b"], env);
        WaitFor(() => first.Output.Contains("assigned") && second.Output.Contains("assigned"), TimeSpan.FromSeconds(60),
            () => $"both members should own partitions\nA:\n{first.Output}\nB:\n{second.Output}");

        var run = Guid.NewGuid().ToString("N")[..8];
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers, LingerMs = 2 }).Build())
        {
            for (var i = 0; i < 400; i++)
            {
                var user = $"{run}-{i}";
                var request = new CgmForecastRequest
                {
                    event_time_unix_ms = AvroTime.FromUnixMs(1_795_000_000_000 + i), request_id = $"{user}:1", user_id = user, step_minutes = 5,
                    glucose_mg_dl = Wave(90 + i % 150, phase: i),
                };
                p.Produce(Topics.CgmForecastRequests, new Message<byte[], byte[]>
                {
                    Key = registry.Key(Topics.CgmForecastRequests, user), Value = registry.Value(Topics.CgmForecastRequests, request),
                });
            }
            p.Flush(TimeSpan.FromSeconds(10));
        }
        long Stored()
        {
            using var c = new NpgsqlConnection(connectionString);
            c.Open();
            using var cmd = new NpgsqlCommand("SELECT count(DISTINCT request_id), count(*) FROM cgm.forecasts WHERE request_id LIKE $1", c);
            cmd.Parameters.AddWithValue(run + "-%");
            using var r = cmd.ExecuteReader();
            r.Read();
            Assert.Equal(r.GetInt64(0), r.GetInt64(1));
            return r.GetInt64(0);
        }
        WaitFor(() => Stored() == 400, TimeSpan.FromSeconds(60), () => $"{Stored()}/400 stored\nA:\n{first.Output}\nB:\n{second.Output}");
        // Each process serves its own /metrics: its forecasts, its sinks' writes and its Kafka consumers' lag. Between them they
        // forecast and stored every request (a request forecast again after a rebalance counts again, never less).
        using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) })
        {
            List<StreamHealth.Gateway.Observability.PrometheusSample> Scrape(ChildHost child)
            {
                var url = System.Text.RegularExpressions.Regex.Match(child.Output, @"metrics at (http://\S+)/metrics").Groups[1].Value;
                Assert.False(string.IsNullOrEmpty(url), $"no metrics URL logged:\n{child.Output}");
                var samples = StreamHealth.Gateway.Observability.PrometheusText.Parse(http.GetStringAsync(url + "/metrics").Result, out var malformed);
                Assert.Equal(0, malformed);
                return samples;
            }
            double Sum(string name, string? sink = null) => new[] { first, second }.SelectMany(Scrape)
                .Where(m => m.Name == name && (sink is null || m.Label("sink") == sink)).Sum(m => m.Value);
            WaitFor(() => Sum(StreamHealth.Forecast.Service.ForecastTelemetry.Forecasts) >= 400
                          && Sum(StreamTelemetry.SinkWritten, StreamHealth.Forecast.Service.ForecastPostgresWriter.Name) >= 400,
                TimeSpan.FromSeconds(30), () => $"forecasts {Sum(StreamHealth.Forecast.Service.ForecastTelemetry.Forecasts)}, " +
                                                $"written {Sum(StreamTelemetry.SinkWritten, StreamHealth.Forecast.Service.ForecastPostgresWriter.Name)}");
            Assert.InRange(Sum(StreamHealth.Forecast.Service.ForecastTelemetry.Requests), 400, 800);
            // librdkafka's statistics come every 5 s, a partition's lag once the consumer has a position there.
            WaitFor(() => Scrape(first).Any(m => m.Name == KafkaClientMetrics.ConsumerLag && m.Label("group") == StreamHealth.Forecast.Service.ForecastNames.DefaultGroupId),
                TimeSpan.FromSeconds(30), () => "no consumer lag of the forecaster's group: " +
                    string.Join("; ", Scrape(first).Where(m => m.Name.StartsWith("streamhealth_kafka", StringComparison.Ordinal))));
        }
        // Each process logs its figures once per report interval after it forecast something: the line can follow the
        // last stored forecast by up to an interval.
        WaitFor(() => first.Output.Contains("forecasts/s") && second.Output.Contains("forecasts/s"), TimeSpan.FromSeconds(60),
            () => $"no throughput report\nA:\n{first.Output}\nB:\n{second.Output}");
        Assert.Equal(0, first.Terminate());
        Assert.Equal(0, second.Terminate());
    }
}
