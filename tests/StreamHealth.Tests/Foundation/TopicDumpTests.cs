using System.Text;
using Google.Protobuf;
using System.Text.Json;
using Confluent.Kafka;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Tools;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using AvroCgm = StreamHealth.Schemas.Avro.Cgm;
using AvroSensors = StreamHealth.Schemas.Avro.Sensors;

namespace StreamHealth.Tests.Foundation;

public sealed class TopicDumpTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public async Task Dump_decodes_values_and_shows_undecodable_records_as_base64_with_the_error()
    {
        var registry = TestRegistry.Shared;
        kafka.Cluster.CreateTopic(Topics.SensorsReadings + ".dumptest", 2);
        var topic = new TopicSpec(Topics.SensorsReadings + ".dumptest", AvroSchemas.For(Topics.SensorsReadings), 2);
        var key = registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.SensorKey>().Serialize(new StreamHealth.Schemas.Avro.Common.SensorKey { node_id = "n1" },
            new SerializationContext(MessageComponentType.Key, topic.Name));
        var t0 = new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            for (var i = 0; i < 10; i++)
            {
                var reading = new AvroSensors.SensorReading
                {
                    event_time_unix_ms = DateTime.UnixEpoch.AddMilliseconds(t0 + i * 1000), node_id = "n1", district_id = "d1", metric = "flow", value = i, unit = "L/s", reading_id = $"r{i}",
                };
                producer.Produce(topic.Name, new Message<byte[], byte[]>
                {
                    Key = key, Value = registry.Value(topic.Name, reading),
                    Timestamp = new Timestamp(t0 + i * 1000, TimestampType.CreateTime),
                    Headers = new Headers { { "origin", Encoding.UTF8.GetBytes("test") } },
                });
            }
            producer.Produce(topic.Name, new Message<byte[], byte[]>
            {
                Key = key, Value = [0xff, 0xff, 0xff],
                Timestamp = new Timestamp(t0 + 20_000, TimestampType.CreateTime),
            });
            producer.Flush(TimeSpan.FromSeconds(10));
        }

        var lines = await Dump(new TopicDumper.Request(topic, kafka.BootstrapServers, BrokerCapabilities.Embedded, Registry: registry.Connection.Client));
        Assert.Equal(11, lines.Count);
        var first = lines[0];
        Assert.Equal("n1", first.GetProperty("key").GetProperty("node_id").GetString());
        Assert.Equal("test", first.GetProperty("headers").GetProperty("origin").GetString());
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(t0).ToString("O"), first.GetProperty("timestamp").GetString());
        var broken = lines[^1];
        Assert.Contains("does not decode as Avro (no Confluent wire header)", broken.GetProperty("valueError").GetString());
        Assert.Equal(Convert.ToBase64String([0xff, 0xff, 0xff]), broken.GetProperty("valueBase64").GetString());

        // The embedded broker cannot look offsets up by time: --since falls back to a filtered scan.
        var since = await Dump(new TopicDumper.Request(topic, kafka.BootstrapServers, BrokerCapabilities.Embedded,
            Since: DateTimeOffset.FromUnixTimeMilliseconds(t0 + 7000), Registry: registry.Connection.Client));
        Assert.Equal(["r7", "r8", "r9"], since.Where(l => l.TryGetProperty("value", out _))
            .Select(l => l.GetProperty("value").GetProperty("reading_id").GetString()!).ToArray());
        Assert.Equal(4, since.Count);

        var limited = await Dump(new TopicDumper.Request(topic, kafka.BootstrapServers, BrokerCapabilities.Embedded, MaxRecords: 3, Registry: registry.Connection.Client));
        Assert.Equal(3, limited.Count);
    }

    [Fact]
    public async Task An_avro_topic_dumps_through_the_registry_and_a_record_in_another_format_as_base64_with_the_error()
    {
        var registry = TestRegistry.Shared;
        var spec = Topics.Get(Topics.WeightsRaw);
        Assert.NotNull(spec.Avro);
        var t0 = new DateTimeOffset(2026, 3, 1, 7, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        var measurement = new WeightMeasurement
        {
            SchemaVersion = 1, EventTimeUnixMs = t0, MeasurementId = "dump-1", UserId = "dump-user", Value = 80.5, Unit = WeightUnit.Kg,
            Source = WeightSource.ConnectedScale,
        };
        var value = registry.Value(spec.Name, measurement);
        var protobuf = measurement.ToByteArray();
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            producer.Produce(spec.Name, new Message<byte[], byte[]> { Key = registry.Key(spec.Name, "dump-user"), Value = value });
            producer.Produce(spec.Name, new Message<byte[], byte[]> { Key = registry.Key(spec.Name, "dump-user"), Value = protobuf });
            producer.Flush(TimeSpan.FromSeconds(10));
        }
        await Assert.ThrowsAsync<ArgumentException>(() => Dump(new TopicDumper.Request(spec, kafka.BootstrapServers, BrokerCapabilities.Embedded)));
        var lines = await Dump(new TopicDumper.Request(spec, kafka.BootstrapServers, BrokerCapabilities.Embedded, Registry: registry.Connection.Client));
        Assert.Equal(2, lines.Count);
        var decoded = lines.Single(l => l.TryGetProperty("value", out _));
        Assert.Equal("dump-user", decoded.GetProperty("key").GetProperty("user_id").GetString());
        var v = decoded.GetProperty("value");
        Assert.Equal("dump-1", v.GetProperty("measurement_id").GetString());
        Assert.Equal(80.5, v.GetProperty("value").GetDouble());
        Assert.Equal("WEIGHT_UNIT_KG", v.GetProperty("unit").GetString());
        Assert.Equal(JsonValueKind.Null, v.GetProperty("source_detail").ValueKind);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(t0), v.GetProperty("event_time_unix_ms").GetDateTimeOffset());
        Assert.Equal(ConfluentWireId(value), decoded.GetProperty("valueSchemaId").GetInt32());
        var other = lines.Single(l => l.TryGetProperty("valueError", out _));
        Assert.Contains("no Confluent wire header", other.GetProperty("valueError").GetString());
        Assert.Equal(Convert.ToBase64String(protobuf), other.GetProperty("valueBase64").GetString());
    }

    /// <summary>The CGM topics are Avro: `dump` decodes each through the registry (writer schema by the record's id), enums
    /// as their symbols, an absent original time as null, NaN ("no value") as the string "NaN"; a record left from the
    /// Protobuf days shows as base64 with the error.</summary>
    [Fact]
    public async Task The_cgm_topics_dump_through_the_registry()
    {
        var registry = TestRegistry.Shared;
        var t0 = new DateTimeOffset(2026, 5, 1, 8, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        var time = StreamHealth.Runtime.Streams.AvroTime.FromUnixMs(t0);
        var reading = new AvroCgm.CgmReading
        {
            event_time_unix_ms = time, original_time_unix_ms = null, user_id = "dump-cgm", reading_id = "r-1", glucose_mg_dl = double.NaN,
            quality_flags = 4, event_type = AvroCgm.CgmEventType.CGM_EVENT_TYPE_CARBS, source_format = "unified", sequence_id = 0, carbs_g = 30,
            insulin_slow_u = double.NaN, insulin_fast_u = double.NaN, exercise_min = double.NaN,
        };
        var latest = new AvroCgm.CgmLatest
        {
            event_time_unix_ms = time, user_id = "dump-cgm", glucose_mg_dl = 123.5, rate_mg_dl_per_min = double.NaN, trend_arrow = "NotComputable",
            quality_flags = 0, window_steps = 3, forecast_window_complete = false,
        };
        var request = new AvroCgm.CgmForecastRequest
        {
            event_time_unix_ms = time, request_id = "dump-cgm:1", user_id = "dump-cgm", step_minutes = 5, glucose_mg_dl = [110f, 111f, 112f], interactive = true,
        };
        var forecast = new AvroCgm.CgmForecast
        {
            event_time_unix_ms = time, request_id = "dump-cgm:1", user_id = "dump-cgm", step_minutes = 5, median_mg_dl = [113f, 114f],
            bands = [new AvroCgm.CgmQuantileBand { quantile = 0.05f, glucose_mg_dl = [100f, 101f] }], model_version = "m@1", mc_samples = 10,
        };
        byte[] oldProtobuf = [0x08, 0x01, 0x10, 0x80, 0x01];   // a Protobuf CgmReading as producers sent before the move (schema_version 1, time 128)
        var values = new Dictionary<string, byte[]>
        {
            [Topics.CgmReadings] = registry.Value(Topics.CgmReadings, reading),
            [Topics.CgmLatest] = registry.Value(Topics.CgmLatest, latest),
            [Topics.CgmForecastRequests] = registry.Value(Topics.CgmForecastRequests, request),
            [Topics.CgmForecasts] = registry.Value(Topics.CgmForecasts, forecast),
        };
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            foreach (var (topic, value) in values)
                producer.Produce(topic, new Message<byte[], byte[]> { Key = registry.Key(topic, "dump-cgm"), Value = value });
            producer.Produce(Topics.CgmReadings, new Message<byte[], byte[]> { Key = registry.Key(Topics.CgmReadings, "dump-cgm"), Value = oldProtobuf });
            producer.Flush(TimeSpan.FromSeconds(10));
        }

        async Task<JsonElement> DumpOne(string topic)
        {
            var spec = Topics.Get(topic);
            Assert.NotNull(spec.Avro);
            var lines = await Dump(new TopicDumper.Request(spec, kafka.BootstrapServers, BrokerCapabilities.Embedded, Registry: registry.Connection.Client));
            var decoded = lines.Single(l => l.TryGetProperty("value", out _));
            Assert.Equal("dump-cgm", decoded.GetProperty("key").GetProperty("user_id").GetString());
            Assert.Equal(ConfluentWireId(values[topic]), decoded.GetProperty("valueSchemaId").GetInt32());
            Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(t0), decoded.GetProperty("value").GetProperty("event_time_unix_ms").GetDateTimeOffset());
            return decoded.GetProperty("value");
        }

        var r = await DumpOne(Topics.CgmReadings);
        Assert.Equal("CGM_EVENT_TYPE_CARBS", r.GetProperty("event_type").GetString());
        Assert.Equal(JsonValueKind.Null, r.GetProperty("original_time_unix_ms").ValueKind);
        Assert.Equal("NaN", r.GetProperty("glucose_mg_dl").GetString());
        Assert.Equal(30, r.GetProperty("carbs_g").GetDouble());
        Assert.Equal(4, r.GetProperty("quality_flags").GetInt32());
        var readings = await Dump(new TopicDumper.Request(Topics.Get(Topics.CgmReadings), kafka.BootstrapServers, BrokerCapabilities.Embedded,
            Registry: registry.Connection.Client));
        var old = readings.Single(l => l.TryGetProperty("valueError", out _));
        Assert.Contains("no Confluent wire header", old.GetProperty("valueError").GetString());
        Assert.Equal(Convert.ToBase64String(oldProtobuf), old.GetProperty("valueBase64").GetString());

        var l = await DumpOne(Topics.CgmLatest);
        Assert.Equal(123.5, l.GetProperty("glucose_mg_dl").GetDouble());
        Assert.Equal("NaN", l.GetProperty("rate_mg_dl_per_min").GetString());
        Assert.Equal("NotComputable", l.GetProperty("trend_arrow").GetString());

        var q = await DumpOne(Topics.CgmForecastRequests);
        Assert.Equal([110f, 111f, 112f], q.GetProperty("glucose_mg_dl").EnumerateArray().Select(v => v.GetSingle()));
        Assert.True(q.GetProperty("interactive").GetBoolean());

        var fc = await DumpOne(Topics.CgmForecasts);
        Assert.Equal([113f, 114f], fc.GetProperty("median_mg_dl").EnumerateArray().Select(v => v.GetSingle()));
        var band = Assert.Single(fc.GetProperty("bands").EnumerateArray());
        Assert.Equal(0.05f, band.GetProperty("quantile").GetSingle());
        Assert.Equal([100f, 101f], band.GetProperty("glucose_mg_dl").EnumerateArray().Select(v => v.GetSingle()));
        Assert.Equal("m@1", fc.GetProperty("model_version").GetString());
    }

    private static int ConfluentWireId(byte[] bytes) => StreamHealth.Runtime.Streams.ConfluentWire.SchemaId(bytes)!.Value;

    [Fact]
    public async Task Dead_letter_topics_dump_raw_bytes()
    {
        var spec = Topics.Get(Topics.DeadLetterOf(Topics.WeightsRaw));
        Assert.True(spec.IsDeadLetter);
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            producer.Produce(spec.Name, new Message<byte[], byte[]>
            {
                Key = Encoding.UTF8.GetBytes("k"), Value = Encoding.UTF8.GetBytes("not protobuf"),
                Headers = new Headers { { "error", Encoding.UTF8.GetBytes("bad unit") } },
            });
            producer.Flush(TimeSpan.FromSeconds(10));
        }
        var line = Assert.Single(await Dump(new TopicDumper.Request(spec, kafka.BootstrapServers, BrokerCapabilities.Embedded)));
        Assert.Equal("not protobuf", Encoding.UTF8.GetString(Convert.FromBase64String(line.GetProperty("valueBase64").GetString()!)));
        Assert.Equal("bad unit", line.GetProperty("headers").GetProperty("error").GetString());
    }

    private static async Task<List<JsonElement>> Dump(TopicDumper.Request request)
    {
        using var buffer = new MemoryStream();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var written = await TopicDumper.DumpAsync(request, buffer, cts.Token);
        var lines = Encoding.UTF8.GetString(buffer.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal(written, lines.Count);
        return lines;
    }
}
