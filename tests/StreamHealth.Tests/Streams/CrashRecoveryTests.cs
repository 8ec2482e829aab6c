using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Streams.Reference;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Streams;

/// <summary>Effectively-once state under the failures that matter: a processing host killed with
/// SIGKILL mid-stream (from outside, and from inside a commit), and a host leaving a two-host group.</summary>
public sealed class CrashRecoveryTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    private const int Updates = 100_000;
    private const int Keys = 1_000;

    [Fact]
    public void A_host_killed_hard_mid_stream_restarts_with_state_equal_to_the_reference_fold()
    {
        var (source, appId) = CreateTopics("kill");
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-kill-").FullName;
        var env = ChildEnvironment(stateDir);
        string[] args = ["run", "--topology", "key-sum", "--source", source, "--app", appId, "--host-id", "kill-test"];
        var reference = new Dictionary<string, long>();
        try
        {
            long committedAtKill;
            using (var first = ChildHost.Start(args, env))
            {
                // First 40% while it runs; kill once it has committed some but not all of it.
                ProduceAmounts(kafka.BootstrapServers, source, Updates * 4 / 10, Keys, seed: 11, reference, perSecond: 40_000);
                WaitFor(() => Progress(kafka.BootstrapServers, appId, source, 4).Committed >= 5_000, TimeSpan.FromSeconds(60),
                    () => $"first host made no progress:\n{first.Output}");
                first.KillHard();
                committedAtKill = Progress(kafka.BootstrapServers, appId, source, 4).Committed;
            }
            // The rest arrives while no host runs; the restarted host must neither lose nor re-apply anything.
            ProduceAmounts(kafka.BootstrapServers, source, Updates - Updates * 4 / 10, Keys, seed: 12, reference);
            Assert.InRange(committedAtKill, 5_000, Updates - 1);

            using (var second = ChildHost.Start(args, env))
            {
                WaitFor(() => Progress(kafka.BootstrapServers, appId, source, 4) is var p && p.Committed == p.End && p.End == Updates,
                    TimeSpan.FromSeconds(120), () => $"restarted host did not catch up: {Progress(kafka.BootstrapServers, appId, source, 4)}\n{second.Output}");
                Assert.Equal(0, second.Terminate());
                Assert.Contains($"task {appId}/0-0 assigned", second.Output);
            }

            AssertStateInDirectoryEqualsReference(stateDir, source, appId, reference);
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    [Fact]
    public async Task A_host_killed_hard_at_several_points_including_inside_a_commit_ends_with_state_equal_to_the_reference_fold()
    {
        const int perRound = 10_000, perChunk = 1_000;
        var (source, appId) = CreateTopics("kills");
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-kills-").FullName;
        var env = ChildEnvironment(stateDir);
        string[] args = ["run", "--topology", "key-sum", "--source", source, "--app", appId, "--host-id", "kills-test"];
        var reference = new Dictionary<string, long>();
        var produced = 0;
        (long Committed, long End) Now() => Progress(kafka.BootstrapServers, appId, source, 4);
        var abandon = false;
        // Input keeps arriving, paced at 2,500/s in chunks of 1,000, until the host is gone, and one chunk more after that: the
        // kill lands mid-stream however long the host takes to restore and catch up. (A fixed round of 10,000 once had all
        // arrived before a slow machine's restarted host had committed its share.) One producer at a time writes the reference
        // fold; each is awaited before the next starts.
        Task ProduceUntil(Func<bool> hostGone, int seed) => Task.Run(() =>
        {
            for (var chunk = 0; ; chunk++)
            {
                var gone = hostGone() || Volatile.Read(ref abandon);
                ProduceAmounts(kafka.BootstrapServers, source, perChunk, Keys, seed * 1_000 + chunk, reference, perSecond: 2_500);
                Interlocked.Add(ref produced, perChunk);
                if (gone) return;
            }
        });
        void WaitAssigned(ChildHost child) => WaitFor(() => child.Output.Contains($"task {appId}/0-0 assigned") || child.HasExited,
            TimeSpan.FromSeconds(60), () => $"host got no tasks: {Now()}\n{child.Output}");
        var kills = new List<string>();
        try
        {
            // (a) SIGKILL from outside, mid-stream, at two progress points: once the first host committed part of the input, and
            // once a restarted host (which restores its state and skips what the state already reflects) committed more.
            foreach (var (seed, progress) in new[] { (41, 2_000L), (42, 4_000L) })
            {
                var before = Now().Committed;
                using var child = ChildHost.Start(args, env);
                WaitAssigned(child);
                var killed = false;
                var producing = ProduceUntil(() => Volatile.Read(ref killed), seed);
                WaitFor(() => Now().Committed >= before + progress, TimeSpan.FromSeconds(60),
                    () => $"host made no progress after {before}: {Now()}\n{child.Output}");
                child.KillHard();
                Volatile.Write(ref killed, true);
                var atKill = Now();
                await producing;
                Assert.True(atKill.Committed < produced, $"killed at {atKill} with nothing left to do: not mid-stream");
                kills.Add($"SIGKILL at committed {atKill.Committed}/{atKill.End}");
            }

            // (b) SIGKILL from inside a commit: the host kills itself in its second store flush with writes, after RocksDB has
            // the batch and before the changelog is flushed and the input offsets are committed.
            using (var child = ChildHost.Start([.. args, "--kill-in-flush", "2"], env))
            {
                WaitAssigned(child);
                var producing = ProduceUntil(() => child.HasExited, 43);
                WaitFor(() => child.HasExited, TimeSpan.FromSeconds(60), () => $"host did not kill itself in a flush: {Now()}\n{child.Output}");
                Assert.Equal(137, child.ExitCode);   // 128 + SIGKILL
                Assert.Contains("fault injected, killing the process (SIGKILL) in store flush 2", child.Output);
                Assert.DoesNotContain("stopping", child.Output);
                var atKill = Now();
                await producing;
                Assert.True(atKill.Committed < produced, $"killed at {atKill} with nothing left to do: not mid-stream");
                kills.Add($"SIGKILL in a commit at committed {atKill.Committed}/{atKill.End}");
            }

            // The rest arrives while no host runs; the last host must neither lose nor re-apply anything.
            ProduceAmounts(kafka.BootstrapServers, source, perRound, Keys, seed: 44, reference);
            produced += perRound;
            using (var last = ChildHost.Start(args, env))
            {
                WaitFor(() => Now() is var p && p.Committed == p.End && p.End == produced, TimeSpan.FromSeconds(60),
                    () => $"last host did not catch up: {Now()} of {produced} after {string.Join(", ", kills)}\n{last.Output}");
                Assert.Equal(0, last.Terminate());
            }

            AssertStateInDirectoryEqualsReference(stateDir, source, appId, reference);
        }
        finally
        {
            Volatile.Write(ref abandon, true);   // a failed wait leaves no producer running past the test
            Directory.Delete(stateDir, recursive: true);
        }
    }

    [Fact]
    public void When_one_of_two_hosts_stops_the_survivor_restores_its_partitions_from_the_changelog()
    {
        var (source, appId) = CreateTopics("rebalance");
        var dirA = Directory.CreateTempSubdirectory("streamhealth-a-").FullName;
        var dirB = Directory.CreateTempSubdirectory("streamhealth-b-").FullName;
        var logs = new TestLogs();
        StreamHost NewHost(string dir) => new(new StreamHostOptions
        {
            BootstrapServers = kafka.BootstrapServers, StateDirectory = dir, SessionTimeoutMs = 3_000, HostId = Path.GetFileName(dir),
            CreateInternalTopic = (topic, partitions) => kafka.Cluster.CreateTopic(topic, partitions),
        }, [KeySumTopology.Create(source, appId)], logs);
        var reference = new Dictionary<string, long>();
        try
        {
            using var a = NewHost(dirA);
            var b = NewHost(dirB);
            a.Start();
            b.Start();
            WaitFor(() => a.Metrics.ActiveTasks > 0 && b.Metrics.ActiveTasks > 0 && a.Metrics.ActiveTasks + b.Metrics.ActiveTasks == 4,
                TimeSpan.FromSeconds(60), () => $"tasks a={a.Metrics.ActiveTasks} b={b.Metrics.ActiveTasks}");
            var movedTasks = b.Metrics.ActiveTasks;

            ProduceAmounts(kafka.BootstrapServers, source, 30_000, Keys, seed: 21, reference);
            WaitFor(() => Progress(kafka.BootstrapServers, appId, source, 4) is var p && p.Committed == p.End,
                TimeSpan.FromSeconds(60), () => $"not caught up: {Progress(kafka.BootstrapServers, appId, source, 4)} processed a={a.Metrics.Processed} b={b.Metrics.Processed} {a.DescribeThreads()}\n{logs.Tail(60)}");
            Assert.True(b.Metrics.Processed > 0, "both hosts processed part of the input");
            Assert.Equal(0, a.Metrics.RestoreTotal);

            var beforeLeaving = new Dictionary<string, long>(reference);
            b.Dispose();   // leaves the group; A has no local state for B's partitions
            // Queried as soon as A owns B's partitions, while their stores are being restored from the changelog: the
            // interactive query waits until they are queryable (StreamHost.TryQuery retries Streamiz's
            // InvalidStateStoreException) and answers every key, none missing or behind. (Before A owns them, a key of
            // B's partitions is simply not on this host.)
            WaitFor(() => a.Metrics.ActiveTasks == 4, TimeSpan.FromSeconds(60), () => $"tasks {a.Metrics.ActiveTasks}");
            AssertStateEqualsReference(a, appId, beforeLeaving);
            ProduceAmounts(kafka.BootstrapServers, source, 30_000, Keys, seed: 22, reference);
            WaitFor(() => a.Metrics.ActiveTasks == 4 && Progress(kafka.BootstrapServers, appId, source, 4) is var p && p.Committed == p.End,
                TimeSpan.FromSeconds(60), () => $"survivor did not take over: tasks {a.Metrics.ActiveTasks}, {Progress(kafka.BootstrapServers, appId, source, 4)} processed {a.Metrics.Processed} skipped {a.Metrics.SkippedAlreadyApplied} commits {a.Metrics.Commits} failures {a.Metrics.StreamFailures} threads {a.DescribeThreads()}\n{logs.Dump("rebalance")}");

            Assert.True(a.Metrics.RestoreTotal > 0, $"the survivor restored {movedTasks} moved task(s) from the changelog");
            Assert.Equal(a.Metrics.RestoreTotal, a.Metrics.Restored);
            AssertStateEqualsReference(a, appId, reference);
        }
        finally
        {
            Directory.Delete(dirA, recursive: true);
            Directory.Delete(dirB, recursive: true);
        }
    }

    [Fact]
    public void State_left_from_another_cluster_is_wiped_and_rebuilt_instead_of_skipping_new_input()
    {
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-recreated-").FullName;
        const string source = "recreated-src", appId = "recreated-app";
        try
        {
            foreach (var (seed, count) in new[] { (31, 8_000), (32, 3_000) })
            {
                // A new embedded cluster each round: same topic names, offsets start at 0 again.
                using var cluster = StreamHealth.Runtime.Kafka.EmbeddedKafkaCluster.Start(1, topics: []);
                cluster.CreateTopic(source, 4);
                cluster.CreateTopic(KeySumTopology.OutputTopic(source), 4);
                cluster.CreateTopic(source + ".dlq", 1);
                var reference = new Dictionary<string, long>();
                ProduceAmounts(cluster.BootstrapServers, source, count, 100, seed, reference);
                var logs = new TestLogs();
                using var host = new StreamHost(new StreamHostOptions { BootstrapServers = cluster.BootstrapServers, StateDirectory = stateDir,
                    CreateInternalTopic = (topic, partitions) => cluster.CreateTopic(topic, partitions) }, [KeySumTopology.Create(source, appId)], logs);
                host.Start();
                WaitFor(() => host.Metrics.Processed == count, TimeSpan.FromSeconds(60),
                    () => $"processed {host.Metrics.Processed}/{count}, skipped {host.Metrics.SkippedAlreadyApplied}\n{logs.Tail(40)}");
                Assert.Equal(0, host.Metrics.SkippedAlreadyApplied);
                AssertStateEqualsReference(host, appId, reference);   // only this cluster's input, nothing left over
            }
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    /// <summary>The settings of a `run` child process against this fixture's broker, with its state in <paramref name="stateDir"/>.</summary>
    private Dictionary<string, string> ChildEnvironment(string stateDir) => new()
    {
        ["STREAMHEALTH_Kafka__BootstrapServers"] = kafka.BootstrapServers,
        ["STREAMHEALTH_State__Directory"] = stateDir,
        ["STREAMHEALTH_Redis__Port"] = LocalServices.RedisPort.ToString(),
        ["STREAMHEALTH_Streams__SessionTimeoutMs"] = "3000",
        ["STREAMHEALTH_Streams__MetricsIntervalMs"] = "1000",
    };

    private (string Source, string AppId) CreateTopics(string prefix)
    {
        var source = kafka.NewTopic(prefix, 4);
        var appId = source + "-app";
        kafka.Cluster.CreateTopic(KeySumTopology.OutputTopic(source), 4);
        kafka.Cluster.CreateTopic(source + ".dlq", 1);
        // `run` in a child process cannot reach the in-process broker's topic creation: create the changelog here.
        kafka.Cluster.CreateTopic($"{appId}-{KeySumTopology.Store}-changelog", 4);
        return (source, appId);
    }

    /// <summary>Opens <paramref name="stateDir"/> in-process: every key equals the single-threaded fold, and nothing is left
    /// to process.</summary>
    private void AssertStateInDirectoryEqualsReference(string stateDir, string source, string appId, Dictionary<string, long> reference)
    {
        using var host = new StreamHost(new StreamHostOptions { BootstrapServers = kafka.BootstrapServers, StateDirectory = stateDir,
            CreateInternalTopic = (topic, partitions) => kafka.Cluster.CreateTopic(topic, partitions) }, [KeySumTopology.Create(source, appId)]);
        host.Start();
        WaitFor(() => host.Metrics.ActiveTasks == 4, TimeSpan.FromSeconds(60), () => $"tasks {host.Metrics.ActiveTasks}/4");
        AssertStateEqualsReference(host, appId, reference);
        Assert.Equal(0, host.Metrics.Processed);
    }

    private static void AssertStateEqualsReference(StreamHost host, string appId, Dictionary<string, long> reference)
    {
        var wrong = new List<string>();
        foreach (var (key, expected) in reference)
        {
            if (!KeySumTopology.TryQuery(host, appId, key, out var actual)) wrong.Add($"{key}: missing (expected {expected})");
            else if (actual != expected) wrong.Add($"{key}: {actual} (expected {expected})");
        }
        Assert.True(wrong.Count == 0, $"{wrong.Count} of {reference.Count} keys differ from the reference fold: {string.Join("; ", wrong.Take(5))}");
    }
}
