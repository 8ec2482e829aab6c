using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Weight.Filter;

namespace StreamHealth.Weight.Pipeline;

/// <summary>weights.raw (key UserKey) → per-user Kalman filter with its state in the task's RocksDB
/// store → weights.filtered (key UserKey, one WeightResult per input, output id = measurement id).
/// A record whose key and body disagree, or that lacks a measurement id, or an invalid explicit
/// initialisation batch, throws and so lands in weights.raw.dlq with the reason.</summary>
public static class WeightTopology
{
    public const string ApplicationId = "weights";
    public const string StateStore = "weight-filter-state";

    public static Topology<UserKey, WeightMeasurement> Create(WeightFilterOptions? options = null, string applicationId = ApplicationId,
        string sourceTopic = Topics.WeightsRaw, string sinkTopic = Topics.WeightsFiltered)
    {
        var filter = new WeightKalmanFilter(options ?? new WeightFilterOptions());
        return new Topology<UserKey, WeightMeasurement>
        {
            ApplicationId = applicationId,
            SourceTopic = sourceTopic,
            ProcessorName = "weight-kalman",
            SinkTopics = [sinkTopic],
            StoreNames = [StateStore],
            KeySerde = ProtobufSerde<UserKey>.Instance,
            ValueSerde = ProtobufSerde<WeightMeasurement>.Instance,
            ProcessorFactory = () => new WeightProcessor(filter, sinkTopic),
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

    private sealed class WeightProcessor(WeightKalmanFilter filter, string sinkTopic) : IProcessor<UserKey, WeightMeasurement>
    {
        private KeyValueStore<string, WeightFilterState> _states = null!;
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
        }

        public void Process(in StreamRecord<UserKey, WeightMeasurement> record)
        {
            var m = record.Value;
            var userId = record.Key.UserId;
            if (string.IsNullOrEmpty(userId)) throw new WeightInputException("record key has no user_id");
            if (m.UserId.Length > 0 && m.UserId != userId)
                throw new WeightInputException($"user_id '{m.UserId}' does not match the record key '{userId}'");
            if (string.IsNullOrEmpty(m.MeasurementId)) throw new WeightInputException("measurement_id is required (sinks deduplicate on it)");

            if (!_decoded.TryGetValue(userId, out var state))
            {
                if (!_states.TryGet(userId, out state)) state = WeightStateCodec.NewState();
                if (_decoded.Count >= DecodedCapacity) _decoded.Clear();
                _decoded[userId] = state;
            }
            try
            {
                Apply(record, m, userId, state);
            }
            catch
            {
                _decoded.Remove(userId);
                throw;
            }
        }

        private void Apply(in StreamRecord<UserKey, WeightMeasurement> record, WeightMeasurement m, string userId, WeightFilterState state)
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
            _context.Forward(sinkTopic, record.Key, result, m.EventTimeUnixMs, OutputId(m.MeasurementId));
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
