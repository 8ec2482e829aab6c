using System.Collections.Concurrent;
using System.Text.Json;
using Confluent.Kafka;
using Confluent.SchemaRegistry;
using Google.Protobuf;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Schemas;

namespace StreamHealth.Runtime.Tools;

/// <summary>Reads a topic and writes one JSON object per record: position, timestamp, headers, and key/value decoded.
/// A payload in the Confluent wire format (magic byte 0, schema id, Avro binary; a Protobuf message never starts with
/// a zero byte) is decoded with its writer schema from the registry and written in Avro's JSON encoding, as Confluent's
/// console consumer does, with its schema id; any other payload with the topic's Protobuf schema. Records that do not
/// decode (and everything in a dead-letter topic) are written as base64 with the decode error, so nothing is hidden.</summary>
public static class TopicDumper
{
    /// <param name="Since">Only records with a timestamp at or after this time.</param>
    /// <param name="Follow">Keep reading new records until cancelled (else stop at the end offsets seen at start).</param>
    /// <param name="Registry">Where Avro payloads' writer schemas are looked up (null: Avro payloads are shown as base64
    /// with the schema id they name).</param>
    public sealed record Request(TopicSpec Topic, string BootstrapServers, BrokerCapabilities Capabilities,
        int MaxRecords = int.MaxValue, DateTimeOffset? Since = null, bool Follow = false, ISchemaRegistryClient? Registry = null);

    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));

    public static async Task<long> DumpAsync(Request request, Stream output, CancellationToken ct)
    {
        var config = new ConsumerConfig
        {
            BootstrapServers = request.BootstrapServers,
            GroupId = "streamhealth-dump-" + Guid.NewGuid().ToString("N"),   // assign() only; never commits
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnablePartitionEof = true,
        };
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(config).Build();
        var partitions = PartitionsOf(request.BootstrapServers, request.Topic.Name);
        var start = new List<TopicPartitionOffset>();
        var remaining = new HashSet<int>();
        foreach (var p in partitions)
        {
            var tp = new TopicPartition(request.Topic.Name, p);
            var marks = consumer.QueryWatermarkOffsets(tp, TimeSpan.FromSeconds(10));
            if (!request.Follow && marks.High.Value <= marks.Low.Value) continue;
            start.Add(new TopicPartitionOffset(tp, marks.Low));
            remaining.Add(p);
        }
        if (request.Since is { } since && request.Capabilities.TimestampLookup && start.Count > 0)
        {
            // Real Kafka: jump straight to the first offset at the time. The embedded broker answers
            // this lookup with the end offset, so there we scan from the start and filter (below).
            var lookup = start.Select(s => new TopicPartitionTimestamp(s.TopicPartition, new Timestamp(since.UtcDateTime))).ToList();
            start = consumer.OffsetsForTimes(lookup, TimeSpan.FromSeconds(10))
                .Select(o => o.Offset == Offset.End ? new TopicPartitionOffset(o.TopicPartition, Offset.End) : o).ToList();
        }
        if (start.Count == 0) return 0;
        consumer.Assign(start);

        await using var writer = new Utf8JsonWriter(output, new JsonWriterOptions
        {
            SkipValidation = true,
            // Lines are read by people and jq, not embedded in HTML: keep "+00:00" and non-ASCII text readable.
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
        long written = 0;
        var sinceMs = request.Since?.ToUnixTimeMilliseconds();
        while (!ct.IsCancellationRequested && written < request.MaxRecords && (request.Follow || remaining.Count > 0))
        {
            var result = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (result is null) continue;
            if (result.IsPartitionEOF)
            {
                remaining.Remove(result.Partition.Value);
                continue;
            }
            if (sinceMs is { } min && result.Message.Timestamp.UnixTimestampMs < min) continue;
            WriteRecord(writer, request, result);
            await writer.FlushAsync(ct);
            output.WriteByte((byte)'\n');
            writer.Reset();
            written++;
        }
        await output.FlushAsync(ct);
        return written;
    }

    private static List<int> PartitionsOf(string bootstrap, string topic)
    {
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap }).Build();
        var metadata = admin.GetMetadata(topic, TimeSpan.FromSeconds(10));
        var t = metadata.Topics.SingleOrDefault(x => x.Topic == topic);
        if (t is null || t.Error.IsError)
            throw new InvalidOperationException($"topic '{topic}' is not on the broker at {bootstrap}: {t?.Error.Reason ?? "no metadata"}");
        return t.Partitions.Select(p => p.PartitionId).Order().ToList();
    }

    private static void WriteRecord(Utf8JsonWriter w, Request request, ConsumeResult<byte[]?, byte[]?> r)
    {
        var topic = request.Topic;
        w.WriteStartObject();
        w.WriteString("topic", r.Topic);
        w.WriteNumber("partition", r.Partition.Value);
        w.WriteNumber("offset", r.Offset.Value);
        w.WriteString("timestamp", DateTimeOffset.FromUnixTimeMilliseconds(r.Message.Timestamp.UnixTimestampMs).ToString("O"));
        WritePayload(w, "key", topic.Key, r.Message.Key, request.Registry);
        WritePayload(w, "value", topic.Value, r.Message.Value, request.Registry);
        if (r.Message.Headers is { Count: > 0 } headers)
        {
            w.WriteStartObject("headers");
            foreach (var h in headers)
            {
                var bytes = h.GetValueBytes();
                w.WriteString(h.Key, bytes is null ? "" : System.Text.Encoding.UTF8.GetString(bytes));
            }
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    private static void WritePayload(Utf8JsonWriter w, string name, Google.Protobuf.Reflection.MessageDescriptor? schema, byte[]? bytes,
        ISchemaRegistryClient? registry)
    {
        if (bytes is null)
        {
            w.WriteNull(name);
            return;
        }
        if (Streams.ConfluentWire.SchemaId(bytes) is { } schemaId && !IsDeadLetterTopic(schema))
        {
            w.WriteNumber(name + "SchemaId", schemaId);
            if (registry is null)
            {
                w.WriteString(name + "Error", $"Avro with schema id {schemaId}: no schema registry to decode it with (SchemaRegistry:Url)");
            }
            else
            {
                try
                {
                    var json = AvroJson(registry, schemaId, bytes);
                    w.WritePropertyName(name);
                    w.WriteRawValue(json, skipInputValidation: true);
                    return;
                }
                catch (Exception e) when (e is SchemaRegistryException or global::Avro.AvroException or IOException or HttpRequestException)
                {
                    w.WriteString(name + "Error", $"does not decode as Avro with schema id {schemaId}: {e.Message}");
                }
            }
            w.WriteBase64String(name + "Base64", bytes);
            return;
        }
        if (schema is not null)
        {
            try
            {
                var message = schema.Parser.ParseFrom(bytes);
                w.WritePropertyName(name);
                w.WriteRawValue(Formatter.Format(message), skipInputValidation: true);
                return;
            }
            catch (InvalidProtocolBufferException e)
            {
                w.WriteString(name + "Error", $"does not decode as {schema.FullName}: {e.Message}");
            }
        }
        w.WriteBase64String(name + "Base64", bytes);
    }

    // A dead-letter topic holds failed records' bytes as they arrived: shown as base64, never decoded.
    private static bool IsDeadLetterTopic(Google.Protobuf.Reflection.MessageDescriptor? schema) => schema is null;

    private static readonly ConcurrentDictionary<int, global::Avro.Schema> WriterSchemas = new();

    /// <summary>The payload in Avro's JSON encoding (unions as {"type": value}), read with its writer schema.</summary>
    private static string AvroJson(ISchemaRegistryClient registry, int schemaId, byte[] bytes)
    {
        var schema = WriterSchemas.GetOrAdd(schemaId, id => global::Avro.Schema.Parse(registry.GetSchemaAsync(id).GetAwaiter().GetResult().SchemaString));
        var body = new MemoryStream(bytes, Streams.ConfluentWire.HeaderBytes, bytes.Length - Streams.ConfluentWire.HeaderBytes, writable: false);
        var datum = new global::Avro.Generic.GenericDatumReader<object>(schema, schema).Read(null!, new global::Avro.IO.BinaryDecoder(body));
        if (body.Position != body.Length)
            throw new IOException($"{body.Length - body.Position} byte(s) left after the record: not written with schema {schemaId}");
        using var json = new MemoryStream();
        var encoder = new global::Avro.IO.JsonEncoder(schema, json);
        new global::Avro.Generic.GenericDatumWriter<object>(schema).Write(datum, encoder);
        encoder.Flush();
        return System.Text.Encoding.UTF8.GetString(json.ToArray());
    }
}
