using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Weight.Filter;

namespace StreamHealth.Weight.Pipeline;

/// <summary>weights.raw (key UserKey) → per-user Kalman filter with its state in the task's RocksDB
/// store → weights.filtered (key UserKey, one WeightResult per input, output id = measurement id).
/// Records may reach weights.raw without the gateway, so the topology applies the same input rules
/// (<see cref="InputRules"/>, <see cref="EventTimeRule"/>): a record whose key and body disagree, with an
/// invalid id, control characters, a non-finite value, an event time outside the rule, an invalid explicit
/// initialisation batch, or a measurement id the user already used for another measurement, throws and so
/// lands in weights.raw.dlq with the reason. A retry of a recent measurement (same id, same fingerprint)
/// is not filtered again: its original result is emitted again (same output id; the retry's request id).</summary>
public static class WeightTopology
{
    public const string ApplicationId = "weights";
    public const string StateStore = "weight-filter-state";
    public const string RecentResultsStore = "weight-recent-results";

    /// <summary>Results kept per user for retries: a client retries within seconds, so the last few suffice. An
    /// older retry is still never applied twice (the filter reports it OUT_OF_ORDER or DUPLICATE and leaves its
    /// state alone) and the sinks keep the original row; only its reply is then not the original result.</summary>
    public const int RecentResultsPerUser = 16;

    /// <summary>Free-text limit for <c>source_detail</c> (a device model), as the gateway applies it.</summary>
    public const int MaxSourceDetailLength = 256;

    public static Topology<UserKey, WeightMeasurement> Create(WeightFilterOptions? options = null, string applicationId = ApplicationId,
        string sourceTopic = Topics.WeightsRaw, string sinkTopic = Topics.WeightsFiltered, EventTimeRule? timeRule = null)
    {
        var filter = new WeightKalmanFilter(options ?? new WeightFilterOptions());
        var rule = timeRule ?? EventTimeRule.Default;
        return new Topology<UserKey, WeightMeasurement>
        {
            ApplicationId = applicationId,
            SourceTopic = sourceTopic,
            ProcessorName = "weight-kalman",
            SinkTopics = [sinkTopic],
            StoreNames = [StateStore, RecentResultsStore],
            KeySerde = ProtobufSerde<UserKey>.Instance,
            ValueSerde = ProtobufSerde<WeightMeasurement>.Instance,
            ProcessorFactory = () => new WeightProcessor(filter, sinkTopic, rule),
        };
    }

    /// <summary>The filter settings (section "WeightFilter") every process that filters or validates
    /// weights uses, so the gateway's checks and the topology agree.</summary>
    public static WeightFilterOptions FilterOptions(Microsoft.Extensions.Configuration.IConfiguration configuration) =>
        Microsoft.Extensions.Configuration.ConfigurationBinder.Get<WeightFilterOptions>(configuration.GetSection(WeightFilterOptions.Section))
        ?? new WeightFilterOptions();

    /// <summary>The output id sinks deduplicate on: one result per measurement, whatever replays it.</summary>
    public static string OutputId(string measurementId) => "weight:" + measurementId;

    /// <summary>Reads a user's filter state from a host that owns it (interactive query).</summary>
    public static bool TryQueryState(StreamHost host, string userId, out WeightFilterState state, string applicationId = ApplicationId) =>
        host.TryQuery(applicationId, StateStore, userId, Utf8Serde.Instance, WeightStateSerde.Instance, out state);

    /// <summary>Null when <paramref name="m"/> obeys the input rules every weight ingest path shares, else why
    /// (naming the field). <paramref name="prefix"/> names an element of an initialisation batch.</summary>
    public static string? CheckInput(WeightMeasurement m, EventTimeRule rule, long nowUnixMs, string prefix = "")
    {
        if (InputRules.CheckText(prefix + "source_detail", m.SourceDetail, MaxSourceDetailLength) is { } detail) return detail;
        if (m.InitializationBatch.Count > 0)
        {
            for (var i = 0; i < m.InitializationBatch.Count; i++)
                if (CheckInput(m.InitializationBatch[i], rule, nowUnixMs, $"{prefix}initialization_batch[{i}].") is { } element) return element;
            return null;
        }
        // Range checks against plausibility are the filter's (IMPLAUSIBLE); only what cannot be a number is refused here.
        if (InputRules.CheckRange(prefix + "value", m.Value, double.MinValue, double.MaxValue, "") is { } value) return value;
        return rule.Check(prefix + "event_time_unix_ms", m.EventTimeUnixMs, nowUnixMs);
    }

    private sealed class WeightProcessor(WeightKalmanFilter filter, string sinkTopic, EventTimeRule timeRule) : IProcessor<UserKey, WeightMeasurement>
    {
        private KeyValueStore<string, WeightFilterState> _states = null!;
        private KeyValueStore<string, WeightRecentResults> _recentResults = null!;
        private IProcessorContext _context = null!;
        // Decoded states of recently seen users: the store keeps bytes, and decoding a state costs several
        // times the filter step. Safe because this task is the only writer of its users' states; an entry is
        // dropped whenever a record fails, since the filter may have changed it before the failure.
        private readonly Dictionary<string, WeightFilterState> _decoded = new(StringComparer.Ordinal);
        private const int DecodedCapacity = 20_000;

        public void Init(IProcessorContext context)
        {
            _context = context;
            _states = context.GetStore(StateStore, Utf8Serde.Instance, WeightStateSerde.Instance);
            _recentResults = context.GetStore(RecentResultsStore, Utf8Serde.Instance, ProtobufSerde<WeightRecentResults>.Instance);
        }

        public void Process(in StreamRecord<UserKey, WeightMeasurement> record)
        {
            var m = record.Value;
            var userId = record.Key.UserId;
            if (string.IsNullOrEmpty(userId)) throw new WeightInputException("record key has no user_id");
            if (InputRules.CheckId("user_id", userId) is { } badUser) throw new WeightInputException("record key: " + badUser);
            if (m.UserId.Length > 0 && m.UserId != userId)
                throw new WeightInputException($"user_id {InputRules.Quote(m.UserId)} does not match the record key '{userId}'");
            if (string.IsNullOrEmpty(m.MeasurementId)) throw new WeightInputException("measurement_id is required (sinks deduplicate on it)");
            if (InputRules.CheckId("measurement_id", m.MeasurementId) is { } badId) throw new WeightInputException(badId);
            if (CheckInput(m, timeRule, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()) is { } bad) throw new WeightInputException(bad);

            var fingerprint = MeasurementFingerprint.Text(MeasurementFingerprint.Of(m));
            if (!_recentResults.TryGet(userId, out var recent)) recent = new WeightRecentResults { SchemaVersion = 1 };
            var seen = IndexOf(recent, m.MeasurementId);
            if (seen >= 0)
            {
                var original = recent.Results[seen];
                if (original.MeasurementFingerprint != fingerprint)
                    throw new WeightInputException(
                        $"measurement_id {InputRules.Quote(m.MeasurementId)} was already used by this user for another measurement " +
                        $"(at {InputRules.FormatTime(original.EventTimeUnixMs)}); a retry must repeat the measurement exactly, a new measurement needs a new id");
                // A retry: answer with the original result, and leave the filter alone.
                _context.Forward(sinkTopic, record.Key, original, original.EventTimeUnixMs, OutputId(m.MeasurementId));
                return;
            }

            if (!_decoded.TryGetValue(userId, out var state))
            {
                if (!_states.TryGet(userId, out state)) state = WeightStateCodec.NewState();
                if (_decoded.Count >= DecodedCapacity) _decoded.Clear();
                _decoded[userId] = state;
            }
            try
            {
                var result = Apply(record, m, userId, state);
                result.MeasurementFingerprint = fingerprint;
                Remember(recent, result);
                _recentResults.Put(userId, recent);
                _context.Forward(sinkTopic, record.Key, result, m.EventTimeUnixMs, OutputId(m.MeasurementId));
            }
            catch
            {
                _decoded.Remove(userId);
                throw;
            }
        }

        private static int IndexOf(WeightRecentResults recent, string measurementId)
        {
            for (var i = 0; i < recent.Results.Count; i++)
                if (string.Equals(recent.Results[i].MeasurementId, measurementId, StringComparison.Ordinal)) return i;
            return -1;
        }

        private static void Remember(WeightRecentResults recent, WeightResult result)
        {
            if (recent.Results.Count < RecentResultsPerUser)
            {
                recent.Results.Add(result);
                return;
            }
            var slot = (int)(recent.Cursor % RecentResultsPerUser);
            recent.Results[slot] = result;
            recent.Cursor = (uint)((slot + 1) % RecentResultsPerUser);
        }

        private WeightResult Apply(in StreamRecord<UserKey, WeightMeasurement> record, WeightMeasurement m, string userId, WeightFilterState state)
        {
            WeightStep step;
            if (m.InitializationBatch.Count > 0)
            {
                var batch = new WeightObservation[m.InitializationBatch.Count];
                for (var i = 0; i < batch.Length; i++) batch[i] = WeightObservation.From(m.InitializationBatch[i]);
                try
                {
                    step = filter.Initialize(state, batch);
                }
                catch (ArgumentException e)
                {
                    throw new WeightInputException("initialization_batch: " + e.Message);
                }
            }
            else
            {
                step = filter.Process(state, WeightObservation.From(m));
            }
            if (step.StateChanged) _states.Put(userId, state);

            var result = new WeightResult
            {
                MeasurementId = m.MeasurementId, UserId = userId, Source = m.Source,
                SourcePartition = record.Partition, SourceOffset = record.Offset,
            };
            step.WriteTo(result);
            return result;
        }
    }
}

/// <summary>A weights.raw record that cannot be processed as sent (goes to the dead-letter topic).</summary>
public sealed class WeightInputException(string message) : Exception(message);

/// <summary>The filter state in the store, through the versioned codec (reads older versions too).</summary>
public sealed class WeightStateSerde : ISerde<WeightFilterState>
{
    public static readonly WeightStateSerde Instance = new();
    public byte[] Serialize(WeightFilterState value) => WeightStateCodec.Encode(value);
    public WeightFilterState Deserialize(ReadOnlySpan<byte> data) => WeightStateCodec.Decode(data);
}
