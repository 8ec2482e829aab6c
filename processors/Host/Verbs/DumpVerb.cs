using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Tools;
using StreamHealth.Schemas;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth dump TOPIC`: a topic as JSON lines, for data engineers.</summary>
internal static class DumpVerb
{
    public static async Task<int> RunAsync(string[] argv)
    {
        var args = new Args(argv, "--follow");
        if (args.Positional.Count != 1) throw new UsageException("dump needs exactly one topic name");
        var topic = Topics.Get(args.Positional[0]);
        var options = StreamHealthOptions.Load();
        var bootstrap = args.Get("--bootstrap") ?? options.Kafka.BootstrapServers;
        if (string.IsNullOrEmpty(bootstrap))
            throw new UsageException("dump needs a broker: pass --bootstrap HOST:PORT or set STREAMHEALTH_Kafka__BootstrapServers");
        DateTimeOffset? since = null;
        if (args.Get("--since") is { } s)
            since = DateTimeOffset.TryParse(s, out var t) ? t : throw new UsageException($"option --since = '{s}' is not an ISO-8601 time");
        // Records name their writer schema by id: read through the registry at SchemaRegistry:Url (dead letters are raw bytes).
        using var registry = !topic.IsDeadLetter ? Runtime.SchemaRegistry.SchemaRegistryConnection.Connect(options.SchemaRegistry) : null;
        var request = new TopicDumper.Request(topic, bootstrap, options.Kafka.Capabilities,
            MaxRecords: args.GetInt("--max", int.MaxValue), Since: since, Follow: args.Has("--follow"), Registry: registry?.Client);
        await using var stdout = Console.OpenStandardOutput();
        var written = await TopicDumper.DumpAsync(request, stdout, Shutdown.Token);
        Console.Error.WriteLine($"{written} record(s) from {topic.Name}");
        return 0;
    }
}
