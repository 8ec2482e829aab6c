using Npgsql;
using StreamHealth.CallLogs.LlmExtraction;
using StreamHealth.Runtime.Streams;
using static StreamHealth.Tests.CallLogs.FakeChatEndpoint;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using CallLog = StreamHealth.Schemas.Avro.CallLogs.CallLog;
using CallLogOrigin = StreamHealth.Schemas.Avro.CallLogs.CallLogOrigin;

namespace StreamHealth.Tests.CallLogs;

/// <summary>The extraction stage with the OpenAI-compatible extractor, its endpoint a <see cref="FakeChatEndpoint"/> on 127.0.0.1.</summary>
public sealed class CallLogsLlmPipelineFixture : CallLogsPipelineFixture
{
    public const string Model = "pipeline-model";
    public FakeChatEndpoint Endpoint { get; }
    public OpenAiCompatibleExtractor Extractor { get; }

    public CallLogsLlmPipelineFixture() : this(FakeChatEndpoint.StartAsync().GetAwaiter().GetResult()) { }

    private CallLogsLlmPipelineFixture(FakeChatEndpoint endpoint) : this(endpoint, new OpenAiCompatibleExtractor(new ExtractorOptions
    {
        Kind = ExtractorOptions.OpenAi, BaseUrl = endpoint.BaseUrl, Model = Model, MaxBatchWaitMs = 0, RequestTimeoutMs = 5_000, MaxAttempts = 2,
        InitialBackoffMs = 1, MaxBackoffMs = 5, RequestsPerSecond = 1000, Burst = 1000,
    })) { }

    private CallLogsLlmPipelineFixture(FakeChatEndpoint endpoint, OpenAiCompatibleExtractor extractor) : base(extractor)
    {
        Endpoint = endpoint;
        Extractor = extractor;
    }

    public override void Dispose()
    {
        base.Dispose();
        Extractor.Dispose();
        Endpoint.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}

public sealed class CallLogsLlmPipelineTests(CallLogsLlmPipelineFixture f) : IClassFixture<CallLogsLlmPipelineFixture>
{
    private static CallLog Call(string callId, string transcript) => new()
    {
        event_time_unix_ms = AvroTime.FromUnixMs(DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeMilliseconds()), call_id = callId,
        patient_id = "patient-llm", duration_s = 200, transcript = transcript, origin = CallLogOrigin.CALL_LOG_ORIGIN_WEBHOOK, provider = "acme-voice",
    };

    private List<(string Name, string Extractor, int SpanStart)> Medications(string callId)
    {
        using var cmd = f.Postgres.CreateCommand("SELECT generic_name, extractor, span_start FROM calllogs.medication_entries WHERE call_id = @call");
        cmd.Parameters.AddWithValue("call", callId);
        using var reader = cmd.ExecuteReader();
        var rows = new List<(string, string, int)>();
        while (reader.Read()) rows.Add((reader.GetString(0), reader.GetString(1), reader.GetInt32(2)));
        return rows;
    }

    private string CheckinExtractor(string callId)
    {
        using var cmd = f.Postgres.CreateCommand("SELECT extractor FROM calllogs.checkins WHERE call_id = @call");
        cmd.Parameters.AddWithValue("call", callId);
        return (string)cmd.ExecuteScalar()!;
    }

    [Fact]
    public void The_models_entries_and_a_fallbacks_entries_reach_PostgreSQL_each_named_for_its_extractor()
    {
        // One call the model answers, then one while the endpoint is down: the stage goes on with the embedded extractor.
        var answered = $"Patient: I took my Lasix 40 mg this morning. call {Guid.NewGuid():N}";
        f.Endpoint.Label(answered, medications: [Medication("furosemide", 40, "mg", "every morning", "taken", "Lasix 40 mg")]);
        var (first, second) = ($"llm-{Guid.NewGuid():N}"[..20], $"llm-{Guid.NewGuid():N}"[..20]);
        f.Send(Call(first, answered));
        f.WaitForCheckin(first);
        Assert.Equal("openai:" + CallLogsLlmPipelineFixture.Model, CheckinExtractor(first));
        WaitFor(() => Medications(first).Count == 1, TimeSpan.FromSeconds(60), () => $"no medication row for {first}; logs:\n{f.Logs}");
        Assert.Equal(("furosemide", "openai:" + CallLogsLlmPipelineFixture.Model, answered.IndexOf("Lasix", StringComparison.Ordinal)),
            Medications(first).Single());

        f.Endpoint.Fault = Faults.Status500;
        var down = $"Patient: I took my metformin 500 mg today. call {Guid.NewGuid():N}";
        f.Send(Call(second, down));
        f.WaitForCheckin(second);
        Assert.Equal("embedded-1", CheckinExtractor(second));
        WaitFor(() => Medications(second).Count == 1, TimeSpan.FromSeconds(60), () => $"no medication row for {second}; logs:\n{f.Logs}");
        Assert.Equal(("metformin", "embedded-1"), (Medications(second).Single().Name, Medications(second).Single().Extractor));
        Assert.True(f.Extractor.Fallbacks >= 1);
    }
}
