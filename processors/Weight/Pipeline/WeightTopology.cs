using System.Buffers.Binary;
using Confluent.Kafka;
using Google.Protobuf;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Weight.Filter;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.Weight.Pipeline;

/// <summary>weights.raw (key UserKey) → per-user Kalman filter with its state in a Streamiz RocksDB store (one
/// value per user: filter state, recent results and the applied-offset fence, written together) → weights.filtered (key UserKey, one WeightResult per input, output id = measurement id).
/// Records may reach weights.raw without the gateway, so the topology applies the same input rules
/// (<see cref="InputRules"/>, <see cref="EventTimeRule"/>): a record whose key and body disagree, with an
/// invalid id, control characters, a non-finite value, an event time outside the rule, an invalid explicit
/// initialisation batch, or a measurement id the user already used for another measurement, throws and so
/// lands in weights.raw.dlq with the reason. A retry of a recent measurement (same id, same fingerprint)
/// is not filtered again: its original result is emitted again (same output id; the retry's request id).
/// Both topics are Avro in the Confluent wire format (<see cref="WeightWire"/>; the host's schema registry connection): a
/// record that does not decode (not that format, an unknown schema id) is dead-lettered too, naming the schema id it claims.</summary>
public static class WeightTopology
{
    public const string ApplicationId = "weights";
    public const string StateStore = "weight-user-state";

    /// <summary>Results kept per user for retries: a client retries within seconds, so the last few suffice. An
    /// older retry is still never applied twice (the filter reports it OUT_OF_ORDER or DUPLICATE and leaves its
    /// state alone) and the sinks keep the original row; only its reply is then not the original result.</summary>
    public const int RecentResultsPerUser = 16;

    /// <summary>Free-text limit for <c>source_detail</c> (a device model), as the gateway applies it.</summary>
    public const int MaxSourceDetailLength = 256;

    public static StreamTopology Create(WeightFilterOptions? options = null, string applicationId = ApplicationId,
        string sourceTopic = Topics.WeightsRaw, string sinkTopic = Topics.WeightsFiltered, EventTimeRule? timeRule = null)
    {
        var settings = new WeightProcessorSettings(new WeightKalmanFilter(options ?? new WeightFilterOptions()), sinkTopic, timeRule ?? EventTimeRule.Default);
        return new StreamTopology
        {
            ApplicationId = applicationId,
            SourceTopic = sourceTopic,
            ProcessorName = "weight-kalman",
            SinkTopics = [sinkTopic],
            RequiresSchemaRegistry = true,
            Processor = services => TransformerBuilder.New<byte[], byte[], byte[], Emission>()
                .Transformer<WeightProcessor>(services, settings)
                .StateStore(Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(StateStore), new StringSerDes(), UserStateSerDes)
                    .WithCachingEnabled())
                .Build(),
            Queries = [StoreQuery.Of<Fenced<WeightUserState>>(StateStore, (services, userId) => SourceKey(services.Schemas, userId, sourceTopic),
                (userId, entry) => WeightStateView.Of(userId, entry))],
        };
    }

    /// <summary>The key bytes of a user's records on weights.raw (what partitioning hashes): the Avro UserKey in the Confluent
    /// wire format, serialised as producers serialise it, so the 5-byte header names the same key schema id.</summary>
    public static byte[] SourceKey(SchemaRegistryConnection registry, string userId, string sourceTopic = Topics.WeightsRaw) =>
        WeightWire.Key(registry, sourceTopic, userId);

    private static readonly FencedSerDes<WeightUserState> UserStateSerDes = new(WeightUserStateSerDes.Instance);

    /// <summary>The filter settings (section "WeightFilter") every process that filters or validates
    /// weights uses, so the gateway's checks and the topology agree.</summary>
    public static WeightFilterOptions FilterOptions(Microsoft.Extensions.Configuration.IConfiguration configuration) =>
        Microsoft.Extensions.Configuration.ConfigurationBinder.Get<WeightFilterOptions>(configuration.GetSection(WeightFilterOptions.Section))
        ?? new WeightFilterOptions();

    /// <summary>The output id sinks deduplicate on: one result per measurement, whatever replays it.</summary>
    public static string OutputId(string measurementId) => "weight:" + measurementId;

    /// <summary>Reads a user's filter state from a host that owns it (interactive query; waits out rebalances).</summary>
    public static bool TryQueryState(StreamHost host, string userId, out WeightFilterState state, string applicationId = ApplicationId)
    {
        var found = host.TryQuery<string, Fenced<WeightUserState>>(applicationId, StateStore, userId, out var entry);
        state = found ? entry.Value.Filter : null!;
        return found;
    }

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

    public sealed record WeightProcessorSettings(WeightKalmanFilter Filter, string SinkTopic, EventTimeRule TimeRule);

    public sealed class WeightProcessor : StreamProcessor<AvroRecords.Common.UserKey, AvroRecords.Weights.WeightMeasurement>
    {
        private readonly WeightProcessorSettings _settings = null!;
        private readonly AvroSerDes<AvroRecords.Common.UserKey> _keys = null!;
        private readonly AvroSerDes<AvroRecords.Weights.WeightResult> _results = null!;
        private IKeyValueStore<string, Fenced<WeightUserState>> _states = null!;
        // Decoded states of recently seen users: the store keeps bytes, and decoding a state costs several
        // times the filter step. Safe because this task is the only writer of its users' states; an entry is
        // dropped whenever a record fails, since the filter may have changed it before the failure.
        private readonly Dictionary<string, Fenced<WeightUserState>> _decoded = new(StringComparer.Ordinal);
        private const int DecodedCapacity = 20_000;

        public WeightProcessor() : base(null!, null!, null!, "") { }

        public WeightProcessor(ProcessorServices services, WeightProcessorSettings settings)
            : base(services, services.Schemas.SerDes<AvroRecords.Common.UserKey>(), services.Schemas.SerDes<AvroRecords.Weights.WeightMeasurement>(), "weight-kalman")
        {
            _settings = settings;
            _keys = services.Schemas.SerDes<AvroRecords.Common.UserKey>();
            _results = services.Schemas.SerDes<AvroRecords.Weights.WeightResult>();
        }

        protected override void Init()
        {
            _decoded.Clear();
            _states = (IKeyValueStore<string, Fenced<WeightUserState>>)Context.GetStateStore(StateStore);
        }

        protected override void Process(in InputRecord<AvroRecords.Common.UserKey, AvroRecords.Weights.WeightMeasurement> record)
        {
            var m = WeightWire.ToProto(record.Value);
            var userId = record.Key.user_id;
            if (string.IsNullOrEmpty(userId)) throw new WeightInputException("record key has no user_id");
            if (InputRules.CheckId("user_id", userId) is { } badUser) throw new WeightInputException("record key: " + badUser);
            if (m.UserId.Length > 0 && m.UserId != userId)
                throw new WeightInputException($"user_id {InputRules.Quote(m.UserId)} does not match the record key '{userId}'");
            if (string.IsNullOrEmpty(m.MeasurementId)) throw new WeightInputException("measurement_id is required (sinks deduplicate on it)");
            if (InputRules.CheckId("measurement_id", m.MeasurementId) is { } badId) throw new WeightInputException(badId);
            if (CheckInput(m, _settings.TimeRule, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()) is { } bad) throw new WeightInputException(bad);

            var entry = Load(userId);
            var recent = entry.Value.Recent;
            if (record.Offset <= entry.AppliedOffset)
            {
                // Applied before a crash or a changelog restore: the state has it. Its result may not have reached the
                // topic, so send it again (same output id: sinks keep one row), and leave the filter alone.
                SkipAlreadyApplied();
                if (FindBySource(recent, record.Partition, record.Offset) is { } applied)
                    EmitResult(userId, applied, OutputId(applied.MeasurementId));
                return;
            }

            var fingerprint = MeasurementFingerprint.Text(MeasurementFingerprint.Of(m));
            var seen = IndexOf(recent, m.MeasurementId);
            if (seen >= 0)
            {
                var original = recent.Results[seen];
                if (original.MeasurementFingerprint != fingerprint)
                    throw new WeightInputException(
                        $"measurement_id {InputRules.Quote(m.MeasurementId)} was already used by this user for another measurement " +
                        $"(at {InputRules.FormatTime(original.EventTimeUnixMs)}); a retry must repeat the measurement exactly, a new measurement needs a new id");
                // A retry: answer with the original result, and leave the filter alone.
                EmitResult(userId, original, OutputId(m.MeasurementId));
                return;
            }

            try
            {
                var result = Apply(record, m, userId, entry.Value.Filter);
                result.MeasurementFingerprint = fingerprint;
                // Serialised before the state is written: a result that cannot be (the registry unreachable) changes nothing.
                var (key, value) = Encode(userId, result);
                Remember(recent, result);
                var next = new Fenced<WeightUserState>(record.Offset, entry.Value);
                _states.Put(userId, next);
                _decoded[userId] = next;
                EmitBytes(_settings.SinkTopic, key, value, m.EventTimeUnixMs, OutputId(m.MeasurementId));
            }
            catch
            {
                _decoded.Remove(userId);
                throw;
            }
        }

        /// <summary>Emits <paramref name="result"/> on the sink topic as Avro (key: the user, as producers key weights.raw).</summary>
        private void EmitResult(string userId, WeightResult result, string outputId)
        {
            var (key, value) = Encode(userId, result);
            EmitBytes(_settings.SinkTopic, key, value, result.EventTimeUnixMs, outputId);
        }

        private (byte[] Key, byte[] Value) Encode(string userId, WeightResult result) =>
            (WeightWire.Key(_keys, _settings.SinkTopic, userId), WeightWire.Value(_results, _settings.SinkTopic, WeightWire.ToAvro(result)));

        private Fenced<WeightUserState> Load(string userId)
        {
            if (_decoded.TryGetValue(userId, out var entry)) return entry;
            entry = _states.Get(userId) ?? new Fenced<WeightUserState>(-1,
                new WeightUserState(WeightStateCodec.NewState(), new WeightRecentResults { SchemaVersion = 1 }));
            if (_decoded.Count >= DecodedCapacity) _decoded.Clear();
            _decoded[userId] = entry;
            return entry;
        }

        private static WeightResult? FindBySource(WeightRecentResults recent, int partition, long offset)
        {
            foreach (var r in recent.Results)
                if (r.SourceOffset == offset && r.SourcePartition == partition) return r;
            return null;
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

        private WeightResult Apply(in InputRecord<AvroRecords.Common.UserKey, AvroRecords.Weights.WeightMeasurement> record, WeightMeasurement m, string userId, WeightFilterState state)
        {
            WeightStep step;
            if (m.InitializationBatch.Count > 0)
            {
                var batch = new WeightObservation[m.InitializationBatch.Count];
                for (var i = 0; i < batch.Length; i++) batch[i] = WeightObservation.From(m.InitializationBatch[i]);
                try
                {
                    step = _settings.Filter.Initialize(state, batch);
                }
                catch (ArgumentException e)
                {
                    throw new WeightInputException("initialization_batch: " + e.Message);
                }
            }
            else
            {
                step = _settings.Filter.Process(state, WeightObservation.From(m));
            }

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

/// <summary>A user's weights state: the filter and the last results (answers to retries, and to a replay of a record
/// the state already reflects).</summary>
public sealed record WeightUserState(WeightFilterState Filter, WeightRecentResults Recent);

/// <summary>[format 1][filter state length: int32 LE][filter state through the versioned codec (reads older versions)][recent results].</summary>
public sealed class WeightUserStateSerDes : CodecSerDes<WeightUserState>
{
    public static readonly WeightUserStateSerDes Instance = new();
    private const byte Format = 1;

    public override byte[] Encode(WeightUserState value, int headroom)
    {
        var filter = WeightStateCodec.Encode(value.Filter);
        var recentSize = value.Recent.CalculateSize();
        var bytes = new byte[headroom + 5 + filter.Length + recentSize];
        var body = bytes.AsSpan(headroom);
        body[0] = Format;
        BinaryPrimitives.WriteInt32LittleEndian(body[1..], filter.Length);
        filter.CopyTo(body[5..]);
        value.Recent.WriteTo(body[(5 + filter.Length)..]);
        return bytes;
    }

    public override WeightUserState Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < 5 || data[0] != Format) throw new FormatException($"weights user state: unknown format {(data.Length > 0 ? data[0] : -1)} or {data.Length} bytes");
        var filterLength = BinaryPrimitives.ReadInt32LittleEndian(data[1..]);
        if (filterLength < 0 || filterLength > data.Length - 5) throw new FormatException($"weights user state: filter length {filterLength} exceeds {data.Length - 5} bytes");
        return new WeightUserState(WeightStateCodec.Decode(data.Slice(5, filterLength)), WeightRecentResults.Parser.ParseFrom(data[(5 + filterLength)..]));
    }
}
