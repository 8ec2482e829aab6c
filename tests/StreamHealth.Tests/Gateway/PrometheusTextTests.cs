using StreamHealth.Gateway.Observability;

namespace StreamHealth.Tests.Gateway;

/// <summary>The gateway's reader of the Prometheus text format (what it scrapes from the processors' /metrics): escapes in label
/// values come back as written, special values parse, and lines that do not parse are counted and skipped, never thrown on.</summary>
public sealed class PrometheusTextTests
{
    [Fact]
    public void Samples_labels_with_escapes_and_special_values_are_read_and_malformed_lines_skipped()
    {
        const string text = """
            # HELP streamhealth_sink_lag records a sink has not written yet
            # TYPE streamhealth_sink_lag gauge
            streamhealth_sink_lag{host="h-1",sink="weights-postgres",topic="weights.filtered"} 42 1733364000000
            streamhealth_sink_last_error_time_seconds{error="22021: invalid byte sequence for encoding \"UTF8\": 0x00\\path\nnext",sink="s"} 1.7333e9
            process_runtime_up NaN
            up_inf{a="b",} +Inf
            broken{a="unterminated} 1
            no_value{a="b"}
            {a="b"} 3
            """;
        var samples = PrometheusText.Parse(text, out var malformed);

        Assert.Equal(3, malformed);
        Assert.Equal(["streamhealth_sink_lag", "streamhealth_sink_last_error_time_seconds", "process_runtime_up", "up_inf"], samples.Select(s => s.Name));
        Assert.Equal(42, samples[0].Value);
        Assert.Equal("weights.filtered", samples[0].Label("topic"));
        Assert.Equal("22021: invalid byte sequence for encoding \"UTF8\": 0x00\\path\nnext", samples[1].Label("error"));
        Assert.Equal(1.7333e9, samples[1].Value);
        Assert.True(double.IsNaN(samples[2].Value));
        Assert.Empty(samples[2].Labels);
        Assert.Equal(double.PositiveInfinity, samples[3].Value);
        Assert.Equal("b", samples[3].Label("a"));
    }
}
