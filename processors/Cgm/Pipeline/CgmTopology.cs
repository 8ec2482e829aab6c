using System.Buffers.Binary;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using Confluent.Kafka;
using StreamHealth.Cgm.Series;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using AvroRecords = StreamHealth.Schemas.Avro;
using ReadingKind = StreamHealth.Schemas.Avro.Cgm.CgmEventType;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>Settings of the CGM topology, section "CgmPipeline".</summary>
public sealed class CgmPipelineOptions
{
    public const string Section = "CgmPipeline";
    /// <summary>Steps a forecast request carries: 96 × 5 min = the forecaster's 8-hour input.</summary>
    public int ForecastInputSteps { get; set; } = 96;
    /// <summary>At most one forecast request per user per this interval (wall clock): a 2-day upload asks
    /// for one forecast of its latest window, not one per reading.</summary>
    public int MinForecastRequestIntervalMs { get; set; } = 30_000;
    /// <summary>How often changed users' latest values (cgm.latest) and due forecast requests go out.</summary>
    public int EmitIntervalMs { get; set; } = 500;
    /// <summary>Alignment, interpolation and window size (<see cref="CgmSeriesOptions.WindowSteps"/>: the extra steps
    /// beyond <see cref="ForecastInputSteps"/> accept late readings).</summary>
    public CgmSeriesOptions Series { get; set; } = new();
    /// <summary>The platform's event-time rule (section "Input", not this section): a reading outside it is
    /// dead-lettered, so neither the window nor cgm.latest can be taken by a reading dated in the future.</summary>
    public EventTimeRule TimeRule { get; set; } = EventTimeRule.Default;

    public void Validate()
    {
        if (Series.Validate() is { Count: > 0 } seriesErrors) throw new ArgumentException(string.Join("; ", seriesErrors));
        if (ForecastInputSteps < 2 || ForecastInputSteps > Series.WindowSteps)
            throw new ArgumentException($"{Section}:ForecastInputSteps = {ForecastInputSteps}: must be 2 to {CgmSeriesOptions.Section}:WindowSteps ({Series.WindowSteps})");
        if (MinForecastRequestIntervalMs is < 0 or > 86_400_000) throw new ArgumentException($"{Section}:MinForecastRequestIntervalMs = {MinForecastRequestIntervalMs}: must be 0-86400000");
        if (EmitIntervalMs is < 10 or > 60_000) throw new ArgumentException($"{Section}:EmitIntervalMs = {EmitIntervalMs}: must be 10-60000");
    }
}

/// <summary>cgm.readings (key UserKey) → per-user aligned 5-minute window in a Streamiz RocksDB store (with the
/// applied-offset fence, so a replayed reading is not added twice) →
/// cgm.latest (each changed user's latest step and trend arrow, every <see cref="CgmPipelineOptions.EmitIntervalMs"/>)
/// and cgm.forecast-requests (the last 96 steps when they are complete and changed, at most once per
/// user per <see cref="CgmPipelineOptions.MinForecastRequestIntervalMs"/>). Readings that fail
/// <see cref="CgmReadings.Validate"/> throw and so land in cgm.readings.dlq with the reason; non-glucose
/// readings (insulin, carbs, …) pass validation and reach PostgreSQL through the readings sink, but do
/// not enter the window. The three topics are Avro in the Confluent wire format (key UserKey; the generated
/// <c>StreamHealth.Schemas.Avro.Cgm</c> records, through the host's schema registry connection): a record that does not
/// decode (not that format, an unknown schema id) is dead-lettered too, its header naming the schema id it claims. The
/// window state in RocksDB is not a topic and keeps its own format (<see cref="CgmUserStateSerde"/>).</summary>
public static class CgmTopology
{
    public const string ApplicationId = "cgm";
    public const string WindowStore = "cgm-window";

    public static StreamTopology Create(CgmPipelineOptions? options = null, string applicationId = ApplicationId,
        string sourceTopic = Topics.CgmReadings, string latestTopic = Topics.CgmLatest, string requestTopic = Topics.CgmForecastRequests)
    {
        options ??= new CgmPipelineOptions();
        options.Validate();
        var settings = new CgmProcessorSettings(options, latestTopic, requestTopic);
        return new StreamTopology
        {
            ApplicationId = applicationId,
            SourceTopic = sourceTopic,
            ProcessorName = "cgm-window",
            SinkTopics = [latestTopic, requestTopic],
            RequiresSchemaRegistry = true,
            Processor = services => TransformerBuilder.New<byte[], byte[], byte[], Emission>()
                .Transformer<CgmWindowProcessor>(services, settings)
                .StateStore(Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(WindowStore), new StringSerDes(),
                        new FencedSerDes<CgmUserState>(new CgmUserStateSerde(options.Series)))
                    .WithCachingEnabled())
                .Build(),
        };
    }

    public static CgmPipelineOptions Options(Microsoft.Extensions.Configuration.IConfiguration configuration)
    {
        var options = Microsoft.Extensions.Configuration.ConfigurationBinder.Get<CgmPipelineOptions>(configuration.GetSection(CgmPipelineOptions.Section))
            ?? new CgmPipelineOptions();
        options.TimeRule = InputOptions.TimeRuleOf(configuration);
        options.Validate();
        return options;
    }

    /// <summary>Reads a user's window from a host that owns it (interactive query; waits out rebalances).</summary>
    public static bool TryQueryWindow(StreamHost host, string userId, out CgmUserState state, string applicationId = ApplicationId)
    {
        var found = host.TryQuery<string, Fenced<CgmUserState>>(applicationId, WindowStore, userId, out var entry);
        state = found ? entry.Value : null!;
        return found;
    }

    public sealed record CgmProcessorSettings(CgmPipelineOptions Options, string LatestTopic, string RequestTopic);

    public sealed class CgmWindowProcessor : StreamProcessor<AvroRecords.Common.UserKey, AvroRecords.Cgm.CgmReading>
    {
        private readonly CgmPipelineOptions options = null!;
        private readonly string latestTopic = "", requestTopic = "";
        private readonly AvroSerDes<AvroRecords.Common.UserKey> _keys = null!;
        private readonly AvroSerDes<AvroRecords.Cgm.CgmLatest> _latest = null!;
        private readonly AvroSerDes<AvroRecords.Cgm.CgmForecastRequest> _requests = null!;
        // Reused for every emission (this task's thread only; serialising copies them into the output bytes).
        private readonly AvroRecords.Common.UserKey _key = new();
        private readonly AvroRecords.Cgm.CgmLatest _latestRecord = new();
        private readonly AvroRecords.Cgm.CgmForecastRequest _request = new() { glucose_mg_dl = [] };
        private IKeyValueStore<string, Fenced<CgmUserState>> _states = null!;
        // Decoded windows of recently seen users (the store keeps bytes; this task is their only writer), with the
        // offset of the last reading each applied.
        private readonly Dictionary<string, Fenced<CgmUserState>> _decoded = new(StringComparer.Ordinal);
        private const int DecodedCapacity = 20_000;
        // Users whose window changed since the last emit, and users owed a forecast request. In memory:
        // after a restart a user is picked up again by its next reading.
        private readonly HashSet<string> _changed = new(StringComparer.Ordinal);
        private readonly HashSet<string> _pending = new(StringComparer.Ordinal);
        private readonly Dictionary<string, long> _lastRequestWallMs = new(StringComparer.Ordinal);
        private readonly float[] _input = [];

        public CgmWindowProcessor() : base(null!, null!, null!, "") { }

        public CgmWindowProcessor(ProcessorServices services, CgmProcessorSettings settings)
            : base(services, services.Schemas.SerDes<AvroRecords.Common.UserKey>(), services.Schemas.SerDes<AvroRecords.Cgm.CgmReading>(), "cgm-window")
        {
            options = settings.Options;
            latestTopic = settings.LatestTopic;
            requestTopic = settings.RequestTopic;
            _input = new float[options.ForecastInputSteps];
            _keys = services.Schemas.SerDes<AvroRecords.Common.UserKey>();
            _latest = services.Schemas.SerDes<AvroRecords.Cgm.CgmLatest>();
            _requests = services.Schemas.SerDes<AvroRecords.Cgm.CgmForecastRequest>();
            // The request's series is the input buffer itself: it is copied into the output bytes when serialised.
            _request.glucose_mg_dl = _input;
        }

        protected override void Init()
        {
            _decoded.Clear();
            _states = (IKeyValueStore<string, Fenced<CgmUserState>>)Context.GetStateStore(WindowStore);
            Context.Schedule(TimeSpan.FromMilliseconds(options.EmitIntervalMs), Streamiz.Kafka.Net.Processors.Public.PunctuationType.PROCESSING_TIME,
                now => Punctuation(Emit, now));
        }

        protected override void Process(in InputRecord<AvroRecords.Common.UserKey, AvroRecords.Cgm.CgmReading> record)
        {
            var r = record.Value;
            var userId = record.Key.user_id;
            var receivedAtMs = EventTimeRule.ReceivedAt(record.TimestampUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            if (CgmReadings.Validate(userId, r, options.TimeRule, receivedAtMs) is { } problem) throw new CgmInputException(problem);
            if (r.event_type != ReadingKind.CGM_EVENT_TYPE_EGV) return;

            // Nothing below throws: a record that fails has failed above, before any state changed.
            var entry = Load(userId);
            if (record.Offset <= entry.AppliedOffset)
            {
                SkipAlreadyApplied();   // in the window since before a crash or restore; cgm.latest is re-derived from the window
                return;
            }
            var state = entry.Value;
            var change = state.Window.Add(CgmReadings.EventTimeMs(r), (float)r.glucose_mg_dl, (CgmQuality)(r.quality_flags & 0xFF));
            Save(userId, new Fenced<CgmUserState>(record.Offset, state));
            // A duplicate only flags the kept reading; nothing a forecast or the latest value depends on changed.
            if (change is not (CgmWindowChange.Added or CgmWindowChange.OutOfRange or CgmWindowChange.Replaced)) return;
            _changed.Add(userId);
            _pending.Add(userId);
        }

        /// <summary>Runs in a punctuation: a failure (the schema registry unreachable while a schema id is first resolved)
        /// leaves the users still marked, so the next punctuation sends them.</summary>
        private void Emit(long timeUnixMs)
        {
            var latest = _latestRecord;
            foreach (var userId in _changed)
            {
                var state = Load(userId).Value;
                var w = state.Window;
                latest.event_time_unix_ms = AvroTime.FromUnixMs(w.LatestTimeMs);
                latest.user_id = userId;
                latest.glucose_mg_dl = w.LatestGlucoseMgDl;
                latest.rate_mg_dl_per_min = w.TrendMgDlPerMinute;
                latest.trend_arrow = w.TrendArrow.ToString();
                latest.quality_flags = (int)w.LatestQuality;
                latest.window_steps = w.Count;
                latest.forecast_window_complete = w.TryCopyLatest(_input.Length, _input, out _);
                EmitBytes(latestTopic, Key(latestTopic, userId), _latest.Serialize(latest, new SerializationContext(MessageComponentType.Value, latestTopic)),
                    w.LatestTimeMs, $"cgm-latest:{userId}:{w.Version}");
            }
            _changed.Clear();

            List<string>? done = null;
            foreach (var userId in _pending)
            {
                if (_lastRequestWallMs.TryGetValue(userId, out var last) && timeUnixMs - last < options.MinForecastRequestIntervalMs) continue;
                (done ??= []).Add(userId);
                var entry = Load(userId);
                var state = entry.Value;
                if (state.LastRequestedVersion == state.Window.Version) continue;
                if (!state.Window.TryCopyLatest(_input.Length, _input, out var lastStepMs)) continue;
                var request = _request;
                request.event_time_unix_ms = AvroTime.FromUnixMs(lastStepMs);
                request.user_id = userId;
                request.step_minutes = options.Series.StepMinutes;
                request.request_id = $"{userId}:{lastStepMs}:{state.Window.Version}";
                request.interactive = false;
                EmitBytes(requestTopic, Key(requestTopic, userId), _requests.Serialize(request, new SerializationContext(MessageComponentType.Value, requestTopic)),
                    lastStepMs, "cgm-request:" + request.request_id);
                state.LastRequestedVersion = state.Window.Version;
                Save(userId, entry);
                _lastRequestWallMs[userId] = timeUnixMs;
            }
            if (done is not null) foreach (var u in done) _pending.Remove(u);
            if (_lastRequestWallMs.Count > DecodedCapacity) _lastRequestWallMs.Clear();
        }

        /// <summary>The user's key bytes on <paramref name="topic"/>, as producers of cgm.readings write them.</summary>
        private byte[] Key(string topic, string userId)
        {
            _key.user_id = userId;
            return _keys.Serialize(_key, new SerializationContext(MessageComponentType.Key, topic));
        }

        /// <summary>Written on every change: Streamiz has no hook before its commit, and the store's cache (enabled) keeps
        /// only each user's last value until the commit writes it to RocksDB and the changelog.</summary>
        private void Save(string userId, Fenced<CgmUserState> entry)
        {
            _states.Put(userId, entry);
            _decoded[userId] = entry;
        }

        private Fenced<CgmUserState> Load(string userId)
        {
            if (_decoded.TryGetValue(userId, out var entry)) return entry;
            entry = _states.Get(userId) ?? new Fenced<CgmUserState>(-1, new CgmUserState(new CgmWindow(options.Series), 0));
            if (_decoded.Count >= DecodedCapacity) _decoded.Clear();
            _decoded[userId] = entry;
            return entry;
        }
    }
}

/// <summary>A user's CGM state: the aligned window and the window version the last forecast request was made from.</summary>
public sealed class CgmUserState(CgmWindow window, long lastRequestedVersion)
{
    public CgmWindow Window { get; } = window;
    public long LastRequestedVersion { get; set; } = lastRequestedVersion;
}

/// <summary>[format version 1][last requested version: int64 LE][window bytes].</summary>
public sealed class CgmUserStateSerde(CgmSeriesOptions? series = null) : CodecSerDes<CgmUserState>
{
    private const byte FormatVersion = 1;

    public override byte[] Encode(CgmUserState value, int headroom)
    {
        var buffer = new byte[headroom + 9 + value.Window.SerializedSize];
        var body = buffer.AsSpan(headroom);
        body[0] = FormatVersion;
        BinaryPrimitives.WriteInt64LittleEndian(body[1..], value.LastRequestedVersion);
        var n = value.Window.Write(body[9..]);
        return headroom + n + 9 == buffer.Length ? buffer : buffer[..(headroom + n + 9)];
    }

    public override CgmUserState Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < 9 || data[0] != FormatVersion)
            throw new FormatException($"CGM user state: unknown format version {(data.Length > 0 ? data[0] : -1)} or {data.Length} bytes");
        return new CgmUserState(CgmWindow.Read(data[9..], series), BinaryPrimitives.ReadInt64LittleEndian(data[1..]));
    }
}

/// <summary>A cgm.readings record that cannot be processed as sent (goes to the dead-letter topic).</summary>
public sealed class CgmInputException(string message) : Exception(message);
