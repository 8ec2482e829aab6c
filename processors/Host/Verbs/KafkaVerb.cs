using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.SchemaRegistry;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth kafka`: the embedded broker alone, for processes started separately.</summary>
internal static class KafkaVerb
{
    public static async Task<int> RunAsync(string[] argv)
    {
        var args = new Args(argv);
        var options = StreamHealthOptions.Load();
        using var cluster = EmbeddedKafkaCluster.Start(options.Kafka.EmbeddedBrokers, partitionOverrides: options.Kafka.PartitionOverrides);
        CreateInternalTopics(cluster, options);
        using var logs = ConsoleLogs.Create();
        await using var registry = await StartRegistryAsync(options, logs);
        WriteBootstrap(args.Get("--bootstrap-file"), cluster.BootstrapServers);
        Console.WriteLine($"embedded Kafka (librdkafka {EmbeddedKafkaCluster.LibrdkafkaVersion} mock cluster from {Path.GetFileName(EmbeddedKafkaCluster.LibrdkafkaPath)}, {cluster.BrokerCount} broker(s)) at {cluster.BootstrapServers}");
        Console.WriteLine("Ctrl-C stops it.");
        await Shutdown.WaitAsync();
        return 0;
    }

    /// <summary>The workload topologies' changelogs (Streamiz would ask the broker for them, which the embedded one cannot answer).</summary>
    public static void CreateInternalTopics(EmbeddedKafkaCluster cluster, StreamHealthOptions options)
    {
        var configuration = StreamHealthOptions.AddSources(new Microsoft.Extensions.Configuration.ConfigurationBuilder()).Build();
        foreach (var (topic, partitions) in Topologies.TopologyCatalog.InternalTopics(configuration, options.Kafka.PartitionOverrides))
            cluster.CreateTopic(topic, partitions);
    }

    /// <summary>The stand-in schema registry beside the embedded broker (SchemaRegistry:Embedded), with the catalogue's
    /// schemas registered; null when the stack uses a registry of its own.</summary>
    public static async Task<SchemaRegistryServer?> StartRegistryAsync(StreamHealthOptions options, Microsoft.Extensions.Logging.ILoggerFactory logs)
    {
        if (!options.SchemaRegistry.Embedded) return null;
        var registry = await EmbeddedSchemaRegistry.StartAsync(options.SchemaRegistry, options.Postgres.ConnectionString, logs);
        Console.WriteLine($"registry  embedded Schema Registry stand-in at {registry.Url} ({SchemaRegistration.CatalogueSubjects().Count()} subjects registered, PostgreSQL registry.*)");
        return registry;
    }

    public static void WriteBootstrap(string? path, string bootstrap)
    {
        if (path is null) return;
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, bootstrap + "\n");
        File.Move(tmp, path, overwrite: true);   // readers never see a half-written file
    }
}

internal static class Shutdown
{
    private static readonly TaskCompletionSource Signalled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private static readonly CancellationTokenSource Source = new();
    // Held in a field: a collected registration stops delivering the signal.
    private static readonly System.Runtime.InteropServices.PosixSignalRegistration Term =
        System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM,
            ctx => { ctx.Cancel = true; Trigger(); });

    static Shutdown() => Console.CancelKeyPress += (_, e) => { e.Cancel = true; Trigger(); };

    /// <summary>Cancelled on Ctrl-C or SIGTERM.</summary>
    public static CancellationToken Token => Term is null ? default : Source.Token;

    /// <summary>Completes on Ctrl-C or SIGTERM.</summary>
    public static Task WaitAsync() => Term is null ? Task.CompletedTask : Signalled.Task;

    private static void Trigger()
    {
        Source.Cancel();
        Signalled.TrySetResult();
    }
}
