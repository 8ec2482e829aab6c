using System.Buffers.Binary;
using System.Text;
using Microsoft.Extensions.Logging;
using Confluent.Kafka;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Sensors.Network;
using StreamHealth.Sensors.Predictions;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.Sensors.Districts;

/// <summary>The topics of one district analysis (production uses <see cref="Default"/>; tests give each their own).</summary>
public sealed record DistrictTopics(string Windows, string Anomalies, string Quality, string Efficiency, string Predictions)
{
    public static readonly DistrictTopics Default =
        new(Topics.SensorsDistrictWindows, Topics.SensorsAnomalies, Topics.SensorsQuality, Topics.SensorsEfficiency, Topics.SensorsPredictions);
}

/// <summary>sensors.district-windows (key DistrictKey: every closed window of every node of the district, from the windows
/// topology) → one <see cref="DistrictAnalyzer"/> per district → sensors.quality (key SensorKey: each 15- and 60-minute window's
/// data quality), sensors.anomalies (key DistrictKey: bursts, background leaks and residuals as they open and resolve) and
/// sensors.efficiency (key DistrictKey: each closed day's water balance), and each inflow's and meter's flow forecast for the next
/// 24 hours as each hour of its flow closes → sensors.predictions (key SensorKey; <see cref="NodePredictor"/>, fed without the
/// hours the quality rules find unusable and, for an inflow, the hours of a burst: <see cref="FlowPredictions"/>).
/// <list type="bullet">
/// <item>A node's kind (its role in the water balance) and reporting cadence come from the node registry; a window of a node the
/// registry does not have, or whose district disagrees with the key, is dead-lettered with the reason.</item>
/// <item>Event-time alignment: the windows of a district's nodes come from the windows topology's tasks, one per readings
/// partition, which run at their own pace: after an outage or in a replay one node's windows can be hours ahead of another's.
/// The water balance needs every node's minute, so windows wait in a pending store (ordered by window end) and go to the analyser
/// up to the district's watermark: the oldest window end among the nodes still sending (a node silent for
/// <see cref="IdleAfter"/> of wall-clock time, at least three of its reporting intervals, is not waited for: a dead meter must not
/// hold the district back). In real time every node is a minute or so behind the newest, so this costs about a minute; the
/// analyser's own wait (<see cref="DistrictAnalyzerOptions.BalanceWaitMinutes"/>) covers the rest. Kafka Streams aligns the
/// partitions of one task by timestamp the same way (max.task.idle.ms); these are different tasks upstream.</item>
/// <item>State: each district's analyser in a RocksDB store, fenced by the source offset it applied last. The analyser ignores a
/// window it has applied (the windows topology emits a window again after its own crash).</item>
/// <item>Crash-safe outputs: a record processed again after a crash (at or below the fence) finds the state already past it, but
/// its outputs may not have reached the topics. Each record's outputs are kept in an outbox store under its source offset for
/// <see cref="OutboxKeepOffsets"/> offsets, and a record at or below the fence sends them again, unchanged (same output ids: the
/// sinks upsert by the anomaly id, the window and the day).</item>
/// </list></summary>
public static class DistrictTopology
{
    public const string ApplicationId = "sensors-districts";
    public const string StateStore = "sensors-district-state";
    public const string OutboxStore = "sensors-district-outbox";
    public const string PendingStore = "sensors-district-pending";
    public const string PredictorStore = "sensors-district-predictors";
    /// <summary>How often (wall clock) districts whose nodes went silent release what waited for them.</summary>
    public static readonly TimeSpan ReleaseInterval = TimeSpan.FromSeconds(5);
    /// <summary>How long (event time) released windows stay in the pending store before they are deleted.</summary>
    public static readonly TimeSpan PendingKeep = TimeSpan.FromDays(3);
    /// <summary>A node sending nothing for this long (wall clock; at least three of its reporting intervals) is not waited for.</summary>
    public static readonly TimeSpan IdleAfter = TimeSpan.FromSeconds(30);
    /// <summary>How far behind the newest processed offset a record's outputs are kept: far more records than one commit interval
    /// holds at any rate this stage sees (a few windows per node and minute).</summary>
    public const long OutboxKeepOffsets = 200_000;

    public static StreamTopology Create(NodeRegistry registry, DistrictAnalyzerOptions? options = null, string applicationId = ApplicationId,
        DistrictTopics? topics = null)
    {
        options ??= new DistrictAnalyzerOptions();
        options.Validate();
        topics ??= DistrictTopics.Default;
        var settings = new Settings(options, registry, topics);
        return new StreamTopology
        {
            ApplicationId = applicationId,
            SourceTopic = topics.Windows,
            ProcessorName = "sensors-districts",
            SinkTopics = [topics.Anomalies, topics.Quality, topics.Efficiency, topics.Predictions],
            RequiresSchemaRegistry = true,
            Processor = services => TransformerBuilder.New<byte[], byte[], byte[], Emission>()
                .Transformer<DistrictProcessor>(services, settings)
                .StateStore(Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(StateStore), new StringSerDes(),
                        new FencedSerDes<DistrictState>(new DistrictStateSerDes(options)))
                    .WithCachingEnabled())
                .Build(),
            MoreStores =
            [
                Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(OutboxStore), new StringSerDes(), new ByteArraySerDes()),
                // Uncached: released by range scans (a cached store's scan costs its whole cache).
                Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(PendingStore), new StringSerDes(), new ByteArraySerDes()),
                Stores.KeyValueStoreBuilder(Stores.PersistentKeyValueStore(PredictorStore), new StringSerDes(), new ByteArraySerDes()).WithCachingEnabled(),
            ],
        };
    }

    public sealed record Settings(DistrictAnalyzerOptions Options, NodeRegistry Registry, DistrictTopics Topics);

    /// <summary>Output ids: one per anomaly state, window and day, whatever replays them.</summary>
    public static string AnomalyOutputId(AnomalyEvent a) => $"sensors-anomaly:{a.AnomalyId}:{StateName(a.State)}";

    public static string QualityOutputId(QualityVerdict v) => $"sensors-quality:{v.NodeId}:{v.Metric}:{v.WindowMinutes}:{v.WindowStartUnixMs}";

    public static string EfficiencyOutputId(EfficiencyResult e) => $"sensors-efficiency:{e.DistrictId}:{e.DayStartUnixMs}";

    public static string StateName(AnomalyState state) => state switch
    {
        AnomalyState.Open => "open", AnomalyState.Acknowledged => "acknowledged", _ => "resolved",
    };

    public static string SeverityName(AnomalySeverity severity) => severity switch
    {
        AnomalySeverity.Low => "low", AnomalySeverity.Medium => "medium", AnomalySeverity.High => "high", _ => "critical",
    };

    public static string MethodName(NodePredictor.Method method) => method switch
    {
        NodePredictor.Method.HoltWintersDaily => "holt_winters_daily", NodePredictor.Method.SeasonalNaiveDaily => "seasonal_naive_daily",
        NodePredictor.Method.SeasonalNaiveWeekly => "seasonal_naive_weekly", _ => "combined",
    };

    public static string RuleName(QualityRule rule) => rule switch
    {
        QualityRule.Completeness => "completeness", QualityRule.OutOfRange => "out_of_range", QualityRule.Flatline => "flatline",
        QualityRule.Drift => "drift", QualityRule.Late => "late", _ => "duplicates",
    };

    public sealed class DistrictProcessor : StreamProcessor<AvroRecords.Common.DistrictKey, AvroRecords.Sensors.SensorMetric>
    {
        private readonly Settings _settings = null!;
        private readonly ILogger _log = null!;
        private readonly AvroSerDes<AvroRecords.Common.DistrictKey> _districtKeys = null!;
        private readonly AvroSerDes<AvroRecords.Common.SensorKey> _nodeKeys = null!;
        private readonly AvroSerDes<AvroRecords.Sensors.SensorAnomaly> _anomalies = null!;
        private readonly AvroSerDes<AvroRecords.Sensors.SensorQuality> _quality = null!;
        private readonly AvroSerDes<AvroRecords.Sensors.DistrictEfficiency> _efficiency = null!;
        private readonly AvroSerDes<AvroRecords.Sensors.SensorPrediction> _predictions = null!;
        private IKeyValueStore<string, byte[]> _predictors = null!;
        private IKeyValueStore<string, Fenced<DistrictState>> _state = null!;
        private IKeyValueStore<string, byte[]> _outbox = null!;
        private IKeyValueStore<string, byte[]> _pending = null!;
        // Per district and node: the newest window end seen and when (wall clock, Environment.TickCount64) it came. In memory: after a
        // restart the nodes are waited for from their first window on.
        private readonly Dictionary<string, Dictionary<string, (long LastEndUnixMs, long ArrivedAtTicks, long IdleMs)>> _progress = new(StringComparer.Ordinal);
        private readonly List<string> _released = [];
        // Per district: the series waiting in the pending store that its analyser does not follow yet (counted against its
        // MaxSeries before they wait). In memory: after a restart the few waiting then are caught at release (Apply).
        private readonly Dictionary<string, HashSet<string>> _newSeries = new(StringComparer.Ordinal);
        // The task's analysers, as the store holds them (each Put is the whole analyser; the store's cache absorbs the rewrites
        // until the commit): kept decoded, so a window costs an encode, not a decode and an encode.
        private readonly Dictionary<string, Fenced<DistrictState>> _analyzers = new(StringComparer.Ordinal);
        private readonly List<(string Topic, byte[] Key, byte[] Value, long TimeUnixMs, string OutputId)> _emissions = [];
        private IReadOnlyDictionary<string, SensorNode>? _optionsFrom;
        private DistrictAnalyzerOptions _options = null!;
        private long _purgedBelow = -1;

        public DistrictProcessor() : base(null!, null!, null!, "") { }

        public DistrictProcessor(ProcessorServices services, Settings settings)
            : base(services, services.Schemas.SerDes<AvroRecords.Common.DistrictKey>(), services.Schemas.SerDes<AvroRecords.Sensors.SensorMetric>(),
                "sensors-districts")
        {
            _settings = settings;
            _log = services.Log;
            _districtKeys = services.Schemas.SerDes<AvroRecords.Common.DistrictKey>();
            _nodeKeys = services.Schemas.SerDes<AvroRecords.Common.SensorKey>();
            _anomalies = services.Schemas.SerDes<AvroRecords.Sensors.SensorAnomaly>();
            _quality = services.Schemas.SerDes<AvroRecords.Sensors.SensorQuality>();
            _efficiency = services.Schemas.SerDes<AvroRecords.Sensors.DistrictEfficiency>();
            _predictions = services.Schemas.SerDes<AvroRecords.Sensors.SensorPrediction>();
        }

        protected override void Init()
        {
            _analyzers.Clear();
            _purgedBelow = -1;
            _state = (IKeyValueStore<string, Fenced<DistrictState>>)(Context.GetStateStore(StateStore)
                ?? throw new InvalidOperationException($"store {StateStore} is not connected to the processor"));
            _outbox = (IKeyValueStore<string, byte[]>)(Context.GetStateStore(OutboxStore)
                ?? throw new InvalidOperationException($"store {OutboxStore} is not connected to the processor"));
            _pending = (IKeyValueStore<string, byte[]>)(Context.GetStateStore(PendingStore)
                ?? throw new InvalidOperationException($"store {PendingStore} is not connected to the processor"));
            _predictors = (IKeyValueStore<string, byte[]>)(Context.GetStateStore(PredictorStore)
                ?? throw new InvalidOperationException($"store {PredictorStore} is not connected to the processor"));
            _progress.Clear();
            _newSeries.Clear();
            // Nodes that went silent release what waited for them, also when nothing else arrives (the end of a backfill, a
            // district whose every node stopped).
            Context.Schedule(ReleaseInterval, PunctuationType.PROCESSING_TIME, now => Punctuation(ReleaseIdle, now));
        }

        protected override void Process(in InputRecord<AvroRecords.Common.DistrictKey, AvroRecords.Sensors.SensorMetric> record)
        {
            var districtId = record.Key.district_id;
            var m = record.Value;
            if ((InputRules.CheckId("district_id", districtId) ?? InputRules.CheckId("node_id", m.node_id)) is { } badId)
                throw new DistrictInputException(badId);
            if (m.district_id != districtId)
                throw new DistrictInputException($"district_id {InputRules.Quote(m.district_id)} does not match the record key {InputRules.Quote(districtId)}");
            if (m.window_minutes is not (1 or 15 or 60)) throw new DistrictInputException($"window_minutes = {m.window_minutes}: not 1, 15 or 60");
            if (_settings.Registry.Find(m.node_id) is not { } node)
                throw new DistrictInputException($"node_id {InputRules.Quote(m.node_id)}: not a registered node");
            if (node.DistrictId != districtId)
                throw new DistrictInputException($"node {InputRules.Quote(m.node_id)} is registered in district {InputRules.Quote(node.DistrictId)}");
            // Everything the analyser would refuse is refused here, before the window waits: a window it threw on when released
            // would throw again on every release after it (a poison window holding the district back).
            if (!node.Metrics.Contains(m.metric))
                throw new DistrictInputException($"metric = {InputRules.Quote(m.metric)}: node {InputRules.Quote(m.node_id)} is registered for {string.Join(", ", node.Metrics)} only");
            var windowStartMs = AvroTime.ToUnixMs(m.window_start_unix_ms);
            if (windowStartMs % (m.window_minutes * 60_000L) != 0 || AvroTime.ToUnixMs(m.event_time_unix_ms) != windowStartMs + m.window_minutes * 60_000L)
                throw new DistrictInputException($"window {InputRules.FormatTime(windowStartMs)}: not a {m.window_minutes}-minute window (start on its boundary, end one size later)");

            var entry = Load(districtId);
            if (record.Offset <= entry.AppliedOffset)
            {
                // Applied before a crash: its outputs, as they were, from the outbox (the state is already past it).
                SkipAlreadyApplied();
                if (_outbox.Get(OutboxKey(record.Offset)) is { } kept)
                    foreach (var e in DecodeOutbox(kept)) EmitBytes(e.Topic, e.Key, e.Value, e.TimeUnixMs, e.OutputId);
                return;
            }
            var state = entry.Value;
            state.Analyzer.UseOptions(CurrentOptions());
            _emissions.Clear();
            var window = NodeWindow.FromAvro(m, NodeKinds.Parse(node.Kind));
            if (!state.Analyzer.HasSeries(window.NodeId, window.Metric))
            {
                var waiting = _newSeries.TryGetValue(districtId, out var set) ? set : _newSeries[districtId] = new HashSet<string>(StringComparer.Ordinal);
                var series = window.NodeId + "|" + window.Metric;
                if (!waiting.Contains(series) && state.Analyzer.SeriesCount + waiting.Count >= state.Analyzer.MaxSeries)
                    throw new DistrictInputException($"district {InputRules.Quote(districtId)} has {state.Analyzer.MaxSeries} series (node and metric) already; " +
                                                     $"{InputRules.Quote(window.NodeId)} {window.Metric} would be one more than its analysis follows");
                waiting.Add(series);
            }
            Track(districtId, window, node.CadenceSeconds);
            try
            {
                // Later than what was released already: straight to the analyser (which judges a late window itself).
                if (window.WindowEndUnixMs <= state.ReleasedThroughUnixMs) Apply(state, districtId, window);
                else _pending.Put(PendingKey(districtId, window), NodeWindowCodec.Encode(window));
                Release(state, districtId);
                var applied = new Fenced<DistrictState>(record.Offset, state);
                _state.Put(districtId, applied);
                _analyzers[districtId] = applied;
                if (_emissions.Count > 0) _outbox.Put(OutboxKey(record.Offset), EncodeOutbox(_emissions));
            }
            catch
            {
                // The analyser in memory may have moved past the record: read it again from the store next time.
                _analyzers.Remove(districtId);
                throw;
            }
            foreach (var e in _emissions) EmitBytes(e.Topic, e.Key, e.Value, e.TimeUnixMs, e.OutputId);
            Purge(record.Offset);
        }

        /// <summary>Punctuation: each district whose watermark moved because nodes went silent releases its pending windows. The
        /// outputs join the outbox entry of the district's last applied record, so a replay of that record after a crash sends
        /// them again; the released position is in the same store value as the analyser, so a crash before the next commit
        /// forgets both and this runs again with the same result.</summary>
        private void ReleaseIdle(long now)
        {
            foreach (var districtId in _progress.Keys)
            {
                var entry = Load(districtId);
                if (entry.AppliedOffset < 0 || Watermark(districtId) <= entry.Value.ReleasedThroughUnixMs) continue;
                _emissions.Clear();
                try
                {
                    entry.Value.Analyzer.UseOptions(CurrentOptions());
                    Release(entry.Value, districtId);
                    _state.Put(districtId, entry);
                    if (_emissions.Count > 0)
                    {
                        var key = OutboxKey(entry.AppliedOffset);
                        var all = _outbox.Get(key) is { } kept ? DecodeOutbox(kept) : [];
                        all.AddRange(_emissions);
                        _outbox.Put(key, EncodeOutbox(all));
                    }
                }
                catch
                {
                    _analyzers.Remove(districtId);
                    throw;
                }
                foreach (var e in _emissions) EmitBytes(e.Topic, e.Key, e.Value, e.TimeUnixMs, e.OutputId);
            }
        }

        private void Track(string districtId, in NodeWindow window, int cadenceSeconds)
        {
            if (!_progress.TryGetValue(districtId, out var nodes))
            {
                // Every node the registry has in the district is waited for from the start (until it has been silent for its idle
                // time): the first windows to arrive must not run ahead of nodes whose task has not started sending yet.
                _progress[districtId] = nodes = new(StringComparer.Ordinal);
                var now = Environment.TickCount64;
                foreach (var (id, registered) in _settings.Registry.Nodes)
                    if (registered.DistrictId == districtId && registered.RetiredAtUnixMs is null)
                        nodes[id] = (long.MinValue, now, IdleMs(registered.CadenceSeconds));
            }
            var lastEnd = nodes.TryGetValue(window.NodeId, out var seen) ? Math.Max(seen.LastEndUnixMs, window.WindowEndUnixMs) : window.WindowEndUnixMs;
            nodes[window.NodeId] = (lastEnd, Environment.TickCount64, IdleMs(cadenceSeconds));
        }

        private static long IdleMs(int cadenceSeconds) => Math.Max((long)IdleAfter.TotalMilliseconds, 3_000L * cadenceSeconds);

        /// <summary>The district's watermark: the oldest newest-window-end among its nodes still sending (long.MaxValue when none is).</summary>
        private long Watermark(string districtId)
        {
            var now = Environment.TickCount64;
            var watermark = long.MaxValue;
            foreach (var (_, p) in _progress[districtId])
                if (now - p.ArrivedAtTicks <= p.IdleMs) watermark = Math.Min(watermark, p.LastEndUnixMs);
            return watermark;
        }

        /// <summary>Feeds the analyser the district's pending windows after what it released already, up to its watermark, in
        /// window-end order, and encodes what they produce. The pending windows stay (the released position moves instead, in
        /// the analyser's store value, so a crash forgets both or neither); <see cref="PurgePending"/> deletes them days later.</summary>
        private void Release(DistrictState state, string districtId)
        {
            var watermark = Watermark(districtId);
            if (watermark <= state.ReleasedThroughUnixMs) return;
            var windows = new List<NodeWindow>();
            var from = state.ReleasedThroughUnixMs == long.MinValue ? districtId + "|" : PendingPrefix(districtId, state.ReleasedThroughUnixMs) + "~";
            using (var range = _pending.Range(from, watermark == long.MaxValue ? districtId + "}" : PendingPrefix(districtId, watermark) + "~"))
                while (range.MoveNext())
                    if (range.Current is { Value: { } value }) windows.Add(NodeWindowCodec.Decode(value));
            foreach (var w in windows) Apply(state, districtId, w);
            var releasedThrough = watermark != long.MaxValue ? watermark : windows.Count > 0 ? windows[^1].WindowEndUnixMs : state.ReleasedThroughUnixMs;
            state.ReleasedThroughUnixMs = Math.Max(state.ReleasedThroughUnixMs, releasedThrough);
            PurgePending(districtId, state.ReleasedThroughUnixMs);
        }

        private void Apply(DistrictState state, string districtId, in NodeWindow w)
        {
            DistrictOutputs outputs;
            try
            {
                outputs = state.Analyzer.Add(w);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                // Checked before it waited, so only after a restart (the waiting new series are counted in memory): logged and
                // counted, never thrown, or the window would be applied and throw again on every release after it.
                _log.LogError("district {District}: window {Node} {Metric} {Minutes} min at {Start} left out of the analysis: {Error}", districtId,
                    w.NodeId, w.Metric, w.WindowMinutes, InputRules.FormatTime(w.WindowStartUnixMs), e.Message);
                return;
            }
            if (_newSeries.TryGetValue(districtId, out var waiting)) waiting.Remove(w.NodeId + "|" + w.Metric);
            Encode(outputs);
            if (FlowPredictions.Feeds(w)) Predict(districtId, w, FlowPredictions.HourValue(w, outputs, state.Analyzer));
        }

        // Per district: the window end up to which the pending store was purged.
        private readonly Dictionary<string, long> _pendingPurgedThrough = new(StringComparer.Ordinal);

        /// <summary>Deletes the district's pending windows released more than <see cref="PendingKeep"/> (of event time) before its
        /// released position, an hour's worth at a time: long enough that no crash can take the released position back past them.</summary>
        private void PurgePending(string districtId, long releasedThroughUnixMs)
        {
            if (releasedThroughUnixMs == long.MinValue) return;
            var bound = releasedThroughUnixMs - (long)PendingKeep.TotalMilliseconds;
            var purged = _pendingPurgedThrough.GetValueOrDefault(districtId, long.MinValue);
            if (bound - purged < 3_600_000) return;
            _released.Clear();
            using (var range = _pending.Range(districtId + "|", PendingPrefix(districtId, bound) + "~"))
                while (range.MoveNext())
                    if (range.Current is { Key: { } key }) _released.Add(key);
            foreach (var key in _released) _pending.Delete(key);
            _pendingPurgedThrough[districtId] = bound;
        }

        /// <summary>Adds the node's hour to its predictor and, when the hour is new, emits the forecast from it.</summary>
        private void Predict(string districtId, in NodeWindow w, double hourValue)
        {
            var key = w.NodeId + "|" + w.Metric;
            var predictor = _predictors.Get(key) is { } saved ? NodePredictor.Restore(saved) : new NodePredictor();
            if (!predictor.Add(w.WindowStartUnixMs, hourValue)) return;
            var points = predictor.Forecast();
            _predictors.Put(key, predictor.Save());
            if (points is null) return;
            var issued = w.WindowEndUnixMs;
            var value = new AvroRecords.Sensors.SensorPrediction
            {
                event_time_unix_ms = AvroTime.FromUnixMs(issued), node_id = w.NodeId, district_id = districtId, metric = w.Metric, unit = "L/s",
                method = MethodName(predictor.LastMethod), points = [],
            };
            foreach (var p in points)
                value.points.Add(new AvroRecords.Sensors.SensorPredictionPoint
                {
                    hour_start_unix_ms = AvroTime.FromUnixMs(issued + (p.Horizon - 1) * 3_600_000L), mean = p.Point, lower_80 = p.Low80, upper_80 = p.High80,
                    lower_95 = p.Low95, upper_95 = p.High95,
                });
            var topic = _settings.Topics.Predictions;
            _emissions.Add((topic, _nodeKeys.Serialize(new AvroRecords.Common.SensorKey { node_id = w.NodeId }, new SerializationContext(MessageComponentType.Key, topic)),
                _predictions.Serialize(value, new SerializationContext(MessageComponentType.Value, topic)), issued,
                $"sensors-prediction:{w.NodeId}:{w.Metric}:{issued}"));
        }

        private Fenced<DistrictState> Load(string districtId)
        {
            if (_analyzers.TryGetValue(districtId, out var entry)) return entry;
            entry = _state.Get(districtId) ?? new Fenced<DistrictState>(-1, new DistrictState(new DistrictAnalyzer(districtId, _settings.Options)));
            _analyzers[districtId] = entry;
            return entry;
        }

        /// <summary>The settings with each registered node's cadence (readings per minute), rebuilt when the registry reloads.</summary>
        private DistrictAnalyzerOptions CurrentOptions()
        {
            var nodes = _settings.Registry.Nodes;
            if (!ReferenceEquals(nodes, _optionsFrom))
            {
                var perMinute = new Dictionary<string, double>(nodes.Count, StringComparer.Ordinal);
                foreach (var (id, n) in nodes) perMinute[id] = Math.Min(600, 60.0 / n.CadenceSeconds);
                _options = _settings.Options with { ReadingsPerMinuteByNode = perMinute };
                _optionsFrom = nodes;
            }
            return _options;
        }

        private void Encode(DistrictOutputs outputs)
        {
            foreach (var v in outputs.Quality)
            {
                // A 1-minute verdict serves the analyser (the quarter hour's own verdict counts its minutes); publishing it sent
                // one record per series and minute that the sink could only dead-letter (the table holds quarter hours and hours).
                if (v.WindowMinutes == 1) continue;
                var checks = new List<AvroRecords.Sensors.SensorQualityCheck>(v.Checks.Length);
                foreach (var c in v.Checks)
                    checks.Add(new AvroRecords.Sensors.SensorQualityCheck { rule = RuleName(c.Rule), score = c.Score, problem = c.Problem, reason = c.Reason });
                var value = new AvroRecords.Sensors.SensorQuality
                {
                    event_time_unix_ms = AvroTime.FromUnixMs(v.WindowEndUnixMs), node_id = v.NodeId, district_id = v.DistrictId, metric = v.Metric,
                    window_minutes = v.WindowMinutes, window_start_unix_ms = AvroTime.FromUnixMs(v.WindowStartUnixMs), usable = v.Usable, checks = checks,
                };
                _emissions.Add((_settings.Topics.Quality,
                    _nodeKeys.Serialize(new AvroRecords.Common.SensorKey { node_id = v.NodeId }, new SerializationContext(MessageComponentType.Key, _settings.Topics.Quality)),
                    _quality.Serialize(value, new SerializationContext(MessageComponentType.Value, _settings.Topics.Quality)),
                    v.WindowEndUnixMs, QualityOutputId(v)));
            }
            foreach (var a in outputs.Anomalies)
            {
                var timeMs = a.State == AnomalyState.Resolved && a.EndUnixMs is { } end ? end : a.StartUnixMs;
                var value = new AvroRecords.Sensors.SensorAnomaly
                {
                    event_time_unix_ms = AvroTime.FromUnixMs(timeMs), anomaly_id = a.AnomalyId, kind = AnomalyKinds.Name(a.Kind), district_id = a.DistrictId,
                    node_id = a.NodeId, metric = a.Metric, start_unix_ms = AvroTime.FromUnixMs(a.StartUnixMs),
                    end_unix_ms = a.EndUnixMs is { } e ? AvroTime.FromUnixMs(e) : null, severity = SeverityName(a.Severity), score = a.Score,
                    state = StateName(a.State), observed = a.Observed, expected = a.Expected, unit = a.Unit, reason = a.Reason,
                };
                _emissions.Add((_settings.Topics.Anomalies, DistrictKey(a.DistrictId, _settings.Topics.Anomalies),
                    _anomalies.Serialize(value, new SerializationContext(MessageComponentType.Value, _settings.Topics.Anomalies)), timeMs, AnomalyOutputId(a)));
            }
            foreach (var f in outputs.Efficiency)
            {
                var value = new AvroRecords.Sensors.DistrictEfficiency
                {
                    event_time_unix_ms = AvroTime.FromUnixMs(f.DayStartUnixMs + 86_400_000), district_id = f.DistrictId,
                    day_start_unix_ms = AvroTime.FromUnixMs(f.DayStartUnixMs), inflow_m3 = f.InflowM3, metered_m3 = f.MeteredM3,
                    non_revenue_m3 = f.NonRevenueM3, non_revenue_percent = f.NonRevenuePercent, completeness = f.Completeness, rolling_days = f.RollingDays,
                    rolling_inflow_m3 = f.RollingInflowM3, rolling_metered_m3 = f.RollingMeteredM3, rolling_non_revenue_m3 = f.RollingNonRevenueM3,
                    rolling_non_revenue_percent = f.RollingNonRevenuePercent, rolling_completeness = f.RollingCompleteness,
                };
                _emissions.Add((_settings.Topics.Efficiency, DistrictKey(f.DistrictId, _settings.Topics.Efficiency),
                    _efficiency.Serialize(value, new SerializationContext(MessageComponentType.Value, _settings.Topics.Efficiency)),
                    f.DayStartUnixMs + 86_400_000, EfficiencyOutputId(f)));
            }
        }

        private byte[] DistrictKey(string districtId, string topic) =>
            _districtKeys.Serialize(new AvroRecords.Common.DistrictKey { district_id = districtId }, new SerializationContext(MessageComponentType.Key, topic));

        /// <summary>Deletes the outbox entries more than <see cref="OutboxKeepOffsets"/> behind, a thousand offsets at a time.</summary>
        private void Purge(long offset)
        {
            var below = offset - OutboxKeepOffsets;
            if (below < 0 || below - _purgedBelow < 1_000) return;
            var keys = new List<string>();
            using (var range = _outbox.Range(OutboxKey(Math.Max(0, _purgedBelow)), OutboxKey(below - 1)))
                while (range.MoveNext())
                    if (range.Current is { Key: { } key }) keys.Add(key);
            foreach (var key in keys) _outbox.Delete(key);
            _purgedBelow = below;
        }
    }

    /// <summary>A pending window's key: the district, the window end (zero-padded: the store orders a district's windows by end),
    /// the size (a minute before the quarter hour ending with it) and the series. '|' and '~' are outside the id alphabet.</summary>
    public static string PendingKey(string districtId, in NodeWindow w) =>
        $"{PendingPrefix(districtId, w.WindowEndUnixMs)}|{w.WindowMinutes:D2}|{w.NodeId}|{w.Metric}";

    private static string PendingPrefix(string districtId, long windowEndUnixMs) => $"{districtId}|{windowEndUnixMs:D15}";

    /// <summary>An outbox key: the source offset, zero-padded so the store orders the keys by offset.</summary>
    public static string OutboxKey(long offset) => offset.ToString("D19", System.Globalization.CultureInfo.InvariantCulture);

    // Layout: [count: int32] then per emission [topic][output id] as (int32 length, UTF-8), [key][value] as (int32 length, bytes),
    // [time: int64]; big-endian.
    internal static byte[] EncodeOutbox(List<(string Topic, byte[] Key, byte[] Value, long TimeUnixMs, string OutputId)> emissions)
    {
        var size = 4;
        foreach (var e in emissions)
            size += 4 + Encoding.UTF8.GetByteCount(e.Topic) + 4 + Encoding.UTF8.GetByteCount(e.OutputId) + 4 + e.Key.Length + 4 + e.Value.Length + 8;
        var bytes = new byte[size];
        var span = bytes.AsSpan();
        BinaryPrimitives.WriteInt32BigEndian(span, emissions.Count);
        var at = 4;
        void Bytes(ReadOnlySpan<byte> b)
        {
            BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(at), b.Length);
            b.CopyTo(bytes.AsSpan(at + 4));
            at += 4 + b.Length;
        }
        foreach (var e in emissions)
        {
            Bytes(Encoding.UTF8.GetBytes(e.Topic));
            Bytes(Encoding.UTF8.GetBytes(e.OutputId));
            Bytes(e.Key);
            Bytes(e.Value);
            BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(at), e.TimeUnixMs);
            at += 8;
        }
        return bytes;
    }

    internal static List<(string Topic, byte[] Key, byte[] Value, long TimeUnixMs, string OutputId)> DecodeOutbox(byte[] bytes)
    {
        var count = BinaryPrimitives.ReadInt32BigEndian(bytes);
        var list = new List<(string, byte[], byte[], long, string)>(count);
        var at = 4;
        byte[] Bytes()
        {
            var length = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(at));
            var b = bytes.AsSpan(at + 4, length).ToArray();
            at += 4 + length;
            return b;
        }
        for (var i = 0; i < count; i++)
        {
            var topic = Encoding.UTF8.GetString(Bytes());
            var outputId = Encoding.UTF8.GetString(Bytes());
            var key = Bytes();
            var value = Bytes();
            var time = BinaryPrimitives.ReadInt64BigEndian(bytes.AsSpan(at));
            at += 8;
            list.Add((topic, key, value, time, outputId));
        }
        return list;
    }
}

/// <summary>A sensors.district-windows record that cannot be analysed (goes to sensors.district-windows.dlq with the reason).</summary>
public sealed class DistrictInputException(string message) : Exception(message);

/// <summary>A <see cref="NodeWindow"/> as the pending store holds it. Layout (big-endian): [node id][metric] as (int32 length,
/// UTF-8), kind (byte), window start (int64), minutes, readings, duplicates, late (int32), min, max, mean, stddev, p50, p95 (float64).</summary>
public static class NodeWindowCodec
{
    public static byte[] Encode(in NodeWindow w)
    {
        var node = Encoding.UTF8.GetBytes(w.NodeId);
        var metric = Encoding.UTF8.GetBytes(w.Metric);
        var bytes = new byte[4 + node.Length + 4 + metric.Length + 1 + 8 + 4 * 4 + 6 * 8];
        var span = bytes.AsSpan();
        BinaryPrimitives.WriteInt32BigEndian(span, node.Length);
        node.CopyTo(span[4..]);
        span = span[(4 + node.Length)..];
        BinaryPrimitives.WriteInt32BigEndian(span, metric.Length);
        metric.CopyTo(span[4..]);
        span = span[(4 + metric.Length)..];
        span[0] = (byte)w.Kind;
        BinaryPrimitives.WriteInt64BigEndian(span[1..], w.WindowStartUnixMs);
        BinaryPrimitives.WriteInt32BigEndian(span[9..], w.WindowMinutes);
        BinaryPrimitives.WriteInt32BigEndian(span[13..], w.ReadingCount);
        BinaryPrimitives.WriteInt32BigEndian(span[17..], w.DuplicateCount);
        BinaryPrimitives.WriteInt32BigEndian(span[21..], w.LateCount);
        var at = 25;
        foreach (var v in (ReadOnlySpan<double>)[w.Min, w.Max, w.Mean, w.StdDev, w.P50, w.P95])
        {
            BinaryPrimitives.WriteDoubleBigEndian(span[at..], v);
            at += 8;
        }
        return bytes;
    }

    public static NodeWindow Decode(ReadOnlySpan<byte> bytes)
    {
        var nodeLength = BinaryPrimitives.ReadInt32BigEndian(bytes);
        var node = Encoding.UTF8.GetString(bytes.Slice(4, nodeLength));
        bytes = bytes[(4 + nodeLength)..];
        var metricLength = BinaryPrimitives.ReadInt32BigEndian(bytes);
        var metric = Encoding.UTF8.GetString(bytes.Slice(4, metricLength));
        bytes = bytes[(4 + metricLength)..];
        var d = bytes[25..];
        return new NodeWindow(node, (NodeKind)bytes[0], metric, BinaryPrimitives.ReadInt64BigEndian(bytes[1..]), BinaryPrimitives.ReadInt32BigEndian(bytes[9..]),
            BinaryPrimitives.ReadInt32BigEndian(bytes[13..]), BinaryPrimitives.ReadInt32BigEndian(bytes[17..]), BinaryPrimitives.ReadInt32BigEndian(bytes[21..]),
            BinaryPrimitives.ReadDoubleBigEndian(d), BinaryPrimitives.ReadDoubleBigEndian(d[8..]), BinaryPrimitives.ReadDoubleBigEndian(d[16..]),
            BinaryPrimitives.ReadDoubleBigEndian(d[24..]), BinaryPrimitives.ReadDoubleBigEndian(d[32..]), BinaryPrimitives.ReadDoubleBigEndian(d[40..]));
    }
}

/// <summary>A district's state in the store: its analyser and the window end up to which its pending windows were released to it
/// (in one value, so a crash keeps or forgets both).</summary>
public sealed class DistrictState(DistrictAnalyzer analyzer)
{
    public DistrictAnalyzer Analyzer { get; } = analyzer;
    public long ReleasedThroughUnixMs { get; set; } = long.MinValue;
}

/// <summary>[released through: int64 big-endian][the analyser's own format].</summary>
public sealed class DistrictStateSerDes(DistrictAnalyzerOptions? options = null) : CodecSerDes<DistrictState>
{
    public override byte[] Encode(DistrictState value, int headroom)
    {
        var bytes = value.Analyzer.Save(headroom + 8);
        BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(headroom), value.ReleasedThroughUnixMs);
        return bytes;
    }

    public override DistrictState Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < 8) throw new FormatException($"district state: {data.Length} bytes");
        return new DistrictState(DistrictAnalyzer.Restore(data[8..], options)) { ReleasedThroughUnixMs = BinaryPrimitives.ReadInt64BigEndian(data) };
    }
}
