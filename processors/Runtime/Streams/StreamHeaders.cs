using System.Globalization;
using System.Text;
using Confluent.Kafka;

namespace StreamHealth.Runtime.Streams;

/// <summary>Header names StreamHealth's processors write.</summary>
public static class StreamHeaders
{
    public const string OutputId = "streamhealth-output-id";
    public const string Error = "streamhealth-error";
    public const string ErrorType = "streamhealth-error-type";
    public const string Processor = "streamhealth-processor";
    public const string SourceTopic = "streamhealth-source-topic";
    public const string SourcePartition = "streamhealth-source-partition";
    public const string SourceOffset = "streamhealth-source-offset";
    /// <summary>On a dead letter of an Avro topic's record: the schema id its value's Confluent wire header names (decimal),
    /// absent when the value does not start with that header.</summary>
    public const string SchemaId = "streamhealth-schema-id";

    /// <summary>A request's correlation id (e.g. the gateway's, for request/reply over a topic pair). A processor copies it
    /// from the input record onto every output it emits while processing that record, so the reply finds its
    /// request whatever ids the client chose. Only this header travels: the others (output id, errors) describe
    /// one record and must not leak onto another.</summary>
    public const string RequestId = "streamhealth-request-id";

    /// <summary>The <see cref="ErrorType"/> of a record that does not decode.</summary>
    public const string DeserializationError = "deserialization";

    /// <summary>The headers of a dead letter for the input at <paramref name="topic"/>[<paramref name="partition"/>]@<paramref name="offset"/>:
    /// the record's own headers, then the error, its type (<see cref="DeserializationError"/> for a record that does not decode,
    /// else the exception type), the processor, the source position, and an output id derived from that position (a re-sent
    /// dead letter is recognisable).</summary>
    public static Headers DeadLetter(Headers? original, string topic, int partition, long offset, string error, string errorType, string processor)
    {
        var headers = new Headers();
        if (original is not null)
            foreach (var h in original)
                if (!h.Key.StartsWith("streamhealth-", StringComparison.Ordinal) || h.Key == RequestId) headers.Add(h.Key, h.GetValueBytes());
        headers.Add(Error, Encoding.UTF8.GetBytes(error));
        headers.Add(ErrorType, Encoding.UTF8.GetBytes(errorType));
        headers.Add(Processor, Encoding.UTF8.GetBytes(processor));
        headers.Add(SourceTopic, Encoding.UTF8.GetBytes(topic));
        headers.Add(SourcePartition, Encoding.UTF8.GetBytes(partition.ToString(CultureInfo.InvariantCulture)));
        headers.Add(SourceOffset, Encoding.UTF8.GetBytes(offset.ToString(CultureInfo.InvariantCulture)));
        headers.Add(OutputId, Encoding.UTF8.GetBytes($"dlq:{topic}:{partition}:{offset}"));
        return headers;
    }
}
