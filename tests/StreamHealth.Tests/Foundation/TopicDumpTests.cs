using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using Google.Protobuf;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Tools;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Foundation;

public sealed class TopicDumpTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public async Task Dump_decodes_values_and_shows_undecodable_records_as_base64_with_the_error()
    {
        kafka.Cluster.CreateTopic(Topics.SensorsReadings + ".dumptest", 2);
        var topic = new TopicSpec(Topics.SensorsReadings + ".dumptest", SensorKey.Descriptor, SensorReading.Descriptor, 2);
        var t0 = new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            for (var i = 0; i < 10; i++)
            {
                var reading = new SensorReading { SchemaVersion = 1, EventTimeUnixMs = t0 + i * 1000, NodeId = "n1", FlowLPerS = i, PressureKpa = 300, ReadingId = $"r{i}" };
                producer.Produce(topic.Name, new Message<byte[], byte[]>
                {
                    Key = new SensorKey { NodeId = "n1" }.ToByteArray(), Value = reading.ToByteArray(),
                    Timestamp = new Timestamp(t0 + i * 1000, TimestampType.CreateTime),
                    Headers = new Headers { { "origin", Encoding.UTF8.GetBytes("test") } },
                });
            }
            producer.Produce(topic.Name, new Message<byte[], byte[]>
            {
                Key = new SensorKey { NodeId = "n1" }.ToByteArray(), Value = [0xff, 0xff, 0xff],
                Timestamp = new Timestamp(t0 + 20_000, TimestampType.CreateTime),
            });
            producer.Flush(TimeSpan.FromSeconds(10));
        }

        var lines = await Dump(new TopicDumper.Request(topic, kafka.BootstrapServers, BrokerCapabilities.Embedded));
        Assert.Equal(11, lines.Count);
        var first = lines[0];
        Assert.Equal("n1", first.GetProperty("key").GetProperty("nodeId").GetString());
        Assert.Equal("test", first.GetProperty("headers").GetProperty("origin").GetString());
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(t0).ToString("O"), first.GetProperty("timestamp").GetString());
        var broken = lines[^1];
        Assert.Contains("does not decode as streamhealth.SensorReading", broken.GetProperty("valueError").GetString());
        Assert.Equal(Convert.ToBase64String([0xff, 0xff, 0xff]), broken.GetProperty("valueBase64").GetString());

        // The embedded broker cannot look offsets up by time: --since falls back to a filtered scan.
        var since = await Dump(new TopicDumper.Request(topic, kafka.BootstrapServers, BrokerCapabilities.Embedded,
            Since: DateTimeOffset.FromUnixTimeMilliseconds(t0 + 7000)));
        Assert.Equal(["r7", "r8", "r9"], since.Where(l => l.TryGetProperty("value", out _))
            .Select(l => l.GetProperty("value").GetProperty("readingId").GetString()!).ToArray());
        Assert.Equal(4, since.Count);

        var limited = await Dump(new TopicDumper.Request(topic, kafka.BootstrapServers, BrokerCapabilities.Embedded, MaxRecords: 3));
        Assert.Equal(3, limited.Count);
    }

    [Fact]
    public async Task An_avro_topic_dumps_through_the_registry_and_a_record_in_another_format_as_base64_with_the_error()
    {
        var registry = TestRegistry.Shared;
        var spec = Topics.Get(Topics.WeightsRaw);
        Assert.True(spec.IsAvro);
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
