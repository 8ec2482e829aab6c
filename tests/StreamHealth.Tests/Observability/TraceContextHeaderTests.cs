using System.Diagnostics;
using System.Text;
using Confluent.Kafka;
using StreamHealth.Runtime.Observability;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Tests.Observability;

/// <summary>The trace context in Kafka headers (<see cref="StreamTracing"/>): what one layer writes the next reads back, a
/// header that is not a traceparent is no context, and a dead letter keeps its input's.</summary>
public sealed class TraceContextHeaderTests
{
    [Fact]
    public void A_context_written_into_headers_reads_back_as_the_same_remote_context()
    {
        using var span = new Activity("publish weights.raw").Start();
        span.TraceStateString = "streamhealth=1";
        var headers = new Headers();
        StreamTracing.Inject(span, headers);

        Assert.Equal(span.Id, Encoding.ASCII.GetString(headers.GetLastBytes(StreamTracing.TraceParent)));
        var read = StreamTracing.Extract(headers);
        Assert.Equal(span.TraceId, read.TraceId);
        Assert.Equal(span.SpanId, read.SpanId);
        Assert.Equal("streamhealth=1", read.TraceState);
        Assert.True(read.IsRemote);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("not-a-traceparent")]
    [InlineData("00-00000000000000000000000000000000-0000000000000000-01")]   // all-zero ids are invalid (W3C)
    public void Headers_without_a_valid_traceparent_are_no_context(string? traceParent)
    {
        var headers = new Headers();
        if (traceParent is not null) headers.Add(StreamTracing.TraceParent, Encoding.ASCII.GetBytes(traceParent));
        Assert.Equal(default, StreamTracing.Extract(headers));
        Assert.Equal(default, StreamTracing.Extract(null));
    }

    [Fact]
    public void A_dead_letter_keeps_the_trace_context_of_the_record_it_holds()
    {
        var traceParent = $"00-{ActivityTraceId.CreateRandom()}-{ActivitySpanId.CreateRandom()}-01";
        var input = new Headers
        {
            { StreamTracing.TraceParent, Encoding.ASCII.GetBytes(traceParent) },
            { StreamTracing.TraceState, "vendor=a"u8.ToArray() },
            { StreamHeaders.OutputId, "weights:0:1"u8.ToArray() },
        };
        var deadLetter = StreamHeaders.DeadLetter(input, "weights.raw", 0, 1, "weight out of range", "ArgumentException", "weights");
        Assert.Equal(traceParent, Encoding.ASCII.GetString(deadLetter.GetLastBytes(StreamTracing.TraceParent)));
        Assert.Equal("vendor=a", Encoding.ASCII.GetString(deadLetter.GetLastBytes(StreamTracing.TraceState)));
    }
}
