using System.Diagnostics;
using System.Globalization;
using Npgsql;
using Spectre.Console;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Tools;

namespace StreamHealth.Host.Verbs;

/// <summary>The operations verbs (the shape of Kafka's kafka-consumer-groups and kafka-streams-application-reset):
/// `replay`, `reset-sink`, `lag`, `dlq replay` and `sink` (one registered sink under another group into another table).
/// Everything they change is idempotent downstream: the sinks store a record once by its id however often it arrives.</summary>
internal static class ReplayVerb
{
    private static readonly TimeSpan JoinTimeout = TimeSpan.FromSeconds(30);

    /// <summary>`replay TOPIC --from-offset N | --from-time T [--to-offset M | --to-time T2] --into topic:NAME | group:NAME [--rate R] [--dry-run]`</summary>
    public static int Replay(string[] argv)
    {
        var args = new Args(argv, "--dry-run");
        if (args.Positional.Count != 1) throw new UsageException("replay needs exactly one topic name");
        var (bootstrap, capabilities) = Broker(args, "replay");
        var into = args.Get("--into") ?? throw new UsageException("replay needs --into topic:NAME or --into group:NAME");
        var (kind, target) = into.Split(':', 2) is [var k, var t] && t.Length > 0 && k is "topic" or "group"
            ? (k, t) : throw new UsageException($"option --into = '{into}' is not topic:NAME or group:NAME");
        var rate = args.Get("--rate") is { } r
            ? double.TryParse(r, NumberStyles.Float, CultureInfo.InvariantCulture, out var perSecond) && perSecond > 0 ? perSecond
                : throw new UsageException($"option --rate = '{r}' is not a positive number of records per second")
            : 0;
        if (kind == "topic" && target == args.Positional[0])
            throw new UsageException($"replay {target} --into topic:{target}: a topic cannot be replayed onto itself (reprocess it with --into group:NAME)");
        var range = TopicReplay.Resolve(bootstrap, args.Positional[0], Spec(args), capabilities);
        PrintRange(range, args.Has("--dry-run"));
        if (args.Has("--dry-run"))
        {
            Console.Out.WriteLine(kind == "topic"
                ? $"dry run: would copy {range.Total} record(s) onto {target}{(rate > 0 ? $" at up to {rate} records/s" : "")}; nothing changed"
                : $"dry run: would set consumer group {target}'s offsets on {range.Topic} to the starts above; nothing changed");
            return 0;
        }
        if (kind == "group")
        {
            TopicReplay.ResetGroup(bootstrap, range, target, capabilities, JoinTimeout);
            Console.Out.WriteLine($"consumer group {target} now starts {range.Topic} at the range's start: {range.Total} record(s) to reprocess when it runs");
            return 0;
        }
        var clock = Stopwatch.StartNew();
        var copied = WithProgress($"copy → {target}", range.Total, progress =>
            TopicReplay.CopyToTopic(bootstrap, range, target, rate, progress, Shutdown.Token));
        Console.Out.WriteLine($"copied {copied} record(s) from {range.Topic} onto {target} in {clock.Elapsed.TotalSeconds:0.0} s " +
                              $"({copied / Math.Max(clock.Elapsed.TotalSeconds, 0.001):0} records/s)");
        return 0;
    }

    /// <summary>`reset-sink NAME --to-time T [--dry-run]`: the sink's group restarts at T, so it writes its table again from
    /// there (what it already stored is kept once by id; rows deleted since come back).</summary>
    public static int ResetSink(string[] argv)
    {
        var args = new Args(argv, "--dry-run");
        if (args.Positional.Count != 1) throw new UsageException($"reset-sink needs exactly one sink name (known: {string.Join(", ", SinkCatalog.Sinks.Select(s => s.Name))})");
        var sink = SinkCatalog.Get(args.Positional[0]);
        var time = Time(args, "--to-time") ?? throw new UsageException("reset-sink needs --to-time T (ISO-8601)");
        var (bootstrap, capabilities) = Broker(args, "reset-sink");
        var range = TopicReplay.Resolve(bootstrap, sink.Topic, new ReplaySpec(FromTime: time), capabilities);
        PrintRange(range, args.Has("--dry-run"));
        if (args.Has("--dry-run"))
        {
            Console.Out.WriteLine($"dry run: would set {sink.GroupId} ({sink.Name}) to the starts above; nothing changed");
            return 0;
        }
        TopicReplay.ResetGroup(bootstrap, range, sink.GroupId, capabilities, JoinTimeout);
        Console.Out.WriteLine($"sink {sink.Name} (group {sink.GroupId}) restarts {sink.Topic} at {time:O}: {range.Total} record(s) " +
                              $"re-materialise {sink.Table ?? "its store"} when it runs");
        return 0;
    }

    /// <summary>`lag [--group G [--topic T]]`: per group and partition, committed offset, end offset, lag.</summary>
    public static int Lag(string[] argv)
    {
        var args = new Args(argv);
        var (bootstrap, capabilities) = Broker(args, "lag");
        var known = SinkCatalog.Sinks.Select(s => (s.GroupId, s.Topic)).Concat(SinkCatalog.Topologies).ToList();
        if (capabilities.GroupAdmin)
            foreach (var g in TopicReplay.ListGroupTopics(bootstrap))
                if (!known.Contains(g)) known.Add(g);
        if (args.Get("--group") is { } group)
        {
            known = args.Get("--topic") is { } topic ? [(group, topic)] : known.Where(k => k.GroupId == group).ToList();
            if (known.Count == 0)
                throw new UsageException($"group '{group}' is not one this deployment runs: pass --topic TOPIC too (known groups: {string.Join(", ", SinkCatalog.Sinks.Select(s => s.GroupId).Concat(SinkCatalog.Topologies.Select(t => t.GroupId)).Distinct())})");
        }
        Console.Out.WriteLine($"{"GROUP",-44} {"TOPIC",-24} {"PARTITION",9} {"COMMITTED",10} {"END",10} {"LAG",10}");
        foreach (var (groupId, topic) in known)
        {
            IReadOnlyList<TopicReplay.PartitionLag> lags;
            try
            {
                lags = TopicReplay.Lag(bootstrap, groupId, topic);
            }
            catch (ReplayException e)
            {
                Console.Out.WriteLine($"{groupId,-44} {topic,-24} {e.Message}");
                continue;
            }
            foreach (var l in lags)
                Console.Out.WriteLine($"{groupId,-44} {topic,-24} {l.Partition,9} {(l.Committed?.ToString(CultureInfo.InvariantCulture) ?? "-"),10} {l.End,10} {l.Lag,10}");
        }
        return 0;
    }

    /// <summary>`dlq replay TOPIC.dlq [--to TOPIC] [--where-error TEXT] [--dry-run]`</summary>
    public static int DeadLetters(string[] argv)
    {
        if (argv.FirstOrDefault() != "replay") throw new UsageException("usage: dlq replay TOPIC.dlq [--to TOPIC] [--where-error TEXT] [--dry-run]");
        var args = new Args(argv[1..], "--dry-run");
        if (args.Positional.Count != 1 || !args.Positional[0].EndsWith(StreamHealth.Schemas.Topics.DeadLetterSuffix, StringComparison.Ordinal))
            throw new UsageException("dlq replay needs exactly one dead-letter topic (a name ending in .dlq)");
        var (bootstrap, _) = Broker(args, "dlq replay");
        var dryRun = args.Has("--dry-run");
        var result = WithProgress("dead letters", null, progress =>
            TopicReplay.ReplayDeadLetters(bootstrap, args.Positional[0], args.Get("--to"), args.Get("--where-error"), dryRun, progress, Shutdown.Token));
        foreach (var (topic, count) in result.Produced)
            Console.Out.WriteLine($"{(dryRun ? "would re-produce" : "re-produced")} {count} dead letter(s) onto {topic}");
        if (result.FilteredOut > 0) Console.Out.WriteLine($"{result.FilteredOut} dead letter(s) left: their error does not contain '{args.Get("--where-error")}'");
        foreach (var s in result.Skipped) Console.Out.WriteLine("left: " + s);
        if (dryRun) Console.Out.WriteLine("dry run: nothing produced");
        return result.Skipped.Count > 0 ? 1 : 0;
    }

    /// <summary>`sink NAME --group G --table T [--topic T]`: one registered PostgreSQL sink under group G into table T (created
    /// like the sink's own), reading its topic or another of the same records (a range `replay … --into topic:` copied), until
    /// it has caught up with the topic's end as it was at the start.</summary>
    public static int Sink(string[] argv)
    {
        var args = new Args(argv);
        if (args.Positional.Count != 1) throw new UsageException("sink needs exactly one sink name");
        var sink = SinkCatalog.Get(args.Positional[0]);
        var group = args.Get("--group") ?? throw new UsageException("sink needs --group G (a group of its own, not the sink's live one)");
        var table = args.Get("--table") ?? throw new UsageException("sink needs --table SCHEMA.NAME (a table of its own, not the sink's live one)");
        if (group == sink.GroupId || table == sink.Table)
            throw new UsageException($"sink {sink.Name}: --group and --table must differ from the live sink's ({sink.GroupId}, {sink.Table}); use reset-sink to rewrite those");
        try { Runtime.Sinks.SinkTables.Checked(table); }
        catch (ArgumentException e) { throw new UsageException("option --table: " + e.Message); }
        var (bootstrap, _) = Broker(args, "sink");
        var options = StreamHealthOptions.Load();
        using var db = NpgsqlDataSource.Create(options.Postgres.ConnectionString);
        using var registry = SchemaRegistryConnection.Connect(options.SchemaRegistry);
        using var logs = ConsoleLogs.Create();
        var clock = Stopwatch.StartNew();
        var written = WithProgress($"sink → {table}", null, progress =>
            SinkCatalog.RunIntoTable(sink, group, table, bootstrap, db, registry, logs, progress, Shutdown.Token, args.Get("--topic")));
        Console.Out.WriteLine($"sink {sink.Name} wrote {written} record(s) into {table} under group {group} in {clock.Elapsed.TotalSeconds:0.0} s " +
                              $"({written / Math.Max(clock.Elapsed.TotalSeconds, 0.001):0} records/s)");
        return 0;
    }

    private static (string Bootstrap, BrokerCapabilities Capabilities) Broker(Args args, string verb)
    {
        var options = StreamHealthOptions.Load();
        var bootstrap = args.Get("--bootstrap") ?? options.Kafka.BootstrapServers;
        if (string.IsNullOrEmpty(bootstrap))
            throw new UsageException($"{verb} needs a broker: pass --bootstrap HOST:PORT or set STREAMHEALTH_Kafka__BootstrapServers");
        return (bootstrap, options.Kafka.Capabilities);
    }

    internal static ReplaySpec Spec(Args args)
    {
        static long? Offset(Args a, string name) => a.Get(name) is { } v
            ? long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : throw new UsageException($"option {name} = '{v}' is not an offset (0 or more)")
            : null;
        return new ReplaySpec(Offset(args, "--from-offset"), Time(args, "--from-time"), Offset(args, "--to-offset"), Time(args, "--to-time"));
    }

    private static DateTimeOffset? Time(Args args, string name) => args.Get(name) is { } v
        ? DateTimeOffset.TryParse(v, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t) ? t
            : throw new UsageException($"option {name} = '{v}' is not an ISO-8601 time")
        : null;

    private static void PrintRange(ReplayRange range, bool dryRun)
    {
        foreach (var line in range.Describe()) Console.Out.WriteLine((dryRun ? "dry run: " : "") + line);
        Console.Out.WriteLine($"{(dryRun ? "dry run: " : "")}{range.Total} record(s) in the range");
    }

    /// <summary>Runs <paramref name="work"/> with a Spectre.Console progress bar (records, rate, time left) on a terminal,
    /// or a plain line every 2 s on stderr when output is redirected (logs, CI).</summary>
    private static T WithProgress<T>(string description, long? total, Func<ReplayProgress, T> work)
    {
        var clock = Stopwatch.StartNew();
        string Rate(long done) => $"{done / Math.Max(clock.Elapsed.TotalSeconds, 0.001):0} records/s";
        if (!Console.IsOutputRedirected && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive)
        {
            return AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RecordsColumn(), new RemainingTimeColumn(),
                    new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape(description), maxValue: Math.Max(1, total ?? 1));
                    return work((done, all) =>
                    {
                        task.MaxValue = Math.Max(1, all);
                        task.Value = done;
                    });
                });
        }
        var lastLine = -2_000L;
        return work((done, all) =>
        {
            if (clock.ElapsedMilliseconds - lastLine < 2_000 && done < all) return;
            lastLine = clock.ElapsedMilliseconds;
            var eta = done > 0 && all > done ? $", about {(all - done) * clock.Elapsed.TotalSeconds / done:0} s left" : "";
            Console.Error.WriteLine($"{description}: {done:N0}/{all:N0} record(s), {Rate(done)}{eta}");
        });
    }
}

/// <summary>"12,345/100,000 11,498/s": records done of the total and the rate over the last seconds (Spectre's own speed).</summary>
internal sealed class RecordsColumn : ProgressColumn
{
    public override Spectre.Console.Rendering.IRenderable Render(Spectre.Console.Rendering.RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
        new Text($"{task.Value:N0}/{task.MaxValue:N0} {task.Speed ?? 0:N0}/s");
}
