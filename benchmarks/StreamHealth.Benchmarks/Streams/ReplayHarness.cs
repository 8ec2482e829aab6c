using System.Diagnostics;
using Confluent.Kafka;
using Npgsql;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Tools;
using StreamHealth.Schemas;
using StreamHealth.Weight.Pipeline;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>Issue 18's bar through the real command: N weight results on weights.filtered (8 partitions, embedded Kafka in
/// this process, the registry stand-in), stored by the live weights sink into weights.measurements; then `streamhealth
/// replay weights.filtered --from-offset 0 --into group:G` and `streamhealth sink weights-postgres --group G --table T`
/// as child processes (their progress bar or lines on this console), timed; then T must hold exactly the original's rows.</summary>
public static class ReplayHarness
{
    public static int Run(int count)
    {
        var run = "r" + Guid.NewGuid().ToString("N")[..8];
        using var cluster = EmbeddedKafkaCluster.Start(1, topics: []);
        const string topic = Topics.WeightsFiltered;
        cluster.CreateTopic(topic, 8);   // ~5 MiB kept a partition: 100k results need 8
        var (registryServer, registry) = HarnessHost.Registry();
        using var registryConnection = registry;
        using var registryServerStop = new Disposing(() => registryServer.DisposeAsync().AsTask().GetAwaiter().GetResult());
        var keys = registry.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var values = registry.SerDes<StreamHealth.Schemas.Avro.Weights.WeightResult>();
        var t0 = DateTimeOffset.Parse("2026-12-03T00:00:00Z");
        using (var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = cluster.BootstrapServers, LingerMs = 5 }).Build())
        {
            for (var i = 0; i < count; i++)
            {
                var user = $"{run}-u{i % 500}";
                var at = t0.AddSeconds(i * 0.8);
                var result = new WeightResult
                {
                    SchemaVersion = 1, EventTimeUnixMs = at.ToUnixTimeMilliseconds(), MeasurementId = $"{run}-m{i}", UserId = user, Accepted = true,
                    Confidence = 0.9, RawWeightKg = 60 + i % 400 / 10.0, FilteredWeightKg = 60 + i % 390 / 10.0, TrendKgPerWeek = 0.05,
                    Source = WeightSource.ConnectedScale, SourcePartition = i % 8, SourceOffset = i / 8, MeasurementFingerprint = $"{i:x12}",
                    Reasons = { WeightReason.Accepted },
                };
                p.ProduceBlocking(topic, new Message<byte[], byte[]>
                {
                    Key = WeightWire.Key(keys, topic, user), Value = WeightWire.Value(values, topic, WeightWire.ToAvro(result)), Timestamp = new Timestamp(at),
                });
            }
            p.Flush(TimeSpan.FromMinutes(1));
        }

        using var db = NpgsqlDataSource.Create(HarnessHost.Postgres);
        var liveGroup = WeightPipelineNames.Default.PostgresSinkGroup;
        var liveClock = Stopwatch.StartNew();
        using (var live = SinkRunner.For(cluster.BootstrapServers, topic, liveGroup, WeightPostgresWriter.Create(db, registry), db, HarnessHost.Logs()))
        {
            live.Start();
            while (TopicReplay.Lag(cluster.BootstrapServers, liveGroup, topic).Sum(l => l.Lag) > 0) Thread.Sleep(200);
        }
        liveClock.Stop();

        var group = $"weights-replay-{run}";
        var table = $"weights.measurements_{run}";
        var pg = new NpgsqlConnectionStringBuilder(HarnessHost.Postgres);
        var env = new Dictionary<string, string>
        {
            ["STREAMHEALTH_Kafka__BootstrapServers"] = cluster.BootstrapServers,
            ["STREAMHEALTH_SchemaRegistry__Url"] = registryServer.Url,
            ["STREAMHEALTH_Postgres__Host"] = pg.Host!, ["STREAMHEALTH_Postgres__Port"] = pg.Port.ToString(),
            ["STREAMHEALTH_Postgres__Database"] = pg.Database!, ["STREAMHEALTH_Postgres__Username"] = pg.Username!,
        };
        var replay = Command(env, "replay", topic, "--from-offset", "0", "--into", "group:" + group);
        var sink = Command(env, "sink", WeightPostgresWriter.Name, "--group", group, "--table", table);

        long Scalar(string sql)
        {
            using var cmd = db.CreateCommand(sql);
            cmd.Parameters.AddWithValue("p", run + "-%");
            return Convert.ToInt64(cmd.ExecuteScalar());
        }
        var original = Scalar("SELECT count(*) FROM weights.measurements WHERE measurement_id LIKE @p");
        var copy = Scalar($"SELECT count(*) FROM {table}");
        var missing = Scalar($"SELECT count(*) FROM (SELECT * FROM weights.measurements WHERE measurement_id LIKE @p EXCEPT SELECT * FROM {table}) x");
        var extra = Scalar($"SELECT count(*) FROM (SELECT * FROM {table} EXCEPT SELECT * FROM weights.measurements WHERE measurement_id LIKE @p) x");
        var total = replay + sink;
        Console.WriteLine($"replay of {count:N0} weights into a new group and table (embedded Kafka, 8 partitions, PostgreSQL {pg.Host}:{pg.Port}):");
        Console.WriteLine($"  original: live sink {original:N0} rows in {liveClock.Elapsed.TotalSeconds:0.0} s ({original / liveClock.Elapsed.TotalSeconds:N0} rows/s)");
        Console.WriteLine($"  `replay --into group:` {replay.TotalSeconds:0.0} s, `sink --group --table` {sink.TotalSeconds:0.0} s (each a process start): " +
                          $"{count / total.TotalSeconds:N0} records/s over both, {count / sink.TotalSeconds:N0} records/s for the sink");
        Console.WriteLine($"  {table}: {copy:N0} rows; rows of the original missing from it {missing}, rows not in the original {extra}");
        return original == count && copy == count && missing == 0 && extra == 0 ? 0 : 1;
    }

    /// <summary>Runs the built `streamhealth` with <paramref name="args"/> on this console (a terminal shows its progress bar);
    /// its wall time, or an exception naming its exit code.</summary>
    private static TimeSpan Command(Dictionary<string, string> env, params string[] args)
    {
        var binary = Path.Combine(RepoPaths.Root, "processors", "Host", "bin", "Release", "net10.0", "streamhealth");
        var start = new ProcessStartInfo(binary) { UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var (k, v) in env) start.Environment[k] = v;
        Console.WriteLine("$ streamhealth " + string.Join(' ', args));
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"streamhealth {args[0]} exited {process.ExitCode}");
        return clock.Elapsed;
    }
}
