using System.Text;
using Confluent.Kafka;
using Npgsql;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.CallLogs.Pipeline;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using CallKey = StreamHealth.Schemas.Avro.Common.CallKey;
using CallLog = StreamHealth.Schemas.Avro.CallLogs.CallLog;
using CallLogOrigin = StreamHealth.Schemas.Avro.CallLogs.CallLogOrigin;
using CheckInCreated = StreamHealth.Schemas.Avro.CallLogs.CheckInCreated;
using DashboardRefreshNeeded = StreamHealth.Schemas.Avro.CallLogs.DashboardRefreshNeeded;
using HealthEntry = StreamHealth.Schemas.Avro.CallLogs.HealthEntry;

namespace StreamHealth.Tests.CallLogs;

/// <summary>The call-log extraction on real parts for one test class: its own topics on an embedded Kafka (calls with one
/// partition, so a later call proves an earlier one was processed, and its dead-letter topic), its own migrated PostgreSQL
/// database with the stand-in schema registry on it, and <see cref="CallLogsPipeline"/> (topology and sinks).</summary>
public class CallLogsPipelineFixture : IDisposable
{
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public TestLogs Logs { get; } = new();
    public TestRegistry Registry { get; }
    public NpgsqlDataSource Postgres { get; }
    public CallLogsTopics Topics { get; }
    public CallLogsPipeline Pipeline { get; }
    private readonly string _stateDir = Directory.CreateTempSubdirectory("streamhealth-calllogs-").FullName;

    public CallLogsPipelineFixture() : this(null) { }

    /// <summary>With <paramref name="extractor"/> in the topology instead of the embedded one.</summary>
    protected CallLogsPipelineFixture(IHealthEntryExtractor? extractor)
    {
        Topics = NewTopics();
        var connectionString = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("calllogs_pipeline"));
        StreamHealth.Runtime.Storage.PostgresMigrator.MigrateAsync(connectionString).GetAwaiter().GetResult();
        Registry = TestRegistry.Start(connectionString);
        Postgres = NpgsqlDataSource.Create(connectionString);
        Pipeline = StartPipeline(Topics, new CallLogsOptions(), _stateDir, extractor);
    }

    /// <summary>A calls topic of one partition (so that a later call's output proves an earlier one was processed) and its outputs.</summary>
    public CallLogsTopics NewTopics()
    {
        var topics = new CallLogsTopics(Kafka.NewTopic("calls", 1), Kafka.NewTopic("entries", 2), Kafka.NewTopic("checkins", 2), Kafka.NewTopic("refresh", 2));
        Kafka.Cluster.CreateTopic(topics.Calls + StreamHealth.Schemas.Topics.DeadLetterSuffix, 1);
        return topics;
    }

    /// <summary>An extraction with its sinks on this fixture's broker, registry and database.</summary>
    public CallLogsPipeline StartPipeline(CallLogsTopics topics, CallLogsOptions options, string stateDir, IHealthEntryExtractor? extractor = null) =>
        new CallLogsPipeline(new StreamHostOptions
    {
        SchemaRegistry = Registry.Connection, BootstrapServers = Kafka.BootstrapServers, StateDirectory = stateDir, CommitIntervalMs = 200,
        CreateInternalTopic = (topic, partitions) => Kafka.Cluster.CreateTopic(topic, partitions),
    }, Postgres, Logs, options, new CallLogsPipelineNames(topics.Calls + "-app", topics), extractor).Start();

    public byte[] Key(string callId, string? callsTopic = null) => Registry.Connection.SerDes<CallKey>().Serialize(new CallKey { call_id = callId },
        new SerializationContext(MessageComponentType.Key, callsTopic ?? Topics.Calls));

    public void Send(params CallLog[] calls) => SendTo(Topics.Calls, calls);

    public void SendTo(string callsTopic, params CallLog[] calls)
    {
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = Kafka.BootstrapServers, EnableIdempotence = true }).Build();
        foreach (var call in calls)
            p.Produce(callsTopic, new Message<byte[], byte[]>
            {
                Key = Key(call.call_id, callsTopic),
                Value = Registry.Value(callsTopic, call),
            });
        if (p.Flush(TimeSpan.FromSeconds(10)) > 0) throw new TimeoutException("calls not acknowledged");
    }

    /// <summary>Every record of <paramref name="topic"/> from the start whose key passes <paramref name="keep"/>, until no record has
    /// come for 3 s after <paramref name="ready"/> holds, or the wait ends.</summary>
    public List<Message<byte[], byte[]>> Drain(string topic, Func<byte[], bool> keep, Func<List<Message<byte[], byte[]>>, bool> ready, int seconds = 60)
    {
        var found = new List<Message<byte[], byte[]>>();
        using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = Kafka.BootstrapServers, GroupId = "drain-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        c.Subscribe(topic);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        var quietSince = DateTime.UtcNow;
        while (DateTime.UtcNow < deadline && !(ready(found) && DateTime.UtcNow - quietSince > TimeSpan.FromSeconds(3)))
            if (c.Consume(TimeSpan.FromMilliseconds(100)) is { } r && keep(r.Message.Key))
            {
                found.Add(r.Message);
                quietSince = DateTime.UtcNow;
            }
        return found;
    }

    public long Count(string sql, string callId)
    {
        using var cmd = Postgres.CreateCommand(sql);
        cmd.Parameters.AddWithValue("call", callId);
        return Convert.ToInt64(cmd.ExecuteScalar());
    }

    /// <summary>Waits until calllogs.checkins has the call's row (the check-in sink has read past it).</summary>
    public void WaitForCheckin(string callId) =>
        WaitFor(() => Count("SELECT count(*) FROM calllogs.checkins WHERE call_id = @call", callId) == 1, TimeSpan.FromSeconds(60),
            () => $"no check-in row for {callId}; logs:\n{Logs}");

    public virtual void Dispose()
    {
        Pipeline.Dispose();
        Registry.Dispose();
        Postgres.Dispose();
        Kafka.Dispose();
        Directory.Delete(_stateDir, recursive: true);
    }
}

public sealed class CallLogsPipelineTests(CallLogsPipelineFixture f) : IClassFixture<CallLogsPipelineFixture>
{
    private static readonly long T0 = DateTimeOffset.UtcNow.AddHours(-3).ToUnixTimeMilliseconds() / 1000 * 1000;

    private const string CheckinTranscript =
        "Nurse: Are you taking the hydrochlorothiazide?\n" +
        "Patient: Yes, 25 mg every morning.\n" +
        "Patient: For breakfast two eggs and a slice of toast.\n" +
        "Patient: I have a headache, pain is 6/10. No fever.";

    private static string Id(string name) => $"{name}-{Guid.NewGuid():N}"[..(name.Length + 13)];

    private static CallLog Call(string callId, string patient, string transcript, CallLogOrigin origin = CallLogOrigin.CALL_LOG_ORIGIN_WEBHOOK,
        long? timeMs = null) => new()
    {
        event_time_unix_ms = AvroTime.FromUnixMs(timeMs ?? T0), call_id = callId, patient_id = patient, duration_s = 312, transcript = transcript,
        origin = origin, provider = "acme-voice",
    };

    private List<object?[]> Rows(string sql, string callId, int columns)
    {
        using var cmd = f.Postgres.CreateCommand(sql);
        cmd.Parameters.AddWithValue("call", callId);
        using var reader = cmd.ExecuteReader();
        var rows = new List<object?[]>();
        while (reader.Read())
        {
            var row = new object?[columns];
            for (var i = 0; i < columns; i++) row[i] = reader.IsDBNull(i) ? null : reader.GetValue(i);
            rows.Add(row);
        }
        return rows;
    }

    private void WaitForEntries(string callId, int expected) =>
        WaitFor(() => f.Count("""
            SELECT (SELECT count(*) FROM calllogs.medication_entries WHERE call_id = @call)
                 + (SELECT count(*) FROM calllogs.food_entries WHERE call_id = @call)
                 + (SELECT count(*) FROM calllogs.symptom_entries WHERE call_id = @call)
            """, callId) >= expected, TimeSpan.FromSeconds(60), () => $"fewer than {expected} entry rows for {callId}; logs:\n{f.Logs}");

    [Fact]
    public void A_call_becomes_a_checkin_and_its_entries_in_the_kind_tables_with_their_attributes()
    {
        var (callId, patient) = (Id("call"), Id("patient"));
        // What the extractor finds is its own tests' business; the pipeline must carry all of it, attribute for attribute.
        var expected = new EmbeddedExtractor().Extract(CheckinTranscript);
        var hctz = Assert.Single(expected.Medications);
        Assert.Equal(("hydrochlorothiazide", 25.0, "mg"), (hctz.GenericName, hctz.DoseValue, hctz.DoseUnit));
        Assert.Contains(expected.Foods, x => x.Item == "toast");
        Assert.Contains(expected.Symptoms, x => x.Name == "fever" && !x.Present);

        f.Send(Call(callId, patient, CheckinTranscript));
        f.WaitForCheckin(callId);
        var total = expected.Medications.Count + expected.Foods.Count + expected.Symptoms.Count;
        WaitForEntries(callId, total);

        var checkin = Assert.Single(Rows("""
            SELECT patient_id, event_time, provider, duration_s, medication_count, food_count, symptom_count, extractor
            FROM calllogs.checkins WHERE call_id = @call
            """, callId, 8));
        Assert.Equal(patient, checkin[0]);
        Assert.Equal(DateTime.UnixEpoch.AddMilliseconds(T0), (DateTime)checkin[1]!);
        Assert.Equal(("acme-voice", 312), ((string)checkin[2]!, (int)checkin[3]!));
        Assert.Equal((expected.Medications.Count, expected.Foods.Count, expected.Symptoms.Count), ((int)checkin[4]!, (int)checkin[5]!, (int)checkin[6]!));
        Assert.Equal(EmbeddedExtractor.ExtractorName, checkin[7]);

        // Ids: call_id:index, medications, then foods, then symptoms.
        var meds = Rows("""
            SELECT entry_id, patient_id, generic_name, dose_value, dose_unit, frequency, status, confidence, span_start, span_length, extractor, event_time
            FROM calllogs.medication_entries WHERE call_id = @call ORDER BY entry_id
            """, callId, 12);
        var med = Assert.Single(meds);
        Assert.Equal([callId + ":0", patient, "hydrochlorothiazide", 25.0, "mg", Frequencies.EveryMorning, "taken", hctz.Confidence, hctz.Span.Start,
            hctz.Span.Length, EmbeddedExtractor.ExtractorName, DateTime.UnixEpoch.AddMilliseconds(T0)], med);
        Assert.Equal("hydrochlorothiazide", CheckinTranscript.Substring(hctz.Span.Start, hctz.Span.Length).ToLowerInvariant());

        var foods = Rows("""
            SELECT entry_id, item, quantity_value, quantity_unit, meal, confidence, span_start, span_length
            FROM calllogs.food_entries WHERE call_id = @call ORDER BY span_start
            """, callId, 8);
        Assert.Equal(expected.Foods.Count, foods.Count);
        for (var i = 0; i < foods.Count; i++)
        {
            var x = expected.Foods.OrderBy(e => e.Span.Start).ElementAt(i);
            var index = 1 + expected.Foods.ToList().IndexOf(x);
            Assert.Equal([$"{callId}:{index}", x.Item, x.Quantity, x.Unit, x.Meal?.ToString().ToLowerInvariant(), x.Confidence, x.Span.Start, x.Span.Length],
                foods[i]);
        }
        var toast = foods.Single(r => (string)r[1]! == "toast");
        Assert.Equal((1.0, "slice", "breakfast"), ((double)toast[2]!, (string)toast[3]!, (string)toast[4]!));

        var symptoms = Rows("""
            SELECT entry_id, name, present, severity, onset, confidence, span_start, span_length
            FROM calllogs.symptom_entries WHERE call_id = @call ORDER BY span_start
            """, callId, 8);
        Assert.Equal(expected.Symptoms.Count, symptoms.Count);
        foreach (var x in expected.Symptoms)
        {
            var index = 1 + expected.Foods.Count + expected.Symptoms.ToList().IndexOf(x);
            Assert.Contains([$"{callId}:{index}", x.Name, x.Present, x.Severity, x.Onset, x.Confidence, x.Span.Start, x.Span.Length], symptoms);
        }
        Assert.Equal((true, "6/10"), ((bool)symptoms.Single(r => (string)r[1]! == "headache")[2]!, (string?)symptoms.Single(r => (string)r[1]! == "headache")[3]));
        Assert.False((bool)symptoms.Single(r => (string)r[1]! == "fever")[2]!);

        // The events: one check-in and one dashboard refresh, keyed by the patient.
        var patientKey = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        bool IsPatient(byte[] key, string topic) => patientKey.ReadKey(key, topic).user_id == patient;
        var refresh = Assert.Single(f.Drain(f.Topics.DashboardRefresh, k => IsPatient(k, f.Topics.DashboardRefresh), found => found.Count >= 1));
        var r = f.Registry.Read<DashboardRefreshNeeded>(f.Topics.DashboardRefresh, refresh.Value);
        Assert.Equal((patient, DashboardReasons.CheckinCreated, callId, T0), (r.patient_id, r.reason, r.cause_id, AvroTime.ToUnixMs(r.event_time_unix_ms)));
    }

    [Fact]
    public void Extracted_call_ids_are_forgotten_after_the_keep_and_the_tables_still_hold_the_call_once()
    {
        var topics = f.NewTopics();
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-calllogs-prune-").FullName;
        try
        {
            // Kept 3 s, pruned every 0.6 s: what production does in 30 days and hourly.
            using var pipeline = f.StartPipeline(topics, new CallLogsOptions { ExtractedKeepDays = 3.0 / 86_400, ExtractedPruneIntervalMinutes = 0.01 }, stateDir);
            var (callId, patient) = (Id("prune"), Id("patient"));
            var call = Call(callId, patient, "Patient: I took my metformin 500 mg this morning.");
            f.SendTo(topics.Calls, call);
            f.WaitForCheckin(callId);
            WaitFor(() => f.Logs.Text.Contains("forgot 1 calls extracted before"), TimeSpan.FromSeconds(60), () => $"the store was never pruned; logs:\n{f.Logs}");
            // A redelivery after the keep is extracted again (the store no longer knows it)...
            var marker = Id("marker");
            f.SendTo(topics.Calls, call, Call(marker, patient, "Patient: All good."));
            f.WaitForCheckin(marker);
            var patientKey = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
            var checkins = f.Drain(topics.Checkins, k => patientKey.ReadKey(k, topics.Checkins).user_id == patient, found => found.Count >= 3)
                .Select(m => f.Registry.Read<CheckInCreated>(topics.Checkins, m.Value)).ToList();
            Assert.Equal(2, checkins.Count(c => c.call_id == callId));
            // ...under the same ids, so the tables hold it once.
            Assert.Equal(1, f.Count("SELECT count(*) FROM calllogs.checkins WHERE call_id = @call", callId));
            Assert.Equal(1, f.Count("SELECT count(*) FROM calllogs.medication_entries WHERE call_id = @call", callId));
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    [Fact]
    public void Extracted_call_state_of_the_first_format_still_reads()
    {
        var format1 = new byte[17];
        format1[0] = 1;
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(format1.AsSpan(1), 42);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(format1.AsSpan(9), T0);
        Assert.Equal(new ExtractedCall(42, T0, T0), ExtractedCallSerDes.Instance.Decode(format1));
        var now = new ExtractedCall(7, T0, T0 + 5_000);
        Assert.Equal(now, ExtractedCallSerDes.Instance.Decode(ExtractedCallSerDes.Instance.Encode(now, 0)));
        Assert.Throws<FormatException>(() => ExtractedCallSerDes.Instance.Decode(new byte[] { 3, 0, 0 }));
    }

    [Fact]
    public void The_same_call_delivered_twice_is_extracted_once()
    {
        var (callId, patient) = (Id("twice"), Id("patient"));
        var first = Call(callId, patient, "Patient: I took my metformin 500 mg this morning.");
        // The polling copy of the same call, with a transcript the provider has since revised: the first delivery's entries stand.
        var again = Call(callId, patient, "Patient: I took my metformin 500 mg this morning. I also had a headache.", CallLogOrigin.CALL_LOG_ORIGIN_POLLING);
        var marker = Id("marker");
        // One partition: the marker's check-in proves both deliveries were processed before it.
        f.Send(first, again, first, Call(marker, patient, "Patient: All good."));
        f.WaitForCheckin(marker);
        WaitForEntries(callId, 1);

        Assert.Equal(1, f.Count("SELECT count(*) FROM calllogs.checkins WHERE call_id = @call", callId));
        Assert.Equal(1, f.Count("SELECT count(*) FROM calllogs.medication_entries WHERE call_id = @call", callId));
        Assert.Equal(0, f.Count("SELECT count(*) FROM calllogs.symptom_entries WHERE call_id = @call", callId));
        Assert.Equal(1, f.Count("SELECT medication_count + food_count + symptom_count FROM calllogs.checkins WHERE call_id = @call", callId));
        // Once on the topics too, not only in the tables: a consumer of the events sees the call once.
        var patientKey = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var checkins = f.Drain(f.Topics.Checkins, k => patientKey.ReadKey(k, f.Topics.Checkins).user_id == patient, found => found.Count >= 2)
            .Select(m => f.Registry.Read<CheckInCreated>(f.Topics.Checkins, m.Value)).ToList();
        Assert.Equal(1, checkins.Count(c => c.call_id == callId));
        var entries = f.Drain(f.Topics.Entries, k => patientKey.ReadKey(k, f.Topics.Entries).user_id == patient, found => found.Count >= 1)
            .Select(m => f.Registry.Read<HealthEntry>(f.Topics.Entries, m.Value)).ToList();
        var entry = Assert.Single(entries, e => e.call_id == callId);
        Assert.Equal((callId + ":0", "metformin", 500.0, "mg", "500 mg"), (entry.entry_id, entry.text, entry.dose_value, entry.dose_unit, entry.quantity));
    }

    [Fact]
    public void Bad_records_are_dead_lettered_with_the_reason_and_the_pipeline_goes_on()
    {
        var patient = Id("patient");
        var (oversized, control, late, mismatch, good) = (Id("big"), Id("ctl"), Id("late"), Id("mism"), Id("good"));
        var mismatched = Call(mismatch, patient, "Patient: fine.");
        f.Send(
            Call("bad id!", patient, "Patient: I took metformin."),
            Call(oversized, patient, "Patient: " + new string('a', 70 * 1024)),
            Call(control, patient, "Patient: I took\u0001 metformin."),
            Call(late, patient, "Patient: fine.", timeMs: DateTimeOffset.UtcNow.AddDays(3).ToUnixTimeMilliseconds()));
        // A value whose call_id is not its key's.
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Kafka.BootstrapServers }).Build())
        {
            p.Produce(f.Topics.Calls, new Message<byte[], byte[]> { Key = f.Key(mismatch), Value = f.Registry.Value(f.Topics.Calls, Call("other-call", patient, "x")) });
            p.Flush(TimeSpan.FromSeconds(10));
        }
        f.Send(Call(good, patient, "Patient: I took my metformin."));
        f.WaitForCheckin(good);

        string[] bad = ["bad id!", oversized, control, late, mismatch];
        var keys = bad.Select(id => f.Key(id)).ToList();
        var dead = f.Drain(f.Topics.Calls + Topics.DeadLetterSuffix, k => keys.Any(key => key.AsSpan().SequenceEqual(k)), found => found.Count >= bad.Length);
        string Reason(string callId) => Encoding.UTF8.GetString(Assert.Single(dead, d => d.Key.AsSpan().SequenceEqual(f.Key(callId)))
            .Headers.GetLastBytes(StreamHeaders.Error));
        Assert.Contains("call_id = 'bad id!': must be", Reason("bad id!"));
        Assert.Contains("transcript is 71689 bytes (UTF-8); at most 65536 are extracted", Reason(oversized));
        Assert.Contains("transcript contains U+0001 at position 15", Reason(control));
        Assert.Contains("event_time", Reason(late));
        Assert.Contains("call_id 'other-call' does not match the record key", Reason(mismatch));
        Assert.All(dead, d => Assert.Equal(CallLogsTopology.ProcessorName, Encoding.UTF8.GetString(d.Headers.GetLastBytes(StreamHeaders.Processor))));
        foreach (var callId in bad)
            Assert.Equal(0, f.Count("SELECT count(*) FROM calllogs.checkins WHERE call_id = @call", callId));
        Assert.Equal(1, f.Count("SELECT count(*) FROM calllogs.medication_entries WHERE call_id = @call", good));
    }

    [Fact]
    public void A_call_with_nothing_to_extract_is_a_checkin_with_zero_entries()
    {
        const string smallTalk = "Nurse: Good morning, how are you today?\nPatient: Fine, thanks. The weather is lovely.";
        var empty = new EmbeddedExtractor().Extract(smallTalk);
        Assert.Equal(0, empty.Medications.Count + empty.Foods.Count + empty.Symptoms.Count);
        var (callId, patient) = (Id("empty"), Id("patient"));
        f.Send(Call(callId, patient, smallTalk));
        f.WaitForCheckin(callId);
        Assert.Equal(0, f.Count("SELECT medication_count + food_count + symptom_count FROM calllogs.checkins WHERE call_id = @call", callId));
        Thread.Sleep(1_000);   // the entries sink runs on its own; nothing may arrive for this call
        Assert.Equal(0, f.Count("""
            SELECT (SELECT count(*) FROM calllogs.medication_entries WHERE call_id = @call)
                 + (SELECT count(*) FROM calllogs.food_entries WHERE call_id = @call)
                 + (SELECT count(*) FROM calllogs.symptom_entries WHERE call_id = @call)
            """, callId));
    }
}
