using System.Text;
using Confluent.Kafka;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Sensors.Metrics;
using StreamHealth.Sensors.Network;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using SensorKey = StreamHealth.Schemas.Avro.Common.SensorKey;
using SensorMetric = StreamHealth.Schemas.Avro.Sensors.SensorMetric;
using SensorReading = StreamHealth.Schemas.Avro.Sensors.SensorReading;

namespace StreamHealth.Tests.Sensors;

/// <summary>The sensors pipeline on real parts: embedded Kafka, RocksDB stores, the stand-in schema registry and the node
/// registry on the test's PostgreSQL database, the PostgreSQL and Redis sinks; readings in, final window results, rows, cached
/// latest windows and dead letters out.</summary>
public sealed class SensorsTopologyFixture : SensorsPipelineFixture
{
    public NodeRegistry Nodes { get; }
    public StreamHost Host => Pipeline.Host;

    public SensorsTopologyFixture() : base("sensors_topology", partitions: 2)
    {
        Nodes = new NodeRegistry(Postgres, NodeRegistry.DefaultRefresh);
        StartPipeline(new SensorsOptions { GraceMinutes = 2, KeepMinutesAfterClose = 10 });
    }

    /// <summary>Registers <paramref name="node"/> in sensors.nodes (district d-north, flow, pressure and chlorine, every 10 s), and
    /// waits out <see cref="NodeRegistry.MissReloadInterval"/>, after which the registry finds it.</summary>
    public string Register(string node)
    {
        NodeRegistry.RegisterAsync(Postgres, [new SensorNode(node, "d-north", "inflow", ["flow", "pressure", "chlorine"], 10)]).GetAwaiter().GetResult();
        Thread.Sleep(NodeRegistry.MissReloadInterval + TimeSpan.FromMilliseconds(100));
        return node;
    }

    public byte[] Key(string node) => Registry.Connection.SerDes<SensorKey>().Serialize(new SensorKey { node_id = node },
        new SerializationContext(MessageComponentType.Key, Readings));

    public void Send(string node, IEnumerable<SensorReading> readings) => SendRaw(node, readings.Select(r => Registry.Value(Readings, r)));

    public void SendRaw(string node, IEnumerable<byte[]> values)
    {
        using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = Kafka.BootstrapServers, EnableIdempotence = true }).Build();
        var key = Key(node);
        foreach (var value in values) p.Produce(Readings, new Message<byte[], byte[]> { Key = key, Value = value });
        if (p.Flush(TimeSpan.FromSeconds(10)) > 0) throw new TimeoutException("readings not acknowledged");
    }

    /// <summary>Every record of <paramref name="topic"/> keyed by <paramref name="node"/> until <paramref name="enough"/> or the wait ends.</summary>
    public List<Message<byte[], byte[]>> Drain(string topic, string node, TimeSpan wait, Func<List<Message<byte[], byte[]>>, bool> enough)
    {
        var found = new List<Message<byte[], byte[]>>();
        using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = Kafka.BootstrapServers, GroupId = "drain-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        c.Subscribe(topic);
        var key = Key(node);
        var deadline = DateTime.UtcNow + wait;
        while (DateTime.UtcNow < deadline && !enough(found))
            if (c.Consume(TimeSpan.FromMilliseconds(100)) is { } r && r.Message.Key.AsSpan().SequenceEqual(key)) found.Add(r.Message);
        return found;
    }

    public List<SensorMetric> Windows(string node, Func<List<SensorMetric>, bool> enough, int seconds = 60)
    {
        var decoded = new List<SensorMetric>();
        Drain(Metrics, node, TimeSpan.FromSeconds(seconds), found =>
        {
            decoded = [.. found.Select(m => Registry.Read<SensorMetric>(Metrics, m.Value))];
            return enough(decoded);
        });
        return decoded;
    }
}

public sealed class SensorsTopologyTests(SensorsTopologyFixture f) : IClassFixture<SensorsTopologyFixture>
{
    // Recent, so the event-time rule (not ahead of the receiving clock) holds; aligned to an hour.
    private static readonly long T0 = DateTimeOffset.UtcNow.AddDays(-2).ToUnixTimeMilliseconds() / 3_600_000 * 3_600_000;

    /// <summary>A drain condition: <paramref name="ready"/> holds and no record has come for 3 s (so late copies are in too).</summary>
    private static Func<List<Message<byte[], byte[]>>, bool> Quiet(Func<List<Message<byte[], byte[]>>, bool> ready)
    {
        var (count, since) = (-1, DateTime.UtcNow);
        return found =>
        {
            if (found.Count != count) (count, since) = (found.Count, DateTime.UtcNow);
            return DateTime.UtcNow - since > TimeSpan.FromSeconds(3) && ready(found);
        };
    }

    /// <summary>A new node id, registered.</summary>
    private string N(string name) => f.Register($"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)]);

    private static SensorReading Reading(string node, long timeMs, double value, string metric = "flow", string unit = "L/s", string district = "d-north",
        string? id = null) => new()
    {
        event_time_unix_ms = AvroTime.FromUnixMs(timeMs), node_id = node, district_id = district, metric = metric, value = value, unit = unit,
        reading_id = id ?? $"{node}-{metric}-{timeMs}",
    };

    [Fact]
    public void Each_window_is_emitted_once_with_exact_statistics_duplicates_and_late_readings_counted()
    {
        var node = N("node");
        // Every 10 s for 2 h 10 min, values cycling 0..59 (L/s), sent in order; then a reading past 2 h 13 min closes the second hour.
        // Reading 200 comes in m³/h (3.6 m³/h = 1 L/s): converted, it is the same value as the others.
        var sent = Enumerable.Range(0, 6 * 130)
            .Select(i => i == 200 ? Reading(node, T0 + i * 10_000L, 3.6 * (i % 60), unit: "m3/h") : Reading(node, T0 + i * 10_000L, i % 60))
            .ToList();
        // A repeat of reading 95's event time with another value, after reading 99: counted once, as the first.
        sent.Insert(100, Reading(node, T0 + 95 * 10_000L, 1000, id: "repeat"));
        // Late within the 2-minute grace: +5 s after +70 s has been seen (the first minute is still open).
        sent.Insert(8, Reading(node, T0 + 5_000, 7.5));
        sent.Add(Reading(node, T0 + 2 * 3_600_000 + 13 * 60_000, 1));
        f.Send(node, sent);

        var lastMinute = T0 + 2 * 3_600_000 + 10 * 60_000;
        var windows = f.Windows(node, w => w.Any(x => x.window_minutes == 1 && AvroTime.ToUnixMs(x.window_start_unix_ms) == lastMinute));
        var hours = windows.Where(w => w.window_minutes == 60).OrderBy(w => w.window_start_unix_ms).ToList();
        Assert.Equal(2, hours.Count);
        // Hour 1: 360 readings on the 10-s grid plus the late one at +5 s; the repeat's 1000 is kept out.
        var values = Enumerable.Range(0, 360).Select(i => (double)(i % 60)).Append(7.5).Order().ToArray();
        var first = hours[0];
        Assert.Equal(T0, AvroTime.ToUnixMs(first.window_start_unix_ms));
        Assert.Equal(T0 + 3_600_000, AvroTime.ToUnixMs(first.event_time_unix_ms));
        Assert.Equal((361, 1, 1), (first.reading_count, first.duplicate_count, first.late_count));
        Assert.Equal(("flow", "L/s", "d-north"), (first.metric, first.unit, first.district_id));
        Assert.Equal(values.Min(), first.min);
        Assert.Equal(values.Max(), first.max);
        Assert.Equal(values.Average(), first.mean, 9);
        Assert.Equal(Math.Sqrt(values.Select(v => (v - values.Average()) * (v - values.Average())).Average()), first.stddev, 9);
        Assert.Equal(values[180], first.p50, 9);                                  // position 0.5 × 360
        Assert.Equal(values[342] + (values[343] - values[342]) * 0.0, first.p95, 9); // position 0.95 × 360 = 342
        // Every window of each size exactly once, and the 1-minute windows of the first hour hold 6 readings each (7 in the first).
        foreach (var size in new[] { 1, 15, 60 })
        {
            var ofSize = windows.Where(w => w.window_minutes == size).ToList();
            Assert.Equal(ofSize.Count, ofSize.Select(w => w.window_start_unix_ms).Distinct().Count());
        }
        var minutes = windows.Where(w => w.window_minutes == 1).OrderBy(w => w.window_start_unix_ms).ToList();
        Assert.Equal(7, minutes[0].reading_count);
        Assert.Equal(1, minutes[0].late_count);
        Assert.All(minutes.Skip(1).Take(59), m => Assert.Equal(6, m.reading_count));
        // +2 h 13 min with a 2-minute grace closes the minutes through +2 h 10 min (131), the last of them empty (no reading
        // between +2 h 9 min 50 s and +2 h 13 min); quarter hours through +1 h 45 min (8); hours through +1 h (2).
        Assert.Equal(131, minutes.Count);
        Assert.Equal(0, minutes[^1].reading_count);
        Assert.True(double.IsNaN(minutes[^1].mean));
        Assert.Equal(8, windows.Count(w => w.window_minutes == 15));
        var m33 = minutes.Single(m => AvroTime.ToUnixMs(m.window_start_unix_ms) == T0 + 33 * 60_000);
        Assert.Equal(Enumerable.Range(198, 6).Average(i => i % 60), m33.mean, 9);

        // Kept 10 minutes after their hour closed (+2 h 2 min), the minutes of both emitted hours are gone from the store by
        // +2 h 13 min; those of the open third hour are there.
        bool Stored(long minute) => f.Host.TryQuery<string, MinuteBucket>(f.Readings + "-app", SensorsTopology.MinuteStore,
            SensorWindows.BucketKey(SensorWindows.SeriesKey(node, "flow"), minute), out _, TimeSpan.FromSeconds(2));
        WaitFor(() => !Stored(T0 + 3_600_000 + 59 * 60_000), TimeSpan.FromSeconds(20), () => "the last minute of the second hour is still stored");
        Assert.False(Stored(T0));
        Assert.True(Stored(T0 + 2 * 3_600_000 + 5 * 60_000));
    }

    [Fact]
    public void Windows_reach_the_district_topic_on_the_partition_of_their_district_key_not_of_their_node()
    {
        // The district analysis keeps a district's state in one task, so every window of a district must land on the partition
        // its district key hashes to, whichever partition the node's readings came from. A node whose own key hashes to the
        // other partition makes a sink that keeps the source partition (Streamiz's DefaultStreamPartitioner without
        // reshuffling) fail here.
        var districtKey = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.DistrictKey>().Serialize(
            new StreamHealth.Schemas.Avro.Common.DistrictKey { district_id = "d-north" }, new SerializationContext(MessageComponentType.Key, f.Districts.Windows));
        var districtPartition = KeyPartitioner.PartitionOf(districtKey, 2);
        var node = Enumerable.Range(0, 100).Select(_ => $"part-{Guid.NewGuid():N}"[..14])
            .First(n => KeyPartitioner.PartitionOf(f.Key(n), 2) != districtPartition);
        f.Register(node);
        f.Send(node, Enumerable.Range(0, 6 * 20).Select(i => Reading(node, T0 + i * 10_000L, i)));

        using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = f.Kafka.BootstrapServers, GroupId = "district-partition-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        c.Subscribe(f.Districts.Windows);
        var partitions = new List<int>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline && partitions.Count < 15)
            if (c.Consume(TimeSpan.FromMilliseconds(100)) is { } r && f.Registry.Read<SensorMetric>(f.Districts.Windows, r.Message.Value).node_id == node)
                partitions.Add(r.Partition.Value);
        Assert.True(partitions.Count >= 15, $"{partitions.Count} windows of {node} on the district topic");
        Assert.All(partitions, p => Assert.Equal(districtPartition, p));
        Assert.Equal(KeyPartitioner.PartitionOf(f.Key(node), 2), 1 - districtPartition);
    }

    [Fact]
    public void Bad_readings_go_to_the_dead_letter_topic_naming_the_problem()
    {
        var node = N("bad");
        var good = Reading(node, T0, 10);
        var cases = new (SensorReading Reading, string Reason)[]
        {
            (Reading(node, T0 + 1_000, 5, metric: "voltage"), "metric = 'voltage': not one of flow, pressure, level, chlorine, turbidity"),
            (Reading(node, T0 + 2_000, 5, unit: "kg"), "unit = 'kg': not a unit of flow"),
            (Reading(node, T0 + 3_000, double.NaN), "not a finite number"),
            (Reading(node, T0 + 4_000, 3e9, metric: "pressure", unit: "kPa"), "outside what a pressure sensor can report"),
            (Reading(node, T0 + 5_000, -1, metric: "chlorine", unit: "mg/L"), "outside what a chlorine sensor can report"),
            (Reading("someone-else", T0 + 6_000, 5), "does not match the record key"),
            (Reading(node, DateTimeOffset.UtcNow.AddDays(3).ToUnixTimeMilliseconds(), 5), "ahead of the receiving clock"),
            (Reading(node, T0 + 7_000, 5, district: "d-south"), "is registered in district 'd-north'"),
            (Reading(node, T0 + 8_000, 5, id: "bad\u0000id"), "reading_id = "),
            (Reading(node, T0 + 9_000, 5, metric: "level", unit: "m"), "is registered for flow, pressure, chlorine only"),
        };
        f.Send(node, [good, .. cases.Select(c => c.Reading), Reading(node, T0 + 10 * 60_000, 11)]);
        // Far past the grace: the first minute is closed; a reading for it now is dead-lettered as late, not dropped.
        f.Send(node, [Reading(node, T0 + 30_000, 12)]);
        var dead = f.Drain(f.Readings + Topics.DeadLetterSuffix, node, TimeSpan.FromSeconds(60), d => d.Count >= cases.Length + 1);
        var reasons = dead.Select(d => d.Headers.TryGetLastBytes(StreamHeaders.Error, out var e) ? Encoding.UTF8.GetString(e) : "").ToList();
        Assert.Equal(cases.Length + 1, reasons.Count);
        for (var i = 0; i < cases.Length; i++) Assert.Contains(cases[i].Reason, reasons[i]);
        Assert.Contains("its windows closed", reasons[^1]);
        Assert.Contains("beyond the 2-minute grace", reasons[^1]);
        // The good readings still made their windows: the first minute holds only the reading at T0.
        var windows = f.Windows(node, w => w.Any(x => x.window_minutes == 1 && AvroTime.ToUnixMs(x.window_start_unix_ms) == T0));
        var firstMinute = windows.Single(x => x.window_minutes == 1 && AvroTime.ToUnixMs(x.window_start_unix_ms) == T0);
        Assert.Equal((1, 10.0), (firstMinute.reading_count, firstMinute.mean));
    }

    [Fact]
    public void Records_processed_again_after_a_restart_count_nothing_twice_and_emit_the_same_windows_under_the_same_ids()
    {
        var node = N("replay");
        var app = f.Readings + "-replay-" + Guid.NewGuid().ToString("N")[..6];
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-sensors-replay-").FullName;
        StreamHost Host() => new(new StreamHostOptions
        {
            SchemaRegistry = f.Registry.Connection, BootstrapServers = f.Kafka.BootstrapServers, StateDirectory = stateDir, CommitIntervalMs = 200,
            CreateInternalTopic = (topic, partitions) => f.Kafka.Cluster.CreateTopic(topic, partitions),
        }, [SensorsTopology.Create(f.Nodes, new SensorsOptions { GraceMinutes = 2 }, app, f.Readings, f.Metrics, f.Districts.Windows)], f.Logs);
        try
        {
            // 75 minutes every 10 s, then a second copy of the last 20 readings (minutes 71-74) with other values, which are
            // duplicates by event time, and a reading at +80 min that closes those minutes and the first hour.
            var sent = Enumerable.Range(0, 6 * 75).Select(i => Reading(node, T0 + i * 10_000L, i % 7)).ToList();
            f.Send(node, [.. sent, .. sent.TakeLast(20).Select(r => Reading(node, AvroTime.ToUnixMs(r.event_time_unix_ms), 99, id: "retry")),
                Reading(node, T0 + 80 * 60_000L, 1)]);
            var partitions = Enumerable.Range(0, 2).Select(p => new TopicPartition(f.Readings, p)).ToList();
            long End() => Progress(f.Kafka.BootstrapServers, app, f.Readings, 2).End;
            long Committed() => Progress(f.Kafka.BootstrapServers, app, f.Readings, 2).Committed;
            using (var first = Host())
            {
                first.Start();
                WaitFor(() => Committed() == End(), TimeSpan.FromSeconds(60), () => $"first run: committed {Committed()} of {End()}");
            }
            // As after a crash that lost the commits but not the local state: the group's offsets back to the start.
            // (As a member of the group: the embedded broker takes no commit from outside it.)
            using (var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
                   {
                       BootstrapServers = f.Kafka.BootstrapServers, GroupId = app, EnableAutoCommit = false, SessionTimeoutMs = 6_000,
                   }).Build())
            {
                c.Subscribe(f.Readings);
                WaitFor(() => { c.Consume(TimeSpan.FromMilliseconds(200)); return c.Assignment.Count == 2; }, TimeSpan.FromSeconds(60),
                    () => $"the reset consumer got {c.Assignment.Count} of 2 partitions");
                c.Commit(partitions.Select(tp => new TopicPartitionOffset(tp, 0)));
                c.Close();
            }
            Assert.Equal(0, Committed());
            using (var second = Host())
            {
                second.Start();
                WaitFor(() => Committed() == End(), TimeSpan.FromSeconds(60), () => $"second run: committed {Committed()} of {End()}");
            }

            // Everything the node's windows produced: read until both runs' results of the hour are in and nothing more came for 3 s.
            var outputs = f.Drain(f.Metrics, node, TimeSpan.FromSeconds(90), Quiet(found => found.Count(m => f.Registry.Read<SensorMetric>(f.Metrics, m.Value).window_minutes == 60) >= 2))
                .Select(m => (Id: Encoding.UTF8.GetString(m.Headers.GetLastBytes(StreamHeaders.OutputId)), Window: f.Registry.Read<SensorMetric>(f.Metrics, m.Value)))
                .ToList();
            var byId = outputs.GroupBy(o => o.Id).ToList();
            Assert.Contains(byId, g => g.Count() > 1);                                // the replay emitted windows again …
            // … by each task instance that replays them once, not once per replayed record (hundreds for the hour): the first run,
            // and the replay, whose task the embedded broker's first rebalance may start twice.
            Assert.True(byId.Max(g => g.Count()) <= 3, string.Join(",", byId.Select(g => g.Count())));
            Assert.All(byId, g => Assert.Single(g.Select(o => (o.Window.reading_count, o.Window.duplicate_count, o.Window.mean, o.Window.p95)).Distinct()));
            var hour = Assert.Single(byId, g => g.First().Window.window_minutes == 60).First().Window;   // … each the same, once per id
            Assert.Equal((360, 0), (hour.reading_count, hour.duplicate_count));     // the retries fell in minutes 71-74, past the hour
            Assert.Equal(Enumerable.Range(0, 360).Average(i => i % 7), hour.mean, 9);
            // The retries of minute 71 came after +74 min 50 s: that minute had closed (72 min + 2 min grace), so those two are
            // dead letters; the 18 of minutes 72-74 count once each, as duplicates, their values kept out.
            var retried = byId.Select(g => g.First().Window).Where(w => w.window_minutes == 1 && w.duplicate_count > 0).ToList();
            Assert.Equal(18, retried.Sum(w => w.duplicate_count));
            Assert.Equal([6, 6, 6], retried.Select(w => w.reading_count));
            Assert.All(retried, w => Assert.True(w.max < 99));
            var dead = f.Drain(f.Readings + Topics.DeadLetterSuffix, node, TimeSpan.FromSeconds(60), Quiet(found => found.Count >= 2));
            // Exactly those two, with the reason. (A dead letter is at least once: a failed record moves no fence, so a record
            // read again after a restart can be dead-lettered again; the source offset in its headers tells the copies apart.)
            Assert.Equal(2, dead.Select(d => Encoding.UTF8.GetString(d.Headers.GetLastBytes(StreamHeaders.SourceOffset))).Distinct().Count());
            Assert.All(dead, d => Assert.Contains("its windows closed", Encoding.UTF8.GetString(d.Headers.GetLastBytes(StreamHeaders.Error))));
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    [Fact]
    public void A_reading_of_an_unregistered_node_is_dead_lettered_and_the_node_counts_once_registered()
    {
        var node = $"ghost-{Guid.NewGuid():N}"[..14];
        f.Send(node, [Reading(node, T0, 10)]);
        var dead = f.Drain(f.Readings + Topics.DeadLetterSuffix, node, TimeSpan.FromSeconds(60), d => d.Count >= 1);
        Assert.Contains($"node_id '{node}': not a registered node",
            Encoding.UTF8.GetString(Assert.Single(dead).Headers.GetLastBytes(StreamHeaders.Error)));
        // Registered now: the registry is read again on a miss (at most once a second), not only every refresh.
        f.Register(node);
        f.Send(node, [Reading(node, T0 + 60_000, 20), Reading(node, T0 + 5 * 60_000, 21)]);
        var windows = f.Windows(node, w => w.Any(x => x.window_minutes == 1 && AvroTime.ToUnixMs(x.window_start_unix_ms) == T0 + 60_000));
        Assert.Equal((1, 20.0), windows.Where(x => x.window_minutes == 1).Select(x => (x.reading_count, x.mean)).First());
    }

    [Fact]
    public async Task Final_windows_reach_postgresql_once_each_and_the_cache_holds_each_metrics_newest_window()
    {
        var node = N("sink");
        // 40 minutes of flow every 10 s and pressure every minute, then readings at +50 min close minute 40's windows (2-min grace).
        var sent = Enumerable.Range(0, 6 * 40).Select(i => Reading(node, T0 + i * 10_000L, i % 6))
            .Concat(Enumerable.Range(0, 40).Select(i => Reading(node, T0 + i * 60_000L, 400 + i, metric: "pressure", unit: "kPa")))
            .Append(Reading(node, T0 + 50 * 60_000L, 1)).Append(Reading(node, T0 + 50 * 60_000L, 450, metric: "pressure", unit: "kPa"))
            .ToList();
        f.Send(node, sent);
        long Rows(string sql)
        {
            using var command = f.Postgres.CreateCommand(sql);
            command.Parameters.AddWithValue(node);
            return (long)command.ExecuteScalar()!;
        }
        // Minutes 0-47 of each metric (48 + 48), quarter hours 0-30 (3 + 3); no hour closed yet.
        WaitFor(() => Rows("SELECT count(*) FROM sensors.window_metrics WHERE node_id = $1") == 102, TimeSpan.FromSeconds(60),
            () => $"{Rows("SELECT count(*) FROM sensors.window_metrics WHERE node_id = $1")} rows of 102");
        // Minutes 0-39 hold readings; 40-47 are empty and stored with NULL statistics, not NaN. Every full flow quarter hour and the
        // partial one (minutes 30-39) has the mean of 0..5.
        Assert.Equal(80, Rows("SELECT count(*) FROM sensors.window_metrics WHERE node_id = $1 AND window_minutes = 1 AND reading_count > 0"));
        Assert.Equal(16, Rows("SELECT count(*) FROM sensors.window_metrics WHERE node_id = $1 AND window_minutes = 1 AND reading_count = 0 AND mean IS NULL"));
        Assert.Equal(3, Rows("SELECT count(*) FROM sensors.window_metrics WHERE node_id = $1 AND metric = 'flow' AND window_minutes = 15 AND abs(mean - 2.5) < 1e-9"));

        List<NodeWindowView> cached = [];
        WaitFor(() => (cached = SensorLatestCache.ReadAsync(f.Redis.GetDatabase(), node).GetAwaiter().GetResult())
            .Count(w => w.WindowMinutes == 1 && w.WindowStart.ToUnixTimeMilliseconds() == T0 + 47 * 60_000
                        || w.WindowMinutes == 15 && w.WindowStart.ToUnixTimeMilliseconds() == T0 + 30 * 60_000) == 4, TimeSpan.FromSeconds(30),
            () => $"the cache holds {string.Join(", ", cached.Select(w => $"{w.Metric}:{w.WindowMinutes}@{w.WindowStart:HH:mm}"))}");
        Assert.Equal([("flow", 1), ("flow", 15), ("pressure", 1), ("pressure", 15)], cached.Select(w => (w.Metric, w.WindowMinutes)));
        var quarter = cached.Single(w => w is { Metric: "pressure", WindowMinutes: 15 });
        Assert.Equal((T0 + 30 * 60_000, 10, 434.5), (quarter.WindowStart.ToUnixTimeMilliseconds(), quarter.ReadingCount, quarter.Mean));
        Assert.Equal(("kPa", "d-north"), (quarter.Unit, quarter.DistrictId));
        // A re-emitted older window never replaces a newer one in the cache.
        var older = new SensorMetric
        {
            event_time_unix_ms = AvroTime.FromUnixMs(T0 + 15 * 60_000), window_start_unix_ms = AvroTime.FromUnixMs(T0), node_id = node, district_id = "d-north",
            metric = "pressure", unit = "kPa", window_minutes = 15, reading_count = 15, min = 1, max = 1, mean = 1, stddev = 0, p50 = 1, p95 = 1,
        };
        Assert.Equal(0, (int)await SensorLatestCache.WriteAsync(f.Redis.GetDatabase(), older));
        Assert.Equal(434.5, (await SensorLatestCache.ReadAsync(f.Redis.GetDatabase(), node)).Single(w => w is { Metric: "pressure", WindowMinutes: 15 }).Mean);
    }

    [Fact]
    public void A_window_the_district_analysis_would_refuse_is_dead_lettered_before_it_waits_and_the_district_goes_on()
    {
        var node = N("dpoison");
        var districtKey = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.DistrictKey>().Serialize(
            new StreamHealth.Schemas.Avro.Common.DistrictKey { district_id = "d-north" }, new SerializationContext(MessageComponentType.Key, f.Districts.Windows));
        SensorMetric Window(string metric, long start, int minutes) => new()
        {
            event_time_unix_ms = AvroTime.FromUnixMs(start + minutes * 60_000L), window_start_unix_ms = AvroTime.FromUnixMs(start), node_id = node,
            district_id = "d-north", metric = metric, unit = "L/s", window_minutes = minutes, reading_count = 1, min = 1, max = 1, mean = 1, stddev = 0, p50 = 1, p95 = 1,
        };
        var bad = new (SensorMetric Window, string Reason)[]
        {
            (Window("level", T0, 1), "is registered for flow, pressure, chlorine only"),
            (Window("flow", T0 + 30_000, 1), "not a 1-minute window"),
            (Window("flow", T0 + 5 * 60_000, 15), "not a 15-minute window"),
        };
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Kafka.BootstrapServers }).Build())
        {
            foreach (var (w, _) in bad) p.Produce(f.Districts.Windows, new Message<byte[], byte[]> { Key = districtKey, Value = f.Registry.Value(f.Districts.Windows, w) });
            p.Flush(TimeSpan.FromSeconds(10));
        }
        var reasons = new List<string>();
        using var c = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = f.Kafka.BootstrapServers, GroupId = "drain-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        c.Subscribe(f.Districts.Windows + Topics.DeadLetterSuffix);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline && reasons.Count(r => r.Contains(node, StringComparison.Ordinal) || bad.Any(b => r.Contains(b.Reason))) < bad.Length)
            if (c.Consume(TimeSpan.FromMilliseconds(100)) is { } r)
            {
                var reason = Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes(StreamHeaders.Error));
                if (f.Registry.Read<SensorMetric>(f.Districts.Windows, r.Message.Value).node_id == node) reasons.Add(reason);
            }
        Assert.Equal(bad.Length, reasons.Count);
        foreach (var (_, reason) in bad) Assert.Contains(reasons, r => r.Contains(reason, StringComparison.Ordinal));
    }
}
