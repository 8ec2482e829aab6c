using Microsoft.Extensions.Configuration;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Sensors.Network;
using StreamHealth.Sensors.Readings;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.Sensors.Metrics;

/// <summary>Settings of the sensors topology, section "Sensors".</summary>
public sealed class SensorsOptions
{
    public const string Section = "Sensors";
    /// <summary>How long after a window's end (in the node's own event time) a late reading is still counted, then the window's
    /// final result is emitted: minutes. Measured from the end of the reading's minute, so one grace serves every size.</summary>
    public double GraceMinutes { get; set; } = 5;
    /// <summary>A node silent for longer than this many windows of a size gets its empty windows emitted only up to it, per
    /// size (a week-long outage does not emit 10,000 empty minutes at once); the gap shows as missing windows.</summary>
    public int MaxEmptyWindows { get; set; } = 60;
    /// <summary>How long an hour's minutes are kept after the hour closed (in the node's event time), so that a record processed
    /// again after a crash can emit the windows it closed once more: minutes.</summary>
    public double KeepMinutesAfterClose { get; set; } = 120;
    /// <summary>How often the node registry (sensors.nodes) is read again: seconds. A reading naming a node the registry does
    /// not have reloads it at once (at most once a second) before the reading is dead-lettered.</summary>
    public double RegistryRefreshSeconds { get; set; } = 10;
    /// <summary>The night window and the time-of-day baselines of the district analysis are local: local time minus UTC, minutes.</summary>
    public int LocalOffsetMinutes { get; set; }
    /// <summary>The platform's event-time rule (section "Input").</summary>
    public EventTimeRule TimeRule { get; set; } = EventTimeRule.Default;

    /// <summary>The district analysis' settings (its detectors' defaults, with <see cref="LocalOffsetMinutes"/>).</summary>
    public Districts.DistrictAnalyzerOptions Districts => new() { LocalOffsetMinutes = LocalOffsetMinutes };

    public TimeSpan RegistryRefresh => TimeSpan.FromSeconds(RegistryRefreshSeconds);

    public long GraceMs => (long)(GraceMinutes * 60_000);

    public void Validate()
    {
        if (!double.IsFinite(GraceMinutes) || GraceMinutes is < 0 or > 24 * 60)
            throw new ArgumentException($"{Section}:GraceMinutes = {GraceMinutes}: must be 0-1440 minutes");
        if (!double.IsFinite(KeepMinutesAfterClose) || KeepMinutesAfterClose is < 0 or > 7 * 24 * 60)
            throw new ArgumentException($"{Section}:KeepMinutesAfterClose = {KeepMinutesAfterClose}: must be 0-10080 minutes");
        if (!double.IsFinite(RegistryRefreshSeconds) || RegistryRefreshSeconds is < 1 or > 3_600)
            throw new ArgumentException($"{Section}:RegistryRefreshSeconds = {RegistryRefreshSeconds}: must be 1-3600 seconds");
        if (LocalOffsetMinutes is < -14 * 60 or > 14 * 60)
            throw new ArgumentException($"{Section}:LocalOffsetMinutes = {LocalOffsetMinutes}: must be -840 to 840 minutes");
        if (MaxEmptyWindows is < 0 or > 10_000)
            throw new ArgumentException($"{Section}:MaxEmptyWindows = {MaxEmptyWindows}: must be 0-10000");
    }

    public static SensorsOptions Load(IConfiguration configuration)
    {
        var options = configuration.GetSection(Section).Get<SensorsOptions>() ?? new SensorsOptions();
        options.TimeRule = InputOptions.TimeRuleOf(configuration);
        options.Validate();
        return options;
    }
}

/// <summary>The window sizes and the keys of the sensors stores.</summary>
public static class SensorWindows
{
    public static readonly int[] SizesMinutes = [1, 15, 60];
    public const long MinuteMs = 60_000;

    /// <summary>A series' key: '|' is outside the id alphabet (<see cref="InputRules.IdRuleText"/>) and metric names are fixed words.</summary>
    public static string SeriesKey(string nodeId, string metric) => nodeId + "|" + metric;

    /// <summary>A minute bucket's key: the series and the minute's start, zero-padded so the store orders a series' minutes by time.</summary>
    public static string BucketKey(string seriesKey, long minuteStartUnixMs) => $"{seriesKey}|{minuteStartUnixMs:D15}";

    public static long Floor(long timeUnixMs, long sizeMs) => timeUnixMs - (((timeUnixMs % sizeMs) + sizeMs) % sizeMs);
}

/// <summary>sensors.readings (key SensorKey) → per node and metric, tumbling windows of 1, 15 and 60 minutes → sensors.metrics
/// (key SensorKey, one <see cref="AvroRecords.Sensors.SensorMetric"/> per window, emitted once, when the window closes), and the
/// same windows keyed by district → sensors.district-windows (the district analysis' input).
/// <list type="bullet">
/// <item>Readings are converted to the metric's canonical unit (<see cref="SensorQuantities"/>); an unknown metric or unit, an
/// impossible value, a bad id, an event time outside the input rules, a node the registry (<see cref="NodeRegistry"/>) does not
/// have, has in another district, has retired or does not register for the metric is dead-lettered with the reason.</item>
/// <item>State: each series' minutes in a RocksDB store (<see cref="MinuteBucket"/>, one per minute with readings), and each
/// series' stream time and emission position (<see cref="SensorSeriesState"/>, with the applied-offset fence). The 15- and
/// 60-minute windows are computed from their minutes when they close, so all sizes count the same readings; a minute is deleted
/// <see cref="SensorsOptions.KeepMinutesAfterClose"/> after the hour containing it closed.</item>
/// <item>Windows close by the series' own event time: a window [s, e) is final once the series has seen a reading at or after
/// e + grace. A reading whose minute has closed is dead-lettered ("late by … beyond the grace"), never dropped; one inside the
/// grace is counted and marked late. Repeats of an event time count once (the first value) and are reported as duplicates.</item>
/// <item>Why not Streamiz's window store: its segments expire by the <em>partition's</em> stream time, so a node replaying a
/// backlog behind the other nodes of its partition would have its minutes dropped before its windows close, silently. Closing
/// by the series' own time needs its minutes kept until then, which a key-value store with explicit deletes does.</item>
/// <item>Crash-safe: the bucket remembers each reading's source offset (a replay is not counted twice) and the series state is
/// fenced. A record processed again after a crash (at or below the fence) emits again the closed windows from its own on, from
/// the minutes still kept, since the crash may have lost the outputs it produced; repeats carry the same output id, which the
/// sinks deduplicate.</item>
/// </list></summary>
public static class SensorsTopology
{
    public const string ApplicationId = "sensors";
    public const string SeriesStore = "sensors-series";
    public const string MinuteStore = "sensors-minutes";

    public static StreamTopology Create(NodeRegistry registry, SensorsOptions? options = null, string applicationId = ApplicationId,
        string sourceTopic = Topics.SensorsReadings, string sinkTopic = Topics.SensorsMetrics, string districtTopic = Topics.SensorsDistrictWindows)
    {
        options ??= new SensorsOptions();
        options.Validate();
        var settings = new SensorsProcessorSettings(options, registry, sinkTopic, districtTopic);
        return new StreamTopology
        {
            ApplicationId = applicationId,
            SourceTopic = sourceTopic,
            ProcessorName = "sensors-windows",
            SinkTopics = [sinkTopic, districtTopic],
            RequiresSchemaRegistry = true,
            Processor = services => TransformerBuilder.New<byte[], byte[], byte[], Emission>()
                .Transformer<SensorsProcessor>(services, settings)
                .StateStore(Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(SeriesStore), new StringSerDes(),
                        new FencedSerDes<SensorSeriesState>(SensorSeriesStateSerDes.Instance))
                    .WithCachingEnabled())
                .Build(),
            // No cache on the minutes: a window is read by one range scan over its minutes (the keys sort by time within a series),
            // and Streamiz's caching layer makes a range scan cost the whole cache (measured: under 1k readings/s with it,
            // 17-20k without); RocksDB's own iterator costs the keys it returns.
            MoreStores = [Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(MinuteStore), new StringSerDes(), MinuteBucketSerDes.Instance)],
        };
    }

    public sealed record SensorsProcessorSettings(SensorsOptions Options, NodeRegistry Registry, string SinkTopic, string DistrictTopic);

    public sealed class SensorsProcessor : StreamProcessor<AvroRecords.Common.SensorKey, AvroRecords.Sensors.SensorReading>
    {
        private readonly SensorsOptions _options = null!;
        private readonly NodeRegistry _registry = null!;
        private readonly string _sinkTopic = "", _districtTopic = "";
        private readonly AvroSerDes<AvroRecords.Common.SensorKey> _keys = null!;
        private readonly AvroSerDes<AvroRecords.Common.DistrictKey> _districtKeys = null!;
        private readonly AvroSerDes<AvroRecords.Sensors.SensorMetric> _metrics = null!;
        private IKeyValueStore<string, Fenced<SensorSeriesState>> _series = null!;
        private IKeyValueStore<string, MinuteBucket> _minutes = null!;
        private readonly List<double> _values = [];
        private readonly List<string> _purged = [];

        public SensorsProcessor() : base(null!, null!, null!, "") { }

        public SensorsProcessor(ProcessorServices services, SensorsProcessorSettings settings)
            : base(services, services.Schemas.SerDes<AvroRecords.Common.SensorKey>(), services.Schemas.SerDes<AvroRecords.Sensors.SensorReading>(), "sensors-windows")
        {
            _options = settings.Options;
            _registry = settings.Registry;
            _sinkTopic = settings.SinkTopic;
            _districtTopic = settings.DistrictTopic;
            _keys = services.Schemas.SerDes<AvroRecords.Common.SensorKey>();
            _districtKeys = services.Schemas.SerDes<AvroRecords.Common.DistrictKey>();
            _metrics = services.Schemas.SerDes<AvroRecords.Sensors.SensorMetric>();
        }

        protected override void Init()
        {
            _reEmittedFrom.Clear();
            _series = (IKeyValueStore<string, Fenced<SensorSeriesState>>)(Context.GetStateStore(SeriesStore)
                ?? throw new InvalidOperationException($"store {SeriesStore} is not connected to the processor"));
            _minutes = (IKeyValueStore<string, MinuteBucket>)(Context.GetStateStore(MinuteStore)
                ?? throw new InvalidOperationException($"store {MinuteStore} is not connected to the processor"));
        }

        protected override void Process(in InputRecord<AvroRecords.Common.SensorKey, AvroRecords.Sensors.SensorReading> record)
        {
            var r = record.Value;
            var nodeId = record.Key.node_id;
            if (InputRules.CheckId("node_id", nodeId) is { } badNode) throw new SensorInputException("record key: " + badNode);
            if (r.node_id != nodeId)
                throw new SensorInputException($"node_id {InputRules.Quote(r.node_id)} does not match the record key {InputRules.Quote(nodeId)}");
            var timeMs = AvroTime.ToUnixMs(r.event_time_unix_ms);
            var receivedAtMs = EventTimeRule.ReceivedAt(record.TimestampUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            if ((InputRules.CheckId("district_id", r.district_id)
                 ?? InputRules.CheckId("reading_id", r.reading_id)
                 ?? _options.TimeRule.Check("event_time", timeMs, receivedAtMs)) is { } bad)
                throw new SensorInputException(bad);
            if (SensorQuantities.Convert(r.metric, r.value, r.unit, out var quantity, out var value) is { } badValue)
                throw new SensorInputException(badValue);
            if (_registry.Find(nodeId) is not { } node)
                throw new SensorInputException($"node_id {InputRules.Quote(nodeId)}: not a registered node (register it in sensors.nodes first)");
            if (node.DistrictId != r.district_id)
                throw new SensorInputException($"district_id {InputRules.Quote(r.district_id)}: node {InputRules.Quote(nodeId)} is registered in district " +
                                               $"{InputRules.Quote(node.DistrictId)}; moving a node is a new node id");
            if (!node.Metrics.Contains(quantity.Metric))
                throw new SensorInputException($"metric = {InputRules.Quote(quantity.Metric)}: node {InputRules.Quote(nodeId)} is registered for " +
                                               $"{string.Join(", ", node.Metrics)} only");
            if (node.RetiredAtUnixMs is { } retiredAt && timeMs >= retiredAt)
                throw new SensorInputException($"event_time = {InputRules.FormatTime(timeMs)}: node {InputRules.Quote(nodeId)} was retired at " +
                                               InputRules.FormatTime(retiredAt));

            var seriesKey = SensorWindows.SeriesKey(nodeId, quantity.Metric);
            var entry = _series.Get(seriesKey) ?? new Fenced<SensorSeriesState>(-1, new SensorSeriesState { DistrictId = node.DistrictId });
            var state = entry.Value;
            if (record.Offset <= entry.AppliedOffset)
            {
                // Counted before a crash, which may have lost the windows it closed: emit again, from the minutes as they stand,
                // every closed window from the one holding this reading on (the sinks drop repeats by output id).
                SkipAlreadyApplied();
                Emit(nodeId, state.DistrictId, ReEmit(nodeId, seriesKey, quantity, state, timeMs));
                return;
            }
            var minuteStart = SensorWindows.Floor(timeMs, SensorWindows.MinuteMs);
            var minuteEnd = minuteStart + SensorWindows.MinuteMs;
            // Its minute's window was emitted (closed by the grace), or lies before the series' first window: counting it now
            // would change a final result.
            if (state.StreamTimeUnixMs != long.MinValue && minuteStart < state.NextWindowStartUnixMs[0])
                throw new SensorInputException(minuteEnd + _options.GraceMs <= state.StreamTimeUnixMs
                    ? $"event_time = {InputRules.FormatTime(timeMs)}: its windows closed; the node's {quantity.Metric} had reached " +
                      $"{InputRules.FormatTime(state.StreamTimeUnixMs)}, late by {(state.StreamTimeUnixMs - minuteEnd) / 1000} s after its minute " +
                      $"beyond the {_options.GraceMinutes:0.##}-minute grace"
                    : $"event_time = {InputRules.FormatTime(timeMs)}: before the first window of the node's {quantity.Metric} " +
                      $"({InputRules.FormatTime(state.NextWindowStartUnixMs[0])}), which is already counting");

            var bucketKey = SensorWindows.BucketKey(seriesKey, minuteStart);
            var bucket = _minutes.Get(bucketKey) ?? new MinuteBucket();
            var late = state.StreamTimeUnixMs != long.MinValue && minuteEnd <= state.StreamTimeUnixMs;
            if (bucket.Add(timeMs, value, record.Offset, late) != MinuteBucket.Outcome.AlreadyApplied) _minutes.Put(bucketKey, bucket);
            if (state.StreamTimeUnixMs == long.MinValue)
            {
                for (var i = 0; i < SensorWindows.SizesMinutes.Length; i++)
                    state.NextWindowStartUnixMs[i] = SensorWindows.Floor(timeMs, SensorWindows.SizesMinutes[i] * SensorWindows.MinuteMs);
                state.PurgeFromUnixMs = SensorWindows.Floor(timeMs, HourMs);
            }
            var previousStreamTime = state.StreamTimeUnixMs == long.MinValue ? timeMs : state.StreamTimeUnixMs;
            state.StreamTimeUnixMs = Math.Max(state.StreamTimeUnixMs, timeMs);
            // Serialised before the state is written: a window that cannot be encoded (the registry unreachable) changes nothing.
            var closed = CloseWindows(nodeId, seriesKey, quantity, state, previousStreamTime);
            // Before the state is written, which records how far the purge went (only minutes of windows emitted hours ago go).
            Purge(seriesKey, state, previousStreamTime);
            _series.Put(seriesKey, new Fenced<SensorSeriesState>(record.Offset, state));
            Emit(nodeId, state.DistrictId, closed);
        }

        /// <summary>Emits a record's windows under the node's key on the metrics topic and under the district's on the district
        /// topic (the repartition the district analysis reads: Kafka Streams' through-topic, written by the same task so a window
        /// reaches both or, after a crash, is emitted again to both); each key serialised once for all of them.</summary>
        private void Emit(string nodeId, string districtId, List<(long WindowEnd, string OutputId, byte[] Value)> windows)
        {
            if (windows.Count == 0) return;
            var key = _keys.Serialize(new AvroRecords.Common.SensorKey { node_id = nodeId },
                new Confluent.Kafka.SerializationContext(Confluent.Kafka.MessageComponentType.Key, _sinkTopic));
            var districtKey = _districtKeys.Serialize(new AvroRecords.Common.DistrictKey { district_id = districtId },
                new Confluent.Kafka.SerializationContext(Confluent.Kafka.MessageComponentType.Key, _districtTopic));
            foreach (var (windowEnd, outputId, value) in windows)
            {
                EmitBytes(_sinkTopic, key, value, windowEnd, outputId);
                EmitBytes(_districtTopic, districtKey, value, windowEnd, "district-" + outputId);
            }
        }

        private const long HourMs = 60 * SensorWindows.MinuteMs;

        /// <summary>Deletes the minutes of hours closed more than <see cref="SensorsOptions.KeepMinutesAfterClose"/> ago.</summary>
        private void Purge(string seriesKey, SensorSeriesState state, long previousStreamTime)
        {
            var keepMs = (long)(_options.KeepMinutesAfterClose * SensorWindows.MinuteMs);
            var limit = Math.Min(state.NextWindowStartUnixMs[2], SensorWindows.Floor(state.StreamTimeUnixMs - _options.GraceMs - keepMs, HourMs));
            for (var hour = state.PurgeFromUnixMs; hour < limit; hour += HourMs)
            {
                if (hour > previousStreamTime) break;    // no reading after the previous stream time: nothing stored
                using (var range = _minutes.Range(SensorWindows.BucketKey(seriesKey, hour), SensorWindows.BucketKey(seriesKey, hour + HourMs - SensorWindows.MinuteMs)))
                    while (range.MoveNext())
                        if (range.Current is { Key: { } key }) _purged.Add(key);
                foreach (var key in _purged) _minutes.Delete(key);
                _purged.Clear();
                state.PurgeFromUnixMs = hour + HourMs;
            }
            state.PurgeFromUnixMs = Math.Max(state.PurgeFromUnixMs, Math.Min(limit, state.NextWindowStartUnixMs[2]));
        }

        // Per series replayed since this task started: per size, the earliest window already emitted again. A replay after a
        // crash reads the records since the last commit in order; the first of a series emits again every window from its own
        // on, and the later ones only windows before that (a late record's), so the replay costs the windows once, not once
        // per record.
        private readonly Dictionary<string, long[]> _reEmittedFrom = new(StringComparer.Ordinal);

        /// <summary>The closed windows from the one holding <paramref name="timeUnixMs"/> on, per size, whose minutes are still
        /// kept and which this task has not emitted again already.</summary>
        private List<(long WindowEnd, string OutputId, byte[] Value)> ReEmit(string nodeId, string seriesKey, SensorQuantity quantity,
            SensorSeriesState state, long timeUnixMs)
        {
            var again = new List<(long, string, byte[])>();
            if (!_reEmittedFrom.TryGetValue(seriesKey, out var emittedFrom))
                _reEmittedFrom[seriesKey] = emittedFrom = [.. state.NextWindowStartUnixMs];
            for (var i = 0; i < SensorWindows.SizesMinutes.Length; i++)
            {
                var minutes = SensorWindows.SizesMinutes[i];
                var sizeMs = minutes * SensorWindows.MinuteMs;
                var from = Math.Max(SensorWindows.Floor(timeUnixMs, sizeMs), state.PurgeFromUnixMs);
                for (var start = from; start < Math.Min(emittedFrom[i], state.NextWindowStartUnixMs[i]); start += sizeMs)
                    again.Add(Encode(nodeId, seriesKey, quantity, state, minutes, start));
                emittedFrom[i] = Math.Min(emittedFrom[i], from);
            }
            return again;
        }

        /// <summary>The windows the series' new stream time closes, oldest first per size, encoded; advances the emission
        /// position. Readings so far are at or before
        /// <paramref name="previousStreamTime"/>, so later windows are empty: after a silence only the newest
        /// <see cref="SensorsOptions.MaxEmptyWindows"/> of those are emitted.</summary>
        private List<(long WindowEnd, string OutputId, byte[] Value)> CloseWindows(string nodeId, string seriesKey, SensorQuantity quantity,
            SensorSeriesState state, long previousStreamTime)
        {
            var closed = new List<(long, string, byte[])>();
            for (var i = 0; i < SensorWindows.SizesMinutes.Length; i++)
            {
                var minutes = SensorWindows.SizesMinutes[i];
                var sizeMs = minutes * SensorWindows.MinuteMs;
                var start = state.NextWindowStartUnixMs[i];
                // The newest window that closes now: start + size + grace <= stream time.
                var newestClosed = SensorWindows.Floor(state.StreamTimeUnixMs - _options.GraceMs - sizeMs, sizeMs);
                for (; start <= newestClosed; start += sizeMs)
                {
                    if (start > previousStreamTime)
                    {
                        var firstKept = newestClosed - (_options.MaxEmptyWindows - 1L) * sizeMs;
                        if (_options.MaxEmptyWindows == 0 || firstKept > newestClosed) break;
                        if (firstKept > start) start = firstKept;
                    }
                    closed.Add(Encode(nodeId, seriesKey, quantity, state, minutes, start));
                }
                state.NextWindowStartUnixMs[i] = Math.Max(start, newestClosed + sizeMs);
            }
            return closed;
        }

        /// <summary>One window's output id, whatever replays it: the sinks drop repeats by it.</summary>
        public static string OutputId(string nodeId, string metric, int minutes, long windowStartUnixMs) =>
            $"sensors-metrics:{nodeId}:{metric}:{minutes}:{windowStartUnixMs}";

        /// <summary>One window's final result, computed from its minutes and encoded.</summary>
        private (long WindowEnd, string OutputId, byte[] Value) Encode(string nodeId, string seriesKey, SensorQuantity quantity, SensorSeriesState state,
            int minutes, long start)
        {
            var sizeMs = minutes * SensorWindows.MinuteMs;
            var (stats, duplicates, lates) = Statistics(seriesKey, start, minutes);
            var metric = new AvroRecords.Sensors.SensorMetric
            {
                event_time_unix_ms = AvroTime.FromUnixMs(start + sizeMs), node_id = nodeId, district_id = state.DistrictId,
                metric = quantity.Metric, unit = quantity.CanonicalUnit, window_minutes = minutes,
                window_start_unix_ms = AvroTime.FromUnixMs(start), reading_count = stats.Count, duplicate_count = duplicates, late_count = lates,
                min = stats.Min, max = stats.Max, mean = stats.Mean, stddev = stats.StdDev, p50 = stats.P50, p95 = stats.P95,
            };
            return (start + sizeMs, OutputId(nodeId, quantity.Metric, minutes, start),
                _metrics.Serialize(metric, new Confluent.Kafka.SerializationContext(Confluent.Kafka.MessageComponentType.Value, _sinkTopic)));
        }

        /// <summary>The statistics of the window [start, start + minutes) from its minute buckets: one Get for a minute, one range
        /// scan for a longer window, so a window costs the minutes that exist.</summary>
        private (WindowStatistics Stats, int Duplicates, int Lates) Statistics(string seriesKey, long startUnixMs, int minutes)
        {
            _values.Clear();
            int duplicates = 0, lates = 0;
            void Add(MinuteBucket bucket)
            {
                foreach (var reading in bucket.Readings) _values.Add(reading.Value);
                duplicates += bucket.DuplicateCount;
                lates += bucket.LateCount;
            }
            if (minutes == 1)
            {
                if (_minutes.Get(SensorWindows.BucketKey(seriesKey, startUnixMs)) is { } bucket) Add(bucket);
            }
            else
            {
                using var range = _minutes.Range(SensorWindows.BucketKey(seriesKey, startUnixMs),
                    SensorWindows.BucketKey(seriesKey, startUnixMs + (minutes - 1) * SensorWindows.MinuteMs));
                while (range.MoveNext())
                    if (range.Current is { Value: { } bucket }) Add(bucket);
            }
            return (WindowStatistics.Compute(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_values)), duplicates, lates);
        }
    }
}

/// <summary>A sensors.readings record that cannot be counted as sent (goes to sensors.readings.dlq with the reason).</summary>
public sealed class SensorInputException(string message) : Exception(message);
