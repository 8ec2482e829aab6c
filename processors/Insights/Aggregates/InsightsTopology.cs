using Microsoft.Extensions.Configuration;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using StreamHealth.Insights.Metrics;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Weight.Pipeline;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.Insights.Aggregates;

/// <summary>Settings of the insights topology, section "Insights".</summary>
public sealed class InsightsOptions
{
    public const string Section = "Insights";
    /// <summary>How long after a local day ended (by the person's latest counted event time) a late record still updates it: hours.</summary>
    public double GraceHours { get; set; } = 48;
    /// <summary>How often the seen metric ids whose day left the 30-day window are deleted: minutes (wall clock).</summary>
    public double SeenPruneIntervalMinutes { get; set; } = 10;
    /// <summary>The platform's event-time rule (section "Input", not this section), as the gateway and the metrics sink apply it.</summary>
    public EventTimeRule TimeRule { get; set; } = EventTimeRule.Default;

    public long GraceMs => (long)(GraceHours * 3_600_000);

    public void Validate()
    {
        // Beyond 30 days a grace could never apply: the day would be outside the rolling window and its day no longer kept.
        if (!double.IsFinite(GraceHours) || GraceHours is < 0 or > DailyFold.MonthDays * 24)
            throw new ArgumentException($"{Section}:GraceHours = {GraceHours}: must be 0-{DailyFold.MonthDays * 24} hours");
        if (!double.IsFinite(SeenPruneIntervalMinutes) || SeenPruneIntervalMinutes is < 0.01 or > 1440)
            throw new ArgumentException($"{Section}:SeenPruneIntervalMinutes = {SeenPruneIntervalMinutes}: must be 0.01-1440 minutes");
    }

    public static InsightsOptions Load(IConfiguration configuration)
    {
        var options = configuration.GetSection(Section).Get<InsightsOptions>() ?? new InsightsOptions();
        options.TimeRule = InputOptions.TimeRuleOf(configuration);
        options.Validate();
        return options;
    }
}

/// <summary>insights.metrics (key UserKey) → per-person daily aggregates by the person's local day and rolling 7/30-day summaries,
/// in two Streamiz RocksDB stores → insights.daily (key UserKey, one <see cref="AvroRecords.Insights.DailyMetricAggregate"/> per
/// counted metric: the day as it now stands and the type's two summaries). The maths is <see cref="DailyFold"/>.
/// <list type="bullet">
/// <item>Local day: event time plus the record's <c>utc_offset_minutes</c> (the gateway sets it from recorded_at's offset or the
/// person's profile time zone).</item>
/// <item>Once per metric id: <see cref="SeenStore"/> keeps each counted id (user|metric_id) with its fingerprint; a retry (same
/// id, same content) is not counted again, the same id with other content is dead-lettered. Ids are pruned by a punctuation once
/// their day left the 30-day window (a retry that late is refused as late, never counted twice).</item>
/// <item>Crash-safe: the day state carries the applied-offset fence (<see cref="FencedSerDes{T}"/>), written before the seen id;
/// a record at or below the fence is not counted again (its seen id is written if the crash lost it), and a seen id whose source
/// position is the record's own means the day was lost, not the record counted.</item>
/// <item>Late data: a record whose local day ended more than <see cref="InsightsOptions.GraceHours"/> before the person's latest
/// counted event time, or whose day is outside the type's 30-day window, is dead-lettered with the day and the grace named; so is
/// a record that breaks the input rules (ids, types, units, values, event time, offset). Nothing is dropped silently.</item>
/// </list></summary>
public static class InsightsTopology
{
    public const string ApplicationId = "insights";
    public const string DayStore = "insights-days";
    public const string SeenStore = "insights-seen";

    public static StreamTopology Create(InsightsOptions? options = null, string applicationId = ApplicationId,
        string sourceTopic = Topics.InsightsMetrics, string sinkTopic = Topics.InsightsDaily)
    {
        options ??= new InsightsOptions();
        options.Validate();
        var settings = new InsightsProcessorSettings(options, sinkTopic);
        return new StreamTopology
        {
            ApplicationId = applicationId,
            SourceTopic = sourceTopic,
            ProcessorName = "insights-daily",
            SinkTopics = [sinkTopic],
            RequiresSchemaRegistry = true,
            Processor = services => TransformerBuilder.New<byte[], byte[], byte[], Emission>()
                .Transformer<InsightsProcessor>(services, settings)
                .StateStore(Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(DayStore), new StringSerDes(),
                        new FencedSerDes<InsightsUserState>(InsightsUserStateSerDes.Instance))
                    .WithCachingEnabled())
                .Build(),
            MoreStores = [Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(SeenStore), new StringSerDes(), SeenMetricSerDes.Instance).WithCachingEnabled()],
        };
    }

    /// <summary>Reads a person's state from a host that owns it (interactive query; waits out rebalances).</summary>
    public static bool TryQueryState(StreamHost host, string userId, out InsightsUserState state, string applicationId = ApplicationId)
    {
        var found = host.TryQuery<string, Fenced<InsightsUserState>>(applicationId, DayStore, userId, out var entry);
        state = found ? entry.Value : null!;
        return found;
    }

    /// <summary>The seen store's key: '|' is outside the id alphabet (<see cref="InputRules.IdRuleText"/>), so the pair is unambiguous.</summary>
    public static string SeenKey(string userId, string metricId) => userId + "|" + metricId;

    public sealed record InsightsProcessorSettings(InsightsOptions Options, string SinkTopic);

    public sealed class InsightsProcessor : StreamProcessor<AvroRecords.Common.UserKey, AvroRecords.Insights.HealthMetric>
    {
        private readonly InsightsOptions _options = null!;
        private readonly string _sinkTopic = "";
        private readonly AvroSerDes<AvroRecords.Common.UserKey> _keys = null!;
        private readonly AvroSerDes<AvroRecords.Insights.DailyMetricAggregate> _aggregates = null!;
        private IKeyValueStore<string, Fenced<InsightsUserState>> _states = null!;
        private IKeyValueStore<string, SeenMetric> _seen = null!;
        // Decoded states of recently seen people (the store keeps bytes; this task is their only writer). An entry is dropped
        // whenever a record fails after the fold changed it, so the store's copy is read again.
        private readonly Dictionary<string, Fenced<InsightsUserState>> _decoded = new(StringComparer.Ordinal);
        private const int DecodedCapacity = 20_000;

        public InsightsProcessor() : base(null!, null!, null!, "") { }

        public InsightsProcessor(ProcessorServices services, InsightsProcessorSettings settings)
            : base(services, services.Schemas.SerDes<AvroRecords.Common.UserKey>(), services.Schemas.SerDes<AvroRecords.Insights.HealthMetric>(), "insights-daily")
        {
            _options = settings.Options;
            _sinkTopic = settings.SinkTopic;
            _keys = services.Schemas.SerDes<AvroRecords.Common.UserKey>();
            _aggregates = services.Schemas.SerDes<AvroRecords.Insights.DailyMetricAggregate>();
        }

        protected override void Init()
        {
            _decoded.Clear();
            _states = (IKeyValueStore<string, Fenced<InsightsUserState>>)(Context.GetStateStore(DayStore)
                ?? throw new InvalidOperationException($"store {DayStore} is not connected to the processor"));
            _seen = (IKeyValueStore<string, SeenMetric>)(Context.GetStateStore(SeenStore)
                ?? throw new InvalidOperationException($"store {SeenStore} is not connected to the processor"));
            Context.Schedule(TimeSpan.FromMinutes(_options.SeenPruneIntervalMinutes), PunctuationType.PROCESSING_TIME,
                now => Punctuation(PruneSeen, now));
        }

        protected override void Process(in InputRecord<AvroRecords.Common.UserKey, AvroRecords.Insights.HealthMetric> record)
        {
            var m = record.Value;
            var userId = record.Key.user_id;
            if (InputRules.CheckId("user_id", userId) is { } badUser) throw new InsightsInputException("record key: " + badUser);
            if (m.user_id != userId)
                throw new InsightsInputException($"user_id {InputRules.Quote(m.user_id)} does not match the record key {InputRules.Quote(userId)}");
            var timeMs = AvroTime.ToUnixMs(m.event_time_unix_ms);
            var receivedAtMs = EventTimeRule.ReceivedAt(record.TimestampUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            if ((InputRules.CheckId("metric_id", m.metric_id)
                 ?? _options.TimeRule.Check("recorded_at", timeMs, receivedAtMs)
                 ?? HealthMetricTypes.Refuse(m.metric, m.value, m.unit)
                 ?? DailyFold.CheckOffset(m.utc_offset_minutes)) is { } bad)
                throw new InsightsInputException(bad);

            var localDate = DailyFold.LocalDate(timeMs, m.utc_offset_minutes);
            var fingerprint = HealthMetricTypes.Fingerprint(m.metric, timeMs, m.value, m.unit);
            var seenKey = SeenKey(userId, m.metric_id);
            var seen = _seen.Get(seenKey);
            var entry = Load(userId);
            if (record.Offset <= entry.AppliedOffset)
            {
                // Counted before a crash or a changelog restore. Its seen id may not have reached the store, and its output may not
                // have reached the topic: write the one, send the day as it stands again (the sink upserts).
                SkipAlreadyApplied();
                if (seen is null) _seen.Put(seenKey, new SeenMetric(m.metric, localDate, record.Partition, record.Offset, fingerprint));
                if (entry.Value.Find(m.metric) is { } counted && counted.IndexOf(localDate) is var at and >= 0)
                {
                    var (replayKey, replayValue) = Encode(userId, m.metric, counted, at, timeMs);
                    EmitBytes(_sinkTopic, replayKey, replayValue, timeMs, OutputId(userId, m.metric_id));
                }
                return;
            }
            if (seen is not null)
            {
                if (seen.Fingerprint != fingerprint)
                    throw new InsightsInputException(
                        $"metric_id {InputRules.Quote(m.metric_id)} was already counted for this person for another metric (local day " +
                        $"{DailyFold.Iso(seen.LocalDate)}); a retry must repeat the metric exactly, a new metric needs a new id");
                // A retry (the gateway re-produces one under the same id): counted once. Unless the seen id is this very record's:
                // then the crash lost the day but not the id, and the record is counted now.
                if (seen.SourcePartition != record.Partition || seen.SourceOffset != record.Offset)
                {
                    SkipAlreadyApplied();
                    return;
                }
            }
            var state = entry.Value;
            if (DailyFold.CheckLate(state.Find(m.metric), m.metric, localDate, m.utc_offset_minutes, state.StreamTimeUnixMs, _options.GraceMs) is { } late)
                throw new InsightsInputException(late);

            try
            {
                var days = state.For(m.metric);
                var index = DailyFold.Add(days, localDate, m.utc_offset_minutes, m.value, timeMs);
                state.StreamTimeUnixMs = Math.Max(state.StreamTimeUnixMs, timeMs);
                // Serialised before any store write: an output that cannot be (the registry unreachable) changes nothing.
                var (key, value) = Encode(userId, m.metric, days, index, timeMs);
                // The day (with its fence) before the seen id: see the class summary for what each crash point leaves.
                var next = new Fenced<InsightsUserState>(record.Offset, state);
                _states.Put(userId, next);
                _decoded[userId] = next;
                _seen.Put(seenKey, new SeenMetric(m.metric, localDate, record.Partition, record.Offset, fingerprint));
                EmitBytes(_sinkTopic, key, value, timeMs, OutputId(userId, m.metric_id));
            }
            catch
            {
                _decoded.Remove(userId);
                throw;
            }
        }

        /// <summary>The output id sinks see: one per counted metric id, whatever replays it.</summary>
        private static string OutputId(string userId, string metricId) => $"insights-daily:{userId}:{metricId}";

        private (byte[] Key, byte[] Value) Encode(string userId, string metric, MetricDays days, int index, long eventTimeUnixMs)
        {
            ref readonly var day = ref days[index];
            var aggregate = new AvroRecords.Insights.DailyMetricAggregate
            {
                event_time_unix_ms = AvroTime.FromUnixMs(eventTimeUnixMs), user_id = userId, metric = metric, unit = HealthMetricTypes.Find(metric)!.Unit,
                local_date = DailyFold.ToDateOnly(day.LocalDate).ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc),
                day_start_unix_ms = AvroTime.FromUnixMs(day.DayStartUnixMs), utc_offset_minutes = day.UtcOffsetMinutes,
                count = day.Count, total = day.Total, min = day.Min, max = day.Max, mean = day.Mean,
                last_value = day.LastValue, last_time_unix_ms = AvroTime.FromUnixMs(day.LastTimeUnixMs),
                week = Summary(DailyFold.Summarize(days, DailyFold.WeekDays)),
                month = Summary(DailyFold.Summarize(days, DailyFold.MonthDays)),
            };
            return (WeightWire.Key(_keys, _sinkTopic, userId), WeightWire.Value(_aggregates, _sinkTopic, aggregate));
        }

        private static AvroRecords.Insights.MetricSummary Summary(RollingSummary s) => new()
        {
            window_days = s.WindowDays, through_date = DailyFold.ToDateOnly(s.ThroughDate).ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc),
            days_with_data = s.DaysWithData, total = s.Total, per_day_mean = s.PerDayMean, value_mean = s.ValueMean, min = s.Min, max = s.Max,
        };

        /// <summary>Deletes the seen ids whose day left their type's 30-day window: a retry of one is refused as late
        /// (<see cref="DailyFold.CheckLate"/>), so the id no longer guards anything.</summary>
        private void PruneSeen(long timeUnixMs)
        {
            List<string>? stale = null;
            foreach (var kv in _seen.All())
            {
                var bar = kv.Key.IndexOf('|');
                if (bar <= 0) continue;
                var latest = Load(kv.Key[..bar]).Value.Find(kv.Value.Metric)?.LatestDate;
                if (latest is { } l && kv.Value.LocalDate <= l - DailyFold.MonthDays) (stale ??= []).Add(kv.Key);
            }
            if (stale is null) return;
            foreach (var key in stale) _seen.Delete(key);
        }

        private Fenced<InsightsUserState> Load(string userId)
        {
            if (_decoded.TryGetValue(userId, out var entry)) return entry;
            entry = _states.Get(userId) ?? new Fenced<InsightsUserState>(-1, new InsightsUserState());
            if (_decoded.Count >= DecodedCapacity) _decoded.Clear();
            _decoded[userId] = entry;
            return entry;
        }
    }
}

/// <summary>An insights.metrics record that cannot be counted as sent (goes to insights.metrics.dlq with the reason).</summary>
public sealed class InsightsInputException(string message) : Exception(message);
