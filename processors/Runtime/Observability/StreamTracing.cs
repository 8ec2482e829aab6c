using System.Diagnostics;
using System.Globalization;
using System.Text;
using Confluent.Kafka;
using SinkRecord = StreamHealth.Runtime.Sinks.SinkRecord;

namespace StreamHealth.Runtime.Observability;

/// <summary>One trace per record from the gateway to the sinks: W3C trace context (<c>traceparent</c>, <c>tracestate</c>) travels
/// in Kafka headers, and each layer opens its spans on its own <see cref="ActivitySource"/>: the gateway's "publish &lt;topic&gt;"
/// (Producer), a topology's "process &lt;application&gt;" per record (Consumer, child of the input's context) and a sink's
/// "sink &lt;name&gt;" per record written (Consumer, child of the record's context). Tags follow OpenTelemetry's messaging
/// semantic conventions. Every span is opened only when something listens (an OpenTelemetry TracerProvider naming the
/// source, a test's ActivityListener): with none, the per-record paths read no header and allocate nothing for tracing.</summary>
public static class StreamTracing
{
    public const string GatewaySourceName = "StreamHealth.Gateway";
    public const string StreamsSourceName = "StreamHealth.Streams";
    public const string SinksSourceName = "StreamHealth.Sinks";

    /// <summary>Every source above, for a TracerProvider's <c>AddSource</c>.</summary>
    public static readonly string[] SourceNames = [GatewaySourceName, StreamsSourceName, SinksSourceName];

    public static readonly ActivitySource Gateway = new(GatewaySourceName);
    public static readonly ActivitySource Streams = new(StreamsSourceName);
    public static readonly ActivitySource Sinks = new(SinksSourceName);

    /// <summary>The W3C header names (https://www.w3.org/TR/trace-context/), the same on a Kafka record as on an HTTP request.</summary>
    public const string TraceParent = "traceparent";
    public const string TraceState = "tracestate";

    private const string MessagingSystem = "messaging.system";
    private const string OperationName = "messaging.operation.name";
    private const string OperationType = "messaging.operation.type";
    private const string Destination = "messaging.destination.name";
    private const string PartitionId = "messaging.destination.partition.id";
    private const string Offset = "messaging.kafka.offset";
    private const string ConsumerGroup = "messaging.consumer.group.name";
    private const string BatchCount = "messaging.batch.message_count";

    /// <summary>Starts "publish <paramref name="topic"/>" on <paramref name="source"/>, a child of the current activity (the
    /// request's); null when nothing samples it. <paramref name="batchCount"/> &gt; 1: one span for records sent together,
    /// each of which carries its context.</summary>
    public static Activity? StartPublish(ActivitySource source, string topic, int batchCount = 1)
    {
        if (!source.HasListeners()) return null;
        var activity = source.StartActivity("publish " + topic, ActivityKind.Producer);
        if (activity is null) return null;
        activity.SetTag(MessagingSystem, "kafka");
        activity.SetTag(OperationName, "publish");
        activity.SetTag(OperationType, "send");
        activity.SetTag(Destination, topic);
        if (batchCount > 1) activity.SetTag(BatchCount, batchCount);
        return activity;
    }

    /// <summary>Produces <paramref name="message"/> under a "publish <paramref name="topic"/>" span of <paramref name="source"/> whose
    /// context the record carries (or, when that span is not recorded, the current activity's, so the trace still continues);
    /// the span gets the partition and offset the broker assigned, or the error. What every gateway producer of a single
    /// record calls.</summary>
    public static async Task<DeliveryResult<byte[], byte[]>> ProduceTracedAsync(this IProducer<byte[], byte[]> producer, ActivitySource source,
        string topic, Message<byte[], byte[]> message, CancellationToken ct = default)
    {
        using var publish = StartPublish(source, topic);
        if ((publish ?? Activity.Current) is { } context) Inject(context, message.Headers ??= []);
        try
        {
            var delivered = await producer.ProduceAsync(topic, message, ct);
            Delivered(publish, delivered.TopicPartitionOffset);
            return delivered;
        }
        catch (Exception e)
        {
            Failed(publish, e);
            throw;
        }
    }

    /// <summary>Where the broker put the record a publish span sent.</summary>
    public static void Delivered(Activity? publish, TopicPartitionOffset position)
    {
        if (publish is null) return;
        publish.SetTag(PartitionId, position.Partition.Value.ToString(CultureInfo.InvariantCulture));
        publish.SetTag(Offset, position.Offset.Value);
    }

    /// <summary>Ends a span as failed with <paramref name="error"/>'s message (status description, not a stack trace: traces
    /// leave the cluster).</summary>
    public static void Failed(Activity? activity, Exception error)
    {
        if (activity is null) return;
        activity.SetStatus(ActivityStatusCode.Error, error.Message);
        activity.SetTag("error.type", error.GetType().FullName);
    }

    /// <summary>Starts "process <paramref name="application"/>" for the input at <paramref name="topic"/>[<paramref name="partition"/>]@<paramref name="offset"/>,
    /// a child of the context its headers carry (a root when they carry none); null when nothing samples it. The listener
    /// check comes first so an unobserved topology never parses a header.</summary>
    public static Activity? StartProcess(string application, string topic, int partition, long offset, Headers? headers)
    {
        if (!Streams.HasListeners()) return null;
        var activity = Streams.StartActivity("process " + application, ActivityKind.Consumer, Extract(headers));
        if (activity is null) return null;
        activity.SetTag(MessagingSystem, "kafka");
        activity.SetTag(OperationName, "process");
        activity.SetTag(OperationType, "process");
        activity.SetTag(Destination, topic);
        activity.SetTag(ConsumerGroup, application);
        activity.SetTag(PartitionId, partition.ToString(CultureInfo.InvariantCulture));
        activity.SetTag(Offset, offset);
        return activity;
    }

    /// <summary>The record's context for a sink span, read only when a sink span could be recorded (else default).</summary>
    public static ActivityContext ContextForSink(Headers? headers) => Sinks.HasListeners() ? Extract(headers) : default;

    /// <summary>One "sink <paramref name="sink"/>" span per record of <paramref name="written"/> that carries a context, as a child of
    /// it, spanning the write that stored it (<paramref name="startedAt"/> to now). Per record rather than one batch span with
    /// links: each record's trace then ends in its own sink span, which a trace view shows in place; a batch span would be a
    /// trace of its own. A record without a context gets none (a root span per untraced record would only be noise).
    /// <paramref name="error"/>: the records were refused and archived, not written.</summary>
    public static void RecordSinkWrites(string sink, string groupId, IReadOnlyList<SinkRecord> written, int start, int count,
        DateTimeOffset startedAt, string? error = null)
    {
        if (!Sinks.HasListeners()) return;
        var ended = DateTimeOffset.UtcNow;
        for (var i = start; i < start + count; i++)
        {
            var record = written[i];
            if (record.TraceContext == default) continue;
            using var activity = Sinks.StartActivity("sink " + sink, ActivityKind.Consumer, record.TraceContext, startTime: startedAt);
            if (activity is null) continue;
            activity.SetTag(MessagingSystem, "kafka");
            activity.SetTag(OperationName, "sink");
            activity.SetTag(OperationType, "process");
            activity.SetTag(Destination, record.Topic);
            activity.SetTag(ConsumerGroup, groupId);
            activity.SetTag(PartitionId, record.Partition.ToString(CultureInfo.InvariantCulture));
            activity.SetTag(Offset, record.Offset);
            activity.SetTag(BatchCount, count);
            if (error is not null) activity.SetStatus(ActivityStatusCode.Error, "dead-lettered: " + error);
            activity.SetEndTime(ended.UtcDateTime);
        }
    }

    /// <summary>Writes <paramref name="activity"/>'s context into <paramref name="headers"/> through the process's propagator
    /// (W3C traceparent and tracestate, as ASP.NET Core and HttpClient use it).</summary>
    public static void Inject(Activity? activity, Headers headers)
    {
        if (activity is null) return;
        DistributedContextPropagator.Current.Inject(activity, headers, static (carrier, name, value) =>
        {
            // The propagator may also write baggage; only the trace context is this header set's business.
            if (name is TraceParent or TraceState) ((Headers)carrier!).Add(name, Encoding.ASCII.GetBytes(value));
        });
    }

    /// <summary>The headers <paramref name="activity"/>'s context travels in; null without one (a record needs no empty set).</summary>
    public static Headers? HeadersFor(Activity? activity)
    {
        if (activity is null) return null;
        var headers = new Headers();
        Inject(activity, headers);
        return headers;
    }

    /// <summary>The remote context <paramref name="headers"/> carry; default when none or not a valid traceparent.</summary>
    public static ActivityContext Extract(Headers? headers)
    {
        if (headers is null) return default;
        DistributedContextPropagator.Current.ExtractTraceIdAndState(headers, static (object? carrier, string name, out string? value,
            out IEnumerable<string>? values) =>
        {
            values = null;
            value = ((Headers)carrier!).TryGetLastBytes(name, out var bytes) ? Encoding.ASCII.GetString(bytes) : null;
        }, out var traceParent, out var traceState);
        return ActivityContext.TryParse(traceParent, traceState, isRemote: true, out var context) ? context : default;
    }

    /// <summary>Copies the trace context headers of <paramref name="from"/> as they are: what an output carries when no span was
    /// recorded for its input (the trace still continues downstream) and what a dead letter keeps.</summary>
    public static void CopyContext(Headers? from, Headers to)
    {
        if (from is null) return;
        if (from.TryGetLastBytes(TraceParent, out var parent)) to.Add(TraceParent, parent);
        if (from.TryGetLastBytes(TraceState, out var state)) to.Add(TraceState, state);
    }
}
