using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Confluent.Kafka;
using StreamHealth.Runtime.Observability;
using StreamHealth.Schemas;
using StreamHealth.Tests.Gateway;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Observability;

/// <summary>One weight measurement, one trace: the gateway's request span, its publish span, the weights topology's process
/// span and the sinks' spans share a trace id and form a parent chain, carried between processes by the records' traceparent
/// headers (the topology and sinks run in this process here, but see each other only through Kafka).</summary>
public sealed class TraceSpanTests(WeightGatewayFixture f) : IClassFixture<WeightGatewayFixture>
{
    private const string AspNetCoreSource = "Microsoft.AspNetCore";

    [Fact]
    public async Task A_measurement_is_one_trace_from_the_request_through_the_topic_and_topology_to_the_sinks()
    {
        var stopped = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name is AspNetCoreSource or StreamTracing.GatewaySourceName or StreamTracing.StreamsSourceName
                or StreamTracing.SinksSourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = stopped.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);

        // The caller starts the trace (as an instrumented client would): its id tells this request's spans from those of
        // other tests running in this process at the same time.
        var traceId = ActivityTraceId.CreateRandom();
        var callerSpanId = ActivitySpanId.CreateRandom();
        using var client = f.Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/weight/process")
        {
            Content = JsonContent.Create(new
            {
                user_id = $"trace-{Guid.NewGuid():N}"[..20], weight = 80.4, unit = "kg", timestamp = "2026-04-01T07:30:00Z", source = "connected_scale",
            }),
        };
        request.Headers.Add(StreamTracing.TraceParent, $"00-{traceId}-{callerSpanId}-01");
        var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var sinks = new[] { f.Pipeline.PostgresSink.Name, f.Pipeline.RedisSink.Name };
        List<Activity> Trace() => [.. stopped.Where(a => a.TraceId == traceId)];
        WaitFor(() => Trace().Count(a => a.Source.Name == StreamTracing.SinksSourceName) == sinks.Length, TimeSpan.FromSeconds(30),
            () => "spans of the trace: " + string.Join(", ", Trace().Select(a => $"{a.Source.Name}/{a.DisplayName}")));
        var trace = Trace();

        // The gateway's request span is the caller's child; the embedded schema registry's request spans (its HTTP client
        // propagates the context too) are in the trace as well, under the request.
        var requestSpan = Assert.Single(trace, a => a.Source.Name == AspNetCoreSource && a.ParentSpanId == callerSpanId);
        Assert.Equal("/api/weight/process", requestSpan.GetTagItem("url.path"));
        var publish = Assert.Single(trace, a => a.Source.Name == StreamTracing.GatewaySourceName);
        Assert.Equal($"publish {Topics.WeightsRaw}", publish.DisplayName);
        Assert.Equal(ActivityKind.Producer, publish.Kind);
        Assert.Equal(requestSpan.SpanId, publish.ParentSpanId);
        Assert.Equal("kafka", publish.GetTagItem("messaging.system"));
        Assert.Equal(Topics.WeightsRaw, publish.GetTagItem("messaging.destination.name"));
        Assert.NotNull(publish.GetTagItem("messaging.kafka.offset"));   // set from the delivery report

        var process = Assert.Single(trace, a => a.Source.Name == StreamTracing.StreamsSourceName);
        Assert.Equal($"process {f.Pipeline.Names.ApplicationId}", process.DisplayName);
        Assert.Equal(publish.SpanId, process.ParentSpanId);
        Assert.Equal(publish.GetTagItem("messaging.kafka.offset"), process.GetTagItem("messaging.kafka.offset"));
        Assert.Equal(ActivityStatusCode.Unset, process.Status);

        var sinkSpans = trace.Where(a => a.Source.Name == StreamTracing.SinksSourceName).ToList();
        Assert.Equal(sinks.Order(), sinkSpans.Select(a => a.DisplayName["sink ".Length..]).Order());
        Assert.All(sinkSpans, s =>
        {
            Assert.Equal(process.SpanId, s.ParentSpanId);
            Assert.Equal(Topics.WeightsFiltered, s.GetTagItem("messaging.destination.name"));
        });

        // Between the topology and the sinks the context is the record's header: the result carries the process span's.
        var traceParent = ReadTraceParents(Topics.WeightsFiltered).Single(p => p.Contains(traceId.ToHexString(), StringComparison.Ordinal));
        Assert.Equal($"00-{traceId}-{process.SpanId}-01", traceParent);
    }

    /// <summary>The traceparent headers of every record on <paramref name="topic"/> so far.</summary>
    private List<string> ReadTraceParents(string topic)
    {
        using var consumer = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig
        {
            BootstrapServers = f.Kafka.BootstrapServers, GroupId = "trace-span-tests", EnableAutoCommit = false,
        }).Build();
        var ends = Enumerable.Range(0, Topics.DefaultPartitions)
            .Select(p => (Partition: p, End: consumer.QueryWatermarkOffsets(new TopicPartition(topic, p), TimeSpan.FromSeconds(10)).High.Value))
            .Where(p => p.End > 0).ToList();
        consumer.Assign(ends.Select(p => new TopicPartitionOffset(topic, p.Partition, Offset.Beginning)));
        var remaining = ends.ToDictionary(p => p.Partition, p => p.End);
        var parents = new List<string>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (remaining.Count > 0 && DateTime.UtcNow < deadline)
        {
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r is null || r.IsPartitionEOF) continue;
            if (r.Message.Headers.TryGetLastBytes(StreamTracing.TraceParent, out var bytes)) parents.Add(Encoding.ASCII.GetString(bytes));
            if (r.Offset.Value + 1 >= remaining[r.Partition.Value]) remaining.Remove(r.Partition.Value);
        }
        Assert.True(remaining.Count == 0, $"{topic} not read to its end: partitions {string.Join(", ", remaining.Keys)} left");
        return parents;
    }
}
