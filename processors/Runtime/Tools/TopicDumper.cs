using System.Text.Json;
using Confluent.Kafka;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Schemas;

namespace StreamHealth.Runtime.Tools;

/// <summary>Reads a topic and writes one JSON object per record: position, timestamp, headers, and
/// key/value decoded with the writer schema the record's Confluent wire header names, fetched from the schema registry (field names as in the schema,
/// times as ISO-8601, enums as their symbols, with "schemaId"). Records that do not decode (and everything in a
/// dead-letter topic) are written as base64 with the decode error, so nothing is hidden.</summary>
public static class TopicDumper
{
    /// <param name="Since">Only records with a timestamp at or after this time.</param>
    /// <param name="Follow">Keep reading new records until cancelled (else stop at the end offsets seen at start).</param>
    /// <param name="Registry">The schema registry the records are decoded through (required except for a dead-letter topic).</param>
    public sealed record Request(TopicSpec Topic, string BootstrapServers, BrokerCapabilities Capabilities,
        int MaxRecords = int.MaxValue, DateTimeOffset? Since = null, bool Follow = false,
        Confluent.SchemaRegistry.ISchemaRegistryClient? Registry = null);

    public static async Task<long> DumpAsync(Request request, Stream output, CancellationToken ct)
    {
        if (!request.Topic.IsDeadLetter && request.Registry is null)
            throw new ArgumentException($"dumping {request.Topic.Name} needs the schema registry (its records are Avro in the Confluent wire format)", nameof(request));
        var avro = request.Topic.IsDeadLetter ? null : new AvroDecoder(request.Registry!);
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
            WriteRecord(writer, avro, result);
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

    private static void WriteRecord(Utf8JsonWriter w, AvroDecoder? avro, ConsumeResult<byte[]?, byte[]?> r)
    {
        w.WriteStartObject();
        w.WriteString("topic", r.Topic);
        w.WriteNumber("partition", r.Partition.Value);
        w.WriteNumber("offset", r.Offset.Value);
        w.WriteString("timestamp", DateTimeOffset.FromUnixTimeMilliseconds(r.Message.Timestamp.UnixTimestampMs).ToString("O"));
        if (avro is not null)
        {
            avro.Write(w, "key", r.Topic, MessageComponentType.Key, r.Message.Key);
            avro.Write(w, "value", r.Topic, MessageComponentType.Value, r.Message.Value);
        }
        else
        {
            // A dead letter: the failed record's bytes as they arrived; its headers say why.
            WriteBytes(w, "key", r.Message.Key);
            WriteBytes(w, "value", r.Message.Value);
        }
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

    private static void WriteBytes(Utf8JsonWriter w, string name, byte[]? bytes)
    {
        if (bytes is null) w.WriteNull(name);
        else w.WriteBase64String(name + "Base64", bytes);
    }

    /// <summary>Avro in the Confluent wire format as JSON: a generic record read with the writer schema its header names.</summary>
    private sealed class AvroDecoder(Confluent.SchemaRegistry.ISchemaRegistryClient registry)
    {
        private readonly Confluent.SchemaRegistry.Serdes.AvroDeserializer<global::Avro.Generic.GenericRecord> _deserializer = new(registry);

        public void Write(Utf8JsonWriter w, string name, string topic, MessageComponentType component, byte[]? bytes)
        {
            if (bytes is null)
            {
                w.WriteNull(name);
                return;
            }
            try
            {
                var record = _deserializer.DeserializeAsync(bytes, false, new SerializationContext(component, topic)).GetAwaiter().GetResult();
                w.WriteNumber(name + "SchemaId", Streams.ConfluentWire.SchemaId(bytes) ?? -1);
                w.WritePropertyName(name);
                WriteDatum(w, record);
                return;
            }
            catch (Exception e) when (e is InvalidDataException or global::Avro.AvroException or EndOfStreamException or ArgumentException
                                          or Confluent.SchemaRegistry.SchemaRegistryException)
            {
                var id = Streams.ConfluentWire.SchemaId(bytes);
                w.WriteString(name + "Error", $"does not decode as Avro ({(id is { } known ? $"schema id {known}" : "no Confluent wire header")}): {e.Message}");
            }
            w.WriteBase64String(name + "Base64", bytes);
        }

        private static void WriteDatum(Utf8JsonWriter w, object? value)
        {
            switch (value)
            {
                case null: w.WriteNullValue(); break;
                case global::Avro.Generic.GenericRecord record:
                    w.WriteStartObject();
                    foreach (var field in record.Schema.Fields)
                    {
                        w.WritePropertyName(field.Name);
                        WriteDatum(w, record.GetValue(field.Pos));
                    }
                    w.WriteEndObject();
                    break;
                case global::Avro.Generic.GenericEnum symbol: w.WriteStringValue(symbol.Value); break;
                case string text: w.WriteStringValue(text); break;
                case bool flag: w.WriteBooleanValue(flag); break;
                case int number: w.WriteNumberValue(number); break;
                case long number: w.WriteNumberValue(number); break;
                case float number when float.IsFinite(number): w.WriteNumberValue(number); break;
                case double number when double.IsFinite(number): w.WriteNumberValue(number); break;
                case float or double: w.WriteStringValue(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)); break;   // NaN, ±Infinity
                case DateTime time: w.WriteStringValue(new DateTimeOffset(DateTime.SpecifyKind(time, DateTimeKind.Utc)).ToString("O")); break;
                case byte[] bytes: w.WriteBase64StringValue(bytes); break;
                case System.Collections.IDictionary map:
                    w.WriteStartObject();
                    foreach (System.Collections.DictionaryEntry entry in map)
                    {
                        w.WritePropertyName(Convert.ToString(entry.Key, System.Globalization.CultureInfo.InvariantCulture)!);
                        WriteDatum(w, entry.Value);
                    }
                    w.WriteEndObject();
                    break;
                case System.Collections.IEnumerable items:
                    w.WriteStartArray();
                    foreach (var item in items) WriteDatum(w, item);
                    w.WriteEndArray();
                    break;
                default: w.WriteStringValue(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)); break;
            }
        }
    }
}
