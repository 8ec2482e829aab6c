using Confluent.Kafka;
using StreamHealth.Forecast.Inference;
using StreamHealth.Forecast.Service;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Forecast.ForecastFixtures;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using CgmForecastRequest = StreamHealth.Schemas.Avro.Cgm.CgmForecastRequest;

namespace StreamHealth.Tests.Forecast;

/// <summary>A schema registry the forecast consumer cannot reach is an outage, not a bad request: valid Avro requests whose
/// writer schema it cannot fetch are never dead-lettered nor committed; once the registry answers again (the stand-in
/// restarted on the same port and database) every one of them is forecast.</summary>
public sealed class ForecastRegistryOutageTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public async Task Requests_read_while_the_registry_is_unreachable_are_held_and_forecast_once_it_answers()
    {
        var requests = kafka.NewTopic("fcq-outage", 2);
        var names = new ForecastNames(requests, kafka.NewTopic("fcf-outage", 2), requests + "-forecaster");
        kafka.Cluster.CreateTopic(names.DeadLetterTopic, 1);
        var database = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("forecast_outage"));
        await PostgresMigrator.MigrateAsync(database);
        var registry = await SchemaRegistryServer.StartAsync(database, "http://127.0.0.1:0");
        var url = registry.Url;
        var logs = new TestLogs();

        // The requests as a producer wrote them while the registry was up (its own client registers the schemas).
        var t0 = DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeMilliseconds();
        var users = Enumerable.Range(0, 6).Select(i => $"outage-{i}-{Guid.NewGuid():N}"[..20]).ToArray();
        var records = new List<(byte[] Key, byte[] Value)>();
        using (var producerSide = SchemaRegistryConnection.Connect(url, autoRegister: true))
        {
            var keys = producerSide.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
            var values = producerSide.SerDes<CgmForecastRequest>();
            foreach (var (user, i) in users.Select((u, i) => (u, i)))
                records.Add((keys.Serialize(new StreamHealth.Schemas.Avro.Common.UserKey { user_id = user }, new SerializationContext(MessageComponentType.Key, requests)),
                    values.Serialize(new CgmForecastRequest
                    {
                        event_time_unix_ms = AvroTime.FromUnixMs(t0), request_id = $"{user}:1", user_id = user, step_minutes = 5, interactive = false,
                        glucose_mg_dl = Flat(100 + 10 * i),
                    }, new SerializationContext(MessageComponentType.Value, requests))));
        }

        // The consumer's own client: it resolves the forecasts' schema ids while the registry is up, then joins the group.
        using var consumerSide = SchemaRegistryConnection.Connect(url, autoRegister: true);
        var options = Options(seed: 7, maxBatchSize: 8);
        using var consumer = new ForecastConsumer(options, OnnxGlucoseForecaster.Open(options),
            new ForecastConsumerSettings(kafka.BootstrapServers, SessionTimeoutMs: 6_000, FetchWaitMaxMs: 2), consumerSide, names, logs).Start();
        WaitFor(() => logs.Text.Contains("assigned"), TimeSpan.FromSeconds(60), () => "the forecaster joined no group\n" + logs.Tail());

        await registry.DisposeAsync();   // the registry goes away: nothing listens at its URL
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            foreach (var (key, value) in records) p.Produce(requests, new Message<byte[], byte[]> { Key = key, Value = value });
            Assert.Equal(0, p.Flush(TimeSpan.FromSeconds(10)));
        }
        WaitFor(() => consumer.Consumed >= 1, TimeSpan.FromSeconds(60), () => "no request was read\n" + logs.Tail());
        Thread.Sleep(3_000);   // several retries
        Assert.Null(consumer.Failure);
        Assert.Equal(0, consumer.DeadLettered);
        Assert.Equal(0, consumer.Forecasts);
        Assert.Contains("schema registry unavailable", logs.Text);
        Assert.Equal(0, Progress(kafka.BootstrapServers, "nobody", names.DeadLetterTopic, 1).End);
        Assert.Equal(0, Progress(kafka.BootstrapServers, names.GroupId, requests, 2).Committed);

        // The registry is back (same port, same database): the held requests decode and are forecast, each once.
        await using var back = await SchemaRegistryServer.StartAsync(database, url);
        WaitFor(() => consumer.Forecasts == users.Length, TimeSpan.FromSeconds(60),
            () => $"{consumer.Forecasts}/{users.Length} forecasts\n{logs.Tail()}");
        WaitFor(() => Progress(kafka.BootstrapServers, names.GroupId, requests, 2) is var p && p.Committed == p.End, TimeSpan.FromSeconds(30),
            () => $"{Progress(kafka.BootstrapServers, names.GroupId, requests, 2)}\n{logs.Tail()}");
        Assert.Equal(users.Length, Progress(kafka.BootstrapServers, "nobody", names.ForecastsTopic, 2).End);
        Assert.Equal(0, consumer.DeadLettered);
        Assert.Equal(0, Progress(kafka.BootstrapServers, "nobody", names.DeadLetterTopic, 1).End);
        Assert.Null(consumer.Failure);
    }
}
