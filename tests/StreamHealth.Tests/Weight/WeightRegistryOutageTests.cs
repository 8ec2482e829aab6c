using Confluent.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Pipeline;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Weight;

/// <summary>A schema registry the weights topology cannot reach is an outage, not a bad record: a valid Avro record whose
/// writer schema it cannot fetch is never dead-lettered; the stream client fails and the host restarts it.</summary>
public sealed class WeightRegistryOutageTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public void A_record_read_while_the_registry_is_unreachable_is_retried_not_dead_lettered()
    {
        var raw = kafka.NewTopic("wraw-outage", 1);
        var filtered = kafka.NewTopic("wfilt-outage", 1);
        kafka.Cluster.CreateTopic(raw + Topics.DeadLetterSuffix, 1);
        var registry = TestRegistry.Shared;
        var t0 = DateTimeOffset.UtcNow.AddDays(-1).ToUnixTimeMilliseconds();
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            p.Produce(raw, new Message<byte[], byte[]>
            {
                Key = registry.Key(raw, "outage-user"),
                Value = registry.Value(raw, new WeightMeasurement
                {
                    SchemaVersion = 1, EventTimeUnixMs = t0, MeasurementId = "outage-1", UserId = "outage-user", Value = 80,
                    Unit = WeightUnit.Kg, Source = WeightSource.ConnectedScale,
                }),
            });
            Assert.Equal(0, p.Flush(TimeSpan.FromSeconds(10)));
        }

        var logs = new TestLogs();
        var state = Directory.CreateTempSubdirectory("streamhealth-weights-outage-").FullName;
        using var unreachable = SchemaRegistryConnection.Connect("http://127.0.0.1:1", autoRegister: true);   // nothing listens there
        try
        {
            using (var host = new StreamHost(new StreamHostOptions
                   {
                       SchemaRegistry = unreachable, BootstrapServers = kafka.BootstrapServers, StateDirectory = state, CommitIntervalMs = 200,
                       CreateInternalTopic = (topic, partitions) => kafka.Cluster.CreateTopic(topic, partitions),
                   }, [WeightTopology.Create(null, raw + "-app", raw, filtered)], logs))
            {
                host.Start();
                WaitFor(() => host.ThreadRestarts >= 1, TimeSpan.FromSeconds(60), () => "the stream client did not fail\n" + logs.Tail());
                Assert.Equal(0, host.Metrics.DeadLettered);
            }
            Assert.Equal(0, Progress(kafka.BootstrapServers, raw + "-app", raw, 1).Committed);
            Assert.Equal(0, Progress(kafka.BootstrapServers, "nobody", raw + Topics.DeadLetterSuffix, 1).End);
        }
        finally
        {
            Directory.Delete(state, recursive: true);
        }
    }

    [Fact]
    public async Task During_an_outage_known_schema_ids_are_served_from_cache_and_a_new_one_waits_for_the_registry_to_return()
    {
        var raw = kafka.NewTopic("wraw-restart", 1);
        var filtered = kafka.NewTopic("wfilt-restart", 1);
        kafka.Cluster.CreateTopic(raw + Topics.DeadLetterSuffix, 1);
        var database = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("registry_restart"));
        await StreamHealth.Runtime.Storage.PostgresMigrator.MigrateAsync(database);
        SchemaRegistryServer? server = await SchemaRegistryServer.StartAsync(database, "http://127.0.0.1:0");
        var url = server.Url;
        using var producerSide = SchemaRegistryConnection.Connect(url, autoRegister: true);
        using var hostSide = SchemaRegistryConnection.Connect(url, autoRegister: true);
        var keys = producerSide.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var values = producerSide.SerDes<StreamHealth.Schemas.Avro.Weights.WeightMeasurement>();
        var t0 = DateTimeOffset.UtcNow.AddDays(-3).ToUnixTimeMilliseconds();
        WeightMeasurement Reading(int n) => new()
        {
            SchemaVersion = 1, EventTimeUnixMs = t0 + n * 3_600_000L, MeasurementId = $"restart-{n}", UserId = "restart-user", Value = 80 + n * 0.1,
            Unit = WeightUnit.Kg, Source = WeightSource.ConnectedScale,
        };
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build();
        void Produce(byte[] value)
        {
            producer.Produce(raw, new Message<byte[], byte[]> { Key = WeightWire.Key(keys, raw, "restart-user"), Value = value });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(10)));
        }

        // Version 2 of the value schema (an optional field appended), registered now but never seen by the host. A record
        // written with it is the version-1 body plus the new field (union branch 0, null: one zero byte) under v2's id.
        var v2 = Newtonsoft.Json.Linq.JObject.Parse(new StreamHealth.Schemas.Avro.Weights.WeightMeasurement().Schema.ToString());
        ((Newtonsoft.Json.Linq.JArray)v2["fields"]!).Add(Newtonsoft.Json.Linq.JObject.Parse("""{"name":"scale_serial","type":["null","string"],"default":null}"""));
        var v2Id = await producerSide.Client.RegisterSchemaAsync(raw + "-value", new Confluent.SchemaRegistry.Schema(v2.ToString(), Confluent.SchemaRegistry.SchemaType.Avro));
        var v1Bytes = WeightWire.Measurement(values, raw, Reading(3));
        var v2Bytes = new byte[v1Bytes.Length + 1];
        v1Bytes.CopyTo(v2Bytes, 0);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(v2Bytes.AsSpan(1), v2Id);
        Assert.NotEqual(ConfluentWire.SchemaId(v1Bytes), v2Id);

        var logs = new TestLogs();
        var state = Directory.CreateTempSubdirectory("streamhealth-weights-restart-").FullName;
        try
        {
            using var host = new StreamHost(new StreamHostOptions
            {
                SchemaRegistry = hostSide, BootstrapServers = kafka.BootstrapServers, StateDirectory = state, CommitIntervalMs = 200,
                CreateInternalTopic = (topic, partitions) => kafka.Cluster.CreateTopic(topic, partitions),
            }, [WeightTopology.Create(null, raw + "-app", raw, filtered)], logs);
            host.Start();
            long Outputs() => Progress(kafka.BootstrapServers, "nobody", filtered, 1).End;

            Produce(WeightWire.Measurement(values, raw, Reading(1)));
            WaitFor(() => Outputs() == 1, TimeSpan.FromSeconds(60), () => "the first reading was not processed\n" + logs.Tail());

            await server.DisposeAsync();   // the registry goes away
            server = null;
            Produce(WeightWire.Measurement(values, raw, Reading(2)));
            WaitFor(() => Outputs() == 2, TimeSpan.FromSeconds(30), () => "a reading of a cached schema id was not processed during the outage\n" + logs.Tail());
            Assert.Equal(0, host.ThreadRestarts);

            Produce(v2Bytes);
            WaitFor(() => host.ThreadRestarts >= 1, TimeSpan.FromSeconds(60), () => "a schema id the host never saw did not wait for the registry\n" + logs.Tail());
            Assert.Equal(2, Outputs());

            server = await SchemaRegistryServer.StartAsync(database, url);   // back, same address, same store
            WaitFor(() => Outputs() == 3, TimeSpan.FromSeconds(90), () => "the v2 reading was not processed after the registry came back\n" + logs.Tail());
            Assert.Equal(0, host.Metrics.DeadLettered);
            Assert.Equal(0, Progress(kafka.BootstrapServers, "nobody", raw + Topics.DeadLetterSuffix, 1).End);
        }
        finally
        {
            if (server is not null) await server.DisposeAsync();
            Directory.Delete(state, recursive: true);
        }
    }
}
