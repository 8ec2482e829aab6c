using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.CallLogs.Pipeline;

/// <summary>Settings of the call-log extraction, section "CallLogs".</summary>
public sealed class CallLogsOptions
{
    public const string Section = "CallLogs";
    /// <summary>Largest transcript extracted, in UTF-8 bytes: a 30-minute call is about 25 KB of text, so 64 KiB leaves room for a
    /// long call while a runaway (a provider sending audio as text, say) is dead-lettered instead of held by the extractor.</summary>
    public int MaxTranscriptBytes { get; set; } = 64 * 1024;
    /// <summary>Longest call accepted, seconds (a day: anything longer is a provider's bug, not a check-in).</summary>
    public int MaxDurationSeconds { get; set; } = 24 * 3600;
    /// <summary>The platform's event-time rule (section "Input").</summary>
    public EventTimeRule TimeRule { get; set; } = EventTimeRule.Default;
    /// <summary>How long an extracted call id is kept in the extraction's store, days (the fetch worker's ledger keeps 30).</summary>
    public double ExtractedKeepDays { get; set; } = 30;
    public double ExtractedPruneIntervalMinutes { get; set; } = 60;

    public void Validate()
    {
        if (!double.IsFinite(ExtractedKeepDays) || ExtractedKeepDays is < 0.00001 or > 3650)
            throw new ArgumentException($"{Section}:ExtractedKeepDays = {ExtractedKeepDays}: must be 0.00001-3650 days");
        if (!double.IsFinite(ExtractedPruneIntervalMinutes) || ExtractedPruneIntervalMinutes is < 0.01 or > 1440)
            throw new ArgumentException($"{Section}:ExtractedPruneIntervalMinutes = {ExtractedPruneIntervalMinutes}: must be 0.01-1440 minutes");
        if (MaxTranscriptBytes is < 1024 or > 1024 * 1024)
            throw new ArgumentException($"{Section}:MaxTranscriptBytes = {MaxTranscriptBytes}: must be 1024-1048576 bytes");
        if (MaxDurationSeconds is < 60 or > 7 * 24 * 3600)
            throw new ArgumentException($"{Section}:MaxDurationSeconds = {MaxDurationSeconds}: must be 60-604800 s");
    }

    public static CallLogsOptions Load(IConfiguration configuration)
    {
        var options = configuration.GetSection(Section).Get<CallLogsOptions>() ?? new CallLogsOptions();
        options.TimeRule = InputOptions.TimeRuleOf(configuration);
        options.Validate();
        return options;
    }
}

/// <summary>The topics one extraction reads and writes (production uses <see cref="Default"/>; tests give each their own).</summary>
public sealed record CallLogsTopics(string Calls, string Entries, string Checkins, string DashboardRefresh)
{
    public static readonly CallLogsTopics Default =
        new(Topics.CallLogsCalls, Topics.CallLogsEntries, Topics.CallLogsCheckins, Topics.CallLogsDashboardRefresh);
}

/// <summary>calllogs.calls (key CallKey) → the extractor (<see cref="IHealthEntryExtractor"/>) → per call, one
/// <see cref="AvroRecords.CallLogs.HealthEntry"/> per entry on calllogs.entries (the HealthEntryExtracted event), one
/// <see cref="AvroRecords.CallLogs.CheckInCreated"/> on calllogs.checkins and one <see cref="AvroRecords.CallLogs.DashboardRefreshNeeded"/>
/// on calllogs.dashboard-refresh, all keyed by the patient (UserKey), so a patient's events stay in order on one partition.
/// <list type="bullet">
/// <item>A record with a bad id, a value whose call_id is not its key's, an event time outside the input rules, a duration
/// outside 0-<see cref="CallLogsOptions.MaxDurationSeconds"/>, a transcript over <see cref="CallLogsOptions.MaxTranscriptBytes"/>
/// or with control characters, is dead-lettered with the reason (calllogs.calls.dlq) and the next record goes on.</item>
/// <item>Entry ids are deterministic: <c>{call_id}:{index}</c>, medications then foods then symptoms in the extractor's order, so
/// a replay emits the same ids (the id splits at its last ':' into call and index, so ids of two calls never collide).</item>
/// <item>Once per call id: a RocksDB store (<see cref="CallsStore"/>) keeps each extracted call id with the source offset of the
/// delivery that was extracted. A second delivery of the call (the provider's webhook and our polling both fetch it, or the
/// webhook retries) is another record with the same call id: skipped, so its events are not emitted twice and a later, different
/// transcript cannot mix its entries into the first one's ids. Why a store and not only the sinks' idempotence: the
/// deterministic ids make the <em>rows</em> once, but every consumer of calllogs.entries and calllogs.checkins would see the
/// events twice, and a redelivered transcript that differs would map other entries onto the same ids. The delivery extracted
/// first wins. The record processed again after a crash (the same offset) emits its outputs again, since the crash may have
/// lost them; they carry the same output ids, which the sinks drop.</item>
/// </list></summary>
public static class CallLogsTopology
{
    public const string ApplicationId = "calllogs-extract";
    public const string CallsStore = "calllogs-calls";
    public const string ProcessorName = "calllogs-extract";

    public static StreamTopology Create(IHealthEntryExtractor extractor, CallLogsOptions? options = null, string applicationId = ApplicationId,
        CallLogsTopics? topics = null)
    {
        options ??= new CallLogsOptions();
        options.Validate();
        topics ??= CallLogsTopics.Default;
        var settings = new CallLogsProcessorSettings(options, extractor, topics);
        return new StreamTopology
        {
            ApplicationId = applicationId,
            SourceTopic = topics.Calls,
            ProcessorName = ProcessorName,
            SinkTopics = [topics.Entries, topics.Checkins, topics.DashboardRefresh],
            RequiresSchemaRegistry = true,
            Processor = services => TransformerBuilder.New<byte[], byte[], byte[], Emission>()
                .Transformer<CallLogsProcessor>(services, settings)
                .StateStore(Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(CallsStore), new StringSerDes(), ExtractedCallSerDes.Instance)
                    .WithCachingEnabled())
                .Build(),
        };
    }

    public sealed record CallLogsProcessorSettings(CallLogsOptions Options, IHealthEntryExtractor Extractor, CallLogsTopics Topics);

    /// <summary>An entry's id: the call and the entry's index in it.</summary>
    public static string EntryId(string callId, int index) => callId + ":" + index.ToString(CultureInfo.InvariantCulture);

    public sealed class CallLogsProcessor : StreamProcessor<AvroRecords.Common.CallKey, AvroRecords.CallLogs.CallLog>
    {
        private readonly CallLogsOptions _options = null!;
        private readonly IHealthEntryExtractor _extractor = null!;
        private readonly CallLogsTopics _topics = null!;
        private readonly ILogger _log = null!;
        private readonly AvroSerDes<AvroRecords.Common.UserKey> _keys = null!;
        private readonly AvroSerDes<AvroRecords.CallLogs.HealthEntry> _entries = null!;
        private readonly AvroSerDes<AvroRecords.CallLogs.CheckInCreated> _checkins = null!;
        private readonly AvroSerDes<AvroRecords.CallLogs.DashboardRefreshNeeded> _refreshes = null!;
        private IKeyValueStore<string, ExtractedCall> _calls = null!;

        public CallLogsProcessor() : base(null!, null!, null!, "") { }

        public CallLogsProcessor(ProcessorServices services, CallLogsProcessorSettings settings)
            : base(services, services.Schemas.SerDes<AvroRecords.Common.CallKey>(), services.Schemas.SerDes<AvroRecords.CallLogs.CallLog>(), ProcessorName)
        {
            _options = settings.Options;
            _extractor = settings.Extractor;
            _topics = settings.Topics;
            _log = services.Log;
            _keys = services.Schemas.SerDes<AvroRecords.Common.UserKey>();
            _entries = services.Schemas.SerDes<AvroRecords.CallLogs.HealthEntry>();
            _checkins = services.Schemas.SerDes<AvroRecords.CallLogs.CheckInCreated>();
            _refreshes = services.Schemas.SerDes<AvroRecords.CallLogs.DashboardRefreshNeeded>();
        }

        protected override void Init()
        {
            _calls = (IKeyValueStore<string, ExtractedCall>)(Context.GetStateStore(CallsStore)
                ?? throw new InvalidOperationException($"store {CallsStore} is not connected to the processor"));
            Context.Schedule(TimeSpan.FromMinutes(_options.ExtractedPruneIntervalMinutes), PunctuationType.PROCESSING_TIME,
                now => Punctuation(PruneExtracted, now));
        }

        /// <summary>Forgets the calls extracted more than <see cref="CallLogsOptions.ExtractedKeepDays"/> ago, so the store holds
        /// weeks of call ids, not every call ever. By then the fetch worker's ledger (kept as long) has long stopped any repeat
        /// of the call from reaching calllogs.calls; a replay of older input extracts it again under the same output ids, and
        /// the sinks store each row once.</summary>
        private void PruneExtracted(long nowUnixMs)
        {
            var before = nowUnixMs - (long)(_options.ExtractedKeepDays * 86_400_000);
            List<string>? stale = null;
            foreach (var kv in _calls.All())
                if (kv.Value.ExtractedAtUnixMs < before) (stale ??= []).Add(kv.Key);
            if (stale is null) return;
            foreach (var key in stale) _calls.Delete(key);
            _log.LogInformation("{Processor}: forgot {Count} calls extracted before {Before:O}", ProcessorName, stale.Count,
                DateTimeOffset.FromUnixTimeMilliseconds(before));
        }

        protected override void Process(in InputRecord<AvroRecords.Common.CallKey, AvroRecords.CallLogs.CallLog> record)
        {
            var call = record.Value;
            var callId = record.Key.call_id;
            if (InputRules.CheckId("call_id", callId) is { } badKey) throw new CallLogInputException("record key: " + badKey);
            if (call.call_id != callId)
                throw new CallLogInputException($"call_id {InputRules.Quote(call.call_id ?? "")} does not match the record key {InputRules.Quote(callId)}");
            var timeMs = AvroTime.ToUnixMs(call.event_time_unix_ms);
            var receivedAtMs = EventTimeRule.ReceivedAt(record.TimestampUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            if ((InputRules.CheckId("patient_id", call.patient_id)
                 ?? InputRules.CheckText("provider", call.provider, 128, required: true)
                 ?? _options.TimeRule.Check("event_time", timeMs, receivedAtMs)
                 ?? CheckDuration(call.duration_s)
                 ?? CheckTranscript(call.transcript)) is { } bad)
                throw new CallLogInputException(bad);

            if (_calls.Get(callId) is { } extracted)
            {
                SkipAlreadyApplied();
                if (extracted.SourceOffset != record.Offset)
                {
                    // Another delivery of a call already extracted (webhook and polling, a retried webhook): the first one's
                    // entries stand.
                    _log.LogDebug("call {CallId} at offset {Offset}: already extracted from offset {First}; skipped", callId, record.Offset,
                        extracted.SourceOffset);
                    return;
                }
                // This very record, processed again after a crash: its outputs may have been lost, so they go out again
                // under the same output ids (the sinks drop the repeats).
            }
            // Encoded before the store is written: a record that cannot be encoded (the registry unreachable) changes nothing.
            var outputs = Extract(call, callId, timeMs);
            // The key once per topic: each topic's key subject is its own (TopicNameStrategy).
            var patient = new AvroRecords.Common.UserKey { user_id = call.patient_id };
            var entriesKey = _keys.Serialize(patient, new SerializationContext(MessageComponentType.Key, _topics.Entries));
            var checkinsKey = _keys.Serialize(patient, new SerializationContext(MessageComponentType.Key, _topics.Checkins));
            var refreshKey = _keys.Serialize(patient, new SerializationContext(MessageComponentType.Key, _topics.DashboardRefresh));
            _calls.Put(callId, new ExtractedCall(record.Offset, timeMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));
            foreach (var (topic, outputId, value) in outputs)
                EmitBytes(topic, topic == _topics.Entries ? entriesKey : topic == _topics.Checkins ? checkinsKey : refreshKey, value, timeMs, outputId);
        }

        private string? CheckDuration(int durationS) =>
            durationS < 0 || durationS > _options.MaxDurationSeconds
                ? $"duration_s = {durationS}: must be 0-{_options.MaxDurationSeconds} s"
                : null;

        private string? CheckTranscript(string? transcript)
        {
            if (transcript is null) return "transcript is required";
            var bytes = Encoding.UTF8.GetByteCount(transcript);
            if (bytes > _options.MaxTranscriptBytes)
                return $"transcript is {bytes} bytes (UTF-8); at most {_options.MaxTranscriptBytes} are extracted";
            return InputRules.CheckText("transcript", transcript, int.MaxValue);
        }

        /// <summary>The call's outputs, encoded: its entries, its check-in, its dashboard refresh.</summary>
        private List<(string Topic, string OutputId, byte[] Value)> Extract(AvroRecords.CallLogs.CallLog call, string callId, long timeMs)
        {
            var result = _extractor.Extract(call.transcript);
            var outputs = new List<(string, string, byte[])>(result.Medications.Count + result.Foods.Count + result.Symptoms.Count + 2);
            var index = 0;
            var time = AvroTime.FromUnixMs(timeMs);
            AvroRecords.CallLogs.HealthEntry Entry(AvroRecords.CallLogs.HealthEntryKind kind, string name, double confidence, TranscriptSpan span,
                string extractor) => new()
            {
                event_time_unix_ms = time, entry_id = EntryId(callId, index++), call_id = callId, patient_id = call.patient_id, kind = kind,
                text = name, confidence = confidence, span_start = span.Start, span_length = span.Length, extractor = extractor,
            };
            void Add(AvroRecords.CallLogs.HealthEntry entry) => outputs.Add((_topics.Entries, "calllogs-entry:" + entry.entry_id,
                _entries.Serialize(entry, new SerializationContext(MessageComponentType.Value, _topics.Entries))));

            foreach (var m in result.Medications)
            {
                var entry = Entry(AvroRecords.CallLogs.HealthEntryKind.HEALTH_ENTRY_KIND_MEDICATION, m.GenericName, m.Confidence, m.Span, m.Extractor);
                entry.dose_value = m.DoseValue;
                entry.dose_unit = m.DoseUnit;
                entry.frequency = m.Frequency;
                entry.medication_status = StatusOf(m.Status);
                entry.quantity = Said(m.DoseValue, m.DoseUnit);
                Add(entry);
            }
            foreach (var f in result.Foods)
            {
                var entry = Entry(AvroRecords.CallLogs.HealthEntryKind.HEALTH_ENTRY_KIND_FOOD, f.Item, f.Confidence, f.Span, f.Extractor);
                entry.quantity_value = f.Quantity;
                entry.quantity_unit = f.Unit;
                entry.meal = f.Meal is { } meal ? MealOf(meal) : null;
                entry.quantity = Said(f.Quantity, f.Unit);
                Add(entry);
            }
            foreach (var s in result.Symptoms)
            {
                var entry = Entry(AvroRecords.CallLogs.HealthEntryKind.HEALTH_ENTRY_KIND_SYMPTOM, s.Name, s.Confidence, s.Span, s.Extractor);
                entry.present = s.Present;
                entry.severity = s.Severity;
                entry.onset = s.Onset;
                Add(entry);
            }

            var checkin = new AvroRecords.CallLogs.CheckInCreated
            {
                event_time_unix_ms = time, call_id = callId, patient_id = call.patient_id, provider = call.provider, duration_s = call.duration_s,
                medication_count = result.Medications.Count, food_count = result.Foods.Count, symptom_count = result.Symptoms.Count,
                extractor = result.Extractor ?? _extractor.Name,
            };
            outputs.Add((_topics.Checkins, "calllogs-checkin:" + callId,
                _checkins.Serialize(checkin, new SerializationContext(MessageComponentType.Value, _topics.Checkins))));
            var refresh = new AvroRecords.CallLogs.DashboardRefreshNeeded
            {
                event_time_unix_ms = time, patient_id = call.patient_id, reason = DashboardReasons.CheckinCreated, cause_id = callId,
            };
            outputs.Add((_topics.DashboardRefresh, "calllogs-dashboard:" + callId,
                _refreshes.Serialize(refresh, new SerializationContext(MessageComponentType.Value, _topics.DashboardRefresh))));
            return outputs;
        }

        /// <summary>The amount as text with its unit ("500 mg", "2 slice"), what the record's <c>quantity</c> has always held.</summary>
        private static string? Said(double? value, string? unit) => value is { } v
            ? (unit is null ? v.ToString("0.###", CultureInfo.InvariantCulture) : v.ToString("0.###", CultureInfo.InvariantCulture) + " " + unit)
            : null;

        private static AvroRecords.CallLogs.HealthEntryMedicationStatus StatusOf(MedicationStatus status) => status switch
        {
            MedicationStatus.Taken => AvroRecords.CallLogs.HealthEntryMedicationStatus.MEDICATION_STATUS_TAKEN,
            MedicationStatus.Skipped => AvroRecords.CallLogs.HealthEntryMedicationStatus.MEDICATION_STATUS_SKIPPED,
            MedicationStatus.Stopped => AvroRecords.CallLogs.HealthEntryMedicationStatus.MEDICATION_STATUS_STOPPED,
            MedicationStatus.Mentioned => AvroRecords.CallLogs.HealthEntryMedicationStatus.MEDICATION_STATUS_MENTIONED,
            _ => AvroRecords.CallLogs.HealthEntryMedicationStatus.MEDICATION_STATUS_UNSPECIFIED,
        };

        private static AvroRecords.CallLogs.HealthEntryMeal MealOf(Meal meal) => meal switch
        {
            Meal.Breakfast => AvroRecords.CallLogs.HealthEntryMeal.MEAL_BREAKFAST,
            Meal.Lunch => AvroRecords.CallLogs.HealthEntryMeal.MEAL_LUNCH,
            Meal.Dinner => AvroRecords.CallLogs.HealthEntryMeal.MEAL_DINNER,
            Meal.Snack => AvroRecords.CallLogs.HealthEntryMeal.MEAL_SNACK,
            _ => AvroRecords.CallLogs.HealthEntryMeal.MEAL_UNSPECIFIED,
        };
    }
}

/// <summary>The reasons a <see cref="AvroRecords.CallLogs.DashboardRefreshNeeded"/> gives.</summary>
public static class DashboardReasons
{
    public const string CheckinCreated = "checkin-created";
}

/// <summary>A call id's entry in <see cref="CallLogsTopology.CallsStore"/>: the source offset of the delivery that was extracted
/// (the same offset again is a replay, another one a redelivery), the call's start and when it was extracted (the stream
/// thread's clock; what the store's pruning goes by), ms since the Unix epoch.</summary>
public sealed record ExtractedCall(long SourceOffset, long EventTimeUnixMs, long ExtractedAtUnixMs);

/// <summary>[format 2][source offset int64][event time int64][extracted at int64], little-endian. Format 1 (without the extraction
/// time, written before the store was pruned) reads with the call's start as its extraction time.</summary>
public sealed class ExtractedCallSerDes : CodecSerDes<ExtractedCall>
{
    public static readonly ExtractedCallSerDes Instance = new();
    private const byte Format = 2;
    private const int Bytes = 1 + 8 + 8 + 8;
    private const int Format1Bytes = 1 + 8 + 8;

    public override byte[] Encode(ExtractedCall value, int headroom)
    {
        var bytes = new byte[headroom + Bytes];
        var span = bytes.AsSpan(headroom);
        span[0] = Format;
        BinaryPrimitives.WriteInt64LittleEndian(span[1..], value.SourceOffset);
        BinaryPrimitives.WriteInt64LittleEndian(span[9..], value.EventTimeUnixMs);
        BinaryPrimitives.WriteInt64LittleEndian(span[17..], value.ExtractedAtUnixMs);
        return bytes;
    }

    public override ExtractedCall Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length == Bytes && data[0] == Format)
            return new ExtractedCall(BinaryPrimitives.ReadInt64LittleEndian(data[1..]), BinaryPrimitives.ReadInt64LittleEndian(data[9..]),
                BinaryPrimitives.ReadInt64LittleEndian(data[17..]));
        if (data.Length == Format1Bytes && data[0] == 1)
        {
            var eventTimeMs = BinaryPrimitives.ReadInt64LittleEndian(data[9..]);
            return new ExtractedCall(BinaryPrimitives.ReadInt64LittleEndian(data[1..]), eventTimeMs, eventTimeMs);
        }
        throw new FormatException($"extracted-call state of {data.Length} bytes, format {(data.Length > 0 ? data[0] : -1)}: expected {Bytes} bytes " +
                                  $"of format {Format} or {Format1Bytes} of format 1");
    }
}

/// <summary>A calllogs.calls record that cannot be extracted as sent (goes to calllogs.calls.dlq with the reason).</summary>
public sealed class CallLogInputException(string message) : Exception(message);
