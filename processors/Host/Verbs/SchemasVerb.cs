using Confluent.SchemaRegistry;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth schemas check|write-baseline|register`: the Protobuf compatibility gate against the committed
/// baseline, and the deploy step that registers the Avro schemas with the Schema Registry.</summary>
internal static class SchemasVerb
{
    public static int Run(string[] argv)
    {
        switch (argv.FirstOrDefault())
        {
            case "register":
                return RegisterAsync().GetAwaiter().GetResult();
            case "check":
                var problems = SchemaCompatibility.CheckAgainstBaseline();
                foreach (var p in problems) Console.Error.WriteLine(p);
                Console.WriteLine(problems.Count == 0 ? "schemas are backward compatible with the baseline" : $"{problems.Count} incompatible change(s)");
                return problems.Count == 0 ? 0 : 1;
            case "write-baseline":
                var path = argv.Length > 1 ? argv[1] : Path.Combine("schemas", "baseline", SchemaCompatibility.BaselineFileName);
                var refused = SchemaCompatibility.CheckAgainstBaseline();
                if (refused.Count > 0)
                    throw new UsageException($"refusing to move the baseline over {refused.Count} incompatible change(s); run `streamhealth schemas check`");
                File.WriteAllText(path, SchemaCompatibility.CurrentAsJson());
                Console.WriteLine($"wrote {path}");
                return 0;
            default:
                throw new UsageException("schemas needs 'check', 'write-baseline' or 'register'");
        }
    }

    /// <summary>Registers every topic's key and value schema at SchemaRegistry:Url (the registry checks each against the
    /// subject's compatibility level); exit 1 when it refuses any, naming the subject and the registry's reasons.</summary>
    private static async Task<int> RegisterAsync()
    {
        var options = StreamHealthOptions.Load();
        using var client = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = options.SchemaRegistry.Url, RequestTimeoutMs = 10_000 });
        IReadOnlyList<SchemaRegistration.Outcome> outcomes;
        try
        {
            outcomes = await SchemaRegistration.RegisterAsync(client, SchemaRegistration.CatalogueSubjects(), options.SchemaRegistry.Compatibility);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            throw new ConfigurationException($"SchemaRegistry:Url = {options.SchemaRegistry.Url}: the schema registry cannot be reached ({e.Message})");
        }
        foreach (var outcome in outcomes)
            if (outcome.Refused is null) Console.WriteLine(outcome);
            else Console.Error.WriteLine(outcome);
        var refused = outcomes.Count(o => o.Refused is not null);
        Console.WriteLine(refused == 0
            ? $"{outcomes.Count} subjects registered at {options.SchemaRegistry.Url}"
            : $"{refused} of {outcomes.Count} subjects refused by {options.SchemaRegistry.Url}");
        return refused == 0 ? 0 : 1;
    }
}
